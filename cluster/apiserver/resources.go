package apiserver

import (
	"context"
	"reflect"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/klab-dev/klab/cluster/api"
)

// resource describes one served resource: its types, where it is stored,
// how it is defaulted, validated and printed.
type resource struct {
	gv         schema.GroupVersion
	name       string // plural, in URLs: "pods"
	singular   string
	kind       string
	namespaced bool
	shortNames []string
	categories []string
	newObj     func() runtime.Object
	newList    func() runtime.Object
	// subresources beyond the object: "status", "scale", "binding", "log", "exec", …
	subresources []string
	// allowCreateOnUpdate lets PUT create a missing object.
	allowCreateOnUpdate bool
	// generation: metadata.generation counts spec changes.
	generation bool
	// noStrategicMerge: strategic merge patch needs Go struct tags that
	// only the Kubernetes types have.
	noStrategicMerge bool
	// verbs are what discovery lists for the resource.
	verbs []string

	// fields adds the resource's own field selector fields.
	fields func(runtime.Object) fields.Set
	// columns and cells make the server-side table.
	columns []metav1.TableColumnDefinition
	cells   func(obj runtime.Object, now metav1.Time) []any
	// defaults fills in what a client may leave out.
	defaults func(runtime.Object)
	// validate checks an object (old is nil on create).
	validate func(obj, old runtime.Object) field.ErrorList
	// prepareCreate runs before an object is first stored (allocations,
	// status reset); it may fail.
	prepareCreate func(ctx context.Context, s *Server, obj runtime.Object) error
	// carryOver fills in, before validation, what an update may leave out
	// and keeps from the stored object (a service's cluster IP).
	carryOver func(obj, old runtime.Object)
	// prepareUpdate runs before a main-resource update is stored;
	// abandonUpdate undoes it when the write does not happen, updated
	// follows it when it does.
	prepareUpdate func(ctx context.Context, s *Server, obj, old runtime.Object) error
	abandonUpdate func(ctx context.Context, s *Server, obj, old runtime.Object)
	updated       func(ctx context.Context, s *Server, obj, old runtime.Object)
	// created runs after an object was first stored.
	created func(ctx context.Context, s *Server, obj runtime.Object)
	// released runs after an object is deleted.
	released func(ctx context.Context, s *Server, obj runtime.Object)
}

func (r *resource) gvk() schema.GroupVersionKind { return r.gv.WithKind(r.kind) }

func (r *resource) gr() schema.GroupResource {
	return schema.GroupResource{Group: r.gv.Group, Resource: r.name}
}

func (r *resource) hasSub(sub string) bool { return slices.Contains(r.subresources, sub) }

// keyPrefix is where the resource's objects live in etcd, as upstream:
// /registry/pods/, /registry/deployments/, and for klab's group
// /registry/network.klab.dev/clusternetworks/.
func (r *resource) keyPrefix() string {
	if r.gv.Group == api.GroupName {
		return "/registry/" + r.gv.Group + "/" + r.name + "/"
	}
	return "/registry/" + r.name + "/"
}

// key is one object's key.
func (r *resource) key(namespace, name string) string {
	if r.namespaced {
		return r.keyPrefix() + namespace + "/" + name
	}
	return r.keyPrefix() + name
}

// listPrefix is the prefix of a list: one namespace's or all.
func (r *resource) listPrefix(namespace string) string {
	if r.namespaced && namespace != "" {
		return r.keyPrefix() + namespace + "/"
	}
	return r.keyPrefix()
}

var allVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// structField returns a field of an API object's struct ("Spec",
// "Status"), or an invalid value when it has none.
func structField(obj runtime.Object, name string) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.Elem().FieldByName(name)
}

// copyField sets field name of dst to src's.
func copyField(dst, src runtime.Object, name string) {
	d, s := structField(dst, name), structField(src, name)
	if d.IsValid() && s.IsValid() && d.CanSet() {
		d.Set(s)
	}
}

