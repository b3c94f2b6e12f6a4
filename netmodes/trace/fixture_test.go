package trace

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/ipip"
	"github.com/klab-dev/klab/netmodes/vxlan"
)

// fixture builds the topology of a small cluster in a mode, with node
// states as the modes program them: master (.10), node1 (.11) and node2
// (.12) in 192.168.34.0/24, or with subnets=2 node2 in 192.168.35.0/24
// behind a router; pods a and c on node1, b on node2.
func fixture(mode netmodes.Kind, subnets int) *Topology {
	t := &Topology{Cluster: "tt", Mode: netmodes.Config{Mode: mode}}
	type spec struct {
		name  string
		ip    string
		block string
		sub   int
	}
	nodes := []spec{{"master", "192.168.34.10", "10.42.0.0/24", 0}, {"node1", "192.168.34.11", "10.42.1.0/24", 0}, {"node2", "192.168.34.12", "10.42.2.0/24", 0}}
	if subnets == 2 {
		nodes[2] = spec{"node2", "192.168.35.12", "10.42.2.0/24", 1}
	}
	t.Pods = []Pod{
		{Namespace: "default", Name: "a", UID: "uid-a", Node: "node1", IP: netip.MustParseAddr("10.42.1.2"), HostVeth: "calia"},
		{Namespace: "default", Name: "c", UID: "uid-c", Node: "node1", IP: netip.MustParseAddr("10.42.1.3"), HostVeth: "calic"},
		{Namespace: "default", Name: "b", UID: "uid-b", Node: "node2", IP: netip.MustParseAddr("10.42.2.2"), HostVeth: "calib"},
	}
	t.Underlay = Underlay{Netns: "/run/netns/klab-tt-underlay", NetnsName: "klab-tt-underlay",
		Subnets: []Subnet{{Name: "a", CIDR: netip.MustParsePrefix("192.168.34.0/24"), Bridge: "br-a"}}}
	if subnets == 2 {
		t.Underlay.Subnets = append(t.Underlay.Subnets, Subnet{Name: "b", CIDR: netip.MustParsePrefix("192.168.35.0/24"), Bridge: "br-b"})
		t.Underlay.Machines = append(t.Underlay.Machines, Machine{Name: "router", Role: RoleRouter, Netns: "/run/netns/klab-tt-router", NetnsName: "klab-tt-router",
			Links: []Link{{Subnet: 0, IP: netip.MustParseAddr("192.168.34.1"), Port: "router-a", NIC: "eth0"}, {Subnet: 1, IP: netip.MustParseAddr("192.168.35.1"), Port: "router-b", NIC: "eth1"}}})
	}
	t.Underlay.Machines = append(t.Underlay.Machines, Machine{Name: "host", Role: RoleHost, Links: []Link{{Subnet: 0, IP: netip.MustParseAddr("192.168.34.254"), Port: "host"}}})
	var all []netmodes.Node
	for _, s := range nodes {
		ip := netip.MustParseAddr(s.ip)
		sub := t.Underlay.Subnets[s.sub]
		all = append(all, netmodes.Node{Name: s.name, Underlay: netip.PrefixFrom(ip, sub.CIDR.Bits()), Block: netip.MustParsePrefix(s.block)})
		t.Underlay.Machines = append(t.Underlay.Machines, Machine{Name: s.name, Role: RoleNode, Links: []Link{{Subnet: s.sub, IP: ip, Port: s.name, NIC: "eth0"}}})
	}
	for i, s := range nodes {
		self := all[i]
		sub := t.Underlay.Subnets[s.sub]
		st := &netmodes.State{}
		st.Devices = append(st.Devices,
			netmodes.Device{Name: "lo", Kind: "device", MTU: 65536, Up: true, Addrs: []string{"127.0.0.1/8"}},
			netmodes.Device{Name: "eth0", Kind: "veth", MTU: 1500, MAC: fmt.Sprintf("02:00:00:00:00:%02x", self.IP().As4()[3]), Up: true, Addrs: []string{self.Underlay.String()}})
		gw := netip.MustParseAddr("192.168.34.254")
		if subnets == 2 {
			gw = netip.PrefixFrom(sub.CIDR.Addr().Next(), 24).Addr()
		}
		st.Routes = append(st.Routes,
			netmodes.RouteInfo{Route: netmodes.Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gw, Dev: "eth0"}, Proto: "boot"},
			netmodes.RouteInfo{Route: netmodes.Route{Dst: sub.CIDR, Dev: "eth0"}, Proto: "kernel", Scope: "link"})
		for _, p := range t.Pods {
			if p.Node == s.name {
				st.Devices = append(st.Devices, netmodes.Device{Name: p.HostVeth, Kind: "veth", MTU: 1450, Up: true})
				st.Routes = append(st.Routes, netmodes.RouteInfo{Route: netmodes.Route{Dst: netip.PrefixFrom(p.IP, 32), Dev: p.HostVeth}, Proto: "boot", Scope: "link"})
			}
		}
		var peers []netmodes.Node
		for j, p := range all {
			if j != i {
				peers = append(peers, p)
			}
		}
		cfg := t.Mode.WithDefaults()
		var routes []netmodes.Route
		impl := netmodes.Kernel
		switch mode {
		case netmodes.VXLAN:
			plan := vxlan.PlanFor(cfg, self, peers, "eth0")
			routes = plan.Routes
			st.Devices = append(st.Devices, netmodes.Device{Name: vxlan.Device, Kind: "vxlan", MTU: 1450, MAC: self.MAC().String(), Up: true,
				Addrs: []string{netip.PrefixFrom(self.TunnelAddress(), 32).String()}, VNI: 4096, Port: 4789, Local: self.IP().String()})
			for _, f := range plan.FDB {
				st.FDB = append(st.FDB, netmodes.FDBEntry{MAC: f.MAC.String(), Dst: f.Dst.String(), Dev: vxlan.Device})
			}
			for _, n := range plan.Neighbors {
				st.Neighbors = append(st.Neighbors, netmodes.Neighbor{IP: n.IP.String(), MAC: n.MAC.String(), Dev: vxlan.Device, State: "PERMANENT"})
			}
		case netmodes.IPIP:
			routes = ipip.PlanFor(cfg, self, peers, "eth0").Routes
			impl = netmodes.Userspace
			st.Devices = append(st.Devices, netmodes.Device{Name: ipip.Device, Kind: "tun", MTU: 1480, Up: true, Addrs: []string{netip.PrefixFrom(self.TunnelAddress(), 32).String()}})
		default:
			for _, p := range peers {
				if self.SameSubnet(p) {
					routes = append(routes, netmodes.PlainRoute(p, "eth0"))
				}
			}
		}
		for _, r := range routes {
			st.Routes = append(st.Routes, netmodes.RouteInfo{Route: r, Proto: "klab"})
		}
		n := Node{Name: s.name, IP: self.IP(), Block: self.Block, Netns: "klab-tt-" + s.name, Implementation: impl, State: st}
		if mode != netmodes.VXLAN {
			for _, p := range peers {
				n.Learned = append(n.Learned, Learned{Prefix: p.Block, From: p.Name})
			}
		}
		t.Nodes = append(t.Nodes, n)
	}
	return t
}

// deleteRoute removes node's route to dst, as `ip route del` does.
func deleteRoute(t *Topology, node, dst string) {
	n, _ := t.node(node)
	p := netip.MustParsePrefix(dst)
	n.State.Routes = slices.DeleteFunc(n.State.Routes, func(r netmodes.RouteInfo) bool { return r.Dst == p })
}

// places is a plan's points as "node iface dir" (pods by name).
func places(pts []Point) []string {
	var out []string
	for _, p := range pts {
		who := p.Hop.Node
		if p.Hop.Pod != "" {
			who = p.Hop.Pod
		}
		out = append(out, who+" "+p.Hop.Interface+" "+p.Hop.Direction)
	}
	return out
}

func mustResolve(t *Topology, s string) Endpoint {
	e, err := t.Resolve(s, true, ICMP, 0)
	if err != nil {
		panic(err)
	}
	return e
}
