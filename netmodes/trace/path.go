package trace

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/ipip"
	"github.com/klab-dev/klab/netmodes/vxlan"
)

// Topology is the cluster as a trace sees it: the mode, the nodes with
// what their agents report, the pods, the Services and the underlay. The
// caller fills it from the API, the agents and the provider's plan.
type Topology struct {
	Cluster  string
	Mode     netmodes.Config
	Nodes    []Node
	Pods     []Pod
	Services []Service
	Underlay Underlay
}

// Node is a cluster member with an agent.
type Node struct {
	Name  string
	IP    netip.Addr   // underlay address
	Block netip.Prefix // pod block
	// Netns names the node's network namespace for people
	// ("klab-lab-node1"); empty for a VM.
	Netns string
	// Implementation is the mode's implementation on the node (kernel,
	// userspace).
	Implementation string
	// State is the node's devices, routes, FDB and neighbours, from its
	// agent; nil when the agent did not answer.
	State *netmodes.State
	// Learned are the routes its BGP speaker learned.
	Learned []Learned
}

// Learned is a route learned over BGP.
type Learned struct {
	Prefix netip.Prefix
	From   string
}

// Pod is a pod with an address.
type Pod struct {
	Namespace, Name string
	UID             string
	Node            string
	IP              netip.Addr
	// HostVeth is the node side of its veth (cali…).
	HostVeth string
}

// Key is namespace/name.
func (p Pod) Key() string { return p.Namespace + "/" + p.Name }

// Service is a Service with a ClusterIP.
type Service struct {
	Namespace, Name string
	ClusterIP       netip.Addr
	Ports           []ServicePort
}

// Key is namespace/name.
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// ServicePort is one port of a Service with its ready endpoints.
type ServicePort struct {
	Name     string
	Protocol string // tcp, udp
	Port     int
	// TargetPort is the endpoints' port.
	TargetPort int
	Endpoints  []netip.Addr
}

// Machine roles on the underlay.
const (
	RoleNode   = "node"
	RoleRouter = "router"
	RoleHost   = "host"
)

// Underlay is the "physical" network: bridges, one per subnet, and the
// machines' ports on them.
type Underlay struct {
	// Netns is the path of the network namespace that holds the bridges
	// and ports; "" is the host's own (libvirt).
	Netns string
	// NetnsName names it for people.
	NetnsName string
	Subnets   []Subnet
	Machines  []Machine
}

// Subnet is one underlay subnet and its bridge.
type Subnet struct {
	Name   string
	CIDR   netip.Prefix
	Bridge string
}

// Machine is something with a port on the underlay: a node, the router,
// the host.
type Machine struct {
	Name  string
	Role  string
	Links []Link
	// Netns is the path where the CLI can capture the machine's own
	// interfaces (the router's, on the netns provider); "" when it
	// cannot. NetnsName names it for people.
	Netns     string
	NetnsName string
	// State is the router's routing table when it can be read; without
	// it the router is taken to route between its subnets only.
	State *netmodes.State
}

// Link is a machine's attachment to a subnet.
type Link struct {
	Subnet int
	IP     netip.Addr
	// Port is its interface on the subnet's bridge; NIC its interface
	// inside the machine.
	Port string
	NIC  string
}

// Point is a place on the path where the packet is captured: the hop it
// becomes, and who captures where.
type Point struct {
	Hop Hop
	// Capturer is the node whose agent captures; "" is the CLI on the
	// host.
	Capturer string
	Target   CaptureTarget
	// Final marks the destination's arrival point.
	Final bool
}

// Plan is the path a packet should take, simulated with the nodes' own
// tables, and what went wrong on the way if anything.
type Plan struct {
	Src, Dst Endpoint
	// To is the address the packet is routed to: the destination's, or
	// the endpoint a Service's DNAT picks.
	To     netip.Addr
	Points []Point
	// Reached tells whether the simulation reached the destination; when
	// it did not, Loss says why and Final is where the packet would
	// arrive, captured all the same.
	Reached bool
	Loss    *Loss
	Final   *Point
	Notes   []string
}

// Loss is why a packet does not arrive.
type Loss struct {
	// After is the index in Points of the last point before the loss; -1
	// when it is lost before the first.
	After        int
	Node         string
	Cause        string
	Reason       string
	MissingRoute string
}

// maxSteps bounds the simulation: no path in a klab cluster has more
// routing decisions.
const maxSteps = 16

