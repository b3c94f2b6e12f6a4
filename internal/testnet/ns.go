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
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/klab-dev/klab/internal/nsrun"
	"github.com/klab-dev/klab/netmodes"
)

// NS is a named network namespace of a lab.
type NS struct {
	*netmodes.Netns
	Name string
	// Path is the namespace's file, /run/netns/NAME.
	Path string
	fd   netns.NsHandle
}

// base is what every lab has: the namespaces it made, named PREFIX-suffix
// and deleted newest first when the test ends, and the LAN namespace,
// whose bridges br0, br1 … are the underlay's subnets.
type base struct {
	t      testing.TB
	prefix string // kind and six random hex digits: kt-nm-XXXXXX
	ipv6   bool   // false: IPv6 is off in every namespace
	lan    *NS
	all    []*NS // in creation order
}

// newBase starts a lab whose namespace names start with kind (kt-nm-,
// ts-) and whose LAN has a bridge per subnet.
func newBase(t testing.TB, kind string, subnets int, ipv6 bool) *base {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id)
	b := &base{t: t, prefix: kind + hex.EncodeToString(id), ipv6: ipv6}
	t.Cleanup(b.destroy)
	b.lan = b.newNS("lan")
	for s := range subnets {
		br := fmt.Sprintf("br%d", s)
		must(t, b.lan.Netlink().LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}}))
		must(t, setUp(b.lan, br))
	}
	return b
}

// newNS creates the namespace PREFIX-suffix with lo up.
func (b *base) newNS(suffix string) *NS {
	t := b.t
	t.Helper()
	name := b.prefix + "-" + suffix
	fd, err := createNamed(name)
	must(t, err)
	path := filepath.Join("/run/netns", name)
	nm, err := netmodes.OpenNetns(path)
	if err != nil {
		fd.Close()
		netns.DeleteNamed(name)
		t.Fatal(err)
	}
	ns := &NS{Netns: nm, Name: name, Path: path, fd: fd}
	b.all = append(b.all, ns)
	must(t, setUp(ns, "lo"))
	if !b.ipv6 {
		b.sysctl(ns, "net/ipv6/conf/all/disable_ipv6", "1")
		b.sysctl(ns, "net/ipv6/conf/default/disable_ipv6", "1")
	}
	return ns
}

// createNamed makes a named namespace without moving the caller's thread.
func createNamed(name string) (netns.NsHandle, error) {
	cur, err := netns.Get()
	if err != nil {
		return 0, fmt.Errorf("open this network namespace: %w", err)
	}
	defer cur.Close()
	h := netns.None()
	err = nsrun.In(cur, "this network namespace", func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		h.Close()
		return 0, fmt.Errorf("create network namespace %s: %w", name, err)
	}
	return h, nil
}

func (b *base) destroy() {
	for i := len(b.all) - 1; i >= 0; i-- {
		ns := b.all[i]
		ns.Netns.Close()
		ns.fd.Close()
		if err := netns.DeleteNamed(ns.Name); err != nil {
			b.t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	}
}

// sysctl writes a /proc/sys/net value inside ns.
func (b *base) sysctl(ns *NS, key, value string) {
	b.t.Helper()
	must(b.t, ns.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	}))
}

// wire connects ns to the bridge of subnet sub with a veth (dev in ns,
// peer in the LAN namespace) and gives it addr/24.
func (b *base) wire(ns *NS, dev, peer string, sub int, addr netip.Addr) {
	t := b.t
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: peer, PeerNamespace: netlink.NsFd(int(b.lan.fd))}
	must(t, ns.Netlink().LinkAdd(v))
	br, err := b.lan.Netlink().LinkByName(fmt.Sprintf("br%d", sub))
	must(t, err)
	pl, err := b.lan.Netlink().LinkByName(peer)
	must(t, err)
	must(t, b.lan.Netlink().LinkSetMaster(pl, br))
	must(t, b.lan.Netlink().LinkSetUp(pl))
	dl, err := ns.Netlink().LinkByName(dev)
	must(t, err)
	must(t, ns.Netlink().AddrAdd(dl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 24))}))
	must(t, ns.Netlink().LinkSetUp(dl))
}

// route adds a route in ns to dst via gw on eth0; the zero dst is the
// default route.
func (b *base) route(ns *NS, dst netip.Prefix, gw netip.Addr) {
	b.t.Helper()
	eth0, err := ns.Netlink().LinkByName("eth0")
	must(b.t, err)
	r := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.AsSlice()}
	if dst.IsValid() {
		r.Dst = ipNet(dst)
	}
	must(b.t, ns.Netlink().RouteAdd(r))
}

// wirePod wires pod to node the Calico way: in the pod eth0 with ip/32 and
// a default route via 169.254.1.1; on the node the veth host, without
// address, and a /32 route to the pod. mtu 0 leaves the veth's default.
func (b *base) wirePod(node, pod *NS, host string, ip netip.Addr, mtu int) {
	t := b.t
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MTU: mtu}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod.fd))}
	must(t, node.Netlink().LinkAdd(v))
	hl, err := node.Netlink().LinkByName(host)
	must(t, err)
	must(t, node.Netlink().LinkSetUp(hl))
	must(t, node.Netlink().RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipNet(netip.PrefixFrom(ip, 32)), Scope: netlink.SCOPE_LINK}))
	ph := pod.Netlink()
	pl, err := ph.LinkByName("eth0")
	must(t, err)
	must(t, ph.AddrAdd(pl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ip, 32))}))
	must(t, ph.LinkSetUp(pl))
	gw := net.IPv4(169, 254, 1, 1)
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}))
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gw}))
	must(t, ph.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hl.Attrs().HardwareAddr}))
}

// Start starts cmd in ns: a process forked from a thread inside the
// namespace lives in it.
func Start(ns *NS, cmd *exec.Cmd) error {
	return ns.Do(cmd.Start)
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
