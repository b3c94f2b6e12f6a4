package bgp

import (
	"context"

	"github.com/klab-dev/klab/netmodes"
)

// Mode is the bgp network mode: no encapsulation, a plain route to every
// peer's pod block via the peer's underlay address (what BGP learned). It
// has no devices; its routes are marked with netmodes.RouteProtocol.
type Mode struct {
	ns *netmodes.Netns
}

// NewMode is the netmodes.Factory of the bgp mode.
func NewMode(_ context.Context, ns *netmodes.Netns) netmodes.Mode { return &Mode{ns: ns} }

// Kind implements netmodes.Mode.
func (m *Mode) Kind() netmodes.Kind { return netmodes.BGP }

// Implementation implements netmodes.Mode: the kernel routes the packets.
func (m *Mode) Implementation() string { return netmodes.Kernel }

// Apply implements netmodes.Mode. A peer in another subnet (behind a
// router) gets no route: the kernel refuses a next hop that is not on-link,
// and the error is a *netmodes.NotOnLinkError that says what to do.
func (m *Mode) Apply(ctx context.Context, cfg netmodes.Config, self netmodes.Node, peers []netmodes.Node) (netmodes.Changes, error) {
	peers, err := netmodes.ValidatePeers(self, peers)
	if err != nil {
		return netmodes.Changes{}, err
	}
	u, err := netmodes.FindUnderlay(m.ns.Netlink(), cfg, self)
	if err != nil {
		return netmodes.Changes{}, err
	}
	return netmodes.SyncRoutes(m.ns.Netlink(), self, PlanRoutes(peers, u.Name))
}

// PlanRoutes is the bgp mode's routes: each peer's block via its underlay
// address on the underlay interface dev.
func PlanRoutes(peers []netmodes.Node, dev string) []netmodes.Route {
	out := make([]netmodes.Route, 0, len(peers))
	for _, p := range peers {
		out = append(out, netmodes.PlainRoute(p, dev))
	}
	return out
}

// Remove implements netmodes.Mode: it deletes the routes.
func (m *Mode) Remove(ctx context.Context) (netmodes.Changes, error) {
	return netmodes.DeleteRoutes(m.ns.Netlink())
}

// Release implements netmodes.Mode: the bgp mode has nothing but routes.
func (m *Mode) Release(ctx context.Context) (netmodes.Changes, error) {
	return netmodes.Changes{}, nil
}