type sim struct {
	t        *Topology
	l        Lang
	p        *Plan
	dst      netip.Addr
	steps    int
	deviated *Loss // the first routing decision that differs from the mode's
	// deviatedHave is the route the node used instead.
	deviatedHave string
	pending      *Hop   // routing to show at the next point (a node that sends)
	sending      string // how a sending node starts, for its first point
}

// PlanPath simulates the packet from src to the address to (the
// destination's, or a Service endpoint's) with every node's own routes,
// neighbours and FDB.
func (t *Topology) PlanPath(l Lang, src, dst Endpoint, to netip.Addr) (*Plan, error) {
	s := &sim{t: t, l: l, p: &Plan{Src: src, Dst: dst, To: to}, dst: to}
	switch src.Kind {
	case KindPod:
		pod, ok := t.pod(src.Name)
		if !ok {
			return nil, fmt.Errorf("pod %s is not in the cluster", src.Name)
		}
		n, ok := t.node(pod.Node)
		if !ok {
			return nil, fmt.Errorf("pod %s runs on %q, which is not a node with an agent", src.Name, pod.Node)
		}
		s.add(s.podPoint(pod, "out", l.f(msgPodOut, pod.Name)))
		s.add(s.nodePoint(n, pod.HostVeth, HopVeth, "in", l.f(msgVethIn, n.Name)))
		s.atNode(n)
	case KindNode:
		n, ok := t.node(src.Name)
		if !ok {
			return nil, fmt.Errorf("node %s has no agent that answered", src.Name)
		}
		if dst.Kind == KindNode && dst.Name == src.Name {
			return nil, fmt.Errorf("source and destination are both %s", src.Name)
		}
		s.atNode(n)
	default:
		return nil, fmt.Errorf("a trace starts at a pod or a node, not a %s", src.Kind)
	}
	if s.p.Loss == nil && !s.p.Reached {
		s.lose(s.deviatedOr(CauseUnknown, ""), "")
	}
	if !s.p.Reached {
		s.p.Final = s.finalPoint()
	}
	return s.p, nil
}

// add appends a point, taking any pending routing annotation and marking
// points after a wrong routing decision as strays.
func (s *sim) add(pt Point) {
	if s.pending != nil {
		pt.Hop.Route, pt.Hop.RouteOrigin = s.pending.Route, s.pending.RouteOrigin
		s.pending = nil
	}
	if s.sending != "" {
		pt.Hop.Explain = s.sending + "; " + pt.Hop.Explain
		s.sending = ""
	}
	pt.Hop.Stray = s.deviated != nil
	s.p.Points = append(s.p.Points, pt)
}

func (s *sim) last() *Point {
	if len(s.p.Points) == 0 {
		return nil
	}
	return &s.p.Points[len(s.p.Points)-1]
}

// lose ends the simulation with a loss; a wrong routing decision earlier
// on the way is the better explanation and wins.
func (s *sim) lose(l *Loss, extra string) {
	if s.deviated != nil && l != s.deviated {
		d := *s.deviated
		d.Reason += extra
		s.p.Loss = &d
		return
	}
	l.Reason += extra
	s.p.Loss = l
}

func (s *sim) loss(node, cause, reason string) *Loss {
	return &Loss{After: len(s.p.Points) - 1, Node: node, Cause: cause, Reason: reason}
}

// deviatedOr is the wrong routing decision, or a loss of cause.
func (s *sim) deviatedOr(cause, reason string) *Loss {
	if s.deviated != nil {
		return s.deviated
	}
	return s.loss("", cause, reason)
}

// atNode forwards the packet from node n onwards.
func (s *sim) atNode(n *Node) {
	s.steps++
	if s.steps > maxSteps {
		s.lose(s.loss(n.Name, CauseUnknown, s.l.f(lossLoop, n.Name)), "")
		return
	}
	if n.State == nil {
		s.lose(s.loss(n.Name, CauseUnknown, fmt.Sprintf("%s: no report from its agent", n.Name)), "")
		return
	}
	if hasAddr(n.State, s.dst) {
		s.deliverLocal(n)
		return
	}
	r, ok := lookup(n.State, s.dst)
	ideal, idealKind := s.idealRoute(n)
	if !ok {
		if ideal != nil {
			s.lose(s.missingRoute(n, ideal, idealKind, nil), s.l.f(lossDroppedInstead))
			return
		}
		s.lose(s.loss(n.Name, CauseNoRoute, s.l.f(lossNoRoute, n.Name, s.dst)), "")
		return
	}
	if ideal != nil && !sameRoute(r, *ideal) && s.deviated == nil {
		s.deviated, s.deviatedHave = s.missingRoute(n, ideal, idealKind, &r), routeString(r)
	}
	if len(s.p.Points) == 0 {
		s.sending = s.l.f(msgNodeOrigin, n.Name, s.sourceOf(n, r))
	}
	s.annotate(n, r)
	switch dev := s.device(n, r.Dev); {
	case dev != nil && dev.Kind == "vxlan":
		s.viaVXLAN(n, r, dev)
	case r.Dev == ipip.Device:
		s.viaTunnel(n, r)
	case s.t.podByVeth(n.Name, r.Dev) != nil:
		s.toPod(n, r)
	default:
		s.plain(n, r)
	}
}

