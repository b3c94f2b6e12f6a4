package vxlan

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/klab-dev/klab/netmodes"
)

// FDB is a forwarding-database entry of vxlan.calico: frames for the peer's
// VTEP MAC go in UDP to the peer's underlay address.
type FDB struct {
	MAC net.HardwareAddr
	Dst netip.Addr
}

// String is the entry in human form: "fdb 66:6b:c0:a8:22:0c dst 192.168.34.12".
func (f FDB) String() string { return fmt.Sprintf("fdb %s dst %s", f.MAC, f.Dst) }

// Neighbor is a permanent ARP entry on vxlan.calico: the peer's VTEP
// address resolves to the peer's VTEP MAC.
type Neighbor struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// String is the entry in human form: "neigh 10.42.2.0 lladdr 66:6b:c0:a8:22:0c dev vxlan.calico".
func (n Neighbor) String() string {
	return fmt.Sprintf("neigh %s lladdr %s dev %s", n.IP, n.MAC, Device)
}

// Plan is what the vxlan mode programs for a node.
type Plan struct {
	Routes    []netmodes.Route
	FDB       []FDB
	Neighbors []Neighbor
}

// PlanFor computes the routes, FDB and neighbour entries of self towards
// peers (already validated): through vxlan.calico to each encapsulated
// peer, and plain routes on the underlay interface dev to same-subnet peers
// in cross-subnet mode.
func PlanFor(cfg netmodes.Config, self netmodes.Node, peers []netmodes.Node, dev string) Plan {
	var p Plan
	fdb := map[string]bool{}
	for _, peer := range peers {
		if !cfg.Encapsulates(self, peer) {
			p.Routes = append(p.Routes, netmodes.PlainRoute(peer, dev))
			continue
		}
		vtep := peer.TunnelAddress()
		p.Routes = append(p.Routes, netmodes.Route{Dst: peer.Block, Via: vtep, Dev: Device, OnLink: true})
		if mac := peer.MAC(); !fdb[mac.String()] {
			fdb[mac.String()] = true
			p.FDB = append(p.FDB, FDB{MAC: mac, Dst: peer.IP()})
		}
		p.Neighbors = append(p.Neighbors, Neighbor{IP: vtep, MAC: peer.MAC()})
	}
	return p
}
