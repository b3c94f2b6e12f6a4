// Package policy enforces Kubernetes NetworkPolicies (networking.k8s.io/v1)
// on a node, as Calico's felix does with its ACLs: every pod on the node
// that a policy selects gets a chain for the traffic it receives ("to"
// chain, ingress) and one for the traffic it sends ("from" chain, egress),
// reached by the name of its host-side veth (cali…) — traffic to a pod
// leaves the node through that veth, traffic from a pod enters through it.
// A chain lets through what any of the pod's policies allows and drops the
// rest, counting per rule what it let through and what it dropped. Pods no
// policy selects (for a direction) are not isolated in it; replies of
// allowed connections always pass (conntrack); traffic the node itself
// sends to its pods (probes) is never filtered, as in Calico.
//
// Everything is in the nftables table "ip klab-policy" and is replaced in
// one transaction, only the chains that changed.
package policy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// Pod is a pod as policies see it.
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	// IP is the pod's address (invalid while it has none).
	IP netip.Addr
	// Ports are its containers' named ports.
	Ports []NamedPort
	// Veth is the host side of its interface, for pods on this node
	// ("" for pods elsewhere).
	Veth string
}

// NamedPort is a container port with a name.
type NamedPort struct {
	Name     string
	Protocol string // TCP, UDP, SCTP
	Port     uint16
}

// Key is "namespace/name".
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// Namespace is a namespace as namespaceSelectors see it.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Input is what the node's policy chains are made from.
type Input struct {
	// Pods are all the cluster's pods (those on this node have Veth set).
	Pods       []Pod
	Namespaces []Namespace
	Policies   []*networkingv1.NetworkPolicy
}

// Direction is ingress (traffic to a pod) or egress (traffic from it).
type Direction string

// Directions.
const (
	Ingress Direction = "ingress"
	Egress  Direction = "egress"
)

// Endpoint is a pod on this node that some policy isolates.
type Endpoint struct {
	Pod  string     `json:"pod"`
	IP   netip.Addr `json:"ip,omitzero"`
	Veth string     `json:"veth"`
	// Ingress and Egress are nil when no policy isolates the pod that way.
	Ingress *Side `json:"ingress,omitempty"`
	Egress  *Side `json:"egress,omitempty"`
}

// Side is what a pod lets through in one direction.
type Side struct {
	// Policies are the policies that select the pod for this direction:
	// together they decide, and a packet none of them allows is dropped.
	Policies []string `json:"policies"`
	// Allows are their rules, as they apply to this pod.
	Allows []Allow `json:"allows"`
}

// Allow is one rule of a policy, resolved for a pod: the peers it allows
// (sources for ingress, destinations for egress) on which ports.
type Allow struct {
	Policy string `json:"policy"`
	// Rule is the rule's index in the policy's ingress or egress list.
	Rule    int     `json:"rule"`
	Matches []Match `json:"matches"`
}

// Match is one nftables rule of an Allow: peers (nil: any address), a
// protocol (0: any) and destination ports.
type Match struct {
	Peers    []nftrule.Range `json:"peers,omitempty"`
	AnyPeer  bool            `json:"anyPeer,omitempty"`
	Protocol uint8           `json:"protocol,omitempty"`
	PortFrom uint16          `json:"portFrom,omitempty"`
	PortTo   uint16          `json:"portTo,omitempty"`
}