// annotate puts the route on the last point when it is on n (the packet
// arrived there), or keeps it for n's first point (n sends the packet).
func (s *sim) annotate(n *Node, r netmodes.RouteInfo) {
	h := &Hop{Route: routeString(r), RouteOrigin: s.origin(n, r)}
	if lp := s.last(); lp != nil && lp.Hop.Node == n.Name && lp.Hop.Direction == "in" {
		lp.Hop.Route, lp.Hop.RouteOrigin = h.Route, h.RouteOrigin
		return
	}
	s.pending = h
}

// deliverLocal ends at n, the destination.
func (s *sim) deliverLocal(n *Node) {
	lp := s.last()
	if lp == nil {
		s.lose(s.loss(n.Name, CauseUnknown, fmt.Sprintf("%s is the source itself", s.dst)), "")
		return
	}
	switch lp.Hop.Kind {
	case HopVeth:
		lp.Hop.Explain = s.l.f(msgVethInLocal, n.Name, s.dst)
	default:
		lp.Hop.Explain = s.l.f(msgNICInLocal, n.Name, lp.Hop.Interface, s.dst)
	}
	s.reached()
}

// reached ends the simulation at the destination (the last point). A
// routing decision that differed from the mode's on the way is only a
// note then: the packet got there.
func (s *sim) reached() {
	s.last().Final = true
	s.p.Reached = true
	if s.deviated != nil {
		s.p.Notes = append(s.p.Notes, s.l.f(noteRouteDiffers, s.deviated.Node, s.dst, s.deviatedHave, s.deviated.MissingRoute))
		s.deviated = nil
		for i := range s.p.Points {
			s.p.Points[i].Hop.Stray = false
		}
	}
}

// toPod delivers into a pod's veth on n.
func (s *sim) toPod(n *Node, r netmodes.RouteInfo) {
	pod := s.t.podByVeth(n.Name, r.Dev)
	s.add(s.nodePoint(n, r.Dev, HopVeth, "out", s.l.f(msgVethOut, n.Name)))
	s.add(s.podPoint(*pod, "in", s.l.f(msgPodIn, pod.Name)))
	if pod.IP == s.dst {
		s.reached()
		return
	}
	s.lose(s.loss(n.Name, CauseNoRoute, s.l.f(lossLeftCluster, n.Name, routeString(r), pod.Key())), "")
}

// viaVXLAN sends the packet through n's VTEP.
func (s *sim) viaVXLAN(n *Node, r netmodes.RouteInfo, dev *netmodes.Device) {
	via := r.Via
	if !via.IsValid() {
		via = s.dst
	}
	peer := s.t.nodeByBlock(via)
	peerName := via.String()
	if peer != nil {
		peerName = peer.Name
	}
	mac, ok := neighbour(n.State, via, dev.Name)
	if !ok {
		want := vxlan.Neighbor{IP: via}
		if peer != nil {
			want.MAC = s.peerNode(peer).MAC()
		}
		s.lose(s.loss(n.Name, CauseNeighbour, s.l.f(lossVXLANNeigh, n.Name, via, want.String(), peerName)), "")
		return
	}
	under, ok := fdbDst(n.State, mac, dev.Name)
	if !ok {
		want := vxlan.FDB{MAC: parseMAC(mac)}
		if peer != nil {
			want.Dst = peer.IP
		}
		s.lose(s.loss(n.Name, CauseFDB, s.l.f(lossFDB, n.Name, mac, want.String(), peerName)), "")
		return
	}
	pt := s.nodePoint(n, dev.Name, HopVXLAN, "out", s.l.f(msgVXLANOut, n.Name, peerName, mac, via, under, s.ttl()))
	pt.Hop.FDB = fmt.Sprintf("fdb %s dst %s dev %s", mac, under, dev.Name)
	s.add(pt)
	local := n.IP
	if a, err := netip.ParseAddr(dev.Local); err == nil {
		local = a
	}
	port, vni := dev.Port, dev.VNI
	if port == 0 {
		port = netmodes.DefaultPort
	}
	s.encapsulated(n, under, EncapVXLAN, func(nic string) string {
		return s.l.f(msgVXLANEncap, port, vni, local, under, nic)
	})
}

