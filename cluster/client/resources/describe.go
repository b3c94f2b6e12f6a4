package resources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// Describe prints each target object in prose, with its events, the way
// kubectl describe does for pods, nodes, deployments, replicasets and
// services (other kinds: their fields as YAML).
func (c *Client) Describe(ctx context.Context, out io.Writer, targets []Target, ns, selector string) error {
	if ns == "" {
		ns = c.Namespace
	}
	var errs []error
	first := true
	for _, t := range targets {
		objNS := ns
		if !namespaced(t.Mapping) {
			objNS = ""
		}
		objs, err := c.objects(ctx, t, objNS, GetOptions{Selector: selector})
		if err != nil {
			errs = append(errs, err)
		}
		for _, o := range objs {
			if !first {
				fmt.Fprintln(out)
			}
			first = false
			if err := c.describeOne(ctx, out, t.Mapping, o); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// describer writes "Key:  value" lines, aligned, with nesting.
type describer struct {
	w *tabwriter.Writer
}

func (d describer) line(level int, key string, format string, args ...any) {
	fmt.Fprintf(d.w, "%s%s:\t%s\n", strings.Repeat("  ", level), key, fmt.Sprintf(format, args...))
}

// more continues the value of the line above.
func (d describer) more(level int, format string, args ...any) {
	fmt.Fprintf(d.w, "%s\t%s\n", strings.Repeat("  ", level), fmt.Sprintf(format, args...))
}

func (d describer) head(level int, key string) {
	fmt.Fprintf(d.w, "%s%s:\n", strings.Repeat("  ", level), key)
}

func (d describer) raw(level int, format string, args ...any) {
	fmt.Fprintf(d.w, "%s%s\n", strings.Repeat("  ", level), fmt.Sprintf(format, args...))
}

// kv prints a map one pair per line (kubectl's Labels: layout).
func (d describer) kv(level int, key string, m map[string]string, skip ...string) {
	keys := slices.Sorted(maps.Keys(m))
	keys = slices.DeleteFunc(keys, func(k string) bool { return slices.Contains(skip, k) })
	if len(keys) == 0 {
		d.line(level, key, "<none>")
		return
	}
	for i, k := range keys {
		if i == 0 {
			d.line(level, key, "%s=%s", k, m[k])
		} else {
			d.more(level, "%s=%s", k, m[k])
		}
	}
}

func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func (c *Client) describeOne(ctx context.Context, out io.Writer, m *meta.RESTMapping, u *unstructured.Unstructured) error {
	d := describer{w: tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)}
	var err error
	switch m.GroupVersionKind.GroupKind().String() {
	case "Pod":
		var p v1.Pod
		if err = fromUnstructured(u, &p); err == nil {
			describePod(d, &p)
		}
	case "Node":
		var n v1.Node
		if err = fromUnstructured(u, &n); err == nil {
			err = c.describeNode(ctx, d, &n)
		}
	case "Deployment.apps":
		var dep appsv1.Deployment
		if err = fromUnstructured(u, &dep); err == nil {
			err = c.describeDeployment(ctx, d, &dep)
		}
	case "ReplicaSet.apps":
		var rs appsv1.ReplicaSet
		if err = fromUnstructured(u, &rs); err == nil {
			err = c.describeReplicaSet(ctx, d, &rs)
		}
	case "Service":
		var s v1.Service
		if err = fromUnstructured(u, &s); err == nil {
			c.describeService(ctx, d, &s)
		}
	default:
		describeGeneric(d, u)
	}
	if err != nil {
		return err
	}
	c.describeEvents(ctx, d, m, u)
	return d.w.Flush()
}

func fromUnstructured(u *unstructured.Unstructured, into any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

func meta0(d describer, o metav1.Object, namespaced bool) {
	d.line(0, "Name", "%s", o.GetName())
	if namespaced {
		d.line(0, "Namespace", "%s", o.GetNamespace())
	}
	d.line(0, "CreationTimestamp", "%s", o.GetCreationTimestamp().Format(time.RFC1123Z))
	d.kv(0, "Labels", o.GetLabels())
	d.kv(0, "Annotations", o.GetAnnotations(), LastAppliedAnnotation)
	if ref := metav1.GetControllerOf(o); ref != nil {
		d.line(0, "Controlled By", "%s/%s", ref.Kind, ref.Name)
	}
}

func describePod(d describer, p *v1.Pod) {
	meta0(d, p, true)
	node := "<none>"
	if p.Spec.NodeName != "" {
		node = p.Spec.NodeName
		if p.Status.HostIP != "" {
			node += "/" + p.Status.HostIP
		}
	}
	d.line(0, "Node", "%s", node)
	if p.Status.StartTime != nil {
		d.line(0, "Start Time", "%s", p.Status.StartTime.Format(time.RFC1123Z))
	}
	status := string(p.Status.Phase)
	if p.DeletionTimestamp != nil {
		status = "Terminating (lasts " + age(*p.DeletionTimestamp) + ")"
	}
	d.line(0, "Status", "%s", orNone(status))
	d.line(0, "IP", "%s", orNone(p.Status.PodIP))
	d.head(0, "Containers")
	statuses := map[string]v1.ContainerStatus{}
	for _, s := range p.Status.ContainerStatuses {
		statuses[s.Name] = s
	}
	for _, ct := range p.Spec.Containers {
		d.head(1, ct.Name)
		d.line(2, "Image", "%s", ct.Image)
		var ports []string
		for _, pt := range ct.Ports {
			ports = append(ports, fmt.Sprintf("%d/%s", pt.ContainerPort, orDefault(string(pt.Protocol), "TCP")))
		}
		d.line(2, "Port", "%s", orNone(strings.Join(ports, ", ")))
		if len(ct.Command) > 0 {
			d.line(2, "Command", "%s", strings.Join(ct.Command, " "))
		}
		if s, ok := statuses[ct.Name]; ok {
			d.line(2, "State", "%s", containerState(s.State))
			d.line(2, "Ready", "%t", s.Ready)
			d.line(2, "Restart Count", "%d", s.RestartCount)
		}
		if len(ct.Resources.Limits) > 0 {
			d.head(2, "Limits")
			resourceLines(d, 3, ct.Resources.Limits)
		}
		if len(ct.Resources.Requests) > 0 {
			d.head(2, "Requests")
			resourceLines(d, 3, ct.Resources.Requests)
		}
	}
	if len(p.Status.Conditions) > 0 {
		d.head(0, "Conditions")
		d.raw(1, "Type\tStatus\tReason")
		for _, cnd := range p.Status.Conditions {
			d.raw(1, "%s\t%s\t%s", cnd.Type, cnd.Status, cnd.Reason)
		}
	}
	d.kv(0, "Node-Selectors", p.Spec.NodeSelector)
	var tols []string
	for _, t := range p.Spec.Tolerations {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if t.Operator == v1.TolerationOpExists {
			s += " op=Exists"
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		tols = append(tols, s)
	}
	list(d, "Tolerations", tols)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func list(d describer, key string, items []string) {
	if len(items) == 0 {
		d.line(0, key, "<none>")
		return
	}
	for i, s := range items {
		if i == 0 {
			d.line(0, key, "%s", s)
		} else {
			d.more(0, "%s", s)
		}
	}
}

func containerState(s v1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "Running (started " + s.Running.StartedAt.Format(time.RFC1123Z) + ")"
	case s.Waiting != nil:
		return "Waiting (" + s.Waiting.Reason + ")"
	case s.Terminated != nil:
		return fmt.Sprintf("Terminated (%s, exit code %d)", s.Terminated.Reason, s.Terminated.ExitCode)
	}
	return "<none>"
}

func resourceLines(d describer, level int, l v1.ResourceList) {
	for _, k := range slices.Sorted(maps.Keys(l)) {
		q := l[k]
		d.line(level, string(k), "%s", q.String())
	}
}

func (c *Client) describeNode(ctx context.Context, d describer, n *v1.Node) error {
	var roles []string
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
			roles = append(roles, r)
		}
	}
	slices.Sort(roles)
	d.line(0, "Name", "%s", n.Name)
	d.line(0, "Roles", "%s", orNone(strings.Join(roles, ",")))
	d.kv(0, "Labels", n.Labels)
	d.kv(0, "Annotations", n.Annotations, LastAppliedAnnotation)
	d.line(0, "CreationTimestamp", "%s", n.CreationTimestamp.Format(time.RFC1123Z))
	var taints []string
	for _, t := range n.Spec.Taints {
		taints = append(taints, t.ToString())
	}
	list(d, "Taints", taints)
	d.line(0, "Unschedulable", "%t", n.Spec.Unschedulable)
	d.head(0, "Conditions")
	d.raw(1, "Type\tStatus\tLastHeartbeatTime\tReason\tMessage")
	for _, cnd := range n.Status.Conditions {
		d.raw(1, "%s\t%s\t%s\t%s\t%s", cnd.Type, cnd.Status, cnd.LastHeartbeatTime.Format(time.RFC1123Z), cnd.Reason, cnd.Message)
	}
	d.head(0, "Addresses")
	for _, a := range n.Status.Addresses {
		d.line(1, string(a.Type), "%s", a.Address)
	}
	d.head(0, "Capacity")
	resourceLines(d, 1, n.Status.Capacity)
	d.head(0, "Allocatable")
	resourceLines(d, 1, n.Status.Allocatable)
	d.line(0, "PodCIDR", "%s", orNone(n.Spec.PodCIDR))
	pods, err := c.Typed.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", n.Name).String()})
	if err != nil {
		return c.connErr(err)
	}
	var cpu, mem resource.Quantity
	var active []v1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		active = append(active, p)
	}
	d.raw(0, "Non-terminated Pods:\t(%d in total)", len(active))
	if len(active) > 0 {
		d.raw(1, "Namespace\tName\tCPU Requests\tMemory Requests\tAge")
	}
	for _, p := range active {
		var pc, pm resource.Quantity
		for _, ct := range p.Spec.Containers {
			pc.Add(*ct.Resources.Requests.Cpu())
			pm.Add(*ct.Resources.Requests.Memory())
		}
		cpu.Add(pc)
		mem.Add(pm)
		d.raw(1, "%s\t%s\t%s\t%s\t%s", p.Namespace, p.Name, pc.String(), pm.String(), age(p.CreationTimestamp))
	}
	d.head(0, "Allocated resources")
	d.raw(1, "Resource\tRequests")
	d.raw(1, "cpu\t%s (%d%%)", cpu.String(), percent(cpu.MilliValue(), n.Status.Allocatable.Cpu().MilliValue()))
	d.raw(1, "memory\t%s (%d%%)", mem.String(), percent(mem.Value(), n.Status.Allocatable.Memory().Value()))
	return nil
}

func percent(a, b int64) int64 {
	if b == 0 {
		return 0
	}
	return a * 100 / b
}

func (c *Client) describeDeployment(ctx context.Context, d describer, dep *appsv1.Deployment) error {
	meta0(d, dep, true)
	sel, _ := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	d.line(0, "Selector", "%s", sel.String())
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	st := dep.Status
	d.line(0, "Replicas", "%d desired | %d updated | %d total | %d available | %d unavailable", want, st.UpdatedReplicas, st.Replicas, st.AvailableReplicas, st.UnavailableReplicas)
	d.line(0, "StrategyType", "%s", orDefault(string(dep.Spec.Strategy.Type), string(appsv1.RollingUpdateDeploymentStrategyType)))
	d.line(0, "MinReadySeconds", "%d", dep.Spec.MinReadySeconds)
	if ru := dep.Spec.Strategy.RollingUpdate; dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		surge, unavail := "25%", "25%"
		if ru != nil && ru.MaxSurge != nil {
			surge = ru.MaxSurge.String()
		}
		if ru != nil && ru.MaxUnavailable != nil {
			unavail = ru.MaxUnavailable.String()
		}
		d.line(0, "RollingUpdateStrategy", "%s max unavailable, %s max surge", unavail, surge)
	}
	describeTemplate(d, &dep.Spec.Template)
	if len(st.Conditions) > 0 {
		d.head(0, "Conditions")
		d.raw(1, "Type\tStatus\tReason")
		for _, cnd := range st.Conditions {
			d.raw(1, "%s\t%s\t%s", cnd.Type, cnd.Status, cnd.Reason)
		}
	}
	_, rss, err := c.history(ctx, dep.Namespace, dep.Name)
	if err != nil {
		return err
	}
	var old []string
	newRS := "<none>"
	for _, rs := range rss {
		s := fmt.Sprintf("%s (%d/%d replicas created)", rs.Name, rs.Status.Replicas, ptrVal(rs.Spec.Replicas))
		if rs.Annotations[revisionAnnotation] == dep.Annotations[revisionAnnotation] {
			newRS = s
		} else if ptrVal(rs.Spec.Replicas) > 0 || rs.Status.Replicas > 0 {
			old = append(old, s)
		}
	}
	list(d, "OldReplicaSets", old)
	d.line(0, "NewReplicaSet", "%s", newRS)
	return nil
}

