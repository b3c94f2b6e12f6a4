package trace

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/klab-dev/klab/netmodes"
)

func TestPlanPath(t *testing.T) {
	underlay := []string{"node1 eth0 out", "underlay node1 in", "underlay node2 out", "node2 eth0 in"}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name     string
		mode     netmodes.Kind
		subnets  int
		src, dst string
		break_   func(*Topology)
		want     []string
		reached  bool
		cause    string
		missing  string
		reason   []string // substrings of the loss's reason
		stray    int      // points marked stray
		encap    map[int]string
	}{{
		name: "bgp pod to pod", mode: netmodes.BGP, src: "a", dst: "b",
		want:    cat([]string{"default/a eth0 out", "node1 calia in"}, underlay, []string{"node2 calib out", "default/b eth0 in"}),
		reached: true,
	}, {
		name: "vxlan pod to pod", mode: netmodes.VXLAN, src: "a", dst: "b",
		want: cat([]string{"default/a eth0 out", "node1 calia in", "node1 vxlan.calico out"}, underlay,
			[]string{"node2 vxlan.calico in", "node2 calib out", "default/b eth0 in"}),
		reached: true,
		encap:   map[int]string{3: EncapVXLAN, 4: EncapVXLAN, 5: EncapVXLAN, 6: EncapVXLAN, 7: EncapNone},
	}, {
		name: "ipip pod to pod", mode: netmodes.IPIP, src: "a", dst: "b",
		want: cat([]string{"default/a eth0 out", "node1 calia in", "node1 tunl0 out"}, underlay,
			[]string{"node2 tunl0 in", "node2 calib out", "default/b eth0 in"}),
		reached: true,
		encap:   map[int]string{3: EncapIPIP, 6: EncapIPIP},
	}, {
		name: "same node: no encapsulation", mode: netmodes.VXLAN, src: "a", dst: "c",
		want:    []string{"default/a eth0 out", "node1 calia in", "node1 calic out", "default/c eth0 in"},
		reached: true,
	}, {
		name: "pod to node", mode: netmodes.VXLAN, src: "default/a", dst: "node2",
		want:    cat([]string{"default/a eth0 out", "node1 calia in"}, underlay),
		reached: true,
	}, {
		name: "pod to its own node", mode: netmodes.BGP, src: "a", dst: "node1",
		want:    []string{"default/a eth0 out", "node1 calia in"},
		reached: true,
	}, {
		name: "node to pod", mode: netmodes.VXLAN, src: "node1", dst: "10.42.2.2",
		want:    cat([]string{"node1 vxlan.calico out"}, underlay, []string{"node2 vxlan.calico in", "node2 calib out", "default/b eth0 in"}),
		reached: true,
	}, {
		name: "vxlan across a router", mode: netmodes.VXLAN, subnets: 2, src: "a", dst: "b",
		want: []string{"default/a eth0 out", "node1 calia in", "node1 vxlan.calico out", "node1 eth0 out",
			"underlay node1 in", "underlay router-a out", "router eth0 in", "router eth1 out", "underlay router-b in", "underlay node2 out",
			"node2 eth0 in", "node2 vxlan.calico in", "node2 calib out", "default/b eth0 in"},
		reached: true,
	}, {
		name: "vxlan route deleted: the default route takes it to the host", mode: netmodes.VXLAN, src: "a", dst: "b",
		break_: func(t *Topology) { deleteRoute(t, "node1", "10.42.2.0/24") },
		want:   []string{"default/a eth0 out", "node1 calia in", "node1 eth0 out", "underlay node1 in", "underlay host out"},
		cause:  CauseNoRoute, missing: "10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink", stray: 3,
		reason: []string{"node1 has no route to 10.42.2.0/24 (node2's pod block)", "default via 192.168.34.254 dev eth0", "out of the cluster"},
	}, {
		name: "bgp route and default route deleted", mode: netmodes.BGP, src: "a", dst: "b",
		break_: func(t *Topology) {
			deleteRoute(t, "node1", "10.42.2.0/24")
			deleteRoute(t, "node1", "0.0.0.0/0")
		},
		want:  []string{"default/a eth0 out", "node1 calia in"},
		cause: CauseNoRoute, missing: "10.42.2.0/24 via 192.168.34.12 dev eth0",
		reason: []string{"the bgp mode's route `10.42.2.0/24 via 192.168.34.12 dev eth0` is missing", "network unreachable"},
	}, {
		name: "pod route deleted on the destination node", mode: netmodes.BGP, src: "a", dst: "b",
		break_: func(t *Topology) { deleteRoute(t, "node2", "10.42.2.2/32") },
		want:   cat([]string{"default/a eth0 out", "node1 calia in"}, underlay, []string{"node2 eth0 out", "underlay node2 in", "underlay host out"}),
		cause:  CauseNoRoute, missing: "10.42.2.2/32 dev calib", stray: 3,
		reason: []string{"node2 has no route to pod default/b (10.42.2.2): the CNI route `10.42.2.2/32 dev calib` is missing"},
	}, {
		name: "bgp across a router: no route (not on-link)", mode: netmodes.BGP, subnets: 2, src: "a", dst: "b",
		want:  []string{"default/a eth0 out", "node1 calia in", "node1 eth0 out", "underlay node1 in", "underlay router-a out", "router eth0 in"},
		cause: CauseNoRoute, reason: []string{"the router has no route to 10.42.2.2: it only joins the subnets 192.168.34.0/24, 192.168.35.0/24", "klab net peer router"},
	}, {
		name: "bgp across a router that learned the routes", mode: netmodes.BGP, subnets: 2, src: "a", dst: "b",
		break_: func(t *Topology) {
			// klab net peer router: the router reflects the blocks with
			// itself as the next hop across subnets, and routes them.
			n1, _ := t.node("node1")
			n1.State.Routes = append(n1.State.Routes, netmodes.RouteInfo{Route: netmodes.Route{Dst: netip.MustParsePrefix("10.42.2.0/24"), Via: netip.MustParseAddr("192.168.34.1"), Dev: "eth0"}, Proto: "klab"})
			t.machine("router").State = &netmodes.State{Routes: []netmodes.RouteInfo{
				{Route: netmodes.Route{Dst: netip.MustParsePrefix("192.168.34.0/24"), Dev: "eth0"}, Proto: "kernel"},
				{Route: netmodes.Route{Dst: netip.MustParsePrefix("192.168.35.0/24"), Dev: "eth1"}, Proto: "kernel"},
				{Route: netmodes.Route{Dst: netip.MustParsePrefix("10.42.2.0/24"), Via: netip.MustParseAddr("192.168.35.12"), Dev: "eth1"}, Proto: "bird"},
			}}
		},
		want: []string{"default/a eth0 out", "node1 calia in", "node1 eth0 out", "underlay node1 in", "underlay router-a out", "router eth0 in",
			"router eth1 out", "underlay router-b in", "underlay node2 out", "node2 eth0 in", "node2 calib out", "default/b eth0 in"},
		reached: true,
	}, {
		name: "vxlan without the FDB entry", mode: netmodes.VXLAN, src: "a", dst: "b",
		break_: func(t *Topology) { n, _ := t.node("node1"); n.State.FDB = n.State.FDB[:1] },
		want:   []string{"default/a eth0 out", "node1 calia in"},
		cause:  CauseFDB, reason: []string{"no FDB entry for VTEP 66:6b:c0:a8:22:0c", "fdb 66:6b:c0:a8:22:0c dst 192.168.34.12"},
	}, {
		name: "vxlan without the neighbour entry", mode: netmodes.VXLAN, src: "a", dst: "b",
		break_: func(t *Topology) { n, _ := t.node("node1"); n.State.Neighbors = n.State.Neighbors[:1] },
		want:   []string{"default/a eth0 out", "node1 calia in"},
		cause:  CauseNeighbour, reason: []string{"no neighbour entry for the VTEP address 10.42.2.0"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			topo := fixture(tc.mode, max(tc.subnets, 1))
			if tc.break_ != nil {
				tc.break_(topo)
			}
			src, dst := mustResolve(topo, tc.src), mustResolve(topo, tc.dst)
			p, err := topo.PlanPath(English, src, dst, dst.IP)
			if err != nil {
				t.Fatal(err)
			}
			if got := places(p.Points); !slices.Equal(got, tc.want) {
				t.Errorf("points:\n got %q\nwant %q", got, tc.want)
			}
			if p.Reached != tc.reached {
				t.Errorf("reached %v, want %v (loss %+v)", p.Reached, tc.reached, p.Loss)
			}
			if tc.reached {
				if p.Loss != nil || p.Final != nil || !p.Points[len(p.Points)-1].Final {
					t.Errorf("reached, but loss %+v, final %+v", p.Loss, p.Final)
				}
				for i, want := range tc.encap {
					if got := p.Points[i].Hop.Encap; got != want {
						t.Errorf("point %d (%s): encap %s, want %s", i, p.Points[i].Hop.Interface, got, want)
					}
				}
				return
			}
			if p.Loss == nil {
				t.Fatal("not reached, and no loss")
			}
			if p.Loss.Cause != tc.cause || p.Loss.MissingRoute != tc.missing {
				t.Errorf("loss %+v, want cause %s missing %q", p.Loss, tc.cause, tc.missing)
			}
			for _, s := range tc.reason {
				if !strings.Contains(p.Loss.Reason, s) {
					t.Errorf("reason %q lacks %q", p.Loss.Reason, s)
				}
			}
			strays := 0
			for _, pt := range p.Points {
				if pt.Hop.Stray {
					strays++
				}
			}
			if strays != tc.stray {
				t.Errorf("%d stray points, want %d", strays, tc.stray)
			}
			if p.Final == nil || !p.Final.Final || p.Final.Hop.Direction != "in" {
				t.Errorf("final point %+v", p.Final)
			}
		})
	}
}