// viaTunnel sends the packet through n's tunl0 (IPIP).
func (s *sim) viaTunnel(n *Node, r netmodes.RouteInfo) {
	via := r.Via
	if !via.IsValid() {
		s.lose(s.loss(n.Name, CauseNoRoute, s.l.f(lossNoRoute, n.Name, s.dst)), "")
		return
	}
	peerName := via.String()
	if m := s.t.nodeByIP(via); m != nil {
		peerName = m.Name
	}
	userspace := n.Implementation == netmodes.Userspace
	msg, enc := msgTunnelOut, msgIPIPEncap
	if userspace {
		msg, enc = msgTunnelOutUserspace, msgIPIPEncapUserspace
	}
	s.add(s.nodePoint(n, ipip.Device, HopTunnel, "out", s.l.f(msg, n.Name, via, peerName, s.ttl())))
	s.encapsulated(n, via, EncapIPIP, func(nic string) string { return s.l.f(enc, n.IP, via, nic) })
}

// ttl says the TTL goes down when the node forwards the packet (not when
// it sends its own).
func (s *sim) ttl() string {
	if s.sending != "" {
		return ""
	}
	return s.l.f(phTTL)
}

// encapsulated carries an encapsulated packet from n to the node with the
// underlay address outer, and decapsulates it there.
func (s *sim) encapsulated(n *Node, outer netip.Addr, encap string, explain func(nic string) string) {
	r, ok := lookup(n.State, outer)
	if !ok {
		s.lose(s.loss(n.Name, CauseNoRoute, s.l.f(lossNoRoute, n.Name, outer)), "")
		return
	}
	nic := r.Dev
	pt := s.nodePoint(n, nic, HopNIC, "out", explain(nic))
	pt.Hop.Encap = encap
	s.add(pt)
	next := outer
	if r.Via.IsValid() {
		next = r.Via
	}
	m, _, ok := s.underlay(n.Name, n.IP, next, outer, encap)
	if !ok {
		return
	}
	peer, ok := s.t.node(m.Name)
	if !ok || m.Role != RoleNode {
		s.lose(s.loss(n.Name, CauseLeftCluster, s.l.f(lossLeftCluster, n.Name, routeString(r), m.Name)), "")
		return
	}
	in := s.nodePoint(peer, s.nicOf(peer, outer), HopNIC, "in", s.l.f(msgNICIn, peer.Name, s.nicOf(peer, outer)))
	in.Hop.Encap = encap
	s.add(in)
	if peer.State == nil {
		s.lose(s.loss(peer.Name, CauseUnknown, fmt.Sprintf("%s: no report from its agent", peer.Name)), "")
		return
	}
	switch encap {
	case EncapVXLAN:
		dev := vxlanDevice(peer.State)
		if dev == nil {
			s.lose(s.loss(peer.Name, CauseNoRoute, fmt.Sprintf("%s has no VXLAN device to take UDP %d", peer.Name, netmodes.DefaultPort)), "")
			return
		}
		port := dev.Port
		if port == 0 {
			port = netmodes.DefaultPort
		}
		s.add(s.nodePoint(peer, dev.Name, HopVXLAN, "in", s.l.f(msgVXLANIn, peer.Name, port, dev.VNI)))
	case EncapIPIP:
		msg := msgTunnelIn
		if peer.Implementation == netmodes.Userspace {
			msg = msgTunnelInUserspace
		}
		s.add(s.nodePoint(peer, ipip.Device, HopTunnel, "in", s.l.f(msg, peer.Name)))
	}
	s.atNode(peer)
}

