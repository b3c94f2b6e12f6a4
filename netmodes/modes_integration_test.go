package netmodes_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/bgp"
	"github.com/klab-dev/klab/netmodes/ipip"
	"github.com/klab-dev/klab/netmodes/vxlan"
)

func factories() map[netmodes.Kind]netmodes.Factory {
	return map[netmodes.Kind]netmodes.Factory{netmodes.BGP: bgp.NewMode, netmodes.VXLAN: vxlan.New, netmodes.IPIP: ipip.New}
}

// cluster is a lab with a reconciler per node: the test plays the agent,
// giving every node all the others as peers.
type cluster struct {
	*testnet.Lab
	recs []*netmodes.Reconciler
}

func newCluster(t *testing.T, subnets int) *cluster {
	t.Helper()
	testutil.RequireRoot(t)
	c := &cluster{Lab: testnet.New(t, 3, subnets)}
	for _, n := range c.Nodes {
		c.recs = append(c.recs, netmodes.NewReconciler(t.Context(), n.NS.Netns, factories()))
	}
	t.Cleanup(func() {
		for i, r := range c.recs {
			if _, err := r.Remove(context.Background()); err != nil {
				t.Errorf("remove on n%d: %v", i+1, err)
			}
		}
	})
	return c
}

// apply applies cfg on every node at once, as the nodes' agents do, and
// returns the results and errors per node.
func (c *cluster) apply(t *testing.T, cfg netmodes.Config) ([]netmodes.Result, []error) {
	t.Helper()
	res := make([]netmodes.Result, len(c.Nodes))
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { res[i], errs[i] = c.recs[i].Apply(t.Context(), cfg, n.Node, c.Peers()) })
	}
	wg.Wait()
	return res, errs
}

func (c *cluster) mustApply(t *testing.T, cfg netmodes.Config) []netmodes.Result {
	t.Helper()
	res, errs := c.apply(t, cfg)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("apply %s on n%d: %v", cfg, i+1, err)
		}
	}
	return res
}

// ping checks that pod a reaches pod b with small and 1400-byte pings
// (don't fragment), and that the 1400-byte ones travel with the expected
// encapsulation on a's underlay.
func (c *cluster) ping(t *testing.T, a, b int, encap string) {
	t.Helper()
	na, nb := c.Nodes[a-1], c.Nodes[b-1]
	if got, err := testnet.Ping(na.Pod, na.PodIP, nb.PodIP, 3, 20*time.Millisecond, 56); err != nil || got != 3 {
		t.Fatalf("ping pod n%d > pod n%d: %d of 3 answered (%v)", a, b, got, err)
	}
	var got int
	f, err := testnet.CaptureWhile(na.NS, "eth0", na.PodIP, nb.PodIP, func() error {
		var err error
		got, err = testnet.Ping(na.Pod, na.PodIP, nb.PodIP, 3, 20*time.Millisecond, 1400)
		return err
	})
	if err != nil {
		t.Fatalf("capture pod n%d > pod n%d: %v", a, b, err)
	}
	if got != 3 {
		t.Fatalf("1400-byte ping pod n%d > pod n%d (don't fragment): %d of 3 answered", a, b, got)
	}
	t.Logf("n%d eth0: %s", a, f.Summary)
	if e := f.Encapsulation(); e != encap {
		t.Fatalf("pod n%d > pod n%d travels with encapsulation %s, want %s: %s", a, b, e, encap, f.Summary)
	}
	switch encap {
	case "vxlan":
		if f.UDP == nil || f.UDP.DstPort != 4789 || f.VXLAN.VNI != 4096 {
			t.Fatalf("want UDP 4789 VNI 4096: %s", f.Summary)
		}
		if f.InnerEth == nil || f.InnerEth.SrcMAC.String() != na.MAC().String() || f.InnerEth.DstMAC.String() != nb.MAC().String() {
			t.Fatalf("want inner Ethernet %s > %s (the VTEPs): %s", na.MAC(), nb.MAC(), f.Summary)
		}
	case "ipip":
		if f.Outer.Protocol != 4 {
			t.Fatalf("want IP protocol 4: %s", f.Summary)
		}
	}
	if f.Outer != nil && (!f.Outer.SrcIP.Equal(na.IP().AsSlice()) || !f.Outer.DstIP.Equal(nb.IP().AsSlice())) {
		t.Fatalf("want outer IPv4 %s > %s: %s", na.IP(), nb.IP(), f.Summary)
	}
	if f.Inner.Length != 20+8+1400 {
		t.Fatalf("inner packet is %d bytes, want 1428: %s", f.Inner.Length, f.Summary)
	}
}

