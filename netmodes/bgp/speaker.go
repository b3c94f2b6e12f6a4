// Package bgp is the bgp network mode (plain routes to the peers' pod
// blocks) and the BGP speaker that learns those routes: GoBGP as a library,
// in Calico's bird role. Each node announces its pod block with its
// underlay address as next hop; the nodes peer in a full mesh of iBGP
// sessions in AS 64512 (or through a route reflector), and external peers
// such as a router can be added and removed at run time.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/klab-dev/klab/netmodes"
)

// Defaults of a speaker: Calico's AS, and lab-short timers so that a
// stopped node's routes go within seconds.
const (
	DefaultAS           = 64512
	DefaultPort         = 179
	DefaultHoldTime     = 9 * time.Second
	DefaultConnectRetry = 2 * time.Second
)

// Config is a node's speaker.
type Config struct {
	// Name is the node's name (for status and logs).
	Name string
	// AS is the cluster's AS number; 0 is 64512.
	AS uint32
	// Address is the node's underlay address: the local address of its
	// sessions, the next hop of its block, and its router ID unless RouterID
	// is set.
	Address  netip.Addr
	RouterID netip.Addr
	// Block is the node's pod block, which it announces.
	Block netip.Prefix
	// PodCIDR is the cluster's pod network: only routes inside it are
	// learned (a router's default route is no pod block). Zero learns all.
	PodCIDR netip.Prefix
	// ListenPort is where the speaker accepts sessions; 0 is 179, -1 does
	// not listen (it only dials).
	ListenPort int32
	// HoldTime (at least 3s; 0 is 9s) and KeepaliveInterval (0 is a third
	// of the hold time): how fast a dead peer is noticed.
	HoldTime          time.Duration
	KeepaliveInterval time.Duration
	// ConnectRetry is how often a peer that is down is dialled again; 0 is 2s.
	ConnectRetry time.Duration
	// RouteReflector makes this node reflect routes between its iBGP peers,
	// which are its route-reflector clients (instead of a full mesh).
	RouteReflector bool
	// OnRoutes is called, from one goroutine, with every learned route
	// whenever the learned routes change: the mode installs them.
	OnRoutes func([]Route)
	// Logger gets the speaker's and GoBGP's messages; nil discards them.
	Logger *slog.Logger
}

// Peer is a BGP neighbour: another node of the mesh, a route reflector, or
// an external router.
type Peer struct {
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
	// AS is the peer's AS; 0 is the speaker's own (iBGP).
	AS uint32 `json:"as,omitempty"`
	// Port is the peer's BGP port; 0 is 179.
	Port int `json:"port,omitempty"`
	// Passive waits for the peer to connect instead of dialling it. Towards
	// an iBGP peer (same AS) with a higher address the speaker is always
	// passive: of two klab speakers only the higher address dials, because
	// when both dial, GoBGP's fixed 5s idle hold after a failed attempt can
	// keep each one dialling into the other's idle time forever.
	Passive bool `json:"passive,omitempty"`
}

// Route is a route the speaker learned: a pod block and its next hop.
type Route struct {
	Prefix  netip.Prefix `json:"prefix"`
	NextHop netip.Addr   `json:"nextHop"`
	// From is the peer it was learned from (its name, or its address).
	From   string   `json:"from"`
	ASPath []uint32 `json:"asPath,omitempty"`
}

// Node is the route as a netmodes peer: the block behind the next hop.
func (r Route) Node() netmodes.Node {
	return netmodes.Node{Name: r.From, Underlay: netip.PrefixFrom(r.NextHop, r.NextHop.BitLen()), Block: r.Prefix}
}

// Nodes turns learned routes into the peers a netmodes.Mode routes to.
func Nodes(rs []Route) []netmodes.Node {
	out := make([]netmodes.Node, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Node())
	}
	return out
}

// Speaker is a running BGP speaker. Its sockets live in the network
// namespace of the process (the agent runs in its node's): GoBGP dials from
// goroutines of its own, which no namespace switch of a thread reaches.
// GoBGP's server loop stays parked after Stop (GoBGP v3 has no way to end
// it), so start one speaker per process, not one per reconfiguration:
// peers, and the external ones, change at run time.
type Speaker struct {
	cfg    Config
	srv    *server.BgpServer
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	dirty  chan struct{}
	once   sync.Once

	mu     sync.Mutex
	peers  map[netip.Addr]Peer
	routes []Route

	peerMu    sync.Mutex // serialises peer changes
	externals int        // peers in another AS; guarded by peerMu
}