// plain sends the packet out of an underlay interface without
// encapsulation.
func (s *sim) plain(n *Node, r netmodes.RouteInfo) {
	next := s.dst
	if r.Via.IsValid() {
		next = r.Via
	}
	target := next.String()
	if m := s.t.machineByIP(next); m != nil && m.Role == RoleNode {
		target = m.Name
	} else if m != nil {
		target = m.Name + " " + next.String()
	}
	switch {
	case s.deviated != nil:
		s.add(s.nodePoint(n, r.Dev, HopNIC, "out", s.l.f(msgStrayOut, n.Name, r.Dev, target)))
	case len(s.p.Points) == 0:
		s.add(s.nodePoint(n, r.Dev, HopNIC, "out", s.l.f(msgPlainOutOrigin, n.Name, target, r.Dev)))
	default:
		s.add(s.nodePoint(n, r.Dev, HopNIC, "out", s.l.f(msgPlainOut, n.Name, target, r.Dev)))
	}
	m, ml, ok := s.underlay(n.Name, n.IP, next, s.dst, EncapNone)
	if !ok {
		return
	}
	peer, ok := s.t.node(m.Name)
	if !ok || m.Role != RoleNode {
		s.lose(s.loss(n.Name, CauseLeftCluster, s.l.f(lossLeftCluster, n.Name, routeString(r), m.Name+" "+ml.IP.String())), "")
		return
	}
	nic := s.nicOf(peer, ml.IP)
	s.add(s.nodePoint(peer, nic, HopNIC, "in", s.l.f(msgNICIn, peer.Name, nic)))
	s.atNode(peer)
}

// sourceOf is the address the kernel picks for a packet n sends by r.
func (s *sim) sourceOf(n *Node, r netmodes.RouteInfo) string {
	if r.Src != "" {
		return r.Src
	}
	if d := s.device(n, r.Dev); d != nil && len(d.Addrs) > 0 {
		if p, err := netip.ParsePrefix(d.Addrs[0]); err == nil {
			return p.Addr().String()
		}
	}
	return n.IP.String()
}

// underlay carries a frame from the machine from (with address fromIP)
// to the machine with address next on the same subnet, through the
// bridge, and through the router to the machine with address dst when
// next is the router. It returns the machine the frame ends at and its
// link.
func (s *sim) underlay(from string, fromIP, next, dst netip.Addr, encap string) (*Machine, Link, bool) {
	u := &s.t.Underlay
	src := s.t.machine(from)
	if src == nil {
		s.lose(s.loss(from, CauseUnknown, fmt.Sprintf("%s is not on the underlay", from)), "")
		return nil, Link{}, false
	}
	link, ok := linkTo(src, fromIP, u)
	if !ok {
		s.lose(s.loss(from, CauseUnknown, fmt.Sprintf("%s has no link into the subnet of %s", from, fromIP)), "")
		return nil, Link{}, false
	}
	m, ml := s.t.machineOn(link.Subnet, next)
	if m == nil {
		s.lose(s.loss(from, CauseNeighbour, s.l.f(lossNobody, from, next)), "")
		return nil, Link{}, false
	}
	sub := u.Subnets[link.Subnet]
	s.add(s.portPoint(sub, link.Port, "in", encap, s.l.f(msgBridgeIn, sub.Bridge, src.Name)))
	s.add(s.portPoint(sub, ml.Port, "out", encap, s.l.f(msgBridgeOut, m.Name)))
	if m.Role != RoleRouter || next == dst {
		return m, ml, true
	}
	// The router forwards by the packet's destination: by its routes
	// when they are known, else into the subnet that holds it.
	if m.Netns != "" {
		s.add(s.routerPoint(m, ml.NIC, "in", encap, s.l.f(msgRouterIn, ml.NIC, sub.Name)))
	}
	out, hop, ok := routerNext(m, u, dst)
	if !ok {
		var subnets []string
		for _, l := range m.Links {
			subnets = append(subnets, u.Subnets[l.Subnet].CIDR.String())
		}
		reason := s.l.f(lossRouter, dst, strings.Join(subnets, ", "))
		if s.t.Mode.Mode == netmodes.BGP && s.t.nodeByBlock(dst) != nil {
			reason += s.l.f(lossBGPSubnets)
		}
		s.lose(s.loss(m.Name, CauseNoRoute, reason), "")
		return nil, Link{}, false
	}
	osub := u.Subnets[out.Subnet]
	if m.Netns != "" {
		s.add(s.routerPoint(m, out.NIC, "out", encap, s.l.f(msgRouterOut, osub.Name, out.NIC)))
	}
	t, tl := s.t.machineOn(out.Subnet, hop)
	if t == nil {
		s.lose(s.loss(m.Name, CauseNeighbour, s.l.f(lossNobody, m.Name, hop)), "")
		return nil, Link{}, false
	}
	s.add(s.portPoint(osub, out.Port, "in", encap, s.l.f(msgBridgeIn, osub.Bridge, m.Name)))
	s.add(s.portPoint(osub, tl.Port, "out", encap, s.l.f(msgBridgeOut, t.Name)))
	return t, tl, true
}