// transfer sends 10 MB over TCP from pod a to pod b and checks it arrived
// intact.
func (c *cluster) transfer(t *testing.T, a, b int) {
	t.Helper()
	na, nb := c.Nodes[a-1], c.Nodes[b-1]
	r := benchPods(t, na, nb, netmodes.BenchOptions{Bytes: 10 << 20, Pings: 10})
	t.Logf("10 MB pod n%d > pod n%d: %s in %s", a, b, r, r.Elapsed.Round(time.Millisecond))
}

// benchPods runs the bench from pod a to pod b.
func benchPods(t *testing.T, a, b *testnet.Node, opt netmodes.BenchOptions) netmodes.BenchResult {
	t.Helper()
	return bench(t, a.Pod, b.Pod, b.PodIP, opt)
}

func bench(t *testing.T, from, to *testnet.NS, addr netip.Addr, opt netmodes.BenchOptions) netmodes.BenchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hostport := netip.AddrPortFrom(addr, 5201).String()
	ln, err := to.Listen(ctx, "tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() { served <- netmodes.ServeBench(sctx, ln) }()
	r, err := netmodes.RunBench(ctx, func(ctx context.Context) (net.Conn, error) { return from.Dial(ctx, "tcp", hostport) }, opt)
	stop()
	if serr := <-served; serr != nil {
		t.Error(serr)
	}
	if err != nil {
		t.Fatalf("bench %s > %s: %v", from.Name, hostport, err)
	}
	return r
}

