package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/store"
)

// allocator hands out service cluster IPs and node ports. Each one taken
// is a key in etcd (/registry/ranges/…), claimed in a transaction, so
// several API servers never hand out the same one.
type allocator struct {
	store    *store.Store
	cidr     netip.Prefix
	portMin  int
	portMax  int
	mu       sync.Mutex
	nextIP   netip.Addr
	nextPort int
}

const (
	ipRangeKey   = "/registry/ranges/serviceips/"
	portRangeKey = "/registry/ranges/servicenodeports/"
)

func newAllocator(s *store.Store, cidr netip.Prefix, portMin, portMax int) *allocator {
	return &allocator{store: s, cidr: cidr.Masked(), portMin: portMin, portMax: portMax}
}

// kubernetesIP is the first address of the range: the kubernetes service's.
func (a *allocator) kubernetesIP() netip.Addr { return a.cidr.Addr().Next() }

var errRangeFull = errors.New("range full")

// claimIP takes ip for owner; false when someone has it.
func (a *allocator) claimIP(ctx context.Context, ip netip.Addr, owner string) (bool, error) {
	return a.store.Claim(ctx, ipRangeKey+ip.String(), owner)
}

// allocateIP takes the next free address after the last one handed out,
// skipping the network and broadcast addresses and the first (kubernetes)
// one, which only claimIP takes.
func (a *allocator) allocateIP(ctx context.Context, owner string) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	first := a.cidr.Addr().Next().Next()
	size := 1 << (32 - a.cidr.Bits())
	if !a.nextIP.IsValid() || !a.cidr.Contains(a.nextIP) {
		a.nextIP = first
	}
	ip := a.nextIP
	for range size {
		if ip == a.cidr.Addr() || !a.cidr.Contains(ip) || isBroadcast(a.cidr, ip) || ip.Less(first) {
			ip = first
		}
		ok, err := a.claimIP(ctx, ip, owner)
		if err != nil {
			return netip.Addr{}, err
		}
		if ok {
			a.nextIP = ip.Next()
			return ip, nil
		}
		ip = ip.Next()
	}
	return netip.Addr{}, errRangeFull
}

func isBroadcast(p netip.Prefix, ip netip.Addr) bool {
	b := p.Addr().As4()
	host := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << host) - 1
	return ip == netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (a *allocator) releaseIP(ctx context.Context, ip string) {
	if ip != "" && ip != corev1.ClusterIPNone {
		a.store.Release(ctx, ipRangeKey+ip)
	}
}

func (a *allocator) claimPort(ctx context.Context, port int32, owner string) (bool, error) {
	return a.store.Claim(ctx, portRangeKey+strconv.Itoa(int(port)), owner)
}

func (a *allocator) allocatePort(ctx context.Context, owner string) (int32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nextPort < a.portMin || a.nextPort > a.portMax {
		a.nextPort = a.portMin
	}
	p := a.nextPort
	for range a.portMax - a.portMin + 1 {
		if p > a.portMax {
			p = a.portMin
		}
		ok, err := a.claimPort(ctx, int32(p), owner)
		if err != nil {
			return 0, err
		}
		if ok {
			a.nextPort = p + 1
			return int32(p), nil
		}
		p++
	}
	return 0, errRangeFull
}

func (a *allocator) releasePort(ctx context.Context, port int32) {
	if port != 0 {
		a.store.Release(ctx, portRangeKey+strconv.Itoa(int(port)))
	}
}

