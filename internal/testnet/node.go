package testnet

import (
	"net/netip"
	"testing"
)

// NodeLab is a node namespace with pods and outside hosts.
type NodeLab struct {
	*base
	Node *NS
	// NodeIP is the node's underlay address (192.168.251.1).
	NodeIP netip.Addr
	hosts  int
}

// Pod is a pod namespace of a NodeLab.
type Pod struct {
	*NS
	PodName string
	IP      netip.Addr
	// Veth is the host side's name (cali…).
	Veth string
}

// NewNodeLab makes a node namespace ts-XXXXXX-node with forwarding on and
// an underlay 192.168.251.0/24 (the node is .1). IPv6 stays on.
func NewNodeLab(t testing.TB) *NodeLab {
	t.Helper()
	l := &NodeLab{base: newBase(t, "ts-", 1, true), NodeIP: netip.MustParseAddr("192.168.251.1")}
	l.Node = l.newNS("node")
	l.sysctl(l.Node, "net/ipv4/ip_forward", "1")
	l.wire(l.Node, "eth0", "node", 0, l.NodeIP)
	// Like a klab node, a default route to the underlay's gateway (here
	// none answers).
	l.route(l.Node, netip.Prefix{}, netip.MustParseAddr("192.168.251.254"))
	return l
}

// Host adds an outside host on the underlay (192.168.251.2, .3 …) with a
// route to the pod network via the node.
func (l *NodeLab) Host(name string) (*NS, netip.Addr) {
	l.t.Helper()
	l.hosts++
	ip := netip.AddrFrom4([4]byte{192, 168, 251, byte(1 + l.hosts)})
	ns := l.newNS(name)
	l.wire(ns, "eth0", name, 0, ip)
	l.route(ns, netip.Prefix{}, l.NodeIP)
	return ns, ip
}

// Pod adds a pod with address ip, wired to the node.
func (l *NodeLab) Pod(name string, ip netip.Addr) *Pod {
	l.t.Helper()
	p := &Pod{NS: l.newNS(name), PodName: name, IP: ip, Veth: "cali" + name}
	l.wirePod(l.Node, p.NS, p.Veth, ip, 0)
	return p
}