// Compile works out, for every pod on this node, the policies that isolate
// it and what they allow. Endpoints come sorted by pod.
func Compile(in Input) []Endpoint {
	nsLabels := map[string]labels.Set{}
	for _, ns := range in.Namespaces {
		l := labels.Set(maps.Clone(ns.Labels))
		if l == nil {
			l = labels.Set{}
		}
		l[corev1.LabelMetadataName] = ns.Name
		nsLabels[ns.Name] = l
	}
	policies := slices.Clone(in.Policies)
	slices.SortFunc(policies, func(a, b *networkingv1.NetworkPolicy) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	c := &compiler{pods: in.Pods, nsLabels: nsLabels}
	var out []Endpoint
	for _, pod := range in.Pods {
		if pod.Veth == "" {
			continue
		}
		ep := Endpoint{Pod: pod.Key(), IP: pod.IP, Veth: pod.Veth}
		for _, np := range policies {
			if np.Namespace != pod.Namespace || !selects(&np.Spec.PodSelector, pod.Labels) {
				continue
			}
			name := np.Namespace + "/" + np.Name
			if hasType(np, networkingv1.PolicyTypeIngress) {
				if ep.Ingress == nil {
					ep.Ingress = &Side{}
				}
				ep.Ingress.Policies = append(ep.Ingress.Policies, name)
				for i, r := range np.Spec.Ingress {
					ep.Ingress.Allows = append(ep.Ingress.Allows, Allow{Policy: name, Rule: i, Matches: c.ingress(np.Namespace, pod, r)})
				}
			}
			if hasType(np, networkingv1.PolicyTypeEgress) {
				if ep.Egress == nil {
					ep.Egress = &Side{}
				}
				ep.Egress.Policies = append(ep.Egress.Policies, name)
				for i, r := range np.Spec.Egress {
					ep.Egress.Allows = append(ep.Egress.Allows, Allow{Policy: name, Rule: i, Matches: c.egress(np.Namespace, r)})
				}
			}
		}
		if ep.Ingress != nil || ep.Egress != nil {
			out = append(out, ep)
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return strings.Compare(a.Pod, b.Pod) })
	return out
}

// hasType: a policy's types, as the API server defaults them (Ingress,
// and Egress when it has egress rules).
func hasType(np *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return t == networkingv1.PolicyTypeIngress || t == networkingv1.PolicyTypeEgress && len(np.Spec.Egress) > 0
	}
	return slices.Contains(np.Spec.PolicyTypes, t)
}

// selects reports whether a label selector (nil: nothing) matches.
func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false // the API server validates selectors; a bad one selects nothing
	}
	return s.Matches(labels.Set(l))
}

type compiler struct {
	pods     []Pod
	nsLabels map[string]labels.Set
}

// peerPods are the pods (with an address) a peer selects, from a policy
// in namespace ns.
func (c *compiler) peerPods(ns string, peer networkingv1.NetworkPolicyPeer) []Pod {
	var out []Pod
	for _, p := range c.pods {
		if !p.IP.IsValid() {
			continue
		}
		switch {
		case peer.NamespaceSelector == nil && peer.PodSelector != nil:
			if p.Namespace != ns || !selects(peer.PodSelector, p.Labels) {
				continue
			}
		case peer.NamespaceSelector != nil:
			if !selects(peer.NamespaceSelector, c.nsLabels[p.Namespace]) {
				continue
			}
			if peer.PodSelector != nil && !selects(peer.PodSelector, p.Labels) {
				continue
			}
		default:
			continue
		}
		out = append(out, p)
	}
	return out
}

// peers are the addresses a rule's peer list allows; any when the list is
// empty.
func (c *compiler) peers(ns string, list []networkingv1.NetworkPolicyPeer) (ranges []nftrule.Range, pods []Pod, any bool) {
	if len(list) == 0 {
		return nil, c.allPods(), true
	}
	for _, peer := range list {
		if b := peer.IPBlock; b != nil {
			cidr, err := netip.ParsePrefix(b.CIDR)
			if err != nil || !cidr.Addr().Is4() {
				continue
			}
			var except []nftrule.Range
			for _, e := range b.Except {
				if p, err := netip.ParsePrefix(e); err == nil && p.Addr().Is4() {
					except = append(except, nftrule.PrefixRange(p))
				}
			}
			ranges = append(ranges, nftrule.Subtract([]nftrule.Range{nftrule.PrefixRange(cidr)}, except)...)
			continue
		}
		for _, p := range c.peerPods(ns, peer) {
			pods = append(pods, p)
			ranges = append(ranges, nftrule.Range{From: p.IP, To: p.IP})
		}
	}
	return nftrule.Merge(ranges), pods, false
}

