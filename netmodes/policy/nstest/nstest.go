// Package nstest builds the network namespaces that the policy's and the
// proxy's tests run in: a node namespace whose pods are wired the Calico
// way (a cali veth without address on the node, a /32 route to the pod; in
// the pod eth0 with a /32 and a default route via 169.254.1.1), and
// outside hosts on the node's underlay. Names start with ts-; everything is
// deleted when the test ends. Pods serve TCP and UDP with a server that
// answers with their name.
package nstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/klab-dev/klab/netmodes"
)

// NS is a namespace of the lab.
type NS struct {
	*netmodes.Netns
	Name string
	Path string
	fd   netns.NsHandle
}

// Lab is a node namespace with pods and outside hosts.
type Lab struct {
	t      testing.TB
	prefix string
	Node   *NS
	// NodeIP is the node's underlay address (192.168.251.1).
	NodeIP netip.Addr
	lan    *NS // the underlay: a bridge the node and outside hosts join
	all    []*NS
	hosts  int
}

// Pod is a pod namespace.
type Pod struct {
	*NS
	PodName string
	IP      netip.Addr
	// Veth is the host side's name (cali…).
	Veth string
}

// New makes a node namespace ts-XXXXXX-node with forwarding on and an
// underlay 192.168.251.0/24 (the node is .1).
func New(t testing.TB) *Lab {
	t.Helper()
	id := make([]byte, 3)
	rand.Read(id)
	l := &Lab{t: t, prefix: "ts-" + hex.EncodeToString(id), NodeIP: netip.MustParseAddr("192.168.251.1")}
	t.Cleanup(l.destroy)
	l.lan = l.newNS("lan")
	must(t, l.lan.Netlink().LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}))
	must(t, setUp(l.lan, "br0"))
	l.Node = l.newNS("node")
	l.sysctl(l.Node, "net/ipv4/ip_forward", "1")
	l.wire(l.Node, "eth0", "node", l.NodeIP)
	// Like a klab node, a default route to the underlay's gateway (here
	// none answers).
	eth0, err := l.Node.Netlink().LinkByName("eth0")
	must(t, err)
	must(t, l.Node.Netlink().RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.IPv4(192, 168, 251, 254)}))
	return l
}

// Host adds an outside host on the underlay (192.168.251.2, .3 …) with a
// route to the pod network via the node.
func (l *Lab) Host(name string) (*NS, netip.Addr) {
	l.t.Helper()
	l.hosts++
	ip := netip.AddrFrom4([4]byte{192, 168, 251, byte(1 + l.hosts)})
	ns := l.newNS(name)
	l.wire(ns, "eth0", name, ip)
	eth0, err := ns.Netlink().LinkByName("eth0")
	must(l.t, err)
	must(l.t, ns.Netlink().RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: l.NodeIP.AsSlice()}))
	return ns, ip
}

// Pod adds a pod with address ip, wired to the node.
func (l *Lab) Pod(name string, ip netip.Addr) *Pod {
	t := l.t
	t.Helper()
	p := &Pod{NS: l.newNS(name), PodName: name, IP: ip, Veth: "cali" + name}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.Veth}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(p.fd))}
	must(t, l.Node.Netlink().LinkAdd(v))
	hl, err := l.Node.Netlink().LinkByName(p.Veth)
	must(t, err)
	must(t, l.Node.Netlink().LinkSetUp(hl))
	must(t, l.Node.Netlink().RouteAdd(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipNet(netip.PrefixFrom(ip, 32)), Scope: netlink.SCOPE_LINK}))
	ph := p.Netlink()
	pl, err := ph.LinkByName("eth0")
	must(t, err)
	must(t, ph.AddrAdd(pl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ip, 32))}))
	must(t, ph.LinkSetUp(pl))
	gw := net.IPv4(169, 254, 1, 1)
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}))
	must(t, ph.RouteAdd(&netlink.Route{LinkIndex: pl.Attrs().Index, Gw: gw}))
	must(t, ph.NeighAdd(&netlink.Neigh{LinkIndex: pl.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: gw, HardwareAddr: hl.Attrs().HardwareAddr}))
	return p
}

// Serve answers on TCP and UDP port in ns with name, until the test ends:
// a TCP connection gets name and is closed, a datagram gets name back.
func Serve(t testing.TB, ns *NS, port int, name string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln, err := ns.Listen(ctx, "tcp4", fmt.Sprintf(":%d", port))
	must(t, err)
	pc, err := ns.ListenPacket(ctx, "udp4", fmt.Sprintf(":%d", port))
	must(t, err)
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, name)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name), from)
		}
	}()
}

// Get connects over TCP from ns to addr and returns what it answers.
func Get(ns *NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.Dial(ctx, "tcp4", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// Ask sends a datagram from ns to addr and returns the answer.
func Ask(ns *NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.Dial(ctx, "udp4", addr.String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// Refused reports whether err is a refused connection.
func Refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "refused")
}

func (l *Lab) newNS(suffix string) *NS {
	t := l.t
	t.Helper()
	name := l.prefix + "-" + suffix
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
	l.all = append(l.all, ns)
	must(t, setUp(ns, "lo"))
	return ns
}

// wire joins ns to the underlay bridge with a veth dev (peer in the LAN
// namespace) and gives it addr/24.
func (l *Lab) wire(ns *NS, dev, peer string, addr netip.Addr) {
	t := l.t
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: peer, PeerNamespace: netlink.NsFd(int(l.lan.fd))}
	must(t, ns.Netlink().LinkAdd(v))
	br, err := l.lan.Netlink().LinkByName("br0")
	must(t, err)
	pl, err := l.lan.Netlink().LinkByName(peer)
	must(t, err)
	must(t, l.lan.Netlink().LinkSetMaster(pl, br))
	must(t, l.lan.Netlink().LinkSetUp(pl))
	dl, err := ns.Netlink().LinkByName(dev)
	must(t, err)
	must(t, ns.Netlink().AddrAdd(dl, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, 24))}))
	must(t, ns.Netlink().LinkSetUp(dl))
}

func (l *Lab) sysctl(ns *NS, key, value string) {
	l.t.Helper()
	must(l.t, ns.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	}))
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

// createNamed makes a named namespace without moving the caller's thread.
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
