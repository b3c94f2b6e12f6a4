package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

const (
	revisionAnnotation    = "deployment.kubernetes.io/revision"
	changeCauseAnnotation = "kubernetes.io/change-cause"
)

// deploymentTarget checks that a target is one named Deployment.
func deploymentTarget(ts []Target) (string, error) {
	if len(ts) != 1 || len(ts[0].Names) != 1 {
		return "", errors.New("name one deployment: deploy/NAME")
	}
	if ts[0].Mapping.GroupVersionKind.GroupKind() != appsv1.SchemeGroupVersion.WithKind("Deployment").GroupKind() {
		return "", fmt.Errorf("rollout works with deployments, not %s", ts[0].Mapping.Resource.Resource)
	}
	return ts[0].Names[0], nil
}

// history returns the Deployment and its ReplicaSets by revision.
func (c *Client) history(ctx context.Context, ns, name string) (*appsv1.Deployment, []*appsv1.ReplicaSet, error) {
	d, err := c.Typed.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, c.deployErr(err, ns)
	}
	l, err := c.Typed.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, c.connErr(err)
	}
	var out []*appsv1.ReplicaSet
	for i := range l.Items {
		rs := &l.Items[i]
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.UID == d.UID {
			out = append(out, rs)
		}
	}
	slices.SortFunc(out, func(a, b *appsv1.ReplicaSet) int { return int(rev(a) - rev(b)) })
	return d, out, nil
}

func (c *Client) deployErr(err error, ns string) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s in namespace %s", err.Error(), ns)
	}
	return c.connErr(err)
}

func rev(rs *appsv1.ReplicaSet) int64 {
	n, _ := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
	return n
}

// RolloutHistory prints a Deployment's revisions, or one revision's pod
// template when revision > 0.
func (c *Client) RolloutHistory(ctx context.Context, out io.Writer, ts []Target, ns string, revision int64) error {
	name, err := deploymentTarget(ts)
	if err != nil {
		return err
	}
	if ns == "" {
		ns = c.Namespace
	}
	_, rss, err := c.history(ctx, ns, name)
	if err != nil {
		return err
	}
	if revision > 0 {
		for _, rs := range rss {
			if rev(rs) == revision {
				tmpl := rs.Spec.Template.DeepCopy()
				delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
				b, err := yaml.Marshal(tmpl)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "deployment.apps/%s with revision #%d\nPod Template:\n", name, revision)
				out.Write(indent(b, "  "))
				return nil
			}
		}
		return fmt.Errorf("deployment %q has no revision %d: see 'klab rollout history deploy/%s'", name, revision, name)
	}
	fmt.Fprintf(out, "deployment.apps/%s\n", name)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "REVISION\tCHANGE-CAUSE")
	for _, rs := range rss {
		if rev(rs) == 0 {
			continue
		}
		cause := rs.Annotations[changeCauseAnnotation]
		if cause == "" {
			cause = "<none>"
		}
		fmt.Fprintf(w, "%d\t%s\n", rev(rs), cause)
	}
	return w.Flush()
}

func indent(b []byte, prefix string) []byte {
	var out []byte
	for i, line := range splitLines(b) {
		if i > 0 || len(line) > 0 {
			out = append(out, prefix...)
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, b[start:])
	}
	return out
}

// RolloutUndo sets the Deployment's pod template back to that of an
// earlier revision (the one before the current, when toRevision is 0);
// the controller then rolls that out as a new revision.
func (c *Client) RolloutUndo(ctx context.Context, out io.Writer, ts []Target, ns string, toRevision int64) error {
	name, err := deploymentTarget(ts)
	if err != nil {
		return err
	}
	if ns == "" {
		ns = c.Namespace
	}
	d, rss, err := c.history(ctx, ns, name)
	if err != nil {
		return err
	}
	var target *appsv1.ReplicaSet
	if toRevision == 0 {
		current, _ := strconv.ParseInt(d.Annotations[revisionAnnotation], 10, 64)
		for _, rs := range slices.Backward(rss) {
			if r := rev(rs); r > 0 && r != current {
				target = rs
				break
			}
		}
		if target == nil {
			return fmt.Errorf("deployment %q has no earlier revision to go back to", name)
		}
	} else {
		for _, rs := range rss {
			if rev(rs) == toRevision {
				target = rs
			}
		}
		if target == nil {
			return fmt.Errorf("deployment %q has no revision %d: see 'klab rollout history deploy/%s'", name, toRevision, name)
		}
	}
	tmpl := target.Spec.Template.DeepCopy()
	delete(tmpl.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if equality.Semantic.DeepEqual(tmpl, &d.Spec.Template) {
		fmt.Fprintf(out, "deployment.apps/%s skipped rollback (current template already matches revision %d)\n", name, rev(target))
		return nil
	}
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": "/metadata/resourceVersion", "value": d.ResourceVersion},
		{"op": "replace", "path": "/spec/template", "value": tmpl},
	})
	if err != nil {
		return err
	}
	if _, err := c.Typed.AppsV1().Deployments(ns).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		return c.deployErr(err, ns)
	}
	fmt.Fprintf(out, "deployment.apps/%s rolled back\n", name)
	return nil
}

// rolloutState words a Deployment's progress as kubectl does; done is true
// once it has rolled out.
func rolloutState(d *appsv1.Deployment) (msg string, done bool, err error) {
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, st.UpdatedReplicas, want), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", d.Name), true, nil
}

// RolloutStatus prints a Deployment's progress until it has rolled out
// (or once, without watch), failing after timeout (0: no limit).
func (c *Client) RolloutStatus(ctx context.Context, out io.Writer, ts []Target, ns string, watch bool, timeout time.Duration) error {
	name, err := deploymentTarget(ts)
	if err != nil {
		return err
	}
	if ns == "" {
		ns = c.Namespace
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	last := ""
	show := func(d *appsv1.Deployment) (bool, error) {
		msg, done, err := rolloutState(d)
		if err != nil {
			return false, err
		}
		if msg != last {
			fmt.Fprintln(out, msg)
			last = msg
		}
		return done, nil
	}
	for {
		d, err := c.Typed.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return c.rolloutCtxErr(ctx, c.deployErr(err, ns), name, timeout)
		}
		done, err := show(d)
		if err != nil || done || !watch {
			return err
		}
		w, err := c.Typed.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: d.ResourceVersion,
		})
		if err != nil {
			return c.rolloutCtxErr(ctx, c.connErr(err), name, timeout)
		}
		for ev := range w.ResultChan() {
			d, ok := ev.Object.(*appsv1.Deployment)
			if !ok {
				continue // an error event: start over with a fresh get
			}
			if done, err := show(d); err != nil || done {
				w.Stop()
				return err
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return c.rolloutCtxErr(ctx, ctx.Err(), name, timeout)
		}
	}
}

func (c *Client) rolloutCtxErr(ctx context.Context, err error, name string, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("deployment %q has not rolled out after %s", name, timeout)
	}
	return err
}

// templateImages lists a pod template's containers and images, for describe.
func templateImages(t *v1.PodTemplateSpec) [][2]string {
	var out [][2]string
	for _, c := range t.Spec.Containers {
		out = append(out, [2]string{c.Name, c.Image})
	}
	return out
}
