package resources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes/scheme"
)

// LastAppliedAnnotation holds what the last `apply` sent, as kubectl's
// client-side apply keeps it: the base of the next three-way merge.
const LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// target resolves a manifest's type and namespace.
func (c *Client) target(m Manifest, ns string) (*meta.RESTMapping, string, error) {
	mapping, err := c.MappingFor(m.Object.GroupVersionKind())
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", m.Source, err)
	}
	if !namespaced(mapping) {
		return mapping, "", nil
	}
	if objNS := m.Object.GetNamespace(); objNS != "" {
		if ns != "" && ns != objNS {
			return nil, "", fmt.Errorf("%s: the object's namespace %q does not match --namespace %q", m.Source, objNS, ns)
		}
		return mapping, objNS, nil
	}
	if ns == "" {
		ns = c.Namespace
	}
	return mapping, ns, nil
}

// Create creates every object; ns ("" for the default) is used for those
// that name no namespace. It reports each and returns the failures.
func (c *Client) Create(ctx context.Context, out io.Writer, ms []Manifest, ns string) error {
	var errs []error
	for _, m := range ms {
		mapping, objNS, err := c.target(m, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		obj := m.Object.DeepCopy()
		if namespaced(mapping) {
			obj.SetNamespace(objNS)
		}
		got, err := c.resourceClient(mapping, objNS).Create(ctx, obj, metav1.CreateOptions{FieldManager: "klab"})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Source, c.connErr(err)))
			continue
		}
		fmt.Fprintf(out, "%s/%s created\n", typeName(mapping), got.GetName())
	}
	return errors.Join(errs...)
}

// Apply creates the objects that do not exist and patches the others with
// a three-way merge of what was last applied, what is applied now and what
// the server has (a strategic merge for Kubernetes types, a JSON merge for
// others), like kubectl's client-side apply.
func (c *Client) Apply(ctx context.Context, out io.Writer, ms []Manifest, ns string) error {
	var errs []error
	for _, m := range ms {
		if m.Object.GetName() == "" {
			errs = append(errs, fmt.Errorf("%s: apply needs metadata.name (generateName is for create)", m.Source))
			continue
		}
		mapping, objNS, err := c.target(m, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var action string
		for range 3 { // a conflict means the object changed under us: merge again
			action, err = c.applyOne(ctx, mapping, objNS, m.Object)
			if !apierrors.IsConflict(err) {
				break
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Source, c.connErr(err)))
			continue
		}
		fmt.Fprintf(out, "%s/%s %s\n", typeName(mapping), m.Object.GetName(), action)
	}
	return errors.Join(errs...)
}

func (c *Client) applyOne(ctx context.Context, mapping *meta.RESTMapping, ns string, given *unstructured.Unstructured) (string, error) {
	obj := given.DeepCopy()
	if namespaced(mapping) {
		obj.SetNamespace(ns)
	}
	ann := obj.GetAnnotations()
	delete(ann, LastAppliedAnnotation)
	if len(ann) == 0 {
		ann = nil
	}
	obj.SetAnnotations(ann)
	applied, err := obj.MarshalJSON()
	if err != nil {
		return "", err
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[LastAppliedAnnotation] = string(applied)
	obj.SetAnnotations(ann)
	modified, err := obj.MarshalJSON()
	if err != nil {
		return "", err
	}

	rc := c.resourceClient(mapping, ns)
	cur, err := rc.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err := rc.Create(ctx, obj, metav1.CreateOptions{FieldManager: "klab"}); err != nil {
			return "", err
		}
		return "created", nil
	}
	if err != nil {
		return "", err
	}
	current, err := cur.MarshalJSON()
	if err != nil {
		return "", err
	}
	original := []byte(cur.GetAnnotations()[LastAppliedAnnotation])
	if len(original) == 0 {
		original = []byte("{}")
	}
	patch, pt, err := threeWay(mapping, original, modified, current)
	if err != nil {
		return "", fmt.Errorf("compute the patch for %s %s: %w", mapping.GroupVersionKind.Kind, obj.GetName(), err)
	}
	if string(patch) == "{}" {
		return "unchanged", nil
	}
	if _, err := rc.Patch(ctx, obj.GetName(), pt, patch, metav1.PatchOptions{FieldManager: "klab"}); err != nil {
		return "", err
	}
	return "configured", nil
}

// threeWay computes apply's patch: strategic for types client-go knows
// (lists merge by their keys, like containers by name), JSON merge for
// the rest (klab's own ClusterNetwork, BGPPeer).
func threeWay(mapping *meta.RESTMapping, original, modified, current []byte) ([]byte, types.PatchType, error) {
	if typed, err := scheme.Scheme.New(mapping.GroupVersionKind); err == nil {
		lookup, err := strategicpatch.NewPatchMetaFromStruct(typed)
		if err != nil {
			return nil, "", err
		}
		p, err := strategicpatch.CreateThreeWayMergePatch(original, modified, current, lookup, true)
		return p, types.StrategicMergePatchType, err
	}
	p, err := jsonmergepatch.CreateThreeWayJSONMergePatch(original, modified, current)
	return p, types.MergePatchType, err
}