// resources is every resource the server serves, by group/version.
func newResources() []*resource {
	core := corev1.SchemeGroupVersion
	apps := appsv1.SchemeGroupVersion
	return []*resource{
		{gv: core, name: "namespaces", singular: "namespace", kind: "Namespace", shortNames: []string{"ns"},
			newObj: func() runtime.Object { return &corev1.Namespace{} }, newList: func() runtime.Object { return &corev1.NamespaceList{} },
			subresources: []string{"status"}, fields: namespaceFields, columns: namespaceColumns, cells: namespaceCells,
			defaults: defaultNamespace, created: createDefaultServiceAccount},
		{gv: core, name: "nodes", singular: "node", kind: "Node", shortNames: []string{"no"},
			newObj: func() runtime.Object { return &corev1.Node{} }, newList: func() runtime.Object { return &corev1.NodeList{} },
			subresources: []string{"status"}, fields: nodeFields, columns: nodeColumns, cells: nodeCells,
			validate: validateNode},
		{gv: core, name: "pods", singular: "pod", kind: "Pod", namespaced: true, shortNames: []string{"po"}, categories: []string{"all"},
			newObj: func() runtime.Object { return &corev1.Pod{} }, newList: func() runtime.Object { return &corev1.PodList{} },
			subresources: []string{"status", "binding", "log", "exec", "attach", "portforward"}, generation: true,
			fields: podFields, columns: podColumns, cells: podCells,
			defaults: defaultPod, validate: validatePod, prepareCreate: preparePodCreate},
		{gv: core, name: "services", singular: "service", kind: "Service", namespaced: true, shortNames: []string{"svc"}, categories: []string{"all"},
			newObj: func() runtime.Object { return &corev1.Service{} }, newList: func() runtime.Object { return &corev1.ServiceList{} },
			subresources: []string{"status"}, columns: serviceColumns, cells: serviceCells,
			defaults: defaultService, validate: validateService, carryOver: carryOverService,
			prepareCreate: prepareServiceCreate, prepareUpdate: prepareServiceUpdate, abandonUpdate: abandonServiceUpdate,
			updated: serviceUpdated, released: releaseService},
		{gv: core, name: "endpoints", singular: "endpoints", kind: "Endpoints", namespaced: true, shortNames: []string{"ep"}, allowCreateOnUpdate: true,
			newObj: func() runtime.Object { return &corev1.Endpoints{} }, newList: func() runtime.Object { return &corev1.EndpointsList{} },
			columns: endpointsColumns, cells: endpointsCells},
		{gv: core, name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, shortNames: []string{"cm"},
			newObj: func() runtime.Object { return &corev1.ConfigMap{} }, newList: func() runtime.Object { return &corev1.ConfigMapList{} },
			columns: configMapColumns, cells: configMapCells, validate: validateConfigMap},
		{gv: core, name: "secrets", singular: "secret", kind: "Secret", namespaced: true,
			newObj: func() runtime.Object { return &corev1.Secret{} }, newList: func() runtime.Object { return &corev1.SecretList{} },
			fields: secretFields, columns: secretColumns, cells: secretCells, defaults: defaultSecret, validate: validateSecret},
		{gv: core, name: "events", singular: "event", kind: "Event", namespaced: true, shortNames: []string{"ev"}, allowCreateOnUpdate: true,
			newObj: func() runtime.Object { return &corev1.Event{} }, newList: func() runtime.Object { return &corev1.EventList{} },
			fields: eventFields, columns: eventColumns, cells: eventCells, defaults: defaultEvent, validate: validateEvent},
		{gv: core, name: "serviceaccounts", singular: "serviceaccount", kind: "ServiceAccount", namespaced: true, shortNames: []string{"sa"},
			newObj: func() runtime.Object { return &corev1.ServiceAccount{} }, newList: func() runtime.Object { return &corev1.ServiceAccountList{} },
			subresources: []string{"token"}, columns: serviceAccountColumns, cells: serviceAccountCells},
		{gv: apps, name: "deployments", singular: "deployment", kind: "Deployment", namespaced: true, shortNames: []string{"deploy"}, categories: []string{"all"},
			newObj: func() runtime.Object { return &appsv1.Deployment{} }, newList: func() runtime.Object { return &appsv1.DeploymentList{} },
			subresources: []string{"status", "scale"}, generation: true, columns: deploymentColumns, cells: deploymentCells,
			defaults: defaultDeployment, validate: validateDeployment},
		{gv: apps, name: "replicasets", singular: "replicaset", kind: "ReplicaSet", namespaced: true, shortNames: []string{"rs"}, categories: []string{"all"},
			newObj: func() runtime.Object { return &appsv1.ReplicaSet{} }, newList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
			subresources: []string{"status", "scale"}, generation: true, columns: replicaSetColumns, cells: replicaSetCells,
			defaults: defaultReplicaSet, validate: validateReplicaSet},
		{gv: networkingv1.SchemeGroupVersion, name: "networkpolicies", singular: "networkpolicy", kind: "NetworkPolicy", namespaced: true, shortNames: []string{"netpol"},
			newObj: func() runtime.Object { return &networkingv1.NetworkPolicy{} }, newList: func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
			generation: true, columns: networkPolicyColumns, cells: networkPolicyCells, defaults: defaultNetworkPolicy, validate: validateNetworkPolicy},
		{gv: coordinationv1.SchemeGroupVersion, name: "leases", singular: "lease", kind: "Lease", namespaced: true, allowCreateOnUpdate: true,
			newObj: func() runtime.Object { return &coordinationv1.Lease{} }, newList: func() runtime.Object { return &coordinationv1.LeaseList{} },
			columns: leaseColumns, cells: leaseCells},
		{gv: api.SchemeGroupVersion, name: api.ResourceClusterNetworks, singular: "clusternetwork", kind: "ClusterNetwork", shortNames: []string{"cn"},
			newObj: func() runtime.Object { return &api.ClusterNetwork{} }, newList: func() runtime.Object { return &api.ClusterNetworkList{} },
			subresources: []string{"status"}, generation: true, noStrategicMerge: true, columns: clusterNetworkColumns, cells: clusterNetworkCells,
			defaults: defaultClusterNetwork, validate: validateClusterNetwork},
		{gv: api.SchemeGroupVersion, name: api.ResourceBGPPeers, singular: "bgppeer", kind: "BGPPeer",
			newObj: func() runtime.Object { return &api.BGPPeer{} }, newList: func() runtime.Object { return &api.BGPPeerList{} },
			generation: true, noStrategicMerge: true, columns: bgpPeerColumns, cells: bgpPeerCells,
			validate: validateBGPPeer},
	}
}

// registry finds resources by group, version and name.
type registry struct {
	all []*resource
	by  map[string]*resource // "group/version/name"
}

func newRegistry() *registry {
	r := &registry{all: newResources(), by: map[string]*resource{}}
	for _, res := range r.all {
		if res.verbs == nil {
			res.verbs = allVerbs
		}
		r.by[res.gv.String()+"/"+res.name] = res
	}
	return r
}

func (r *registry) lookup(gv schema.GroupVersion, name string) *resource {
	return r.by[gv.String()+"/"+name]
}

// groupVersions lists the served group versions, core first.
func (r *registry) groupVersions() []schema.GroupVersion {
	var out []schema.GroupVersion
	for _, res := range r.all {
		if !slices.Contains(out, res.gv) {
			out = append(out, res.gv)
		}
	}
	return out
}

func (r *registry) inGroupVersion(gv schema.GroupVersion) []*resource {
	var out []*resource
	for _, res := range r.all {
		if res.gv == gv {
			out = append(out, res)
		}
	}
	return out
}

// kindName is "pods" → "Pod" for messages.
func kindName(r *resource) string { return strings.ToLower(r.kind) }
