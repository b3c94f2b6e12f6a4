package trace

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/klab-dev/klab/netmodes"
)

// traceFake runs a trace from src to dst on topo through a fake network
// that shows the packet on the plan's points up to seeUntil.
func traceFake(t *testing.T, topo *Topology, src, dst string, seeUntil int, tune func(*fakeNet), req Request) (*Result, *fakeNet) {
	t.Helper()
	s, d := mustResolve(topo, src), mustResolve(topo, dst)
	to := d.IP
	if d.Kind == KindService {
		to = netip.MustParseAddr("10.42.1.3") // the endpoint the fake DNAT picks
	}
	plan, err := topo.PlanPath(English, s, d, to)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNet{plan: plan, seeUntil: seeUntil}
	if tune != nil {
		tune(f)
	}
	req.Src, req.Dst = s, d
	if req.Proto == "" {
		req.Proto, req.Size = ICMP, DefaultICMPSize
	}
	req.Timeout, req.HopTimeout = 2*time.Second, 100*time.Millisecond
	res, err := Run(context.Background(), topo, req, f)
	if err != nil {
		t.Fatal(err)
	}
	return res, f
}

func layerTypes(h Hop) []string {
	var out []string
	for _, l := range h.Layers {
		out = append(out, l.Type)
	}
	return out
}

// TestRunClocks: hop times across VMs compare different clocks, and the
// trace says so; nodes that share a kernel (netns) have one clock.
func TestRunClocks(t *testing.T) {
	clocks := English.f(noteClocks)
	for _, separate := range []bool{false, true} {
		res, _ := traceFake(t, fixture(netmodes.BGP, 1), "a", "b", -1, nil, Request{SeparateClocks: separate})
		if got := slices.Contains(res.Notes, clocks); got != separate {
			t.Errorf("separate clocks %v: notes %q", separate, res.Notes)
		}
	}
	// Pods a and c share node1: their packet is seen on one machine only.
	res, _ := traceFake(t, fixture(netmodes.BGP, 1), "a", "c", -1, nil, Request{SeparateClocks: true})
	if n := seenOnMachines(res.Hops); n != 1 || slices.Contains(res.Notes, clocks) {
		t.Errorf("a → c: seen on %d machines, notes %q", n, res.Notes)
	}
}

func TestRunDelivered(t *testing.T) {
	for _, tc := range []struct {
		mode     netmodes.Kind
		hops     int
		underlay []string // layers on the underlay hops
		overhead int
	}{
		{netmodes.BGP, 8, []string{"Ethernet", "IPv4", "ICMPv4", "Payload"}, 0},
		{netmodes.VXLAN, 10, []string{"Ethernet", "IPv4", "UDP", "VXLAN", "Ethernet", "IPv4", "ICMPv4", "Payload"}, 50},
		{netmodes.IPIP, 10, []string{"Ethernet", "IPIP", "IPv4", "ICMPv4", "Payload"}, 20},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			res, _ := traceFake(t, fixture(tc.mode, 1), "a", "b", -1, nil, Request{})
			if !res.Delivered || res.LostAt != nil || res.Reason != "" || len(res.Hops) != tc.hops {
				t.Fatalf("delivered %v lost %+v %q, %d hops", res.Delivered, res.LostAt, res.Reason, len(res.Hops))
			}
			for i, h := range res.Hops {
				if !h.Seen || h.Index != i+1 || h.Explain == "" || h.Change == "" {
					t.Errorf("hop %d: %+v", i+1, h)
				}
				if h.Kind == HopBridgePort && !slices.Equal(layerTypes(h), tc.underlay) {
					t.Errorf("hop %d (%s): layers %v, want %v", h.Index, h.Interface, layerTypes(h), tc.underlay)
				}
			}
			if res.Overhead != tc.overhead || res.Mode != string(tc.mode) {
				t.Errorf("overhead %d mode %s", res.Overhead, res.Mode)
			}
			if res.Hops[0].TUS != 0 || res.TUS != res.Hops[len(res.Hops)-1].TUS || res.TUS <= 0 {
				t.Errorf("times: first %d, total %d", res.Hops[0].TUS, res.TUS)
			}
			if got := res.Hops[0].Change; got != "first seen here" {
				t.Errorf("first hop's change %q", got)
			}
			// The JSON contract.
			b, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			for _, k := range []string{"src", "dst", "mode", "delivered", "hops", "lost_at", "reason"} {
				if _, ok := m[k]; !ok {
					t.Errorf("JSON lacks %q", k)
				}
			}
			hop := m["hops"].([]any)[0].(map[string]any)
			for _, k := range []string{"index", "node", "interface", "netns", "direction", "t_us", "layers", "change", "explain"} {
				if _, ok := hop[k]; !ok {
					t.Errorf("JSON hop lacks %q", k)
				}
			}
		})
	}
}