// assertOnly checks that the nodes carry exactly kind's state: its device
// and no other mode's, and a route of the right form to every peer.
func (c *cluster) assertOnly(t *testing.T, cfg netmodes.Config) {
	t.Helper()
	for _, n := range c.Nodes {
		h := n.NS.Netlink()
		for dev, kind := range map[string]netmodes.Kind{vxlan.Device: netmodes.VXLAN, ipip.Device: netmodes.IPIP} {
			l, err := netmodes.LinkIfExists(h, dev)
			if err != nil {
				t.Fatal(err)
			}
			if (l != nil) != (cfg.Mode == kind) {
				t.Errorf("%s in %s: device %s exists: %v", n.Name, cfg, dev, l != nil)
			}
		}
		routes, err := netmodes.ListRoutes(h)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, p := range c.Nodes {
			if p == n {
				continue
			}
			switch {
			case !cfg.Encapsulates(n.Node, p.Node):
				want = append(want, netmodes.PlainRoute(p.Node, "eth0").String())
			case cfg.Mode == netmodes.VXLAN:
				want = append(want, fmt.Sprintf("%s via %s dev vxlan.calico onlink", p.Block, p.TunnelAddress()))
			case cfg.Mode == netmodes.IPIP:
				want = append(want, fmt.Sprintf("%s via %s dev tunl0 onlink", p.Block, p.IP()))
			}
		}
		var got []string
		for _, r := range routes {
			got = append(got, r.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s in %s: routes\n%s\nwant\n%s", n.Name, cfg, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// The pod's own route is not klab's and stays.
		all, err := h.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(all, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.IP.Equal(n.PodIP.AsSlice()) }) {
			t.Errorf("%s: the pod's route %s/32 is gone", n.Name, n.PodIP)
		}
	}
}

// assertClean checks that nothing of any mode is left on the nodes.
func (c *cluster) assertClean(t *testing.T) {
	t.Helper()
	for _, n := range c.Nodes {
		for _, dev := range []string{vxlan.Device, ipip.Device} {
			if l, _ := netmodes.LinkIfExists(n.NS.Netlink(), dev); l != nil {
				t.Errorf("%s: %s is left", n.Name, dev)
			}
		}
		if rs, _ := netmodes.ListRoutes(n.NS.Netlink()); len(rs) > 0 {
			t.Errorf("%s: routes left: %v", n.Name, rs)
		}
	}
}

func TestIntegrationModes(t *testing.T) {
	testutil.RequireRoot(t)
	tests := []struct {
		name    string
		subnets int
		cfg     netmodes.Config
		pairs   map[[2]int]string // pod pair → encapsulation on the wire
	}{
		{"bgp", 1, netmodes.Config{Mode: netmodes.BGP}, map[[2]int]string{{1, 2}: "none", {1, 3}: "none"}},
		{"vxlan", 1, netmodes.Config{Mode: netmodes.VXLAN}, map[[2]int]string{{1, 2}: "vxlan", {1, 3}: "vxlan"}},
		{"ipip", 1, netmodes.Config{Mode: netmodes.IPIP}, map[[2]int]string{{1, 2}: "ipip", {1, 3}: "ipip"}},
		{"vxlan-cross-subnet", 2, netmodes.Config{Mode: netmodes.VXLAN, CrossSubnet: true}, map[[2]int]string{{1, 2}: "none", {1, 3}: "vxlan"}},
		{"ipip-cross-subnet", 2, netmodes.Config{Mode: netmodes.IPIP, CrossSubnet: true}, map[[2]int]string{{1, 2}: "none", {1, 3}: "ipip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, tt.subnets)
			res := c.mustApply(t, tt.cfg)
			t.Logf("n1 %s (%s) in %s:\n%s", res[0].Mode, res[0].Implementation, res[0].Took, res[0].Changes)
			if tt.cfg.Mode == netmodes.IPIP && res[0].Implementation != netmodes.Userspace && res[0].Implementation != netmodes.Kernel {
				t.Fatalf("implementation %q", res[0].Implementation)
			}
			c.assertOnly(t, tt.cfg)
			again := c.mustApply(t, tt.cfg)
			for i, r := range again {
				if !r.Changes.Empty() {
					t.Errorf("second apply on n%d changed:\n%s", i+1, r.Changes)
				}
			}
			for pair, encap := range tt.pairs {
				c.ping(t, pair[0], pair[1], encap)
				c.ping(t, pair[1], pair[0], encap)
			}
			c.transfer(t, 1, 3)
			for i, r := range c.recs {
				res, err := r.Remove(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					t.Logf("n1 remove:\n%s", res.Changes)
				}
				if again, err := r.Remove(t.Context()); err != nil || !again.Changes.Empty() {
					t.Errorf("second remove on n%d: %v\n%s", i+1, err, again.Changes)
				}
			}
			c.assertClean(t)
		})
	}
}

// TestIntegrationChanges checks the reported changes word for word.
func TestIntegrationChanges(t *testing.T) {
	c := newCluster(t, 1)
	n1 := c.Nodes[0]
	r, err := c.recs[0].Apply(t.Context(), netmodes.Config{Mode: netmodes.VXLAN}, n1.Node, c.Peers())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"device vxlan.calico",
		"address 10.251.1.0/32 dev vxlan.calico",
		"fdb 66:6b:ac:1f:00:0c dst 172.31.0.12",
		"fdb 66:6b:ac:1f:00:0d dst 172.31.0.13",
		"neigh 10.251.2.0 lladdr 66:6b:ac:1f:00:0c dev vxlan.calico",
		"neigh 10.251.3.0 lladdr 66:6b:ac:1f:00:0d dev vxlan.calico",
		"route 10.251.2.0/24 via 10.251.2.0 dev vxlan.calico onlink",
		"route 10.251.3.0/24 via 10.251.3.0 dev vxlan.calico onlink",
	}
	if !slices.Equal(r.Changes.Added, want) || len(r.Changes.Removed) != 0 {
		t.Fatalf("changes:\n%s\nwant added:\n%s", r.Changes, strings.Join(want, "\n"))
	}
	// A peer leaves: its FDB, neighbour and route go, nothing else.
	r, err = c.recs[0].Apply(t.Context(), netmodes.Config{Mode: netmodes.VXLAN}, n1.Node, c.Peers()[:2])
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved := []string{
		"fdb 66:6b:ac:1f:00:0d dst 172.31.0.13",
		"neigh 10.251.3.0 lladdr 66:6b:ac:1f:00:0d dev vxlan.calico",
		"route 10.251.3.0/24 via 10.251.3.0 dev vxlan.calico onlink",
	}
	if !slices.Equal(r.Changes.Removed, wantRemoved) || len(r.Changes.Added) != 0 {
		t.Fatalf("changes:\n%s\nwant removed:\n%s", r.Changes, strings.Join(wantRemoved, "\n"))
	}
	// Switch to ipip: everything of vxlan goes, ipip comes.
	r, err = c.recs[0].Apply(t.Context(), netmodes.Config{Mode: netmodes.IPIP}, n1.Node, c.Peers())
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved = []string{
		"route 10.251.2.0/24 via 10.251.2.0 dev vxlan.calico onlink",
		"fdb 66:6b:ac:1f:00:0c dst 172.31.0.12",
		"neigh 10.251.2.0 lladdr 66:6b:ac:1f:00:0c dev vxlan.calico",
		"address 10.251.1.0/32 dev vxlan.calico",
		"device vxlan.calico",
	}
	want = []string{
		"device tunl0",
		"address 10.251.1.0/32 dev tunl0",
		"route 10.251.2.0/24 via 172.31.0.12 dev tunl0 onlink",
		"route 10.251.3.0/24 via 172.31.0.13 dev tunl0 onlink",
	}
	if r.Previous != netmodes.VXLAN || !slices.Equal(r.Changes.Removed, wantRemoved) || !slices.Equal(r.Changes.Added, want) {
		t.Fatalf("switch vxlan > ipip (previous %q):\n%s\nwant removed:\n%s\nwant added:\n%s", r.Previous, r.Changes,
			strings.Join(wantRemoved, "\n"), strings.Join(want, "\n"))
	}
}

