// Package vxlan is Calico's VXLAN network mode: a vxlan.calico device (VNI
// 4096, UDP 4789, learning off) whose address is the node's tunnel address,
// and per peer a static FDB entry (peer VTEP MAC → peer underlay address), a
// permanent neighbour entry (peer VTEP address → peer VTEP MAC) and a route
// to the peer's pod block via its VTEP address. The peers come from the
// API; no BGP is needed.
package vxlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes"
)

// Device is the name of the VXLAN device, as in Calico.
const Device = "vxlan.calico"

// Mode is the vxlan network mode of one node.
type Mode struct {
	ns *netmodes.Netns
}

// New is the netmodes.Factory of the vxlan mode.
func New(_ context.Context, ns *netmodes.Netns) netmodes.Mode { return &Mode{ns: ns} }

// Kind implements netmodes.Mode.
func (m *Mode) Kind() netmodes.Kind { return netmodes.VXLAN }

// Implementation implements netmodes.Mode: the kernel's vxlan driver.
func (m *Mode) Implementation() string { return netmodes.Kernel }

// Apply implements netmodes.Mode.
func (m *Mode) Apply(ctx context.Context, cfg netmodes.Config, self netmodes.Node, peers []netmodes.Node) (netmodes.Changes, error) {
	var ch netmodes.Changes
	cfg = cfg.WithDefaults()
	peers, err := netmodes.ValidatePeers(self, peers)
	if err != nil {
		return ch, err
	}
	h := m.ns.Netlink()
	u, err := netmodes.FindUnderlay(h, cfg, self)
	if err != nil {
		return ch, err
	}
	link, dch, err := ensureDevice(h, cfg, self, u)
	ch.Merge(dch)
	if err != nil {
		return ch, err
	}
	plan := PlanFor(cfg, self, peers, u.Name)
	fch, err := syncFDB(h, link, plan.FDB)
	ch.Merge(fch)
	if err != nil {
		return ch, err
	}
	nch, err := syncNeighbors(h, link, plan.Neighbors)
	ch.Merge(nch)
	if err != nil {
		return ch, err
	}
	rch, err := netmodes.SyncRoutes(h, self, plan.Routes)
	ch.Merge(rch)
	return ch, err
}

// Remove implements netmodes.Mode: routes, FDB and neighbour entries, the
// address and the device.
func (m *Mode) Remove(ctx context.Context) (netmodes.Changes, error) {
	ch, err := netmodes.DeleteRoutes(m.ns.Netlink())
	if err != nil {
		return ch, err
	}
	rch, err := m.Release(ctx)
	ch.Merge(rch)
	return ch, err
}

// Release implements netmodes.Mode: FDB and neighbour entries, the address
// and the device.
func (m *Mode) Release(ctx context.Context) (netmodes.Changes, error) {
	var ch netmodes.Changes
	h := m.ns.Netlink()
	link, err := netmodes.LinkIfExists(h, Device)
	if err != nil || link == nil {
		return ch, err
	}
	// The entries go with the device; list them to say what went.
	fdb, err := listFDB(h, link)
	if err != nil {
		return ch, err
	}
	for _, f := range fdb {
		ch.Remove("%s", f)
	}
	neighs, err := listNeighbors(h, link)
	if err != nil {
		return ch, err
	}
	for _, n := range neighs {
		ch.Remove("%s", n)
	}
	addrs, err := netmodes.Addresses(h, link)
	if err != nil {
		return ch, err
	}
	for _, a := range addrs {
		ch.Remove("address %s dev %s", a, Device)
	}
	if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return ch, fmt.Errorf("delete %s: %w", Device, err)
	}
	ch.Remove("device %s", Device)
	return ch, nil
}

// ensureDevice creates vxlan.calico, or fixes it, and gives it the tunnel
// address; a device it created is deleted again if a later step fails.
func ensureDevice(h *netlink.Handle, cfg netmodes.Config, self netmodes.Node, u netmodes.Underlay) (_ netlink.Link, ch netmodes.Changes, err error) {
	mtu := u.MTU - netmodes.VXLANOverhead
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: Device, MTU: mtu, HardwareAddr: self.MAC()},
		VxlanId:      cfg.VNI,
		VtepDevIndex: u.Index,
		SrcAddr:      self.IP().AsSlice(),
		Port:         cfg.Port,
		Learning:     false,
	}
	link, err := netmodes.LinkIfExists(h, Device)
	if err != nil {
		return nil, ch, err
	}
	if link != nil && !matches(link, want) {
		if err := h.LinkDel(link); err != nil {
			return nil, ch, fmt.Errorf("delete %s to re-create it: %w", Device, err)
		}
		ch.Remove("device %s %s", Device, describe(link))
		link = nil
	}
	if link == nil {
		if err := h.LinkAdd(want); err != nil {
			return nil, ch, fmt.Errorf("create %s (vni %d, port %d, local %s dev %s): %w", Device, cfg.VNI, cfg.Port, self.IP(), u.Name, err)
		}
		ch.Add("device %s", Device)
		defer func() {
			if err != nil {
				if derr := h.LinkDel(want); derr == nil {
					ch = netmodes.Changes{}
				}
			}
		}()
		if link, err = h.LinkByName(Device); err != nil {
			return nil, ch, fmt.Errorf("find %s: %w", Device, err)
		}
	}
	mch, err := netmodes.SetMTU(h, link, mtu)
	ch.Merge(mch)
	if err != nil {
		return nil, ch, err
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, self.MAC()) {
		if err := h.LinkSetHardwareAddr(link, self.MAC()); err != nil {
			return nil, ch, fmt.Errorf("set VTEP MAC %s on %s: %w", self.MAC(), Device, err)
		}
		ch.Remove("lladdr %s dev %s", link.Attrs().HardwareAddr, Device)
		ch.Add("lladdr %s dev %s", self.MAC(), Device)
	}
	ach, err := netmodes.SyncAddresses(h, link, netip.PrefixFrom(self.TunnelAddress(), 32))
	ch.Merge(ach)
	if err != nil {
		return nil, ch, err
	}
	if err := netmodes.SetUp(h, link); err != nil {
		return nil, ch, err
	}
	return link, ch, nil
}