func TestRunVXLANHeaders(t *testing.T) {
	res, _ := traceFake(t, fixture(netmodes.VXLAN, 1), "a", "b", -1, nil, Request{})
	eth0 := res.Hops[3]
	if eth0.Node != "node1" || eth0.Interface != "eth0" || eth0.Encap != EncapVXLAN {
		t.Fatalf("hop 4 is %s %s %s", eth0.Node, eth0.Interface, eth0.Encap)
	}
	udp, vx, inner := eth0.Layers[2], eth0.Layers[3], eth0.Layers[5]
	if udp.DstPort != 4789 || vx.VNI != 4096 || inner.Src != "10.42.1.2" || inner.Dst != "10.42.2.2" {
		t.Errorf("udp %+v vxlan %+v inner %+v", udp, vx, inner)
	}
	if !strings.Contains(eth0.Change, "+ outer 192.168.34.11 → 192.168.34.12 UDP 4789 VNI 4096") || !strings.Contains(eth0.Change, "+50 bytes") {
		t.Errorf("hop 4 change %q", eth0.Change)
	}
	if c := res.Hops[2].Change; !strings.Contains(c, "ttl 64→63") {
		t.Errorf("vxlan.calico out change %q", c)
	}
	if c := res.Hops[7].Change; !strings.Contains(c, "− outer headers removed (decapsulated)") || !strings.Contains(c, "-50 bytes") {
		t.Errorf("vxlan.calico in change %q", c)
	}
	if c := res.Hops[4].Change; c != "same frame" {
		t.Errorf("bridge port change %q", c)
	}
}

func TestRunLost(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     netmodes.Kind
		break_   func(*Topology)
		seeUntil int
		tune     func(*fakeNet)
		hop      int
		node     string
		cause    string
		reason   string
		missing  string
	}{{
		name: "nothing explains it", mode: netmodes.VXLAN, seeUntil: 3, hop: 3, node: "node1", cause: CauseUnknown,
		reason: "dropped after hop 3: no route, neighbour or MTU problem found",
	}, {
		name: "route deleted", mode: netmodes.VXLAN, seeUntil: -1,
		break_: func(t *Topology) { deleteRoute(t, "node1", "10.42.2.0/24") },
		hop:    2, node: "node1", cause: CauseNoRoute, missing: "10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink",
		reason: "node1 has no route to 10.42.2.0/24 (node2's pod block): the vxlan mode's route `10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink` is missing; its default route `default via 192.168.34.254 dev eth0` sent the packet out of the cluster to host 192.168.34.254 instead",
	}, {
		name: "MTU", mode: netmodes.VXLAN, seeUntil: 3,
		break_: func(t *Topology) {
			n, _ := t.node("node1")
			for i := range n.State.Devices {
				if n.State.Devices[i].Name == "eth0" {
					n.State.Devices[i].MTU = 100
				}
			}
		},
		hop: 3, node: "node1", cause: CauseMTU,
		reason: "the packet is 134 bytes but eth0 on node1 has MTU 100 and the packet may not be fragmented (DF): it is dropped",
	}, {
		name: "policy", mode: netmodes.BGP, seeUntil: 7,
		tune: func(f *fakeNet) {
			f.drops = map[string][]PolicyDrop{"node2": {{Policy: "default/deny-a", Rule: "ingress rule 1", Drops: 4}}}
			f.after = map[string][]PolicyDrop{"node2": {{Policy: "default/deny-a", Rule: "ingress rule 1", Drops: 5}}}
		},
		hop: 7, node: "node2", cause: CausePolicy,
		reason: "network policy default/deny-a on node2 dropped it (ingress rule 1)",
	}, {
		name: "neighbour", mode: netmodes.BGP, seeUntil: 2,
		tune: func(f *fakeNet) { f.states = map[string]*netmodes.State{"node1": {}} },
		hop:  2, node: "node1", cause: CauseNeighbour,
		reason: "node1 got no ARP answer for the next hop 192.168.34.12 on eth0 (neighbour failure)",
	}, {
		name: "capture failed where it vanished", mode: netmodes.BGP, seeUntil: 2,
		tune: func(f *fakeNet) { f.failOpen = map[string]string{"eth0": "no such device"} },
		hop:  2, node: "node1", cause: CauseCaptureError,
		reason: "hop 3 (node1 · eth0) could not be captured: no such device",
	}, {
		name: "the sender's MTU", mode: netmodes.BGP,
		tune: func(f *fakeNet) {
			f.probe = &ProbeResult{Length: 1528, Code: ProbeMTU, Error: "1528 bytes: message too long"}
		},
		hop: 0, node: "node1", cause: CauseMTU,
		reason: "default/a cannot send 1528 bytes: larger than the MTU of its interface (1528 bytes: message too long)",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			topo := fixture(tc.mode, 1)
			if tc.break_ != nil {
				tc.break_(topo)
			}
			res, _ := traceFake(t, topo, "a", "b", tc.seeUntil, tc.tune, Request{})
			if res.Delivered || res.LostAt == nil {
				t.Fatalf("delivered %v, lost at %+v", res.Delivered, res.LostAt)
			}
			if res.LostAt.Hop != tc.hop || res.LostAt.Node != tc.node || res.Cause != tc.cause || res.Reason != tc.reason || res.MissingRoute != tc.missing {
				t.Errorf("lost at %+v cause %s missing %q\nreason %s\n  want hop %d node %s cause %s missing %q\nreason %s",
					res.LostAt, res.Cause, res.MissingRoute, res.Reason, tc.hop, tc.node, tc.cause, tc.missing, tc.reason)
			}
		})
	}
}

