// Package testnet builds the namespaces the netmodes tests run in: "node"
// namespaces on an underlay of one or two subnets (two behind a router
// namespace), and a "pod" namespace per node on a plain veth with /32
// routes, the way Calico wires pods, without the CNI plugin. Every name
// starts with kt-nm-; addresses are 172.31.0.0/16 (underlay) and
// 10.251.0.0/16 (pods). Everything is deleted when the test ends.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/klab-dev/klab/netmodes"
)

// PodMTU is the pods' MTU: what the smallest tunnel (vxlan) leaves of the
// underlay's 1500.
const PodMTU = 1500 - netmodes.VXLANOverhead

// Lab is a set of namespaces: the underlay (bridges), maybe a router, the
// nodes and their pods.
type Lab struct {
	t      testing.TB
	Prefix string // kt-nm-XXXXXX
	LAN    *NS    // holds one bridge per subnet
	Router *NS    // joins the subnets (with two subnets)
	Nodes  []*Node
	// Subnets are the underlay subnets, 172.31.0.0/24 and 172.31.1.0/24.
	Subnets []netip.Prefix

	all []*NS // in creation order
}

// NS is a named network namespace of the lab.
type NS struct {
	*netmodes.Netns
	Name string
	fd   netns.NsHandle
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
	id := make([]byte, 3)
	rand.Read(id)
	l := &Lab{t: t, Prefix: "kt-nm-" + hex.EncodeToString(id)}
	t.Cleanup(l.destroy)
	for s := range subnets {
		l.Subnets = append(l.Subnets, netip.MustParsePrefix(fmt.Sprintf("172.31.%d.0/24", s)))
	}
	l.LAN = l.newNS("lan")
	for s := range subnets {
		must(t, l.LAN.Netlink().LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("br%d", s)}}))
		must(t, setUp(l.LAN, fmt.Sprintf("br%d", s)))
	}
	if subnets > 1 {
		l.Router = l.newNS("r")
		l.Sysctl(l.Router, "net/ipv4/ip_forward", "1")
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
	l.Sysctl(nd.NS, "net/ipv4/ip_forward", "1")
	l.wire(nd.NS, "eth0", name, sub, nd.IP())
	l.routeVia(nd.NS, sub)
	nd.Pod = l.newNS(name + "-pod")
	l.addPod(nd)
	l.Nodes = append(l.Nodes, nd)
}

// wire connects ns to the bridge of subnet sub with a veth (dev in ns,
// peer in the LAN namespace) and gives it addr.
func (l *Lab) wire(ns *NS, dev, peer string, sub int, addr netip.Addr) {
	t := l.t
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: peer, PeerNamespace: netlink.NsFd(int(l.LAN.fd))}
	must(t, ns.Netlink().LinkAdd(v))
	br, err := l.LAN.Netlink().LinkByName(fmt.Sprintf("br%d", sub))
	must(t, err)
	pl, err := l.LAN.Netlink().LinkByName(peer)
	must(t, err)
	must(t, l.LAN.Netlink().LinkSetMaster(pl, br))
	must(t, l.LAN.Netlink().LinkSetUp(pl))
	dl, err := ns.Netlink().LinkByName(dev)
	must(t, err)
	must(t, ns.Netlink().AddrAdd(dl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 24))}))
	must(t, ns.Netlink().LinkSetUp(dl))
}

// addPod wires a pod the Calico way: eth0 with a /32 and a default route
// via 169.254.1.1 in the pod; on the node a veth without address and a /32
// route to the pod.
func (l *Lab) addPod(nd *Node) {
	t := l.t
	host := "cali" + nd.Name
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MTU: PodMTU}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(nd.Pod.fd))}
	must(t, nd.NS.Netlink().LinkAdd(v))
	hl, err := nd.NS.Netlink().LinkByName(host)
	must(t, err)
	must(t, nd.NS.Netlink().LinkSetUp(hl))
	must(t, nd.NS.Netlink().RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipNet(netip.PrefixFrom(nd.PodIP, 32)), Scope: netlink.SCOPE_LINK}))
	ph := nd.Pod.Netlink()
	pl, err := ph.LinkByName("eth0")
	must(t, err)
	must(t, ph.LinkSetMTU(pl, PodMTU))
	must(t, ph.AddrAdd(pl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(nd.PodIP, 32))}))
	must(t, ph.LinkSetUp(pl))
	gw := net.IPv4(169, 254, 1, 1)
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}))
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gw}))
	must(t, ph.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hl.Attrs().HardwareAddr}))
}

// newNS creates the namespace PREFIX-suffix with lo up and IPv6 off.
func (l *Lab) newNS(suffix string) *NS {
	t := l.t
	name := l.Prefix + "-" + suffix
	fd, err := createNamed(name)
	must(t, err)
	nm, err := netmodes.OpenNetns(filepath.Join("/run/netns", name))
	if err != nil {
		fd.Close()
		netns.DeleteNamed(name)
		t.Fatal(err)
	}
	ns := &NS{Netns: nm, Name: name, fd: fd}
	l.all = append(l.all, ns)
	must(t, setUp(ns, "lo"))
	l.Sysctl(ns, "net/ipv6/conf/all/disable_ipv6", "1")
	l.Sysctl(ns, "net/ipv6/conf/default/disable_ipv6", "1")
	return ns
}

// createNamed makes a named namespace without moving the caller.
func createNamed(name string) (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			ch <- result{h: h, err: serr} // the thread dies with this goroutine
			return
		}
		runtime.UnlockOSThread()
		ch <- result{h: h, err: err}
	}()
	r := <-ch
	if r.err != nil {
		return 0, fmt.Errorf("create network namespace %s: %w", name, r.err)
	}
	return r.h, nil
}

// Sysctl writes a /proc/sys/net value inside ns.
func (l *Lab) Sysctl(ns *NS, key, value string) {
	l.t.Helper()
	must(l.t, ns.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	}))
}

// Start starts cmd in ns: a process forked from a thread inside the
// namespace lives in it.
func Start(ns *NS, cmd *exec.Cmd) error {
	return ns.Do(cmd.Start)
}

func (l *Lab) destroy() {
	for i := len(l.all) - 1; i >= 0; i-- {
		ns := l.all[i]
		ns.Netns.Close()
		ns.fd.Close()
		if err := netns.DeleteNamed(ns.Name); err != nil {
			l.t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	}
}

func setUp(ns *NS, name string) error {
	lk, err := ns.Netlink().LinkByName(name)
	if err != nil {
		return err
	}
	return ns.Netlink().LinkSetUp(lk)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
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
	eth0, err := ns.Netlink().LinkByName("eth0")
	must(l.t, err)
	for s, p := range l.Subnets {
		if s != sub {
			must(l.t, ns.Netlink().RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(p), Gw: gateway(l.Subnets[sub]).AsSlice()}))
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
