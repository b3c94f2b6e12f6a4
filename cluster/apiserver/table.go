package apiserver

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/klab-dev/klab/cluster/api"
)

var metaV1 = schema.GroupVersion{Group: "meta.k8s.io", Version: "v1"}

// transformations the object endpoints offer through Accept's as=.
var transformAs = map[string]schema.GroupVersion{"Table": metaV1, "PartialObjectMetadata": metaV1, "PartialObjectMetadataList": metaV1}

// respond encodes obj as the client asked: JSON, YAML or protobuf; as a
// Table or as metadata only.
func (s *Server) respond(w http.ResponseWriter, req *request, code int, obj runtime.Object) error {
	proto := req.res == nil || req.res.gv.Group != api.GroupName
	o, ok := negotiate(req.Header.Get("Accept"), proto, transformAs)
	if !ok {
		return statusError(http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable,
			fmt.Sprintf("none of the media types in Accept (%s) can be served: ask for application/json or application/yaml", req.Header.Get("Accept")))
	}
	if _, isStatus := obj.(*metav1.Status); !isStatus {
		var err error
		switch o.as {
		case "Table":
			obj, err = toTable(req.res, obj, req.URL.Query().Get("includeObject"))
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			obj, err = toPartial(obj, o.as == "PartialObjectMetadataList")
		}
		if err != nil {
			return err
		}
	}
	data, err := o.encode(obj)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("encode %T: %w", obj, err))
	}
	w.Header().Set("Content-Type", o.contentType())
	w.WriteHeader(code)
	w.Write(data)
	return nil
}

func partialOf(obj runtime.Object) *metav1.PartialObjectMetadata {
	om := structField(obj, "ObjectMeta").Interface().(metav1.ObjectMeta)
	p := &metav1.PartialObjectMetadata{ObjectMeta: *om.DeepCopy()}
	p.APIVersion, p.Kind = metaV1.String(), "PartialObjectMetadata"
	return p
}

func toPartial(obj runtime.Object, wantList bool) (runtime.Object, error) {
	if meta.IsListType(obj) != wantList {
		return nil, statusError(http.StatusNotAcceptable, metav1.StatusReasonNotAcceptable, "as=PartialObjectMetadataList is for lists and as=PartialObjectMetadata for single objects")
	}
	if !wantList {
		return partialOf(obj), nil
	}
	items, err := meta.ExtractList(obj)
	if err != nil {
		return nil, err
	}
	lm, _ := meta.ListAccessor(obj)
	out := &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: lm.GetResourceVersion(), Continue: lm.GetContinue(), RemainingItemCount: lm.GetRemainingItemCount()}}
	for _, it := range items {
		out.Items = append(out.Items, *partialOf(it))
	}
	return out, nil
}

var (
	nameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."}
	ageColumn  = metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: "Time since the object was created."}
)

// integerColumns hold numbers; the others strings.
var integerColumns = map[string]bool{"Restarts": true, "Data": true, "Secrets": true, "Count": true, "Desired": true,
	"Current": true, "Up-to-date": true, "Available": true, "MTU": true, "ASN": true}

func col(name string, priority int32) metav1.TableColumnDefinition {
	t := "string"
	if integerColumns[name] {
		t = "integer"
	}
	return metav1.TableColumnDefinition{Name: name, Type: t, Priority: priority}
}