func (c *compiler) allPods() []Pod {
	var out []Pod
	for _, p := range c.pods {
		if p.IP.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// ingress resolves an ingress rule for pod: named ports are the pod's.
func (c *compiler) ingress(ns string, pod Pod, r networkingv1.NetworkPolicyIngressRule) []Match {
	ranges, _, any := c.peers(ns, r.From)
	if !any && len(ranges) == 0 {
		return nil // the peers select nothing (yet)
	}
	base := Match{Peers: ranges, AnyPeer: any}
	if len(r.Ports) == 0 {
		return []Match{base}
	}
	var out []Match
	for _, p := range r.Ports {
		proto := protocol(p.Protocol)
		m := base
		m.Protocol = proto
		switch {
		case p.Port == nil:
		case p.Port.Type == 0: // a number
			m.PortFrom, m.PortTo = uint16(p.Port.IntVal), uint16(p.Port.IntVal)
			if p.EndPort != nil && *p.EndPort > p.Port.IntVal {
				m.PortTo = uint16(*p.EndPort)
			}
		default:
			port, ok := namedPort(pod, p.Port.StrVal, proto)
			if !ok {
				continue // the pod has no such port: this entry allows nothing
			}
			m.PortFrom, m.PortTo = port, port
		}
		out = append(out, m)
	}
	return out
}

// egress resolves an egress rule: a named port is resolved on each
// destination pod, so it allows only pods that have it.
func (c *compiler) egress(ns string, r networkingv1.NetworkPolicyEgressRule) []Match {
	ranges, pods, any := c.peers(ns, r.To)
	if !any && len(ranges) == 0 {
		return nil
	}
	base := Match{Peers: ranges, AnyPeer: any}
	if len(r.Ports) == 0 {
		return []Match{base}
	}
	var out []Match
	for _, p := range r.Ports {
		proto := protocol(p.Protocol)
		m := base
		m.Protocol = proto
		switch {
		case p.Port == nil:
		case p.Port.Type == 0:
			m.PortFrom, m.PortTo = uint16(p.Port.IntVal), uint16(p.Port.IntVal)
			if p.EndPort != nil && *p.EndPort > p.Port.IntVal {
				m.PortTo = uint16(*p.EndPort)
			}
		default:
			byPort := map[uint16][]nftrule.Range{}
			for _, pod := range pods {
				if port, ok := namedPort(pod, p.Port.StrVal, proto); ok {
					byPort[port] = append(byPort[port], nftrule.Range{From: pod.IP, To: pod.IP})
				}
			}
			for _, port := range slices.Sorted(maps.Keys(byPort)) {
				out = append(out, Match{Peers: nftrule.Merge(byPort[port]), Protocol: proto, PortFrom: port, PortTo: port})
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// protocol is a policy port's protocol (TCP when not given).
func protocol(p *corev1.Protocol) uint8 {
	if p == nil {
		return unix.IPPROTO_TCP
	}
	switch *p {
	case corev1.ProtocolUDP:
		return unix.IPPROTO_UDP
	case corev1.ProtocolSCTP:
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

func namedPort(pod Pod, name string, proto uint8) (uint16, bool) {
	for _, np := range pod.Ports {
		p := corev1.Protocol(np.Protocol)
		if np.Name == name && protocol(&p) == proto {
			return np.Port, true
		}
	}
	return 0, false
}

// String describes a match in words close to nft's.
func (m Match) String() string {
	var parts []string
	if !m.AnyPeer {
		parts = append(parts, nftrule.Ranges(m.Peers))
	} else {
		parts = append(parts, "any")
	}
	if m.Protocol != 0 {
		parts = append(parts, nftrule.ProtoName(m.Protocol))
	}
	switch {
	case m.PortFrom != 0 && m.PortTo != m.PortFrom:
		parts = append(parts, fmt.Sprintf("%d-%d", m.PortFrom, m.PortTo))
	case m.PortFrom != 0:
		parts = append(parts, fmt.Sprint(m.PortFrom))
	}
	return strings.Join(parts, " ")
}
