package netmodes

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes netmodes makes (the route's rtm_protocol,
// "proto 75" in `ip route`), so they can be found again and no other route
// is ever touched.
const RouteProtocol netlink.RouteProtocol = 75

// Route is a route to a peer's pod block.
type Route struct {
	Dst    netip.Prefix `json:"dst"`
	Via    netip.Addr   `json:"via"`
	Dev    string       `json:"dev"`
	OnLink bool         `json:"onlink,omitempty"`
}

// String is the route as `ip route` prints it: "10.42.2.0/24 via 10.42.2.0
// dev vxlan.calico onlink".
func (r Route) String() string {
	s := r.Dst.String()
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	if r.OnLink {
		s += " onlink"
	}
	return s
}

// PlainRoute is the unencapsulated route to peer's block: via its underlay
// address on the underlay interface dev.
func PlainRoute(peer Node, dev string) Route {
	return Route{Dst: peer.Block, Via: peer.IP(), Dev: dev}
}

// ValidatePeers checks self and peers and returns the peers that need a
// route, sorted by block: without self (a peer with self's block or
// address) and without duplicates. Overlapping blocks are an error.
func ValidatePeers(self Node, peers []Node) ([]Node, error) {
	if err := self.validate(); err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(peers))
	seen := map[netip.Prefix]Node{}
	for _, p := range peers {
		if err := p.validate(); err != nil {
			return nil, err
		}
		if p.Block == self.Block || p.IP() == self.IP() {
			continue
		}
		if q, ok := seen[p.Block]; ok {
			if q.IP() == p.IP() {
				continue
			}
			return nil, fmt.Errorf("pod block %s is claimed by both %s and %s", p.Block, q, p)
		}
		if p.Block.Overlaps(self.Block) {
			return nil, fmt.Errorf("pod block %s of %s overlaps this node's block %s", p.Block, p, self.Block)
		}
		seen[p.Block] = p
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Block.Addr().Less(out[j].Block.Addr()) })
	for i := 1; i < len(out); i++ {
		if out[i-1].Block.Overlaps(out[i].Block) {
			return nil, fmt.Errorf("pod blocks %s (%s) and %s (%s) overlap", out[i-1].Block, out[i-1], out[i].Block, out[i])
		}
	}
	return out, nil
}

// ListRoutes returns the routes netmodes made in the main table (those
// marked with RouteProtocol), sorted by destination.
func ListRoutes(h *netlink.Handle) ([]Route, error) {
	nrs, err := listOwn(h)
	if err != nil {
		return nil, err
	}
	names := linkNames(h)
	out := make([]Route, 0, len(nrs))
	for _, nr := range nrs {
		out = append(out, fromNetlink(nr, names))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dst.Addr().Less(out[j].Dst.Addr()) })
	return out, nil
}

// SyncRoutes makes the routes marked with RouteProtocol exactly want: it
// adds the missing, replaces those that differ and deletes the rest. It
// goes on past a route the kernel refuses and returns what it changed with
// the errors; a next hop that is not on-link from self is a
// *NotOnLinkError.
func SyncRoutes(h *netlink.Handle, self Node, want []Route) (Changes, error) {
	var ch Changes
	have, err := listOwn(h)
	if err != nil {
		return ch, err
	}
	names := linkNames(h)
	byDst := map[netip.Prefix]netlink.Route{}
	for _, nr := range have {
		byDst[fromNetlink(nr, names).Dst] = nr
	}
	wanted := map[netip.Prefix]bool{}
	var errs []error
	for _, r := range want {
		wanted[r.Dst] = true
		nr, err := toNetlink(h, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		old, ok := byDst[r.Dst]
		if ok && fromNetlink(old, names) == r {
			continue
		}
		if ok {
			err = h.RouteReplace(nr)
		} else {
			err = h.RouteAdd(nr)
		}
		switch {
		case errors.Is(err, unix.ENETUNREACH) && !r.OnLink:
			errs = append(errs, &NotOnLinkError{NextHop: r.Via, From: self.IP(), Block: r.Dst, Err: err})
			continue
		case errors.Is(err, unix.EEXIST):
			errs = append(errs, fmt.Errorf("add route %s: a route to %s exists that klab did not make (not proto %d): delete it or give the node another pod block", r, r.Dst, RouteProtocol))
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("add route %s: %w", r, err))
			continue
		}
		if ok {
			ch.Remove("route %s", fromNetlink(old, names))
		}
		ch.Add("route %s", r)
	}
	for _, nr := range have {
		r := fromNetlink(nr, names)
		if wanted[r.Dst] {
			continue
		}
		if err := h.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
			continue
		}
		ch.Remove("route %s", r)
	}
	return ch, errors.Join(errs...)
}

// DeleteRoutes deletes every route marked with RouteProtocol.
func DeleteRoutes(h *netlink.Handle) (Changes, error) {
	var ch Changes
	have, err := listOwn(h)
	if err != nil {
		return ch, err
	}
	names := linkNames(h)
	var errs []error
	for _, nr := range have {
		r := fromNetlink(nr, names)
		if err := h.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
			continue
		}
		ch.Remove("route %s", r)
	}
	return ch, errors.Join(errs...)
}

func listOwn(h *netlink.Handle) ([]netlink.Route, error) {
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return rs, nil
}

func linkNames(h *netlink.Handle) map[int]string {
	names := map[int]string{}
	links, err := h.LinkList()
	if err != nil {
		return names
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	return names
}

func fromNetlink(nr netlink.Route, names map[int]string) Route {
	var r Route
	if nr.Dst != nil {
		if a, ok := netip.AddrFromSlice(nr.Dst.IP); ok {
			ones, _ := nr.Dst.Mask.Size()
			r.Dst = netip.PrefixFrom(a.Unmap(), ones)
		}
	}
	if a, ok := netip.AddrFromSlice(nr.Gw); ok {
		r.Via = a.Unmap()
	}
	r.Dev = names[nr.LinkIndex]
	if r.Dev == "" && nr.LinkIndex != 0 {
		r.Dev = fmt.Sprintf("if%d", nr.LinkIndex)
	}
	r.OnLink = nr.Flags&int(netlink.FLAG_ONLINK) != 0
	return r
}

func toNetlink(h *netlink.Handle, r Route) (*netlink.Route, error) {
	l, err := h.LinkByName(r.Dev)
	if err != nil {
		return nil, fmt.Errorf("route %s: device %s: %w", r, r.Dev, err)
	}
	nr := &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), 32)},
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
	}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr, nil
}
