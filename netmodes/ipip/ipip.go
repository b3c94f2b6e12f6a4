// Package ipip is Calico's IPIP network mode: a tunl0 device (MTU underlay
// − 20) with the node's tunnel address, and per peer a route
// `BLOCK via PEER-UNDERLAY-IP dev tunl0 onlink`, the peers usually learned
// over BGP.
//
// Where the kernel has ipip (it does in VMs), tunl0 is the kernel's device
// (local any, remote any: the outer destination is the route's gateway).
// Where it has not (no ipip module, as in some containers), the same
// routes go to a TUN device named tunl0 and klab encapsulates in userspace:
// one goroutine reads inner packets from the TUN device and sends each
// through a raw IP-protocol-4 socket to the peer whose block holds its
// destination, so the kernel writes a real outer IPv4 header with protocol
// 4; another receives protocol-4 packets from known peers, strips the
// outer header and writes the inner packet to the TUN device.
package ipip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes"
)

// Device is the name of the tunnel device, as in Calico and the kernel.
const Device = "tunl0"

// Mode is the ipip network mode of one node.
type Mode struct {
	ctx context.Context
	ns  *netmodes.Netns

	mu   sync.Mutex
	impl string        // the implementation in place, "" before Apply
	enc  *encapsulator // the userspace encapsulator, when it runs
}

// New is the netmodes.Factory of the ipip mode; the userspace encapsulator
// stops when ctx ends.
func New(ctx context.Context, ns *netmodes.Netns) netmodes.Mode { return &Mode{ctx: ctx, ns: ns} }

// Kind implements netmodes.Mode.
func (m *Mode) Kind() netmodes.Kind { return netmodes.IPIP }

// Implementation implements netmodes.Mode: netmodes.Kernel or
// netmodes.Userspace.
func (m *Mode) Implementation() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.impl != "" {
		return m.impl
	}
	if kernelHasIPIP(m.ns.Netlink()) {
		return netmodes.Kernel
	}
	return netmodes.Userspace
}

// Stats is what the userspace encapsulator counted; zero for the kernel
// implementation.
func (m *Mode) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enc == nil {
		return Stats{}
	}
	return m.enc.stats()
}

// Apply implements netmodes.Mode.
func (m *Mode) Apply(ctx context.Context, cfg netmodes.Config, self netmodes.Node, peers []netmodes.Node) (netmodes.Changes, error) {
	var ch netmodes.Changes
	peers, err := netmodes.ValidatePeers(self, peers)
	if err != nil {
		return ch, err
	}
	h := m.ns.Netlink()
	u, err := netmodes.FindUnderlay(h, cfg, self)
	if err != nil {
		return ch, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	impl := cfg.Implementation
	if impl == "" {
		impl = netmodes.Userspace
		if kernelHasIPIP(h) {
			impl = netmodes.Kernel
		}
	}
	if m.impl != "" && m.impl != impl {
		rch, err := m.removeDevice()
		ch.Merge(rch)
		if err != nil {
			return ch, err
		}
	}
	plan := PlanFor(cfg, self, peers, u.Name)
	mtu := u.MTU - netmodes.IPIPOverhead
	var link netlink.Link
	var dch netmodes.Changes
	if impl == netmodes.Kernel {
		link, dch, err = m.ensureKernel(mtu)
		if errors.Is(err, unix.EOPNOTSUPP) && cfg.Implementation == "" {
			impl = netmodes.Userspace
		} else if err != nil {
			return ch, err
		}
	}
	if impl == netmodes.Userspace {
		link, dch, err = m.ensureUserspace(self, mtu)
		if err != nil {
			return ch, err
		}
		m.enc.table.Store(plan.Table)
	}
	m.impl = impl
	ch.Merge(dch)
	ach, err := netmodes.SyncAddresses(h, link, netip.PrefixFrom(self.TunnelAddress(), 32))
	ch.Merge(ach)
	if err != nil {
		return ch, err
	}
	if err := netmodes.SetUp(h, link); err != nil {
		return ch, err
	}
	rch, err := netmodes.SyncRoutes(h, self, plan.Routes)
	ch.Merge(rch)
	return ch, err
}

// Plan is what the ipip mode programs for a node.
type Plan struct {
	Routes []netmodes.Route
	// Table is the userspace encapsulator's peer table: the encapsulated
	// peers' blocks.
	Table *PeerTable
}

// PlanFor computes self's routes towards peers (already validated): via
// tunl0 to each encapsulated peer, and plain routes on the underlay
// interface dev to same-subnet peers in cross-subnet mode.
func PlanFor(cfg netmodes.Config, self netmodes.Node, peers []netmodes.Node, dev string) Plan {
	var p Plan
	blocks := map[netip.Prefix]netip.Addr{}
	for _, peer := range peers {
		if !cfg.Encapsulates(self, peer) {
			p.Routes = append(p.Routes, netmodes.PlainRoute(peer, dev))
			continue
		}
		p.Routes = append(p.Routes, netmodes.Route{Dst: peer.Block, Via: peer.IP(), Dev: Device, OnLink: true})
		blocks[peer.Block] = peer.IP()
	}
	p.Table = NewPeerTable(blocks)
	return p
}

// ensureKernel makes the kernel's tunl0 ready: the fallback device the ipip
// module creates in every namespace, or one made here.
func (m *Mode) ensureKernel(mtu int) (netlink.Link, netmodes.Changes, error) {
	var ch netmodes.Changes
	h := m.ns.Netlink()
	link, err := netmodes.LinkIfExists(h, Device)
	if err != nil {
		return nil, ch, err
	}
	if link != nil && link.Type() != "ipip" {
		return nil, ch, fmt.Errorf("%s is a %s device, not the kernel's ipip device: delete it (ip link del %s)", Device, link.Type(), Device)
	}
	if link == nil {
		t := &netlink.Iptun{LinkAttrs: netlink.LinkAttrs{Name: Device, MTU: mtu}, PMtuDisc: 1}
		if err := h.LinkAdd(t); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil, ch, fmt.Errorf("create %s (ipip, local any, remote any): %w: the kernel has no ipip: load it (modprobe ipip) or use the userspace implementation", Device, err)
			}
			return nil, ch, fmt.Errorf("create %s (ipip, local any, remote any): %w", Device, err)
		}
		if link, err = h.LinkByName(Device); err != nil {
			return nil, ch, fmt.Errorf("find %s: %w", Device, err)
		}
		ch.Add("device %s", Device)
	} else if link.Attrs().Flags&unix.IFF_UP == 0 {
		ch.Add("device %s", Device)
	}
	mch, err := netmodes.SetMTU(h, link, mtu)
	ch.Merge(mch)
	return link, ch, err
}