// toTable is the server-side table kubectl prints: a Name column, the
// resource's own columns (priority 1 ones only with -o wide) and the
// object's metadata (or the object with includeObject=Object).
func toTable(res *resource, obj runtime.Object, includeObject string) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: append([]metav1.TableColumnDefinition{nameColumn}, tableColumns(res)...)}
	var items []runtime.Object
	if meta.IsListType(obj) {
		var err error
		if items, err = meta.ExtractList(obj); err != nil {
			return nil, err
		}
		lm, _ := meta.ListAccessor(obj)
		t.ResourceVersion, t.Continue, t.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
	} else {
		items = []runtime.Object{obj}
		t.ResourceVersion = accessor(obj).GetResourceVersion()
	}
	now := metav1.Now()
	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		row := metav1.TableRow{Cells: append([]any{accessor(it).GetName()}, tableCells(res, it, now)...)}
		switch includeObject {
		case "None":
		case "Object":
			raw, err := jsonRaw(it)
			if err != nil {
				return nil, err
			}
			row.Object = runtime.RawExtension{Raw: raw}
		default:
			raw, err := jsonRaw(partialOf(it))
			if err != nil {
				return nil, err
			}
			row.Object = runtime.RawExtension{Raw: raw}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

func jsonRaw(obj runtime.Object) ([]byte, error) {
	if err := setKind(obj); err != nil {
		return nil, err
	}
	return runtime.Encode(jsonSerializer, obj)
}

func tableColumns(res *resource) []metav1.TableColumnDefinition {
	if res == nil || res.columns == nil {
		return []metav1.TableColumnDefinition{ageColumn}
	}
	return res.columns
}

func tableCells(res *resource, obj runtime.Object, now metav1.Time) []any {
	if res == nil || res.cells == nil {
		return []any{age(accessor(obj).GetCreationTimestamp(), now)}
	}
	return res.cells(obj, now)
}

// age prints how long ago t was, as kubectl does ("5m", "3h2m").
func age(t metav1.Time, now metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var (
	namespaceColumns = []metav1.TableColumnDefinition{col("Status", 0), ageColumn}
	nodeColumns      = []metav1.TableColumnDefinition{col("Status", 0), col("Roles", 0), ageColumn, col("Version", 0),
		col("Internal-IP", 1), col("External-IP", 1), col("OS-Image", 1), col("Kernel-Version", 1), col("Container-Runtime", 1)}
	podColumns = []metav1.TableColumnDefinition{col("Ready", 0), col("Status", 0), col("Restarts", 0), ageColumn,
		col("IP", 1), col("Node", 1), col("Nominated Node", 1), col("Readiness Gates", 1)}
	serviceColumns        = []metav1.TableColumnDefinition{col("Type", 0), col("Cluster-IP", 0), col("External-IP", 0), col("Port(s)", 0), ageColumn, col("Selector", 1)}
	endpointsColumns      = []metav1.TableColumnDefinition{col("Endpoints", 0), ageColumn}
	configMapColumns      = []metav1.TableColumnDefinition{col("Data", 0), ageColumn}
	secretColumns         = []metav1.TableColumnDefinition{col("Type", 0), col("Data", 0), ageColumn}
	serviceAccountColumns = []metav1.TableColumnDefinition{col("Secrets", 0), ageColumn}
	eventColumns          = []metav1.TableColumnDefinition{col("Last Seen", 0), col("Type", 0), col("Reason", 0), col("Object", 0),
		col("Subobject", 1), col("Source", 1), col("Message", 0), col("First Seen", 1), col("Count", 1)}
	deploymentColumns     = []metav1.TableColumnDefinition{col("Ready", 0), col("Up-to-date", 0), col("Available", 0), ageColumn, col("Containers", 1), col("Images", 1), col("Selector", 1)}
	replicaSetColumns     = []metav1.TableColumnDefinition{col("Desired", 0), col("Current", 0), col("Ready", 0), ageColumn, col("Containers", 1), col("Images", 1), col("Selector", 1)}
	networkPolicyColumns  = []metav1.TableColumnDefinition{col("Pod-Selector", 0), ageColumn}
	leaseColumns          = []metav1.TableColumnDefinition{col("Holder", 0), ageColumn}
	clusterNetworkColumns = []metav1.TableColumnDefinition{col("Mode", 0), col("Pod-CIDR", 0), col("Cross-Subnet", 0), col("MTU", 0), col("Converged", 0), ageColumn, col("Nodes", 1)}
	bgpPeerColumns        = []metav1.TableColumnDefinition{col("Peer-IP", 0), col("ASN", 0), col("Node-Selector", 0), ageColumn}
)

func namespaceCells(obj runtime.Object, now metav1.Time) []any {
	n := obj.(*corev1.Namespace)
	return []any{string(n.Status.Phase), age(n.CreationTimestamp, now)}
}

func nodeCells(obj runtime.Object, now metav1.Time) []any {
	n := obj.(*corev1.Node)
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			status = "NotReady"
			if c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	var roles []string
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	sort.Strings(roles)
	var internal, external string
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP:
			if internal == "" {
				internal = a.Address
			}
		case corev1.NodeExternalIP:
			if external == "" {
				external = a.Address
			}
		}
	}
	ni := n.Status.NodeInfo
	return []any{status, orNone(strings.Join(roles, ",")), age(n.CreationTimestamp, now), ni.KubeletVersion,
		orNone(internal), orNone(external), orUnknown(ni.OSImage), orUnknown(ni.KernelVersion), orUnknown(ni.ContainerRuntimeVersion)}
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// podStatus is the STATUS column: the phase, or what holds the pod up
// (a container's waiting reason, Terminating…), as kubectl prints it.
func podStatus(p *corev1.Pod) (ready, total int, restarts int32, reason string) {
	reason = string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	total = len(p.Spec.Containers)
	for i := len(p.Status.InitContainerStatuses) - 1; i >= 0; i-- {
		c := p.Status.InitContainerStatuses[i]
		restarts += c.RestartCount
		switch {
		case c.State.Terminated != nil && c.State.Terminated.ExitCode == 0:
		case c.State.Terminated != nil:
			reason = "Init:" + orDefault(c.State.Terminated.Reason, "Error")
		case c.State.Waiting != nil && c.State.Waiting.Reason != "" && c.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + c.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
	}
	for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
		c := p.Status.ContainerStatuses[i]
		restarts += c.RestartCount
		switch {
		case c.State.Waiting != nil && c.State.Waiting.Reason != "":
			reason = c.State.Waiting.Reason
		case c.State.Terminated != nil && c.State.Terminated.Reason != "":
			reason = c.State.Terminated.Reason
		case c.State.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", c.State.Terminated.ExitCode)
		case c.Ready && c.State.Running != nil:
			ready++
		}
	}
	if p.DeletionTimestamp != nil {
		reason = "Terminating"
		if p.Status.Reason == "NodeLost" {
			reason = "Unknown"
		}
	}
	return ready, total, restarts, reason
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func podCells(obj runtime.Object, now metav1.Time) []any {
	p := obj.(*corev1.Pod)
	ready, total, restarts, reason := podStatus(p)
	gates := "<none>"
	if n := len(p.Spec.ReadinessGates); n > 0 {
		gates = fmt.Sprintf("0/%d", n)
	}
	return []any{fmt.Sprintf("%d/%d", ready, total), reason, int64(restarts), age(p.CreationTimestamp, now),
		orNone(p.Status.PodIP), orNone(p.Spec.NodeName), orNone(p.Status.NominatedNodeName), gates}
}

func serviceCells(obj runtime.Object, now metav1.Time) []any {
	s := obj.(*corev1.Service)
	var ports []string
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	external := "<none>"
	if len(s.Spec.ExternalIPs) > 0 {
		external = strings.Join(s.Spec.ExternalIPs, ",")
	} else if s.Spec.Type == corev1.ServiceTypeExternalName {
		external = s.Spec.ExternalName
	}
	var sel []string
	for k, v := range s.Spec.Selector {
		sel = append(sel, k+"="+v)
	}
	sort.Strings(sel)
	return []any{string(s.Spec.Type), orNone(s.Spec.ClusterIP), external, orNone(strings.Join(ports, ",")), age(s.CreationTimestamp, now), orNone(strings.Join(sel, ","))}
}

func endpointsCells(obj runtime.Object, now metav1.Time) []any {
	e := obj.(*corev1.Endpoints)
	var list []string
	more := 0
	for _, ss := range e.Subsets {
		for _, a := range ss.Addresses {
			ports := ss.Ports
			if len(ports) == 0 {
				ports = []corev1.EndpointPort{{}}
			}
			for _, p := range ports {
				if len(list) == 3 {
					more++
					continue
				}
				if p.Port == 0 {
					list = append(list, a.IP)
				} else {
					list = append(list, a.IP+":"+strconv.Itoa(int(p.Port)))
				}
			}
		}
	}
	s := strings.Join(list, ",")
	if more > 0 {
		s += fmt.Sprintf(" + %d more...", more)
	}
	return []any{orNone(s), age(e.CreationTimestamp, now)}
}

func configMapCells(obj runtime.Object, now metav1.Time) []any {
	c := obj.(*corev1.ConfigMap)
	return []any{int64(len(c.Data) + len(c.BinaryData)), age(c.CreationTimestamp, now)}
}

func secretCells(obj runtime.Object, now metav1.Time) []any {
	s := obj.(*corev1.Secret)
	return []any{string(s.Type), int64(len(s.Data)), age(s.CreationTimestamp, now)}
}

func serviceAccountCells(obj runtime.Object, now metav1.Time) []any {
	s := obj.(*corev1.ServiceAccount)
	return []any{int64(len(s.Secrets)), age(s.CreationTimestamp, now)}
}

func eventCells(obj runtime.Object, now metav1.Time) []any {
	e := obj.(*corev1.Event)
	last := e.LastTimestamp
	if last.IsZero() {
		last = metav1.NewTime(e.EventTime.Time)
	}
	if last.IsZero() {
		last = e.CreationTimestamp
	}
	first := e.FirstTimestamp
	if first.IsZero() {
		first = last
	}
	object := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
	source := e.Source.Component
	if e.Source.Host != "" {
		source += ", " + e.Source.Host
	}
	if source == "" {
		source = e.ReportingController
	}
	count := e.Count
	if count == 0 {
		count = 1
	}
	return []any{age(last, now), e.Type, e.Reason, object, e.InvolvedObject.FieldPath, source, strings.TrimSpace(e.Message), age(first, now), int64(count)}
}

func containersAndImages(spec corev1.PodSpec) (string, string) {
	var names, images []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

func selectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return "<error>"
	}
	return orNone(s.String())
}

func deploymentCells(obj runtime.Object, now metav1.Time) []any {
	d := obj.(*appsv1.Deployment)
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	names, images := containersAndImages(d.Spec.Template.Spec)
	return []any{fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want), int64(d.Status.UpdatedReplicas), int64(d.Status.AvailableReplicas),
		age(d.CreationTimestamp, now), names, images, selectorString(d.Spec.Selector)}
}