// matches reports whether an existing link is the vxlan device we want, up
// to what can be changed in place (MTU, MAC, addresses).
func matches(l netlink.Link, want *netlink.Vxlan) bool {
	v, ok := l.(*netlink.Vxlan)
	return ok && v.VxlanId == want.VxlanId && v.Port == want.Port && v.SrcAddr.Equal(want.SrcAddr) &&
		v.VtepDevIndex == want.VtepDevIndex && !v.Learning
}

func describe(l netlink.Link) string {
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		return "(a " + l.Type() + " device)"
	}
	return fmt.Sprintf("(vni %d port %d local %s)", v.VxlanId, v.Port, v.SrcAddr)
}

func listFDB(h *netlink.Handle, link netlink.Link) ([]FDB, error) {
	ns, err := h.NeighList(link.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list FDB of %s: %w", Device, err)
	}
	var out []FDB
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.LinkIndex != link.Attrs().Index {
			continue
		}
		out = append(out, FDB{MAC: n.HardwareAddr, Dst: ip.Unmap()})
	}
	return out, nil
}

func syncFDB(h *netlink.Handle, link netlink.Link, want []FDB) (netmodes.Changes, error) {
	var ch netmodes.Changes
	have, err := listFDB(h, link)
	if err != nil {
		return ch, err
	}
	byMAC := map[string]FDB{}
	for _, f := range have {
		byMAC[f.MAC.String()] = f
	}
	wanted := map[string]bool{}
	for _, f := range want {
		wanted[f.MAC.String()] = true
		old, ok := byMAC[f.MAC.String()]
		if ok && old.Dst == f.Dst {
			continue
		}
		if err := h.NeighSet(fdbNeigh(link, f)); err != nil {
			return ch, fmt.Errorf("add %s: %w", f, err)
		}
		if ok {
			ch.Remove("%s", old)
		}
		ch.Add("%s", f)
	}
	for _, f := range have {
		if wanted[f.MAC.String()] {
			continue
		}
		if err := h.NeighDel(fdbNeigh(link, f)); err != nil && !errors.Is(err, unix.ENOENT) {
			return ch, fmt.Errorf("delete %s: %w", f, err)
		}
		ch.Remove("%s", f)
	}
	return ch, nil
}

func fdbNeigh(link netlink.Link, f FDB) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           f.Dst.AsSlice(),
		HardwareAddr: f.MAC,
	}
}

// listNeighbors lists the permanent neighbour entries of the device (the
// ones the mode makes; the kernel's own are left alone).
func listNeighbors(h *netlink.Handle, link netlink.Link) ([]Neighbor, error) {
	ns, err := h.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s: %w", Device, err)
	}
	var out []Neighbor
	for _, n := range ns {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		out = append(out, Neighbor{IP: ip.Unmap(), MAC: n.HardwareAddr})
	}
	return out, nil
}

func syncNeighbors(h *netlink.Handle, link netlink.Link, want []Neighbor) (netmodes.Changes, error) {
	var ch netmodes.Changes
	have, err := listNeighbors(h, link)
	if err != nil {
		return ch, err
	}
	byIP := map[netip.Addr]Neighbor{}
	for _, n := range have {
		byIP[n.IP] = n
	}
	wanted := map[netip.Addr]bool{}
	for _, n := range want {
		wanted[n.IP] = true
		old, ok := byIP[n.IP]
		if ok && bytes.Equal(old.MAC, n.MAC) {
			continue
		}
		if err := h.NeighSet(arpNeigh(link, n)); err != nil {
			return ch, fmt.Errorf("add %s: %w", n, err)
		}
		if ok {
			ch.Remove("%s", old)
		}
		ch.Add("%s", n)
	}
	for _, n := range have {
		if wanted[n.IP] {
			continue
		}
		if err := h.NeighDel(arpNeigh(link, n)); err != nil && !errors.Is(err, unix.ENOENT) {
			return ch, fmt.Errorf("delete %s: %w", n, err)
		}
		ch.Remove("%s", n)
	}
	return ch, nil
}

func arpNeigh(link netlink.Link, n Neighbor) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		IP:           n.IP.AsSlice(),
		HardwareAddr: n.MAC,
	}
}
