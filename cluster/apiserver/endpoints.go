package apiserver

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/store"
)

// Every API server holds a Lease in kube-system and renews it; the
// kubernetes service's endpoints are the servers whose lease is fresh, so
// a stopped master drops out of them (as upstream's lease reconciler does).
const (
	apiserverLeaseLabel    = "klab.dev/apiserver"
	apiserverLeaseDuration = 15 * time.Second
	apiserverLeaseRenew    = 5 * time.Second
)

func apiserverLeaseName(ip netip.Addr) string {
	return "apiserver-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
}

// advertise renews this server's lease and sets the kubernetes endpoints
// to the servers with a fresh one.
func (s *Server) advertise(ctx context.Context, now time.Time) error {
	if err := s.renewLease(ctx, now); err != nil {
		return err
	}
	return s.reconcileEndpoints(ctx, now)
}

func (s *Server) renewLease(ctx context.Context, now time.Time) error {
	res := s.reg.lookup(coordinationv1.SchemeGroupVersion, "leases")
	name := apiserverLeaseName(s.cfg.AdvertiseAddress)
	key := res.key(metav1.NamespaceSystem, name)
	renew := metav1.NewMicroTime(now)
	_, err := s.store.GuaranteedUpdate(ctx, key, &coordinationv1.Lease{}, func(cur runtime.Object) (runtime.Object, error) {
		l := cur.(*coordinationv1.Lease)
		l.Spec.RenewTime = &renew
		return l, nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{apiserverLeaseLabel: "true"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(s.cfg.AdvertiseAddress.String()),
			LeaseDurationSeconds: ptr.To(int32(apiserverLeaseDuration / time.Second)), RenewTime: &renew, AcquireTime: &renew},
	}
	err = s.createObject(ctx, res, metav1.NamespaceSystem, l, internalUser, false)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// liveServers lists the addresses of the API servers whose lease is fresh.
func (s *Server) liveServers(ctx context.Context, now time.Time) ([]string, error) {
	res := s.reg.lookup(coordinationv1.SchemeGroupVersion, "leases")
	r, err := s.store.List(ctx, res.listPrefix(metav1.NamespaceSystem), store.ListOptions{}, res.newObj)
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, obj := range r.Items {
		l := obj.(*coordinationv1.Lease)
		if l.Labels[apiserverLeaseLabel] != "true" || l.Spec.HolderIdentity == nil || l.Spec.RenewTime == nil {
			continue
		}
		d := apiserverLeaseDuration
		if l.Spec.LeaseDurationSeconds != nil {
			d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		}
		if l.Spec.RenewTime.Add(d).After(now) {
			ips = append(ips, *l.Spec.HolderIdentity)
		}
	}
	slices.Sort(ips)
	return ips, nil
}

// reconcileEndpoints makes the kubernetes endpoints list the live servers.
func (s *Server) reconcileEndpoints(ctx context.Context, now time.Time) error {
	ips, err := s.liveServers(ctx, now)
	if err != nil || len(ips) == 0 {
		return err
	}
	want := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: "https", Port: int32(s.cfg.Port), Protocol: corev1.ProtocolTCP}}}
	for _, ip := range ips {
		want.Addresses = append(want.Addresses, corev1.EndpointAddress{IP: ip})
	}
	res := s.reg.lookup(corev1.SchemeGroupVersion, "endpoints")
	key := res.key(metav1.NamespaceDefault, "kubernetes")
	_, err = s.store.GuaranteedUpdate(ctx, key, &corev1.Endpoints{}, func(cur runtime.Object) (runtime.Object, error) {
		ep := cur.(*corev1.Endpoints)
		if len(ep.Subsets) == 1 && equality.Semantic.DeepEqual(ep.Subsets[0], want) {
			return nil, errUnchanged
		}
		ep.Subsets = []corev1.EndpointSubset{want}
		return ep, nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return nil
	case errors.Is(err, store.ErrNotFound):
		ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Subsets: []corev1.EndpointSubset{want}}
		err = s.createObject(ctx, res, metav1.NamespaceDefault, ep, internalUser, false)
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	return err
}

var errUnchanged = errors.New("unchanged")

// advertiseLoop renews the lease and reconciles the endpoints until ctx
// ends.
func (s *Server) advertiseLoop(ctx context.Context) {
	t := time.NewTicker(apiserverLeaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := s.advertise(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Warn("advertise in the kubernetes endpoints", "err", err)
			}
		}
	}
}