// ensureUserspace starts the encapsulator with its TUN device, or restarts
// it when it stopped (the device was deleted under it).
func (m *Mode) ensureUserspace(self netmodes.Node, mtu int) (_ netlink.Link, ch netmodes.Changes, err error) {
	h := m.ns.Netlink()
	created := false
	if m.enc != nil && !m.enc.alive() {
		m.enc.close()
		m.enc = nil
		ch.Remove("device %s (its encapsulator stopped)", Device)
	}
	if m.enc != nil && m.enc.local != self.IP() {
		m.enc.close()
		m.enc = nil
		ch.Remove("device %s (the underlay address changed)", Device)
	}
	if m.enc == nil {
		link, err := netmodes.LinkIfExists(h, Device)
		if err != nil {
			return nil, ch, err
		}
		if link != nil {
			return nil, ch, fmt.Errorf("%s exists already (a %s device) and is not this process's: %s",
				Device, link.Type(), hintExisting(link))
		}
		enc, err := openEncapsulator(m.ns, self.IP())
		if err != nil {
			return nil, ch, err
		}
		defer func() {
			if err != nil {
				enc.close()
			}
		}()
		enc.start(m.ctx)
		m.enc = enc
		created = true
		defer func() {
			if err != nil {
				m.enc = nil
			}
		}()
		ch.Add("device %s", Device)
	}
	link, err := h.LinkByName(Device)
	if err != nil {
		return nil, ch, fmt.Errorf("find %s: %w", Device, err)
	}
	mch, err := netmodes.SetMTU(h, link, mtu)
	if !created {
		ch.Merge(mch)
	}
	return link, ch, err
}

func hintExisting(l netlink.Link) string {
	if l.Type() == "ipip" {
		return "the kernel has ipip here, use the kernel implementation"
	}
	return "another process holds it; stop it or delete the device"
}

// Remove implements netmodes.Mode: the routes, then the device (the
// kernel's fallback tunl0 cannot be deleted: it is set down and its
// address removed).
func (m *Mode) Remove(ctx context.Context) (netmodes.Changes, error) {
	ch, err := netmodes.DeleteRoutes(m.ns.Netlink())
	if err != nil {
		return ch, err
	}
	rch, err := m.Release(ctx)
	ch.Merge(rch)
	return ch, err
}

// Release implements netmodes.Mode: it stops the encapsulator and deletes
// (or disables) tunl0.
func (m *Mode) Release(ctx context.Context) (netmodes.Changes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch, err := m.removeDevice()
	if err == nil {
		m.impl = ""
	}
	return ch, err
}

// removeDevice stops the encapsulator and deletes (or disables) tunl0.
func (m *Mode) removeDevice() (netmodes.Changes, error) {
	var ch netmodes.Changes
	h := m.ns.Netlink()
	link, err := netmodes.LinkIfExists(h, Device)
	if err != nil {
		return ch, err
	}
	if link != nil {
		addrs, err := netmodes.Addresses(h, link)
		if err != nil {
			return ch, err
		}
		for _, a := range addrs {
			ch.Remove("address %s dev %s", a, Device)
		}
	}
	if m.enc != nil {
		m.enc.close()
		m.enc = nil
		if link != nil {
			ch.Remove("device %s", Device)
		}
		return ch, nil
	}
	if link == nil {
		return ch, nil
	}
	wasUp := link.Attrs().Flags&unix.IFF_UP != 0
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return ch, fmt.Errorf("delete %s: %w", Device, err)
	}
	// Deleting the kernel's fallback device succeeds and does nothing.
	still, err := netmodes.LinkIfExists(h, Device)
	if err != nil {
		return ch, err
	}
	if still == nil {
		ch.Remove("device %s", Device)
		return ch, nil
	}
	if _, err := netmodes.SyncAddresses(h, still); err != nil {
		return ch, err
	}
	if wasUp {
		if err := h.LinkSetDown(still); err != nil {
			return ch, fmt.Errorf("set %s down: %w", Device, err)
		}
		ch.Remove("device %s", Device)
	}
	return ch, nil
}

// kernelHasIPIP reports whether the kernel has ipip: tunl0 is there, or the
// module is loaded, built in or can be loaded.
func kernelHasIPIP(h *netlink.Handle) bool {
	if l, err := netmodes.LinkIfExists(h, Device); err == nil && l != nil && l.Type() == "ipip" {
		return true
	}
	if _, err := os.Stat("/sys/module/ipip"); err == nil {
		return true
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	release := unix.ByteSliceToString(u.Release[:])
	mods, _ := filepath.Glob(filepath.Join("/lib/modules", release, "kernel/net/ipv4/ipip.ko*"))
	return len(mods) > 0
}