func TestPlanAnnotations(t *testing.T) {
	for _, tc := range []struct {
		mode   netmodes.Kind
		hop    int
		route  string
		origin string
		fdb    string
	}{
		{netmodes.VXLAN, 1, "10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink", "programmed from the API: the VXLAN peers", ""},
		{netmodes.VXLAN, 2, "", "", "fdb 66:6b:c0:a8:22:0c dst 192.168.34.12 dev vxlan.calico"},
		{netmodes.VXLAN, 7, "10.42.2.2/32 dev calib scope link", "the pod's route, added by CNI", ""},
		{netmodes.BGP, 1, "10.42.2.0/24 via 192.168.34.12 dev eth0", "learned over BGP from node2", ""},
		{netmodes.BGP, 5, "10.42.2.2/32 dev calib scope link", "the pod's route, added by CNI", ""},
		{netmodes.IPIP, 1, "10.42.2.0/24 via 192.168.34.12 dev tunl0 onlink", "learned over BGP from node2", ""},
	} {
		topo := fixture(tc.mode, 1)
		p, err := topo.PlanPath(English, mustResolve(topo, "a"), mustResolve(topo, "b"), netip.MustParseAddr("10.42.2.2"))
		if err != nil {
			t.Fatal(err)
		}
		h := p.Points[tc.hop].Hop
		if h.Route != tc.route || h.RouteOrigin != tc.origin || h.FDB != tc.fdb {
			t.Errorf("%s hop %d (%s %s): route %q (%s) fdb %q, want %q (%s) fdb %q", tc.mode, tc.hop, h.Node, h.Interface, h.Route, h.RouteOrigin, h.FDB, tc.route, tc.origin, tc.fdb)
		}
	}
}