func defaultService(obj runtime.Object) {
	s := obj.(*corev1.Service)
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if s.Spec.InternalTrafficPolicy == nil {
		s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if (s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer) && s.Spec.ExternalTrafficPolicy == "" {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if len(s.Spec.IPFamilies) == 0 {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if s.Spec.IPFamilyPolicy == nil {
		s.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
	}
	if s.Spec.ClusterIP != "" && len(s.Spec.ClusterIPs) == 0 {
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
}

func needsNodePorts(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func validateService(obj, old runtime.Object) field.ErrorList {
	s := obj.(*corev1.Service)
	p := field.NewPath("spec")
	var errs field.ErrorList
	types := []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName}
	if !slices.Contains(types, s.Spec.Type) {
		errs = append(errs, field.NotSupported(p.Child("type"), s.Spec.Type, []string{"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}))
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		if s.Spec.ExternalName == "" {
			errs = append(errs, field.Required(p.Child("externalName"), "a DNS name for type ExternalName"))
		}
		return errs
	}
	if len(s.Spec.Ports) == 0 && s.Spec.ClusterIP != corev1.ClusterIPNone {
		errs = append(errs, field.Required(p.Child("ports"), "a service needs at least one port (or clusterIP: None for a headless service)"))
	}
	names := map[string]bool{}
	for i, port := range s.Spec.Ports {
		pp := p.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), "every port of a multi-port service needs a name"))
		}
		if port.Name != "" {
			if names[port.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			names[port.Name] = true
			for _, msg := range validation.IsDNS1123Label(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
		}
		for _, msg := range validation.IsValidPortNum(int(port.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), port.Port, msg))
		}
		if !slices.Contains([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}, port.Protocol) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
		if port.NodePort != 0 && !needsNodePorts(s) {
			errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may only be set for type NodePort or LoadBalancer"))
		}
		if port.TargetPort.Type == intstr.Int {
			for _, msg := range validation.IsValidPortNum(port.TargetPort.IntValue()) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), port.TargetPort.IntValue(), msg))
			}
		}
	}
	if ip := s.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		if a, err := netip.ParseAddr(ip); err != nil || !a.Is4() {
			errs = append(errs, field.Invalid(p.Child("clusterIP"), ip, "must be an IPv4 address, None, or empty to have one allocated"))
		}
	}
	if old != nil {
		o := old.(*corev1.Service)
		if o.Spec.ClusterIP != "" && s.Spec.ClusterIP != o.Spec.ClusterIP && o.Spec.Type != corev1.ServiceTypeExternalName {
			errs = append(errs, field.Invalid(p.Child("clusterIP"), s.Spec.ClusterIP, "field is immutable: delete and recreate the service to change it"))
		}
	}
	return errs
}

func owner(s *corev1.Service) string { return s.Namespace + "/" + s.Name }

// prepareServiceCreate allocates the cluster IP and node ports.
func prepareServiceCreate(ctx context.Context, srv *Server, obj runtime.Object) (err error) {
	s := obj.(*corev1.Service)
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	a := srv.alloc
	defer func() {
		if err != nil {
			releaseService(context.WithoutCancel(ctx), srv, obj)
		}
	}()
	switch ip := s.Spec.ClusterIP; ip {
	case corev1.ClusterIPNone:
	case "":
		got, err := a.allocateIP(ctx, owner(s))
		if errors.Is(err, errRangeFull) {
			return apierrors.NewInternalError(fmt.Errorf("no free cluster IP in %s: delete services you do not need", a.cidr))
		}
		if err != nil {
			return err
		}
		s.Spec.ClusterIP = got.String()
	default:
		addr, _ := netip.ParseAddr(ip)
		if !a.cidr.Contains(addr) {
			return apierrors.NewInvalid(svcKind, s.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIP"), ip, fmt.Sprintf("provided IP is not in the valid range: the service range is %s", a.cidr))})
		}
		ok, err := a.claimIP(ctx, addr, owner(s))
		if err != nil {
			return err
		}
		if !ok {
			s.Spec.ClusterIP = "" // not ours to release
			return apierrors.NewInvalid(svcKind, s.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "clusterIP"), ip, "provided IP is already allocated: leave clusterIP out to get a free one")})
		}
	}
	s.Spec.ClusterIPs = nil
	if s.Spec.ClusterIP != "" {
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
	if needsNodePorts(s) {
		return allocatePorts(ctx, a, s, nil)
	}
	return nil
}