var ipv4Unicast = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}

// Start starts a speaker that announces cfg.Block. It runs until Stop or
// until ctx ends.
func Start(ctx context.Context, cfg Config) (_ *Speaker, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.Name)
	srv := server.NewBgpServer(server.LoggerOption(&logger{log: log.With("component", "gobgp")}))
	go srv.Serve()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:             cfg.AS,
		RouterId:        cfg.RouterID.String(),
		ListenPort:      cfg.ListenPort,
		ListenAddresses: listenAddresses(cfg),
	}}); err != nil {
		return nil, fmt.Errorf("start BGP on %s port %d: %w", cfg.Address, cfg.ListenPort, err)
	}
	defer func() {
		if err != nil {
			srv.Stop()
		}
	}()
	if err := announce(ctx, srv, cfg.Block, cfg.Address); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Speaker{
		cfg: cfg, srv: srv, log: log, cancel: cancel,
		done:  make(chan struct{}),
		dirty: make(chan struct{}, 1),
		peers: map[netip.Addr]Peer{},
	}
	err = srv.WatchEvent(sctx, &api.WatchEventRequest{
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
		}},
		Peer: &api.WatchEventRequest_Peer{},
	}, s.event)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("watch BGP events: %w", err)
	}
	go s.run(ctx, sctx)
	return s, nil
}

func (c *Config) defaults() error {
	if !c.Address.Is4() {
		return fmt.Errorf("speaker %s: underlay address %q is not IPv4", c.Name, c.Address)
	}
	if !c.Block.IsValid() || !c.Block.Addr().Is4() || c.Block.Masked() != c.Block {
		return fmt.Errorf("speaker %s: pod block %q is not an IPv4 prefix", c.Name, c.Block)
	}
	if c.AS == 0 {
		c.AS = DefaultAS
	}
	if !c.RouterID.IsValid() {
		c.RouterID = c.Address
	}
	if c.ListenPort == 0 {
		c.ListenPort = DefaultPort
	}
	if c.HoldTime == 0 {
		c.HoldTime = DefaultHoldTime
	}
	if c.HoldTime < 3*time.Second {
		return fmt.Errorf("speaker %s: hold time %s is below BGP's minimum of 3s", c.Name, c.HoldTime)
	}
	if c.KeepaliveInterval == 0 {
		c.KeepaliveInterval = c.HoldTime / 3
	}
	if c.KeepaliveInterval < time.Second || c.KeepaliveInterval >= c.HoldTime {
		return fmt.Errorf("speaker %s: keepalive interval %s must be at least 1s and below the hold time %s", c.Name, c.KeepaliveInterval, c.HoldTime)
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = DefaultConnectRetry
	}
	return nil
}

func listenAddresses(cfg Config) []string {
	if cfg.ListenPort < 0 {
		return nil
	}
	return []string{cfg.Address.String()}
}

// externalPeers is the neighbour set of the peers in another AS.
const externalPeers = "klab-external-peers"

// exportPolicy keeps what a node learned from the mesh from its external
// peers: a router gets each block from its own node only, with that node
// as next hop, rather than every block from every node (where a router
// that picks another node would send pod traffic the long way, or into a
// node that cannot reach the block either). It exists only while there
// are external peers: GoBGP's empty neighbour set matches every peer.
func (s *Speaker) addExternal(ctx context.Context, a netip.Addr) error {
	set := externalSet(a)
	if err := s.srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: set}); err != nil {
		return fmt.Errorf("BGP export policy: %w", err)
	}
	if s.externals++; s.externals > 1 {
		return nil
	}
	if err := s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: exportPolicy,
		Statements: []*api.Statement{{
			Name: "no-mesh-routes-to-external-peers",
			Conditions: &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: externalPeers},
				RouteType:   api.Conditions_ROUTE_TYPE_INTERNAL,
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_REJECT},
		}},
	}}); err != nil {
		return fmt.Errorf("BGP export policy: %w", err)
	}
	if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: exportAssignment()}); err != nil {
		return fmt.Errorf("BGP export policy: %w", err)
	}
	return nil
}

