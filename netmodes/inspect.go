package netmodes

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// State is what a node's network namespace holds, for people to look at
// (klab net routes, the TUI): devices, the main routing table, the VXLAN
// forwarding database and the neighbour table.
type State struct {
	Devices   []Device    `json:"devices"`
	Routes    []RouteInfo `json:"routes"`
	FDB       []FDBEntry  `json:"fdb,omitempty"`
	Neighbors []Neighbor  `json:"neighbors,omitempty"`
}

// Device is a network interface.
type Device struct {
	Name  string   `json:"name"`
	Kind  string   `json:"kind"` // veth, vxlan, tun, ipip, bridge, device
	MTU   int      `json:"mtu"`
	MAC   string   `json:"mac,omitempty"`
	Up    bool     `json:"up"`
	Addrs []string `json:"addrs,omitempty"`
	// VXLAN devices: VNI, UDP port and local address.
	VNI   int    `json:"vni,omitempty"`
	Port  int    `json:"port,omitempty"`
	Local string `json:"local,omitempty"`
}

// RouteInfo is a route with who made it: "klab" (a network mode), "kernel"
// (an address's subnet), "static" (a CNI plugin's pod route) or "boot".
type RouteInfo struct {
	Route
	Proto string `json:"proto"`
	Scope string `json:"scope,omitempty"`
	Src   string `json:"src,omitempty"`
}

// FDBEntry maps a MAC to the underlay address behind it (VXLAN).
type FDBEntry struct {
	MAC string `json:"mac"`
	Dst string `json:"dst"`
	Dev string `json:"dev"`
}

// Neighbor is an entry of the ARP table.
type Neighbor struct {
	IP    string `json:"ip"`
	MAC   string `json:"mac"`
	Dev   string `json:"dev"`
	State string `json:"state"`
}

// Inspect reads the namespace's state.
func Inspect(h *netlink.Handle) (*State, error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	st := &State{}
	names := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		names[a.Index] = a.Name
		d := Device{Name: a.Name, Kind: l.Type(), MTU: a.MTU, Up: a.Flags&unix.IFF_UP != 0}
		if len(a.HardwareAddr) > 0 {
			d.MAC = a.HardwareAddr.String()
		}
		if v, ok := l.(*netlink.Vxlan); ok {
			d.VNI, d.Port = v.VxlanId, v.Port
			if v.SrcAddr != nil {
				d.Local = v.SrcAddr.String()
			}
		}
		addrs, _ := Addresses(h, l)
		for _, p := range addrs {
			d.Addrs = append(d.Addrs, p.String())
		}
		st.Devices = append(st.Devices, d)
		if v, ok := l.(*netlink.Vxlan); ok {
			fdb, _ := h.NeighList(a.Index, unix.AF_BRIDGE)
			for _, n := range fdb {
				if n.IP == nil || n.HardwareAddr == nil {
					continue
				}
				st.FDB = append(st.FDB, FDBEntry{MAC: n.HardwareAddr.String(), Dst: n.IP.String(), Dev: v.Name})
			}
		}
	}
	routes, err := h.RouteList(nil, unix.AF_INET)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		ri := RouteInfo{Route: fromNetlink(r, names), Proto: protoName(r.Protocol), Scope: scopeName(r.Scope)}
		if r.Dst == nil {
			ri.Dst = netip.MustParsePrefix("0.0.0.0/0")
		}
		if r.Src != nil {
			ri.Src = r.Src.String()
		}
		st.Routes = append(st.Routes, ri)
	}
	// The default route first, then by destination, as ip route does.
	slices.SortStableFunc(st.Routes, func(a, b RouteInfo) int {
		if da, db := a.Dst.Bits() == 0, b.Dst.Bits() == 0; da != db {
			if da {
				return -1
			}
			return 1
		}
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		return a.Dst.Bits() - b.Dst.Bits()
	})
	neigh, err := h.NeighList(0, unix.AF_INET)
	if err == nil {
		for _, n := range neigh {
			if n.IP == nil || n.HardwareAddr == nil || n.State&(unix.NUD_FAILED|unix.NUD_INCOMPLETE) != 0 {
				continue
			}
			st.Neighbors = append(st.Neighbors, Neighbor{IP: n.IP.String(), MAC: n.HardwareAddr.String(), Dev: names[n.LinkIndex], State: neighState(n.State)})
		}
	}
	return st, nil
}

func protoName(p netlink.RouteProtocol) string {
	switch p {
	case RouteProtocol:
		return "klab"
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	}
	return p.String()
}

func scopeName(s netlink.Scope) string {
	switch s {
	case netlink.SCOPE_LINK:
		return "link"
	case netlink.SCOPE_HOST:
		return "host"
	}
	return ""
}

func neighState(s int) string {
	var out []string
	for _, f := range []struct {
		bit  int
		name string
	}{{unix.NUD_PERMANENT, "PERMANENT"}, {unix.NUD_REACHABLE, "REACHABLE"}, {unix.NUD_STALE, "STALE"}, {unix.NUD_DELAY, "DELAY"}, {unix.NUD_PROBE, "PROBE"}, {unix.NUD_NOARP, "NOARP"}} {
		if s&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ",")
}