func TestRunStrays(t *testing.T) {
	topo := fixture(netmodes.VXLAN, 1)
	deleteRoute(topo, "node1", "10.42.2.0/24")
	res, _ := traceFake(t, topo, "a", "b", -1, nil, Request{})
	var strays []string
	for _, h := range res.Hops {
		if h.Stray && h.Seen {
			strays = append(strays, h.Node+" "+h.Interface)
		}
	}
	if want := []string{"node1 eth0", "underlay node1", "underlay host"}; !slices.Equal(strays, want) {
		t.Errorf("strays seen %v, want %v", strays, want)
	}
	if h := res.Hops[1]; h.Route != "default via 192.168.34.254 dev eth0" {
		t.Errorf("the route that sent it astray: %q", h.Route)
	}
}

func TestRunCount(t *testing.T) {
	res, f := traceFake(t, fixture(netmodes.BGP, 1), "a", "b", -1, nil, Request{Count: 3})
	if len(res.Probes) != 3 || len(f.probes) != 3 {
		t.Fatalf("%d probes summarised, %d sent", len(res.Probes), len(f.probes))
	}
	seen := map[string]bool{}
	for i, p := range f.probes {
		if p.Seq != uint32(i+1) || seen[string(p.Marker)] {
			t.Errorf("probe %d: seq %d, marker reused %v", i, p.Seq, seen[string(p.Marker)])
		}
		seen[string(p.Marker)] = true
		if !res.Probes[i].Delivered || res.Probes[i].Seen != 8 {
			t.Errorf("probe %d: %+v", i, res.Probes[i])
		}
	}
	if n := len(res.frames[0]); n != 3 {
		t.Errorf("hop 1 has %d frames for the pcap, want one per probe", n)
	}
}

func TestRunService(t *testing.T) {
	topo := fixture(netmodes.BGP, 1)
	topo.Services = []Service{{Namespace: "default", Name: "web", ClusterIP: netip.MustParseAddr("10.96.0.20"),
		Ports: []ServicePort{{Protocol: TCP, Port: 80, TargetPort: 8080, Endpoints: []netip.Addr{netip.MustParseAddr("10.42.2.2"), netip.MustParseAddr("10.42.1.3")}}}}}
	res, f := traceFake(t, topo, "a", "svc/web", -1, nil, Request{Proto: TCP, Port: 80})
	// The fake network answers for 10.42.1.3 (c, on node1): the plan the
	// frames follow is chosen.
	if !res.Delivered || res.Dst.Endpoint != "default/c" || len(res.Hops) != 4 {
		t.Fatalf("delivered %v to %q in %d hops (%s)", res.Delivered, res.Dst.Endpoint, len(res.Hops), res.Reason)
	}
	if p := f.probes[0]; p.Dst != netip.MustParseAddr("10.96.0.20") || p.Port != 80 || p.Proto != TCP {
		t.Errorf("probe %+v", p)
	}
	topo.Services[0].Ports[0].Endpoints = nil
	res, err := Run(context.Background(), topo, Request{Src: mustResolve(topo, "a"), Dst: mustResolve(topo, "svc/web"), Proto: TCP, Port: 80}, &fakeNet{})
	if err != nil || res.Delivered || res.Cause != CauseNoEndpoint {
		t.Errorf("no endpoints: %+v %v", res, err)
	}
	if _, err := Run(context.Background(), topo, Request{Src: mustResolve(topo, "a"), Dst: mustResolve(topo, "svc/web"), Proto: ICMP}, &fakeNet{}); err == nil {
		t.Error("ICMP to a Service")
	}
}

func TestWritePcap(t *testing.T) {
	res, _ := traceFake(t, fixture(netmodes.IPIP, 1), "a", "b", 6, nil, Request{})
	var buf bytes.Buffer
	if err := WritePcap(&buf, res); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&buf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	var last time.Time
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		got = append(got, ci.InterfaceIndex)
		if ci.Timestamp.Before(last) || len(data) == 0 {
			t.Errorf("packet on interface %d: %d bytes at %s after %s", ci.InterfaceIndex, len(data), ci.Timestamp, last)
		}
		last = ci.Timestamp
	}
	if want := []int{0, 1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("packets on interfaces %v, want %v", got, want)
	}
	if n := r.NInterfaces(); n != len(res.Hops) {
		t.Fatalf("%d interfaces for %d hops", n, len(res.Hops))
	}
	for i, h := range res.Hops {
		intf, _ := r.Interface(i)
		want := layers.LinkTypeEthernet
		if h.Interface == "tunl0" {
			want = layers.LinkTypeRaw
		}
		if intf.LinkType != want || !strings.HasPrefix(intf.Name, strings.Split(intf.Name, " ")[0]) || !strings.Contains(intf.Name, h.Interface) {
			t.Errorf("interface %d: %q link type %v, want %v", i, intf.Name, intf.LinkType, want)
		}
	}
}