func TestPlanExplains(t *testing.T) {
	topo := fixture(netmodes.IPIP, 1)
	p, err := topo.PlanPath(Chinese, mustResolve(topo, "node1"), mustResolve(topo, "b"), netip.MustParseAddr("10.42.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	first := p.Points[0].Hop
	if first.Interface != "tunl0" || !strings.HasPrefix(first.Explain, "node1 自己发出这个包；内核选 10.42.1.0 作为源地址") ||
		strings.Contains(first.Explain, "TTL") || !strings.Contains(first.Explain, "用户态封装器") {
		t.Errorf("a node's own packet into userspace tunl0: %q", first.Explain)
	}
	for _, pt := range p.Points {
		if pt.Hop.Explain == "" {
			t.Errorf("%s %s has no explanation", pt.Hop.Node, pt.Hop.Interface)
		}
	}
}

func TestPlanCaptureTargets(t *testing.T) {
	topo := fixture(netmodes.VXLAN, 2)
	p, err := topo.PlanPath(English, mustResolve(topo, "a"), mustResolve(topo, "b"), netip.MustParseAddr("10.42.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range p.Points {
		switch pt.Hop.Kind {
		case HopPod:
			if pt.Capturer == "" || pt.Target.Pod == "" || pt.Target.Netns != "" {
				t.Errorf("pod point %+v: the pod's node captures in the pod's namespace", pt)
			}
		case HopBridgePort:
			if pt.Capturer != "" || pt.Target.Netns != "/run/netns/klab-tt-underlay" || pt.Hop.Bridge == "" {
				t.Errorf("bridge port %+v: the host captures in the underlay namespace", pt)
			}
		case HopRouter:
			if pt.Capturer != "" || pt.Target.Netns != "/run/netns/klab-tt-router" {
				t.Errorf("router point %+v: the host captures in the router's namespace", pt)
			}
		default:
			if pt.Capturer != pt.Hop.Node || pt.Target.Netns != "" || pt.Target.Pod != "" {
				t.Errorf("node point %+v: the node's agent captures in its own namespace", pt)
			}
		}
	}
}

func TestResolve(t *testing.T) {
	topo := fixture(netmodes.BGP, 1)
	topo.Services = []Service{{Namespace: "default", Name: "web", ClusterIP: netip.MustParseAddr("10.96.0.20"),
		Ports: []ServicePort{{Name: "http", Protocol: TCP, Port: 80, TargetPort: 8080, Endpoints: []netip.Addr{netip.MustParseAddr("10.42.2.2")}}}}}
	for _, tc := range []struct {
		in    string
		dst   bool
		proto string
		port  int
		want  string // kind/name/ip, or "error: substring"
	}{
		{"a", false, ICMP, 0, "pod/default/a/10.42.1.2"},
		{"default/b", false, ICMP, 0, "pod/default/b/10.42.2.2"},
		{"10.42.1.3", true, ICMP, 0, "pod/default/c/10.42.1.3"},
		{"node2", true, ICMP, 0, "node/node2/192.168.34.12"},
		{"192.168.34.11", false, ICMP, 0, "node/node1/192.168.34.11"},
		{"svc/web", true, TCP, 0, "service/default/web/10.96.0.20"},
		{"10.96.0.20", true, TCP, 80, "service/default/web/10.96.0.20"},
		{"web", true, TCP, 0, "service/default/web/10.96.0.20"},
		{"svc/web", false, TCP, 0, "error: can only be its destination"},
		{"svc/web", true, UDP, 53, "error: Service default/web has no udp port 53: its ports are 80/tcp"},
		{"10.96.0.20", false, TCP, 0, "error: a trace starts at a pod or a node"},
		{"nope", true, ICMP, 0, "error: no running pod default/nope with an IP, and no node \"nope\" (the nodes are master, node1, node2)"},
		{"10.1.2.3", true, ICMP, 0, "error: no pod, node or Service has the address 10.1.2.3"},
		{"", true, ICMP, 0, "error: empty endpoint"},
	} {
		e, err := topo.Resolve(tc.in, tc.dst, tc.proto, tc.port)
		got := e.Kind + "/" + e.Name + "/" + e.IP.String()
		if err != nil {
			got = "error: " + err.Error()
		}
		if want, ok := strings.CutPrefix(tc.want, "error: "); ok && !strings.Contains(got, want) || !ok && got != tc.want {
			t.Errorf("Resolve(%q, dst %v): %s, want %s", tc.in, tc.dst, got, tc.want)
		}
	}
}

func TestLookupLongestPrefix(t *testing.T) {
	st := &netmodes.State{Routes: []netmodes.RouteInfo{
		{Route: netmodes.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Dev: "eth0"}},
		{Route: netmodes.Route{Dst: netip.MustParsePrefix("10.42.0.0/16"), Dev: "a"}},
		{Route: netmodes.Route{Dst: netip.MustParsePrefix("10.42.2.0/24"), Dev: "b"}},
		{Route: netmodes.Route{Dst: netip.MustParsePrefix("10.42.2.2/32"), Dev: "c"}},
	}}
	for ip, dev := range map[string]string{"10.42.2.2": "c", "10.42.2.3": "b", "10.42.9.1": "a", "8.8.8.8": "eth0"} {
		if r, ok := lookup(st, netip.MustParseAddr(ip)); !ok || r.Dev != dev {
			t.Errorf("lookup %s: %s, want %s", ip, r.Dev, dev)
		}
	}
	if _, ok := lookup(&netmodes.State{}, netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("a route in an empty table")
	}
}