// removeExternal takes a peer out of the external set, and the policy
// away with the last one.
func (s *Speaker) removeExternal(ctx context.Context, a netip.Addr) error {
	if s.externals--; s.externals == 0 {
		if err := s.srv.DeletePolicyAssignment(ctx, &api.DeletePolicyAssignmentRequest{Assignment: exportAssignment(), All: true}); err != nil {
			return fmt.Errorf("BGP export policy: %w", err)
		}
		if err := s.srv.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: exportPolicy}, All: true, PreserveStatements: false}); err != nil {
			return fmt.Errorf("BGP export policy: %w", err)
		}
		if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: externalPeers}, All: true}); err != nil {
			return fmt.Errorf("BGP export policy: %w", err)
		}
		return nil
	}
	if err := s.srv.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: externalSet(a)}); err != nil {
		return fmt.Errorf("BGP export policy: %w", err)
	}
	return nil
}

const exportPolicy = "klab-export"

func exportAssignment() *api.PolicyAssignment {
	return &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_EXPORT,
		Policies: []*api.Policy{{Name: exportPolicy}}, DefaultAction: api.RouteAction_ACCEPT,
	}
}

func externalSet(a netip.Addr) *api.DefinedSet {
	return &api.DefinedSet{DefinedType: api.DefinedType_NEIGHBOR, Name: externalPeers, List: []string{netip.PrefixFrom(a, a.BitLen()).String()}}
}

// announce adds the node's block with the node's address as next hop.
func announce(ctx context.Context, srv *server.BgpServer, block netip.Prefix, nh netip.Addr) error {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: block.Addr().String(), PrefixLen: uint32(block.Bits())})
	if err != nil {
		return err
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	if err != nil {
		return err
	}
	next, err := anypb.New(&api.NextHopAttribute{NextHop: nh.String()})
	if err != nil {
		return err
	}
	if _, err := srv.AddPath(ctx, &api.AddPathRequest{Path: &api.Path{
		Family: ipv4Unicast, Nlri: nlri, Pattrs: []*anypb.Any{origin, next},
	}}); err != nil {
		return fmt.Errorf("announce %s: %w", block, err)
	}
	return nil
}

// event is GoBGP's watch callback: it must not block.
func (s *Speaker) event(r *api.WatchEventResponse) {
	if p := r.GetPeer(); p != nil && p.Type == api.WatchEventResponse_PeerEvent_STATE && p.Peer != nil && p.Peer.State != nil {
		s.log.Info("BGP session", "peer", p.Peer.State.NeighborAddress, "state", stateName(p.Peer.State.SessionState))
	}
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// run turns watch events into route refreshes until the speaker stops.
func (s *Speaker) run(ctx, sctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return
		case <-sctx.Done():
			return
		case <-s.dirty:
			if err := s.refresh(sctx); err != nil && sctx.Err() == nil {
				s.log.Warn("list BGP routes", "err", err)
			}
		}
	}
}

// refresh lists the best paths and tells OnRoutes when they changed.
func (s *Speaker) refresh(ctx context.Context) error {
	var learned []Route
	err := s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: ipv4Unicast}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.Best || p.IsWithdraw {
				continue
			}
			if r, ok := s.route(d.Prefix, p); ok {
				learned = append(learned, r)
			}
		}
	})
	if err != nil {
		return err
	}
	slices.SortFunc(learned, func(a, b Route) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	s.mu.Lock()
	same := slices.EqualFunc(learned, s.routes, func(a, b Route) bool {
		return a.Prefix == b.Prefix && a.NextHop == b.NextHop && a.From == b.From
	})
	s.routes = learned
	s.mu.Unlock()
	if !same {
		s.log.Info("BGP routes", "learned", len(learned))
		if s.cfg.OnRoutes != nil {
			s.cfg.OnRoutes(slices.Clone(learned))
		}
	}
	return nil
}

