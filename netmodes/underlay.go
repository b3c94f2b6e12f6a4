package netmodes

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Underlay is the interface that carries a node's underlay address.
type Underlay struct {
	Name  string
	Index int
	// MTU is the interface's MTU, or Config.MTU when that is set.
	MTU int
}

// FindUnderlay finds the interface holding self's underlay address.
func FindUnderlay(h *netlink.Handle, cfg Config, self Node) (Underlay, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return Underlay{}, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != self.IP() {
			continue
		}
		l, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return Underlay{}, fmt.Errorf("interface of %s: %w", self.IP(), err)
		}
		u := Underlay{Name: l.Attrs().Name, Index: l.Attrs().Index, MTU: l.Attrs().MTU}
		if cfg.MTU > 0 {
			u.MTU = cfg.MTU
		}
		return u, nil
	}
	return Underlay{}, fmt.Errorf("underlay address %s of node %s is on no interface here: check the node's underlay address", self.IP(), self.Name)
}
