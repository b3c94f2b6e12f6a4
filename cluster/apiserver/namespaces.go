package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/store"
)

// systemNamespaces exist in every cluster and cannot be deleted.
var systemNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}

// internalUser is the server itself, for what it does on its own.
var internalUser = &user{name: "system:apiserver", groups: []string{pki.GroupMasters}}

var namespacesGR = schema.GroupResource{Resource: "namespaces"}

func (s *Server) nsResource() *resource { return s.reg.lookup(corev1.SchemeGroupVersion, "namespaces") }

// namespaceAcceptsContent fails unless namespace exists and is not being
// deleted.
func (s *Server) namespaceAcceptsContent(ctx context.Context, namespace string) error {
	var n corev1.Namespace
	if err := s.store.Get(ctx, s.nsResource().key("", namespace), 0, &n); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
				Details: &metav1.StatusDetails{Name: namespace, Kind: "namespaces"},
				Message: fmt.Sprintf("namespaces %q not found: create it first (kubectl create namespace %s)", namespace, namespace)}}
		}
		return storeError(err, namespacesGR, namespace)
	}
	if n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating {
		return apierrors.NewForbidden(namespacesGR, namespace, fmt.Errorf("unable to create new content in namespace %s because it is being terminated", namespace))
	}
	return nil
}

// deleteNamespace marks a namespace Terminating and deletes what is in it;
// the namespace goes when it is empty (pods bound to nodes take their
// grace period).
func (s *Server) deleteNamespace(w http.ResponseWriter, req *request, o *metav1.DeleteOptions) error {
	if slices.Contains(systemNamespaces, req.name) {
		return apierrors.NewForbidden(namespacesGR, req.name, fmt.Errorf("namespace %s may not be deleted: the cluster needs it", req.name))
	}
	res := s.nsResource()
	out, err := s.store.GuaranteedUpdate(req.Context(), res.key("", req.name), &corev1.Namespace{}, func(cur runtime.Object) (runtime.Object, error) {
		n := cur.(*corev1.Namespace)
		if p := o.Preconditions; p != nil && p.UID != nil && *p.UID != n.UID {
			return nil, apierrors.NewConflict(namespacesGR, req.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, n.UID))
		}
		if n.DeletionTimestamp == nil {
			now := metav1.Now()
			n.DeletionTimestamp = &now
		}
		n.Status.Phase = corev1.NamespaceTerminating
		return n, nil
	})
	if err != nil {
		return storeError(err, namespacesGR, req.name)
	}
	gone, err := s.finalizeNamespace(req.Context(), req.name)
	if err != nil {
		return err
	}
	if gone {
		m := accessor(out)
		return s.respond(w, req, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess,
			Details: &metav1.StatusDetails{Name: req.name, Kind: "namespaces", UID: m.GetUID()}})
	}
	return s.respond(w, req, http.StatusOK, out)
}

// finalizeNamespace deletes what is in a terminating namespace, and the
// namespace once nothing is left.
func (s *Server) finalizeNamespace(ctx context.Context, name string) (bool, error) {
	left := 0
	for _, res := range s.reg.all {
		if !res.namespaced {
			continue
		}
		r, err := s.store.List(ctx, res.listPrefix(name), store.ListOptions{}, res.newObj)
		if err != nil {
			return false, storeError(err, res.gr(), "")
		}
		for _, obj := range r.Items {
			m := accessor(obj)
			_, gone, err := s.deleteObject(ctx, res, name, m.GetName(), &metav1.DeleteOptions{}, internalUser)
			if err != nil && !apierrors.IsNotFound(err) {
				return false, err
			}
			if err == nil && !gone {
				left++
			}
		}
	}
	if left > 0 {
		return false, nil
	}
	err := s.store.Delete(ctx, s.nsResource().key("", name), 0, nil)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, storeError(err, namespacesGR, name)
	}
	return true, nil
}

// finalizeNamespaces finishes deleting terminating namespaces (whose pods
// took their grace period, or whose deletion an earlier server left
// half done) until ctx ends.
func (s *Server) finalizeNamespaces(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, err := s.store.List(ctx, s.nsResource().keyPrefix(), store.ListOptions{}, s.nsResource().newObj)
		if err != nil {
			continue
		}
		for _, obj := range r.Items {
			if n := obj.(*corev1.Namespace); n.DeletionTimestamp != nil {
				if _, err := s.finalizeNamespace(ctx, n.Name); err != nil {
					s.log.Warn("finalize namespace", "namespace", n.Name, "err", err)
				}
			}
		}
	}
}

// bootstrap creates the system namespaces, the kubernetes service with
// this server among its endpoints, and the default ClusterNetwork.
func (s *Server) bootstrap(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// ensure creates obj unless it exists. Several servers bootstrap at
	// once: a create that loses a race fails, and the retry finds it.
	ensure := func(resName, namespace string, obj runtime.Object) error {
		res := s.reg.lookup(schemaGV(obj), resName)
		err := s.store.Get(ctx, res.key(namespace, accessor(obj).GetName()), 0, res.newObj())
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		err = s.createObject(ctx, res, namespace, obj, internalUser, false)
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	for _, ns := range systemNamespaces {
		if err := ensure("namespaces", "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return fmt.Errorf("namespace %s: %w", ns, err)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{ClusterIP: s.alloc.kubernetesIP().String(),
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(s.cfg.Port))}}},
	}
	if err := ensure("services", metav1.NamespaceDefault, svc); err != nil {
		return fmt.Errorf("kubernetes service: %w", err)
	}
	if s.cfg.AdvertiseAddress.IsValid() {
		if err := s.advertise(ctx, time.Now()); err != nil {
			return fmt.Errorf("kubernetes endpoints: %w", err)
		}
	}
	cn := &api.ClusterNetwork{ObjectMeta: metav1.ObjectMeta{Name: api.ClusterNetworkName},
		Spec: api.ClusterNetworkSpec{Mode: s.cfg.NetworkMode, PodCIDR: s.cfg.PodCIDR.String(), MTU: s.cfg.PodMTU}}
	if err := ensure(api.ResourceClusterNetworks, "", cn); err != nil {
		return fmt.Errorf("default ClusterNetwork: %w", err)
	}
	return nil
}

func schemaGV(obj runtime.Object) schema.GroupVersion {
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil {
		return schema.GroupVersion{}
	}
	return gvks[0].GroupVersion()
}