// routerNext is where the router m sends a packet for dst: out of which
// link, to which next hop.
func routerNext(m *Machine, u *Underlay, dst netip.Addr) (Link, netip.Addr, bool) {
	if m.State != nil {
		r, ok := lookup(m.State, dst)
		if !ok {
			return Link{}, netip.Addr{}, false
		}
		for _, l := range m.Links {
			if l.NIC == r.Dev {
				if r.Via.IsValid() {
					return l, r.Via, true
				}
				return l, dst, true
			}
		}
		return Link{}, netip.Addr{}, false
	}
	for _, l := range m.Links {
		if l.Subnet < len(u.Subnets) && u.Subnets[l.Subnet].CIDR.Contains(dst) {
			return l, dst, true
		}
	}
	return Link{}, netip.Addr{}, false
}

// missingRoute is the loss of a node whose route to the destination is
// not the mode's (have is nil when it has none).
func (s *sim) missingRoute(n *Node, ideal *netmodes.Route, kind string, have *netmodes.RouteInfo) *Loss {
	l := s.loss(n.Name, CauseNoRoute, "")
	l.MissingRoute = ideal.String()
	if kind == "pod" {
		pod := s.t.podByIP(n.Name, s.dst)
		l.Reason = s.l.f(lossPodRoute, n.Name, pod.Key(), s.dst, ideal.String())
	} else {
		owner := s.t.nodeByBlock(s.dst)
		switch {
		case have == nil || have.Dst.Bits() == 0:
			l.Reason = s.l.f(lossNoRouteTo, n.Name, ideal.Dst, owner.Name, s.t.Mode.String(), ideal.String())
		default:
			l.Reason = s.l.f(lossWrongRoute, n.Name, ideal.Dst, owner.Name, s.t.Mode.String(), ideal.String(), routeString(*have))
		}
	}
	if have != nil && have.Dst.Bits() == 0 {
		next := have.Via.String()
		if m := s.t.machineByIP(have.Via); m != nil {
			next = m.Name + " " + have.Via.String()
		}
		l.Reason += s.l.f(lossDefaultInstead, routeString(*have), next)
		l.Cause = CauseNoRoute
	}
	return l
}

// idealRoute is the route the mode (or CNI, for a pod on n) programs on n
// for the destination; nil when the destination is not a pod address.
func (s *sim) idealRoute(n *Node) (*netmodes.Route, string) {
	if pod := s.t.podByIP(n.Name, s.dst); pod != nil {
		return &netmodes.Route{Dst: netip.PrefixFrom(s.dst, 32), Dev: pod.HostVeth}, "pod"
	}
	owner := s.t.nodeByBlock(s.dst)
	if owner == nil || owner.Name == n.Name {
		return nil, ""
	}
	self, peer := s.peerNode(n), s.peerNode(owner)
	cfg := s.t.Mode.WithDefaults()
	if cfg.Mode == netmodes.BGP && !self.SameSubnet(peer) {
		// No plain route crosses subnets (the next hop is not on-link):
		// whatever the router reflected is the route.
		return nil, ""
	}
	dev := s.nicOf(n, n.IP)
	var routes []netmodes.Route
	switch {
	case cfg.Mode == netmodes.VXLAN:
		routes = vxlan.PlanFor(cfg, self, []netmodes.Node{peer}, dev).Routes
	case cfg.Mode == netmodes.IPIP:
		routes = ipip.PlanFor(cfg, self, []netmodes.Node{peer}, dev).Routes
	default:
		routes = []netmodes.Route{netmodes.PlainRoute(peer, dev)}
	}
	if len(routes) == 0 {
		return nil, ""
	}
	return &routes[0], "mode"
}

// peerNode is n as the network modes see it.
func (s *sim) peerNode(n *Node) netmodes.Node {
	bits := 24
	for _, sub := range s.t.Underlay.Subnets {
		if sub.CIDR.Contains(n.IP) {
			bits = sub.CIDR.Bits()
		}
	}
	return netmodes.Node{Name: n.Name, Underlay: netip.PrefixFrom(n.IP, bits), Block: n.Block}
}

// origin says where a route came from.
func (s *sim) origin(n *Node, r netmodes.RouteInfo) string {
	switch {
	case r.Dst.Bits() == 0:
		return s.l.f(originDefault)
	case r.Proto == "klab" && s.t.Mode.Mode == netmodes.VXLAN && r.Dev == vxlan.Device:
		return s.l.f(originAPI)
	case r.Proto == "klab":
		for _, l := range n.Learned {
			if l.Prefix == r.Dst {
				return s.l.f(originBGP, l.From)
			}
		}
		return s.l.f(originKlab)
	case s.t.podByVeth(n.Name, r.Dev) != nil:
		return s.l.f(originCNI)
	case r.Proto == "kernel":
		return s.l.f(originKernel, r.Dev)
	}
	return s.l.f(originOther, r.Proto)
}