func replicaSetCells(obj runtime.Object, now metav1.Time) []any {
	r := obj.(*appsv1.ReplicaSet)
	want := int32(1)
	if r.Spec.Replicas != nil {
		want = *r.Spec.Replicas
	}
	names, images := containersAndImages(r.Spec.Template.Spec)
	return []any{int64(want), int64(r.Status.Replicas), int64(r.Status.ReadyReplicas), age(r.CreationTimestamp, now), names, images, selectorString(r.Spec.Selector)}
}

func networkPolicyCells(obj runtime.Object, now metav1.Time) []any {
	p := obj.(*networkingv1.NetworkPolicy)
	return []any{selectorString(&p.Spec.PodSelector), age(p.CreationTimestamp, now)}
}

func leaseCells(obj runtime.Object, now metav1.Time) []any {
	l := obj.(*coordinationv1.Lease)
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return []any{holder, age(l.CreationTimestamp, now)}
}

func clusterNetworkCells(obj runtime.Object, now metav1.Time) []any {
	c := obj.(*api.ClusterNetwork)
	converged, total := 0, len(c.Status.Nodes)
	var nodes []string
	for name, n := range c.Status.Nodes {
		if n.Converged && n.Mode == c.Spec.Mode && n.ObservedGeneration >= c.Generation {
			converged++
		}
		impl := string(n.Mode)
		if n.Implementation != "" {
			impl = n.Implementation
		}
		nodes = append(nodes, name+"="+impl)
	}
	sort.Strings(nodes)
	return []any{string(c.Spec.Mode), c.Spec.PodCIDR, boolString(c.Spec.CrossSubnet), int64(c.Spec.MTU),
		fmt.Sprintf("%d/%d", converged, total), age(c.CreationTimestamp, now), orNone(strings.Join(nodes, ","))}
}

func bgpPeerCells(obj runtime.Object, now metav1.Time) []any {
	p := obj.(*api.BGPPeer)
	sel := "<all nodes>"
	if p.Spec.NodeSelector != nil {
		sel = selectorString(p.Spec.NodeSelector)
	}
	return []any{p.Spec.PeerIP, int64(p.Spec.ASN), sel, age(p.CreationTimestamp, now)}
}
