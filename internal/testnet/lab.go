// Package testnet builds the network namespaces that tests run in, in two
// shapes. A Lab, for the netmodes tests, is "node" namespaces on an
// underlay of one or two subnets (two behind a router namespace), and a
// "pod" namespace per node; names start with kt-nm-, addresses are
// 172.31.0.0/16 (underlay) and 10.251.0.0/16 (pods). A NodeLab, for the
// policy's and the proxy's tests, is one node namespace with pods and
// outside hosts on its underlay 192.168.251.0/24; names start with ts-.
// Pods are wired the way Calico wires them, without the CNI plugin: a veth
// without address on the node and a /32 route to the pod; in the pod eth0
// with a /32 and a default route via 169.254.1.1. Everything is deleted
// when the test ends.
package testnet

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/klab-dev/klab/netmodes"
)

// PodMTU is the pods' MTU: what the smallest tunnel (vxlan) leaves of the
// underlay's 1500.
const PodMTU = 1500 - netmodes.VXLANOverhead

// Lab is a set of namespaces: the underlay (bridges), maybe a router, the
// nodes and their pods.
type Lab struct {
	*base
	Router *NS // joins the subnets (with two subnets)
	Nodes  []*Node
	// Subnets are the underlay subnets, 172.31.0.0/24 and 172.31.1.0/24.
	Subnets []netip.Prefix
}

// Node is a node namespace with its pod.
type Node struct {
	netmodes.Node
	NS     *NS
	Pod    *NS
	PodIP  netip.Addr
	Subnet int
}

// New builds a lab of n nodes on the given number of subnets (1 or 2).
// With two subnets, the nodes after the first (n+1)/2 sit in the second
// subnet, behind the router (with 3 nodes: n3). Node i (from 1) has underlay address
// 172.31.S.(10+i), pod block 10.251.i.0/24 and pod address 10.251.i.2.
func New(t testing.TB, n, subnets int) *Lab {
	t.Helper()
	l := &Lab{base: newBase(t, "kt-nm-", subnets, false)}
	for s := range subnets {
		l.Subnets = append(l.Subnets, netip.MustParsePrefix(fmt.Sprintf("172.31.%d.0/24", s)))
	}
	if subnets > 1 {
		l.Router = l.newNS("r")
		l.sysctl(l.Router, "net/ipv4/ip_forward", "1")
		for s := range subnets {
			l.wire(l.Router, fmt.Sprintf("eth%d", s), fmt.Sprintf("r%d", s), s, gateway(l.Subnets[s]))
		}
	}
	for i := 1; i <= n; i++ {
		sub := 0
		if subnets > 1 && i > (n+1)/2 {
			sub = 1
		}
		l.addNode(i, sub)
	}
	return l
}

func gateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// addNode makes node i in subnet sub, with its pod.
func (l *Lab) addNode(i, sub int) {
	name := fmt.Sprintf("n%d", i)
	ip := l.Subnets[sub].Addr().As4()
	ip[3] = byte(10 + i)
	nd := &Node{
		Node: netmodes.Node{
			Name:     name,
			Underlay: netip.PrefixFrom(netip.AddrFrom4(ip), 24),
			Block:    netip.MustParsePrefix(fmt.Sprintf("10.251.%d.0/24", i)),
		},
		PodIP:  netip.MustParseAddr(fmt.Sprintf("10.251.%d.2", i)),
		Subnet: sub,
	}
	nd.NS = l.newNS(name)
	l.sysctl(nd.NS, "net/ipv4/ip_forward", "1")
	l.wire(nd.NS, "eth0", name, sub, nd.IP())
	l.routeVia(nd.NS, sub)
	nd.Pod = l.newNS(name + "-pod")
	l.wirePod(nd.NS, nd.Pod, "cali"+nd.Name, nd.PodIP, PodMTU)
	l.Nodes = append(l.Nodes, nd)
}

// AddHost adds a namespace PREFIX-name on subnet sub with address addr,
// routed to the other subnets through the router: a BGP router, a client.
func (l *Lab) AddHost(name string, sub int, addr netip.Addr) *NS {
	l.t.Helper()
	ns := l.newNS(name)
	l.wire(ns, "eth0", name, sub, addr)
	l.routeVia(ns, sub)
	return ns
}

// routeVia routes ns (on subnet sub) to the other subnets via the router.
func (l *Lab) routeVia(ns *NS, sub int) {
	if l.Router == nil {
		return
	}
	for s, p := range l.Subnets {
		if s != sub {
			l.route(ns, p, gateway(l.Subnets[sub]))
		}
	}
}

// Peers is every node of the lab as netmodes nodes.
func (l *Lab) Peers() []netmodes.Node {
	out := make([]netmodes.Node, len(l.Nodes))
	for i, n := range l.Nodes {
		out[i] = n.Node
	}
	return out
}