// finalPoint is where the destination would see the packet arrive.
func (s *sim) finalPoint() *Point {
	var pt Point
	switch s.p.Dst.Kind {
	case KindPod, KindService:
		pod := s.t.podByAddr(s.p.To)
		if pod == nil {
			return nil
		}
		pt = s.podPoint(*pod, "in", s.l.f(msgPodIn, pod.Name))
	case KindNode:
		n, ok := s.t.node(s.p.Dst.Name)
		if !ok {
			return nil
		}
		nic := s.nicOf(n, n.IP)
		pt = s.nodePoint(n, nic, HopNIC, "in", s.l.f(msgNICInLocal, n.Name, nic, n.IP))
	default:
		return nil
	}
	pt.Final = true
	return &pt
}

func (s *sim) podPoint(p Pod, dir, explain string) Point {
	return Point{
		Hop:      Hop{Node: p.Node, Pod: p.Key(), Interface: "eth0", Netns: "/run/netns/" + p.UID, Kind: HopPod, Direction: dir, Encap: EncapNone, Explain: explain},
		Capturer: p.Node,
		Target:   CaptureTarget{Interface: "eth0", Pod: p.UID},
	}
}

func (s *sim) nodePoint(n *Node, iface, kind, dir, explain string) Point {
	ns := n.Netns
	if ns == "" {
		ns = n.Name
	}
	return Point{
		Hop:      Hop{Node: n.Name, Interface: iface, Netns: ns, Kind: kind, Direction: dir, Encap: EncapNone, Explain: explain},
		Capturer: n.Name,
		Target:   CaptureTarget{Interface: iface},
	}
}

func (s *sim) portPoint(sub Subnet, port, dir, encap, explain string) Point {
	u := s.t.Underlay
	ns := u.NetnsName
	if ns == "" {
		ns = "host"
	}
	return Point{
		Hop:    Hop{Node: "underlay", Interface: port, Netns: ns, Bridge: sub.Bridge, Kind: HopBridgePort, Direction: dir, Encap: encap, Explain: explain},
		Target: CaptureTarget{Interface: port, Netns: u.Netns},
	}
}

func (s *sim) routerPoint(m *Machine, nic, dir, encap, explain string) Point {
	return Point{
		Hop:    Hop{Node: m.Name, Interface: nic, Netns: m.NetnsName, Kind: HopRouter, Direction: dir, Encap: encap, Explain: explain},
		Target: CaptureTarget{Interface: nic, Netns: m.Netns},
	}
}

// device is n's device called name.
func (s *sim) device(n *Node, name string) *netmodes.Device {
	for i := range n.State.Devices {
		if n.State.Devices[i].Name == name {
			return &n.State.Devices[i]
		}
	}
	return nil
}

// nicOf is the name of n's interface that holds ip, or that holds n's
// underlay address; eth0 when the report does not say.
func (s *sim) nicOf(n *Node, ip netip.Addr) string {
	if n.State != nil {
		for _, want := range []netip.Addr{ip, n.IP} {
			for _, d := range n.State.Devices {
				for _, a := range d.Addrs {
					if p, err := netip.ParsePrefix(a); err == nil && p.Addr() == want {
						return d.Name
					}
				}
			}
		}
	}
	return "eth0"
}

// Lookups in the topology.

func (t *Topology) node(name string) (*Node, bool) {
	for i := range t.Nodes {
		if t.Nodes[i].Name == name {
			return &t.Nodes[i], true
		}
	}
	return nil, false
}

func (t *Topology) pod(key string) (Pod, bool) {
	for _, p := range t.Pods {
		if p.Key() == key {
			return p, true
		}
	}
	return Pod{}, false
}

func (t *Topology) podByIP(node string, ip netip.Addr) *Pod {
	for i := range t.Pods {
		if t.Pods[i].Node == node && t.Pods[i].IP == ip {
			return &t.Pods[i]
		}
	}
	return nil
}

func (t *Topology) podByAddr(ip netip.Addr) *Pod {
	for i := range t.Pods {
		if t.Pods[i].IP == ip {
			return &t.Pods[i]
		}
	}
	return nil
}