func ptrVal(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func describeTemplate(d describer, t *v1.PodTemplateSpec) {
	d.head(0, "Pod Template")
	d.kv(1, "Labels", t.Labels)
	d.head(1, "Containers")
	for _, ci := range templateImages(t) {
		d.head(2, ci[0])
		d.line(3, "Image", "%s", ci[1])
	}
}

func (c *Client) describeReplicaSet(ctx context.Context, d describer, rs *appsv1.ReplicaSet) error {
	meta0(d, rs, true)
	sel, _ := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	d.line(0, "Selector", "%s", sel.String())
	d.line(0, "Replicas", "%d current / %d desired", rs.Status.Replicas, ptrVal(rs.Spec.Replicas))
	pods, err := c.Typed.CoreV1().Pods(rs.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return c.connErr(err)
	}
	counts := map[v1.PodPhase]int{}
	for _, p := range pods.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == rs.UID {
			counts[p.Status.Phase]++
		}
	}
	d.line(0, "Pods Status", "%d Running / %d Waiting / %d Succeeded / %d Failed",
		counts[v1.PodRunning], counts[v1.PodPending]+counts[""], counts[v1.PodSucceeded], counts[v1.PodFailed])
	describeTemplate(d, &rs.Spec.Template)
	return nil
}

func (c *Client) describeService(ctx context.Context, d describer, s *v1.Service) {
	meta0(d, s, true)
	d.kv(0, "Selector", s.Spec.Selector)
	d.line(0, "Type", "%s", orDefault(string(s.Spec.Type), string(v1.ServiceTypeClusterIP)))
	d.line(0, "IP", "%s", orNone(s.Spec.ClusterIP))
	for _, p := range s.Spec.Ports {
		d.line(0, "Port", "%s\t%d/%s", orNone(p.Name), p.Port, orDefault(string(p.Protocol), "TCP"))
		d.line(0, "TargetPort", "%s/%s", p.TargetPort.String(), orDefault(string(p.Protocol), "TCP"))
		if p.NodePort != 0 {
			d.line(0, "NodePort", "%s\t%d/%s", orNone(p.Name), p.NodePort, orDefault(string(p.Protocol), "TCP"))
		}
	}
	var addrs []string
	if ep, err := c.Typed.CoreV1().Endpoints(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{}); err == nil {
		for _, ss := range ep.Subsets {
			for _, a := range ss.Addresses {
				for _, p := range ss.Ports {
					addrs = append(addrs, fmt.Sprintf("%s:%d", a.IP, p.Port))
				}
			}
		}
	}
	d.line(0, "Endpoints", "%s", orNone(strings.Join(addrs, ",")))
}

