package apiserver

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/pki"
)

// user is an authenticated client.
type user struct {
	name   string
	groups []string
}

func (u *user) in(group string) bool { return slices.Contains(u.groups, group) }

// nodeName is the node a node agent's user is for ("" when the user is
// not a node).
func (u *user) nodeName() string {
	if !u.in(pki.GroupNodes) {
		return ""
	}
	n, ok := strings.CutPrefix(u.name, pki.NodeUserPrefix)
	if !ok {
		return ""
	}
	return n
}

// authenticate reads the user from the client's certificate: the common
// name is the user, the organizations its groups. The TLS handshake has
// verified the certificate against the cluster CA.
func authenticate(r *http.Request) *user {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	c := r.TLS.PeerCertificates[0]
	if c.Subject.CommonName == "" {
		return nil
	}
	return &user{name: c.Subject.CommonName, groups: append(slices.Clone(c.Subject.Organization), "system:authenticated")}
}

// role is what a user may do.
type role int

const (
	roleNone role = iota
	roleView
	roleNode
	roleAdmin
)

// roleOf is a user's role. Service accounts read (view), but those of
// kube-system, where the cluster's own workloads run, are admins.
func roleOf(u *user) role {
	if ns, ok := serviceAccountNamespace(u); ok {
		if ns == metav1.NamespaceSystem {
			return roleAdmin
		}
		return roleView
	}
	switch {
	case u.in(pki.GroupMasters), u.name == pki.UserScheduler, u.name == pki.UserControllers:
		return roleAdmin
	case u.nodeName() != "":
		return roleNode
	case u.in(pki.GroupView):
		return roleView
	}
	return roleNone
}

var readVerbs = []string{"get", "list", "watch"}

// nodeReads is what a node agent may read: what a kubelet reads, and the
// network agent's configuration.
var nodeReads = []string{"nodes", "pods", "services", "endpoints", "configmaps", "secrets", "namespaces",
	"serviceaccounts", "events", "leases", "networkpolicies", api.ResourceClusterNetworks, api.ResourceBGPPeers}

// authorize decides from the request alone; node writes whose answer
// depends on the object are checked again by nodeRestriction.
func authorize(u *user, verb string, res *resource, sub, namespace, name string) error {
	target := res.name
	if sub != "" {
		target += "/" + sub
	}
	deny := func(why string) error {
		return apierrors.NewForbidden(res.gr(), name, fmt.Errorf("user %q cannot %s %s%s: %s", u.name, verb, target, inNamespace(namespace), why))
	}
	switch roleOf(u) {
	case roleAdmin:
		return nil
	case roleView:
		if slices.Contains(readVerbs, verb) && res.name != "secrets" && (sub == "" || sub == "status" || sub == "scale" || sub == "log") {
			return nil
		}
		return deny("the view role may only read (get, list, watch), and not secrets")
	case roleNode:
		node := u.nodeName()
		if slices.Contains(readVerbs, verb) && sub == "" && slices.Contains(nodeReads, res.name) {
			return nil
		}
		switch {
		case res.name == "nodes" && (sub == "" || sub == "status") && slices.Contains([]string{"create", "get", "update", "patch"}, verb):
			if name == node || verb == "create" {
				return nil // create is checked against the object
			}
			return deny(fmt.Sprintf("a node may only write its own Node object (%s)", node))
		case res.name == "leases" && namespace == corev1.NamespaceNodeLease && verb != "deletecollection" && verb != "list" && verb != "watch":
			if name == node || verb == "create" {
				return nil
			}
			return deny(fmt.Sprintf("a node may only write its own Lease (%s/%s)", corev1.NamespaceNodeLease, node))
		case res.name == "pods" && (sub == "status" && (verb == "update" || verb == "patch" || verb == "get") || sub == "" && verb == "delete"):
			return nil // checked against the pod's spec.nodeName
		case res.name == "events" && sub == "" && slices.Contains([]string{"create", "update", "patch"}, verb):
			return nil
		case res.name == "serviceaccounts" && sub == "token" && verb == "create":
			return nil // tokens for the pods it runs
		case res.name == api.ResourceClusterNetworks && sub == "status" && slices.Contains([]string{"get", "update", "patch"}, verb):
			return nil // checked: only its own entry
		}
		return deny("a node may only write its own Node, Lease and network status, the status of pods bound to it, and events")
	}
	return deny(fmt.Sprintf("the user is in no klab role: certificates from the cluster CA carry the group %s (admin), %s (read-only) or %s", pki.GroupMasters, pki.GroupView, pki.GroupNodes))
}

func inNamespace(ns string) string {
	if ns == "" {
		return ""
	}
	return " in namespace " + ns
}

// nodeRestriction checks a node's write against the objects: a node may
// create only its own Node and Lease, touch only pods bound to it, and
// change only its own entry of the ClusterNetwork status. obj is what it
// writes (nil for delete), old what is stored (nil for create).
func nodeRestriction(u *user, res *resource, sub string, obj, old runtime.Object) error {
	node := u.nodeName()
	if node == "" || roleOf(u) != roleNode {
		return nil
	}
	forbid := func(name string, why string) error {
		return apierrors.NewForbidden(res.gr(), name, fmt.Errorf("node %q %s", node, why))
	}
	switch res.name {
	case "nodes":
		if n, ok := obj.(*corev1.Node); ok && n.Name != node {
			return forbid(n.Name, fmt.Sprintf("may only create or update its own Node object, not %q", n.Name))
		}
	case "leases":
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Name != node {
			return forbid(l.Name, fmt.Sprintf("may only write its own Lease %s/%s, not %q", corev1.NamespaceNodeLease, node, l.Name))
		}
	case "pods":
		p, ok := old.(*corev1.Pod)
		if !ok {
			return nil
		}
		if p.Spec.NodeName != node {
			bound := "is not bound to a node"
			if p.Spec.NodeName != "" {
				bound = "is bound to node " + p.Spec.NodeName
			}
			return forbid(p.Name, fmt.Sprintf("can only write pods with spec.nodeName=%s; pod %s/%s %s", node, p.Namespace, p.Name, bound))
		}
	case api.ResourceClusterNetworks:
		n, ok1 := obj.(*api.ClusterNetwork)
		o, ok2 := old.(*api.ClusterNetwork)
		if !ok1 || !ok2 {
			return nil
		}
		for name := range mergeKeys(n.Status.Nodes, o.Status.Nodes) {
			if name != node && !equality.Semantic.DeepEqual(n.Status.Nodes[name], o.Status.Nodes[name]) {
				return forbid(n.Name, fmt.Sprintf("may only change status.nodes[%s], not status.nodes[%s]", node, name))
			}
		}
	}
	return nil
}

func mergeKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