func (t *Topology) podByVeth(node, veth string) *Pod {
	if veth == "" {
		return nil
	}
	for i := range t.Pods {
		if t.Pods[i].Node == node && t.Pods[i].HostVeth == veth {
			return &t.Pods[i]
		}
	}
	return nil
}

func (t *Topology) nodeByBlock(ip netip.Addr) *Node {
	for i := range t.Nodes {
		if t.Nodes[i].Block.IsValid() && t.Nodes[i].Block.Contains(ip) {
			return &t.Nodes[i]
		}
	}
	return nil
}

func (t *Topology) nodeByIP(ip netip.Addr) *Node {
	for i := range t.Nodes {
		if t.Nodes[i].IP == ip {
			return &t.Nodes[i]
		}
	}
	return nil
}

func (t *Topology) machine(name string) *Machine {
	for i := range t.Underlay.Machines {
		if t.Underlay.Machines[i].Name == name {
			return &t.Underlay.Machines[i]
		}
	}
	return nil
}

func (t *Topology) machineByIP(ip netip.Addr) *Machine {
	for i := range t.Underlay.Machines {
		for _, l := range t.Underlay.Machines[i].Links {
			if l.IP == ip {
				return &t.Underlay.Machines[i]
			}
		}
	}
	return nil
}

// machineOn is the machine with address ip on subnet sub, and its link.
func (t *Topology) machineOn(sub int, ip netip.Addr) (*Machine, Link) {
	for i := range t.Underlay.Machines {
		for _, l := range t.Underlay.Machines[i].Links {
			if l.Subnet == sub && l.IP == ip {
				return &t.Underlay.Machines[i], l
			}
		}
	}
	return nil, Link{}
}

// linkTo is m's link that holds ip, or its link in the subnet of ip.
func linkTo(m *Machine, ip netip.Addr, u *Underlay) (Link, bool) {
	for _, l := range m.Links {
		if l.IP == ip {
			return l, true
		}
	}
	for _, l := range m.Links {
		if l.Subnet < len(u.Subnets) && u.Subnets[l.Subnet].CIDR.Contains(ip) {
			return l, true
		}
	}
	return Link{}, false
}

// Lookups in a node's state.

// lookup is the kernel's choice in the main table: the longest prefix
// that holds dst.
func lookup(st *netmodes.State, dst netip.Addr) (netmodes.RouteInfo, bool) {
	best, found := netmodes.RouteInfo{}, false
	for _, r := range st.Routes {
		if !r.Dst.IsValid() || !r.Dst.Contains(dst) {
			continue
		}
		if !found || r.Dst.Bits() > best.Dst.Bits() {
			best, found = r, true
		}
	}
	return best, found
}

func hasAddr(st *netmodes.State, ip netip.Addr) bool {
	for _, d := range st.Devices {
		for _, a := range d.Addrs {
			if p, err := netip.ParsePrefix(a); err == nil && p.Addr() == ip {
				return true
			}
		}
	}
	return false
}

func neighbour(st *netmodes.State, ip netip.Addr, dev string) (string, bool) {
	for _, n := range st.Neighbors {
		if n.Dev == dev && n.IP == ip.String() && n.MAC != "" {
			return n.MAC, true
		}
	}
	return "", false
}

func fdbDst(st *netmodes.State, mac, dev string) (netip.Addr, bool) {
	for _, f := range st.FDB {
		if f.Dev == dev && strings.EqualFold(f.MAC, mac) {
			a, err := netip.ParseAddr(f.Dst)
			return a, err == nil
		}
	}
	return netip.Addr{}, false
}

func vxlanDevice(st *netmodes.State) *netmodes.Device {
	for i := range st.Devices {
		if st.Devices[i].Kind == "vxlan" {
			return &st.Devices[i]
		}
	}
	return nil
}

// sameRoute compares a route in the table with one a mode programs.
func sameRoute(r netmodes.RouteInfo, want netmodes.Route) bool {
	return r.Dst == want.Dst && r.Via == want.Via && r.Dev == want.Dev && r.OnLink == want.OnLink
}

// routeString is the route as `ip route` prints it, "default" for 0/0.
func routeString(r netmodes.RouteInfo) string {
	s := r.Route.String()
	if r.Dst.Bits() == 0 {
		s = "default" + strings.TrimPrefix(s, r.Dst.String())
	}
	if r.Scope == "link" && !r.Via.IsValid() {
		s += " scope link"
	}
	return s
}

// parseMAC parses a MAC from a report; nil when it is not one.
func parseMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return m
}
