package bgp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/bgp"
)

func freePort(t *testing.T, addr string) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

func startSpeaker(t *testing.T, cfg bgp.Config) *bgp.Speaker {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := bgp.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", cfg.Name, err)
		}
	})
	return s
}

func learned(s *bgp.Speaker) []string {
	var out []string
	for _, r := range s.Routes() {
		out = append(out, fmt.Sprintf("%s via %s from %s", r.Prefix, r.NextHop, r.From))
	}
	return out
}

func session(t *testing.T, s *bgp.Speaker, peer string) bgp.Session {
	t.Helper()
	st, err := s.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, ses := range st.Sessions {
		if ses.Peer == peer {
			return ses
		}
	}
	t.Fatalf("no session with %s in %+v", peer, st.Sessions)
	return bgp.Session{}
}

// TestSpeakerLoopback peers two speakers of one process over loopback on
// high ports (no root): routes are learned and withdrawn, status reports
// the sessions.
func TestSpeakerLoopback(t *testing.T) {
	aAddr, bAddr := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	aPort, bPort := freePort(t, aAddr.String()), freePort(t, bAddr.String())
	calls := make(chan []bgp.Route, 100)
	a := startSpeaker(t, bgp.Config{Name: "a", Address: aAddr, Block: netip.MustParsePrefix("10.251.1.0/24"), ListenPort: aPort, HoldTime: 3 * time.Second, ConnectRetry: time.Second})
	b := startSpeaker(t, bgp.Config{Name: "b", Address: bAddr, Block: netip.MustParsePrefix("10.251.2.0/24"), ListenPort: bPort, HoldTime: 3 * time.Second, ConnectRetry: time.Second,
		OnRoutes: func(rs []bgp.Route) { calls <- rs }})
	if err := a.SetPeers(t.Context(), []bgp.Peer{{Name: "a", Address: aAddr}, {Name: "b", Address: bAddr, Port: int(bPort)}}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPeer(t.Context(), bgp.Peer{Name: "a", Address: aAddr, Port: int(aPort)}); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.251.1.0/24 via 127.0.0.1 from a"}
	testutil.Poll(t, 15*time.Second, "b learns a's block", func() bool { return slices.Equal(learned(b), want) })
	testutil.Poll(t, 5*time.Second, "a learns b's block", func() bool {
		return slices.Equal(learned(a), []string{"10.251.2.0/24 via 127.0.0.2 from b"})
	})
	rs := <-calls
	for len(rs) == 0 {
		rs = <-calls
	}
	if got := bgp.Nodes(rs); len(got) != 1 || got[0].Block != netip.MustParsePrefix("10.251.1.0/24") || got[0].IP() != aAddr {
		t.Fatalf("OnRoutes gave %+v", got)
	}
	testutil.Poll(t, 5*time.Second, "counters", func() bool {
		s := session(t, b, "a")
		return s.Received == 1 && s.Advertised == 1
	})
	s := session(t, b, "a")
	if s.State != "Established" || s.Type != "internal" || s.AS != bgp.DefaultAS || s.HoldTime != 3*time.Second || s.Address != aAddr || s.Since.IsZero() {
		t.Fatalf("session: %+v", s)
	}
	st, err := b.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Node != "b" || st.AS != bgp.DefaultAS || st.Block.String() != "10.251.2.0/24" || len(st.Routes) != 1 {
		t.Fatalf("status: %+v", st)
	}

	// a drops b as a peer: b's session goes, and a's block with it.
	if err := a.SetPeers(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "b withdraws a's block", func() bool { return len(b.Routes()) == 0 })
	for rs := range calls {
		if len(rs) == 0 {
			break
		}
	}

	// Back again, then a stops: b withdraws at once (a says goodbye).
	if err := a.AddPeer(t.Context(), bgp.Peer{Name: "b", Address: bAddr, Port: int(bPort)}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 15*time.Second, "b learns a's block again", func() bool { return slices.Equal(learned(b), want) })
	start := time.Now()
	if err := a.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 2*time.Second, "b withdraws the stopped a's block", func() bool { return len(b.Routes()) == 0 })
	t.Logf("a stopped: b withdrew its block after %s", time.Since(start).Round(time.Millisecond))
	if s := session(t, b, "a"); s.State == "Established" || s.Uptime != 0 {
		t.Fatalf("session with stopped a: %+v", s)
	}
}

