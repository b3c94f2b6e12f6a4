package netmodes

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkIfExists returns the link named name, or nil when there is none.
func LinkIfExists(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	return l, nil
}

// SyncAddresses makes want the only IPv4 addresses of link.
func SyncAddresses(h *netlink.Handle, link netlink.Link, want ...netip.Prefix) (Changes, error) {
	var ch Changes
	name := link.Attrs().Name
	have, err := Addresses(h, link)
	if err != nil {
		return ch, err
	}
	for _, a := range have {
		if contains(want, a) {
			continue
		}
		if err := h.AddrDel(link, &netlink.Addr{IPNet: ipNet(a)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return ch, fmt.Errorf("delete address %s from %s: %w", a, name, err)
		}
		ch.Remove("address %s dev %s", a, name)
	}
	for _, a := range want {
		if contains(have, a) {
			continue
		}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
			return ch, fmt.Errorf("add address %s to %s: %w", a, name, err)
		}
		ch.Add("address %s dev %s", a, name)
	}
	return ch, nil
}

// Addresses lists link's IPv4 addresses.
func Addresses(h *netlink.Handle, link netlink.Link) ([]netip.Prefix, error) {
	as, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", link.Attrs().Name, err)
	}
	out := make([]netip.Prefix, 0, len(as))
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// SetMTU sets link's MTU when it differs from mtu.
func SetMTU(h *netlink.Handle, link netlink.Link, mtu int) (Changes, error) {
	var ch Changes
	old := link.Attrs().MTU
	if old == mtu {
		return ch, nil
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return ch, fmt.Errorf("set MTU %d on %s: %w", mtu, link.Attrs().Name, err)
	}
	ch.Remove("mtu %d dev %s", old, link.Attrs().Name)
	ch.Add("mtu %d dev %s", mtu, link.Attrs().Name)
	return ch, nil
}

// SetUp brings link up when it is down.
func SetUp(h *netlink.Handle, link netlink.Link) error {
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", link.Attrs().Name, err)
	}
	return nil
}

func contains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