func describeGeneric(d describer, u *unstructured.Unstructured) {
	meta0(d, u, u.GetNamespace() != "")
	rest := u.DeepCopy().Object
	delete(rest, "metadata")
	delete(rest, "apiVersion")
	delete(rest, "kind")
	if len(rest) == 0 {
		return
	}
	b, err := yaml.Marshal(rest)
	if err != nil {
		return
	}
	for _, l := range splitLines(b) {
		d.raw(0, "%s", strings.ReplaceAll(string(l), "\t", " "))
	}
}

// describeEvents prints the events about the object, oldest first.
func (c *Client) describeEvents(ctx context.Context, d describer, m *meta.RESTMapping, u *unstructured.Unstructured) {
	ns := u.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceAll
	}
	l, err := c.Typed.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		d.line(0, "Events", "<cannot list: %v>", err)
		return
	}
	var evs []v1.Event
	for _, e := range l.Items {
		io := e.InvolvedObject
		if io.UID == u.GetUID() && io.UID != "" || io.UID == "" && io.Kind == m.GroupVersionKind.Kind && io.Name == u.GetName() {
			evs = append(evs, e)
		}
	}
	if len(evs) == 0 {
		d.line(0, "Events", "<none>")
		return
	}
	last := func(e v1.Event) time.Time {
		switch {
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	slices.SortStableFunc(evs, func(a, b v1.Event) int { return last(a).Compare(last(b)) })
	d.head(0, "Events")
	d.raw(1, "Type\tReason\tAge\tFrom\tMessage")
	d.raw(1, "----\t------\t----\t----\t-------")
	for _, e := range evs {
		a := duration.HumanDuration(time.Since(last(e)))
		if e.Count > 1 {
			a += fmt.Sprintf(" (x%d)", e.Count)
		}
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		d.raw(1, "%s\t%s\t%s\t%s\t%s", e.Type, e.Reason, a, from, strings.TrimSpace(e.Message))
	}
}