// DeleteOptions say how objects are deleted.
type DeleteOptions struct {
	// Cascade is background (default: the garbage collector removes the
	// dependents after), foreground (dependents first) or orphan (keep
	// them).
	Cascade string
	// GracePeriod overrides the pods' termination grace period (-1: keep).
	GracePeriod int64
	Selector    string
	All         bool
}

func (o DeleteOptions) options() (metav1.DeleteOptions, error) {
	var d metav1.DeleteOptions
	var p metav1.DeletionPropagation
	switch strings.ToLower(o.Cascade) {
	case "", "background", "true":
		p = metav1.DeletePropagationBackground
	case "foreground":
		p = metav1.DeletePropagationForeground
	case "orphan", "false":
		p = metav1.DeletePropagationOrphan
	default:
		return d, fmt.Errorf("--cascade %q: use background, foreground or orphan", o.Cascade)
	}
	d.PropagationPolicy = &p
	if o.GracePeriod >= 0 {
		d.GracePeriodSeconds = &o.GracePeriod
	}
	return d, nil
}

// Delete deletes targets (by name, or all matching the selector, or all
// with o.All) in ns.
func (c *Client) Delete(ctx context.Context, out io.Writer, targets []Target, ns string, o DeleteOptions) error {
	opts, err := o.options()
	if err != nil {
		return err
	}
	if ns == "" {
		ns = c.Namespace
	}
	var errs []error
	for _, t := range targets {
		names := t.Names
		if len(names) == 0 {
			if o.Selector == "" && !o.All {
				return fmt.Errorf("name the %s to delete, or select them with -l or --all", t.Mapping.Resource.Resource)
			}
			l, err := c.resourceClient(t.Mapping, ns).List(ctx, metav1.ListOptions{LabelSelector: o.Selector})
			if err != nil {
				return c.connErr(err)
			}
			for _, i := range l.Items {
				names = append(names, i.GetName())
			}
			if len(names) == 0 {
				fmt.Fprintln(out, "No resources found")
			}
		}
		for _, n := range names {
			errs = append(errs, c.deleteOne(ctx, out, t.Mapping, ns, n, opts))
		}
	}
	return errors.Join(errs...)
}

// DeleteManifests deletes the objects a manifest describes.
func (c *Client) DeleteManifests(ctx context.Context, out io.Writer, ms []Manifest, ns string, o DeleteOptions) error {
	opts, err := o.options()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		mapping, objNS, err := c.target(m, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, c.deleteOne(ctx, out, mapping, objNS, m.Object.GetName(), opts))
	}
	return errors.Join(errs...)
}

func (c *Client) deleteOne(ctx context.Context, out io.Writer, m *meta.RESTMapping, ns, name string, opts metav1.DeleteOptions) error {
	if !namespaced(m) {
		ns = ""
	}
	if err := c.resourceClient(m, ns).Delete(ctx, name, opts); err != nil {
		return notFound(c.connErr(err), m, ns)
	}
	fmt.Fprintf(out, "%s %q deleted\n", typeName(m), name)
	return nil
}

// Scale sets the replicas of targets (deployments, replicasets) through
// their scale subresource, or spec.replicas where the server has none.
func (c *Client) Scale(ctx context.Context, out io.Writer, targets []Target, ns string, replicas int32) error {
	if replicas < 0 {
		return fmt.Errorf("--replicas %d: the count cannot be negative", replicas)
	}
	if ns == "" {
		ns = c.Namespace
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": replicas}})
	var errs []error
	for _, t := range targets {
		if len(t.Names) == 0 {
			return fmt.Errorf("name the %s to scale: TYPE/NAME or TYPE NAME", t.Mapping.Resource.Resource)
		}
		sub := c.hasSubresource(t.Mapping, "scale")
		for _, n := range t.Names {
			rc := c.resourceClient(t.Mapping, ns)
			var err error
			if sub {
				_, err = rc.Patch(ctx, n, types.MergePatchType, patch, metav1.PatchOptions{}, "scale")
			} else {
				_, err = rc.Patch(ctx, n, types.MergePatchType, patch, metav1.PatchOptions{})
			}
			if err != nil {
				errs = append(errs, notFound(c.connErr(err), t.Mapping, ns))
				continue
			}
			fmt.Fprintf(out, "%s/%s scaled\n", typeName(t.Mapping), n)
		}
	}
	return errors.Join(errs...)
}

// hasSubresource reports whether discovery lists resource/sub.
func (c *Client) hasSubresource(m *meta.RESTMapping, sub string) bool {
	l, err := c.discovery.ServerResourcesForGroupVersion(m.Resource.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range l.APIResources {
		if r.Name == m.Resource.Resource+"/"+sub {
			return true
		}
	}
	return false
}