// TestIntegrationBGPAcrossSubnets shows pure BGP routing failing across a
// router the way it does in real life.
func TestIntegrationBGPAcrossSubnets(t *testing.T) {
	c := newCluster(t, 2)
	_, errs := c.apply(t, netmodes.Config{Mode: netmodes.BGP})
	var nol *netmodes.NotOnLinkError
	if !errors.As(errs[0], &nol) {
		t.Fatalf("n1: want a NotOnLinkError, got %v", errs[0])
	}
	if nol.NextHop != c.Nodes[2].IP() || nol.Block != c.Nodes[2].Block {
		t.Fatalf("n1: not-on-link error names %s for %s, want %s for %s", nol.NextHop, nol.Block, c.Nodes[2].IP(), c.Nodes[2].Block)
	}
	want := "next hop 172.31.1.13 is not on-link from 172.31.0.11: BGP without encapsulation needs every node in one L2 segment, " +
		"or the router to learn the routes (klab net peer router), or IPIP/VXLAN CrossSubnet"
	if !strings.Contains(errs[0].Error(), want) {
		t.Fatalf("n1 error:\n%v\nwant it to say:\n%s", errs[0], want)
	}
	t.Logf("n1: %v", errs[0])
	// The same-subnet peer got its route anyway, and works.
	c.ping(t, 1, 2, "none")
	if got, _ := testnet.Ping(c.Nodes[0].Pod, c.Nodes[0].PodIP, c.Nodes[2].PodIP, 2, 20*time.Millisecond, 56); got != 0 {
		t.Fatalf("pod n1 > pod n3 answered without a route")
	}
	// CrossSubnet fixes it.
	c.mustApply(t, netmodes.Config{Mode: netmodes.IPIP, CrossSubnet: true})
	c.ping(t, 1, 3, "ipip")
}

// TestIntegrationSwitch switches modes live with a ping every 10 ms and
// reports how long each switch took and how much traffic it lost.
func TestIntegrationSwitch(t *testing.T) {
	c := newCluster(t, 1)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	c.mustApply(t, netmodes.Config{Mode: netmodes.BGP})
	p, err := testnet.StartPinger(n1.Pod, n1.PodIP, n2.PodIP, 10*time.Millisecond, 56)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	waitAnswered(t, p, time.Now(), 10)
	steps := []netmodes.Config{{Mode: netmodes.VXLAN}, {Mode: netmodes.IPIP}, {Mode: netmodes.BGP}, {Mode: netmodes.VXLAN, CrossSubnet: true}}
	prev := netmodes.Config{Mode: netmodes.BGP}
	for _, cfg := range steps {
		start := time.Now()
		res := c.mustApply(t, cfg)
		converged := time.Since(start)
		if converged > 3*time.Second {
			t.Errorf("%s > %s took %s on all nodes, want under 3s", prev, cfg, converged)
		}
		resumed := waitAnswered(t, p, time.Now(), 10)
		window, lost := testnet.LossWindow(p.Samples(), start, resumed)
		var took []string
		for i, r := range res {
			took = append(took, fmt.Sprintf("n%d %s", i+1, r.Took.Round(10*time.Microsecond)))
		}
		t.Logf("%s > %s: converged in %s (%s); loss window %s, %d pings lost", prev, cfg, converged.Round(10*time.Microsecond),
			strings.Join(took, ", "), window.Round(time.Millisecond), lost)
		c.assertOnly(t, cfg)
		prev = cfg
	}
}