var svcKind = corev1.SchemeGroupVersion.WithKind("Service").GroupKind()

// allocatePorts gives every port of s without a node port one (keeping
// the ones old had for the same port), and claims the ones asked for.
func allocatePorts(ctx context.Context, a *allocator, s, old *corev1.Service) error {
	held := map[int32]bool{}
	if old != nil {
		for _, p := range old.Spec.Ports {
			if p.NodePort != 0 {
				held[p.NodePort] = true
			}
		}
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.NodePort == 0 && old != nil {
			for _, op := range old.Spec.Ports {
				if op.NodePort != 0 && op.Port == p.Port && op.Protocol == p.Protocol {
					p.NodePort = op.NodePort
				}
			}
		}
		path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		switch {
		case p.NodePort == 0:
			got, err := a.allocatePort(ctx, owner(s))
			if errors.Is(err, errRangeFull) {
				return apierrors.NewInternalError(fmt.Errorf("no free node port in %d-%d", a.portMin, a.portMax))
			}
			if err != nil {
				return err
			}
			p.NodePort = got
		case held[p.NodePort]:
		case int(p.NodePort) < a.portMin || int(p.NodePort) > a.portMax:
			return apierrors.NewInvalid(svcKind, s.Name, field.ErrorList{field.Invalid(path, p.NodePort, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", a.portMin, a.portMax))})
		default:
			ok, err := a.claimPort(ctx, p.NodePort, owner(s))
			if err != nil {
				return err
			}
			if !ok {
				return apierrors.NewInvalid(svcKind, s.Name, field.ErrorList{field.Invalid(path, p.NodePort, "provided port is already allocated: leave nodePort out to get a free one")})
			}
		}
		held[p.NodePort] = true
	}
	return nil
}

// carryOverService keeps the cluster IP when an update leaves it out.
func carryOverService(obj, oldObj runtime.Object) {
	s, old := obj.(*corev1.Service), oldObj.(*corev1.Service)
	if s.Spec.ClusterIP == "" && s.Spec.Type != corev1.ServiceTypeExternalName {
		s.Spec.ClusterIP, s.Spec.ClusterIPs = old.Spec.ClusterIP, old.Spec.ClusterIPs
	}
}

// prepareServiceUpdate keeps the node ports and allocates node ports for
// new ports.
func prepareServiceUpdate(ctx context.Context, srv *Server, obj, oldObj runtime.Object) error {
	s, old := obj.(*corev1.Service), oldObj.(*corev1.Service)
	if needsNodePorts(s) {
		return allocatePorts(ctx, srv.alloc, s, old)
	}
	return nil
}

// serviceUpdated releases the node ports a stored update no longer uses.
func serviceUpdated(ctx context.Context, srv *Server, obj, oldObj runtime.Object) {
	s, old := obj.(*corev1.Service), oldObj.(*corev1.Service)
	for _, op := range old.Spec.Ports {
		if op.NodePort != 0 && !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.NodePort == op.NodePort }) {
			srv.alloc.releasePort(ctx, op.NodePort)
		}
	}
}

// abandonServiceUpdate gives back the node ports prepareServiceUpdate
// took for an update that was not stored.
func abandonServiceUpdate(ctx context.Context, srv *Server, obj, oldObj runtime.Object) {
	s, old := obj.(*corev1.Service), oldObj.(*corev1.Service)
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 && !slices.ContainsFunc(old.Spec.Ports, func(op corev1.ServicePort) bool { return op.NodePort == p.NodePort }) {
			srv.alloc.releasePort(ctx, p.NodePort)
		}
	}
}

// releaseService gives back a deleted service's cluster IP and node ports.
func releaseService(ctx context.Context, srv *Server, obj runtime.Object) {
	s := obj.(*corev1.Service)
	srv.alloc.releaseIP(ctx, s.Spec.ClusterIP)
	for _, p := range s.Spec.Ports {
		srv.alloc.releasePort(ctx, p.NodePort)
	}
}