// route turns a best path from a peer into a Route; our own is skipped.
func (s *Speaker) route(prefix string, p *api.Path) (Route, bool) {
	from, err := netip.ParseAddr(p.NeighborIp)
	if err != nil {
		return Route{}, false // a local path
	}
	pfx, err := netip.ParsePrefix(prefix)
	if err != nil || pfx == s.cfg.Block {
		return Route{}, false
	}
	if c := s.cfg.PodCIDR; c.IsValid() && (pfx.Bits() < c.Bits() || !c.Contains(pfx.Addr())) {
		return Route{}, false
	}
	r := Route{Prefix: pfx, From: from.String()}
	s.mu.Lock()
	if peer, ok := s.peers[from]; ok && peer.Name != "" {
		r.From = peer.Name
	}
	s.mu.Unlock()
	for _, a := range p.Pattrs {
		var nh api.NextHopAttribute
		var mp api.MpReachNLRIAttribute
		var asp api.AsPathAttribute
		switch {
		case a.MessageIs(&nh) && a.UnmarshalTo(&nh) == nil:
			r.NextHop, _ = netip.ParseAddr(nh.NextHop)
		case a.MessageIs(&mp) && a.UnmarshalTo(&mp) == nil && len(mp.NextHops) > 0:
			r.NextHop, _ = netip.ParseAddr(mp.NextHops[0])
		case a.MessageIs(&asp) && a.UnmarshalTo(&asp) == nil:
			for _, seg := range asp.Segments {
				r.ASPath = append(r.ASPath, seg.Numbers...)
			}
		}
	}
	return r, r.NextHop.IsValid()
}

// Routes is what the speaker has learned now.
func (s *Speaker) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.routes)
}

// AddPeer adds a neighbour (idempotent: a peer already there with the same
// settings is left alone, one with other settings is replaced).
func (s *Speaker) AddPeer(ctx context.Context, p Peer) error {
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	return s.addPeer(ctx, p)
}

func (s *Speaker) addPeer(ctx context.Context, p Peer) error {
	if !p.Address.Is4() {
		return fmt.Errorf("BGP peer %s: address %q is not IPv4", p.Name, p.Address)
	}
	if p.AS == 0 {
		p.AS = s.cfg.AS
	}
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	s.mu.Lock()
	old, ok := s.peers[p.Address]
	s.mu.Unlock()
	if ok && old == p {
		return nil
	}
	if ok {
		if err := s.removePeer(ctx, p.Address); err != nil {
			return err
		}
	}
	if p.AS != s.cfg.AS {
		if err := s.addExternal(ctx, p.Address); err != nil {
			return fmt.Errorf("add BGP peer %s (%s, AS %d): %w", p.Name, p.Address, p.AS, err)
		}
	}
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
		if p.AS != s.cfg.AS {
			s.removeExternal(ctx, p.Address)
		}
		return fmt.Errorf("add BGP peer %s (%s, AS %d): %w", p.Name, p.Address, p.AS, err)
	}
	s.mu.Lock()
	s.peers[p.Address] = p
	s.mu.Unlock()
	s.log.Info("BGP peer added", "peer", p.Name, "address", p.Address, "as", p.AS)
	return nil
}

func (s *Speaker) apiPeer(p Peer) *api.Peer {
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.AS, Description: p.Name},
		Transport: &api.Transport{
			LocalAddress: s.cfg.Address.String(),
			RemotePort:   uint32(p.Port),
			PassiveMode:  p.Passive || (p.AS == s.cfg.AS && s.cfg.Address.Less(p.Address)),
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           seconds(s.cfg.ConnectRetry),
			HoldTime:               seconds(s.cfg.HoldTime),
			KeepaliveInterval:      seconds(s.cfg.KeepaliveInterval),
			IdleHoldTimeAfterReset: 1,
		}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: ipv4Unicast, Enabled: true}}},
	}
	if s.cfg.RouteReflector && p.AS == s.cfg.AS {
		ap.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: s.cfg.RouterID.String()}
	}
	return ap
}

func seconds(d time.Duration) uint64 { return uint64((d + time.Second/2) / time.Second) }

// RemovePeer removes a neighbour; removing one that is not there is fine.
func (s *Speaker) RemovePeer(ctx context.Context, addr netip.Addr) error {
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	return s.removePeer(ctx, addr)
}

func (s *Speaker) removePeer(ctx context.Context, addr netip.Addr) error {
	s.mu.Lock()
	p, ok := s.peers[addr]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("remove BGP peer %s (%s): %w", p.Name, addr, err)
	}
	if p.AS != s.cfg.AS {
		if err := s.removeExternal(ctx, addr); err != nil {
			return fmt.Errorf("remove BGP peer %s (%s): %w", p.Name, addr, err)
		}
	}
	s.mu.Lock()
	delete(s.peers, addr)
	s.mu.Unlock()
	s.log.Info("BGP peer removed", "peer", p.Name, "address", addr)
	return nil
}