// TestSpeakerExternalPeer checks an eBGP session: another AS, only the
// node's own block (not what it learned from the mesh), and removal at
// run time.
func TestSpeakerExternalPeer(t *testing.T) {
	aAddr, bAddr, rAddr := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	aPort, bPort, rPort := freePort(t, aAddr.String()), freePort(t, bAddr.String()), freePort(t, rAddr.String())
	cfg := func(name string, addr netip.Addr, block string, port int32) bgp.Config {
		return bgp.Config{Name: name, Address: addr, Block: netip.MustParsePrefix(block), ListenPort: port, HoldTime: 3 * time.Second, ConnectRetry: time.Second}
	}
	a := startSpeaker(t, cfg("a", aAddr, "10.251.1.0/24", aPort))
	bc := cfg("b", bAddr, "10.251.2.0/24", bPort)
	bc.PodCIDR = netip.MustParsePrefix("10.251.0.0/16")
	b := startSpeaker(t, bc)
	rc := cfg("router", rAddr, "10.250.0.0/24", rPort)
	rc.AS = 65000
	router := startSpeaker(t, rc)
	if err := a.SetPeers(t.Context(), []bgp.Peer{{Name: "b", Address: bAddr, Port: int(bPort)}, {Name: "router", Address: rAddr, AS: 65000, Port: int(rPort)}}); err != nil {
		t.Fatal(err)
	}
	if err := b.AddPeer(t.Context(), bgp.Peer{Name: "a", Address: aAddr, Port: int(aPort)}); err != nil {
		t.Fatal(err)
	}
	if err := router.AddPeer(t.Context(), bgp.Peer{Name: "a", Address: aAddr, AS: bgp.DefaultAS, Port: int(aPort)}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 15*time.Second, "router learns a's block, a learns the router's", func() bool {
		rs := router.Routes()
		return len(rs) == 1 && rs[0].From == "a" && slices.Equal(rs[0].ASPath, []uint32{bgp.DefaultAS}) && len(a.Routes()) == 2
	})
	if got := learned(a); !slices.Equal(got, []string{"10.250.0.0/24 via 127.0.0.3 from router", "10.251.2.0/24 via 127.0.0.2 from b"}) {
		t.Fatalf("a learned %q", got)
	}
	// b learns only what is in its pod network, not the router's prefix.
	if got := learned(b); !slices.Equal(got, []string{"10.251.1.0/24 via 127.0.0.1 from a"}) {
		t.Fatalf("b learned %q", got)
	}
	if s := session(t, a, "router"); s.Type != "external" || s.AS != 65000 || s.Advertised != 1 {
		t.Fatalf("session: %+v", s)
	}
	if got := learned(router); !slices.Equal(got, []string{"10.251.1.0/24 via 127.0.0.1 from a"}) {
		t.Fatalf("the router learned %q: a passed on what it learned from the mesh", got)
	}
	if err := a.RemovePeer(t.Context(), rAddr); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "router withdraws a's block", func() bool { return len(router.Routes()) == 0 })
	if err := a.RemovePeer(t.Context(), rAddr); err != nil {
		t.Fatalf("removing a peer twice: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	good := bgp.Config{Name: "n", Address: netip.MustParseAddr("127.0.0.1"), Block: netip.MustParsePrefix("10.251.1.0/24"), ListenPort: -1}
	tests := []struct {
		name string
		edit func(*bgp.Config)
	}{
		{"no address", func(c *bgp.Config) { c.Address = netip.Addr{} }},
		{"IPv6 address", func(c *bgp.Config) { c.Address = netip.MustParseAddr("::1") }},
		{"block with host bits", func(c *bgp.Config) { c.Block = netip.MustParsePrefix("10.251.1.1/24") }},
		{"hold time too short", func(c *bgp.Config) { c.HoldTime = time.Second }},
		{"keepalive not below hold time", func(c *bgp.Config) { c.HoldTime = 3 * time.Second; c.KeepaliveInterval = 3 * time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.edit(&c)
			if s, err := bgp.Start(t.Context(), c); err == nil {
				s.Stop(t.Context())
				t.Fatal("no error")
			}
		})
	}
}

func TestPlanRoutes(t *testing.T) {
	peers := []netmodes.Node{
		{Name: "n2", Underlay: netip.MustParsePrefix("192.168.34.12/24"), Block: netip.MustParsePrefix("10.42.2.0/24")},
		{Name: "n3", Underlay: netip.MustParsePrefix("192.168.35.13/24"), Block: netip.MustParsePrefix("10.42.3.0/24")},
	}
	var got []string
	for _, r := range bgp.PlanRoutes(peers, "eth0") {
		got = append(got, r.String())
	}
	want := []string{"10.42.2.0/24 via 192.168.34.12 dev eth0", "10.42.3.0/24 via 192.168.35.13 dev eth0"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