// waitAnswered waits until n pings sent after since were answered in a row
// and returns when the first of them was sent.
func waitAnswered(t *testing.T, p *testnet.Pinger, since time.Time, n int) time.Time {
	t.Helper()
	var first time.Time
	testutil.Poll(t, 3*time.Second, fmt.Sprintf("%d answered pings in a row", n), func() bool {
		run := 0
		for _, s := range p.Samples() {
			if s.Sent.Before(since) {
				continue
			}
			if s.RTT == 0 {
				run = 0
				continue
			}
			if run == 0 {
				first = s.Sent
			}
			if run++; run >= n {
				return true
			}
		}
		return false
	})
	return first
}

// TestIntegrationBenchModes measures pod-to-pod TCP throughput and latency
// in each mode next to the raw underlay, the way `klab bench modes` will.
func TestIntegrationBenchModes(t *testing.T) {
	if testing.Short() {
		t.Skip("benchmark")
	}
	c := newCluster(t, 1)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// serve runs a bench server in to at addr and returns a dialer from from.
	serve := func(from, to *testnet.NS, addr netip.Addr) netmodes.Dialer {
		hostport := netip.AddrPortFrom(addr, 5201).String()
		ln, err := to.Listen(ctx, "tcp", hostport)
		if err != nil {
			t.Fatal(err)
		}
		go netmodes.ServeBench(ctx, ln)
		return func(ctx context.Context) (net.Conn, error) { return from.Dial(ctx, "tcp", hostport) }
	}
	underlay := serve(n1.NS, n3.NS, n3.IP())
	pods := serve(n1.Pod, n3.Pod, n3.PodIP)
	for _, cfg := range []netmodes.Config{{Mode: netmodes.BGP}, {Mode: netmodes.VXLAN}, {Mode: netmodes.IPIP}} {
		res := c.mustApply(t, cfg)
		cmp, err := netmodes.Compare(ctx, pods, underlay, netmodes.BenchOptions{Duration: time.Second, Pings: 100}, 3)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-17s pod > pod %-28s underlay %-28s ratio %.2f", fmt.Sprintf("%s (%s)", cfg, res[0].Implementation), cmp.Path, cmp.Underlay, cmp.Ratio)
	}
}

// TestIntegrationDevices checks the devices' settings, and that a route
// klab did not make is never replaced.
func TestIntegrationDevices(t *testing.T) {
	c := newCluster(t, 1)
	n1 := c.Nodes[0]
	h := n1.NS.Netlink()
	c.mustApply(t, netmodes.Config{Mode: netmodes.VXLAN})
	l, err := h.LinkByName(vxlan.Device)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s device", vxlan.Device, l.Type())
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if v.VxlanId != 4096 || v.Port != 4789 || v.Learning || v.MTU != 1450 || !v.SrcAddr.Equal(n1.IP().AsSlice()) ||
		v.VtepDevIndex != eth0.Attrs().Index || v.HardwareAddr.String() != n1.MAC().String() {
		t.Fatalf("vxlan device: vni %d port %d learning %v mtu %d local %s dev %d mac %s", v.VxlanId, v.Port, v.Learning, v.MTU, v.SrcAddr, v.VtepDevIndex, v.HardwareAddr)
	}
	c.mustApply(t, netmodes.Config{Mode: netmodes.IPIP})
	if l, err := h.LinkByName(ipip.Device); err != nil || l.Attrs().MTU != 1480 {
		t.Fatalf("tunl0: %v, mtu %d", err, l.Attrs().MTU)
	}

	// A route to n3's block that someone else made stays, and says so.
	if _, err := c.recs[0].Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	foreign := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: c.Nodes[2].Block.Addr().AsSlice(), Mask: net.CIDRMask(24, 32)},
		Gw: c.Nodes[2].IP().AsSlice()}
	if err := h.RouteAdd(foreign); err != nil {
		t.Fatal(err)
	}
	_, err = c.recs[0].Apply(t.Context(), netmodes.Config{Mode: netmodes.VXLAN}, n1.Node, c.Peers())
	if err == nil || !strings.Contains(err.Error(), "a route to 10.251.3.0/24 exists that klab did not make") {
		t.Fatalf("error %v", err)
	}
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: foreign.Dst}, netlink.RT_FILTER_DST)
	if err != nil || len(rs) != 1 || rs[0].Protocol == netmodes.RouteProtocol || !rs[0].Gw.Equal(foreign.Gw) {
		t.Fatalf("the foreign route changed: %+v %v", rs, err)
	}
	if _, err := c.recs[0].Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rs, _ := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: foreign.Dst}, netlink.RT_FILTER_DST); len(rs) != 1 {
		t.Fatal("Remove deleted the foreign route")
	}
}