// SetPeers makes peers the speaker's neighbours: it adds the new ones,
// changes the changed ones and removes the others. The speaker's own
// address in the list is skipped, so every node can pass the whole mesh.
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	s.peerMu.Lock()
	defer s.peerMu.Unlock()
	want := map[netip.Addr]bool{}
	var errs []error
	for _, p := range peers {
		if p.Address == s.cfg.Address {
			continue
		}
		want[p.Address] = true
		if err := s.addPeer(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	var gone []netip.Addr
	for a := range s.peers {
		if !want[a] {
			gone = append(gone, a)
		}
	}
	s.mu.Unlock()
	for _, a := range gone {
		if err := s.removePeer(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop ends every session (the peers withdraw this node's block at once)
// and stops the speaker.
func (s *Speaker) Stop(ctx context.Context) error {
	s.shutdown()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Speaker) shutdown() {
	s.once.Do(func() {
		s.cancel()
		s.srv.Stop()
	})
}

// Status is a speaker's state for `klab net bgp`.
type Status struct {
	Node     string       `json:"node"`
	AS       uint32       `json:"as"`
	RouterID netip.Addr   `json:"routerID"`
	Block    netip.Prefix `json:"block"`
	// RouteReflector tells whether this node reflects routes to its peers.
	RouteReflector bool      `json:"routeReflector,omitempty"`
	Sessions       []Session `json:"sessions"`
	Routes         []Route   `json:"routes"`
}

// Session is one BGP session.
type Session struct {
	Peer    string     `json:"peer"`
	Address netip.Addr `json:"address"`
	AS      uint32     `json:"as"`
	// Type is "internal" (same AS) or "external".
	Type string `json:"type"`
	// State is BGP's: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
	State string `json:"state"`
	// Uptime is how long the session has been established (zero when it
	// is not); Since is when it entered its current state.
	Uptime time.Duration `json:"uptime"`
	Since  time.Time     `json:"since,omitzero"`
	// HoldTime is the negotiated hold time.
	HoldTime time.Duration `json:"holdTime"`
	// Prefixes received from the peer, accepted, and advertised to it.
	Received   uint64 `json:"received"`
	Accepted   uint64 `json:"accepted"`
	Advertised uint64 `json:"advertised"`
}

// Status reports the speaker's sessions and learned routes.
func (s *Speaker) Status(ctx context.Context) (Status, error) {
	st := Status{Node: s.cfg.Name, AS: s.cfg.AS, RouterID: s.cfg.RouterID, Block: s.cfg.Block, RouteReflector: s.cfg.RouteReflector}
	now := time.Now()
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.Conf == nil || p.State == nil {
			return
		}
		addr, _ := netip.ParseAddr(p.Conf.NeighborAddress)
		ses := Session{
			Peer:    p.Conf.Description,
			Address: addr,
			AS:      p.Conf.PeerAsn,
			Type:    "internal",
			State:   stateName(p.State.SessionState),
		}
		if ses.Peer == "" {
			ses.Peer = addr.String()
		}
		if ses.AS != s.cfg.AS {
			ses.Type = "external"
		}
		if t := p.Timers.GetState(); t != nil {
			ses.HoldTime = time.Duration(t.NegotiatedHoldTime) * time.Second
			established := p.State.SessionState == api.PeerState_ESTABLISHED
			if established && t.Uptime != nil {
				ses.Since = t.Uptime.AsTime()
				ses.Uptime = now.Sub(ses.Since).Truncate(time.Second)
			} else if !established && t.Downtime != nil && t.Downtime.AsTime().Unix() > 0 {
				ses.Since = t.Downtime.AsTime()
			}
		}
		for _, a := range p.AfiSafis {
			if st := a.GetState(); st != nil {
				ses.Received += st.Received
				ses.Accepted += st.Accepted
				ses.Advertised += st.Advertised
			}
		}
		st.Sessions = append(st.Sessions, ses)
	})
	if err != nil {
		return st, fmt.Errorf("list BGP sessions: %w", err)
	}
	slices.SortFunc(st.Sessions, func(a, b Session) int { return a.Address.Compare(b.Address) })
	st.Routes = s.Routes()
	return st, nil
}

func stateName(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "Idle"
	case api.PeerState_CONNECT:
		return "Connect"
	case api.PeerState_ACTIVE:
		return "Active"
	case api.PeerState_OPENSENT:
		return "OpenSent"
	case api.PeerState_OPENCONFIRM:
		return "OpenConfirm"
	case api.PeerState_ESTABLISHED:
		return "Established"
	}
	return "Unknown(" + strconv.Itoa(int(s)) + ")"
}
