// Package fake is a tui.Cluster with fixed, made-up data, for the TUI's
// tests and benchmarks: a cluster that answers at once and changes only
// when the TUI asks it to (a mode switch, a pod deleted).
package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klab-dev/klab/tui"
)

// T0 is when the fake cluster was created; its other times follow it.
var T0 = time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)

// Cluster is a fake cluster.
type Cluster struct {
	// SwitchGate, when set, holds a mode switch before each node converges
	// until a value arrives, so that tests see the switch in progress.
	SwitchGate chan struct{}
	// CreateGate, when set, holds Create after its first step until a
	// value arrives; when ctx ends first, Create undoes its work (as klab
	// up does) and records "create undone".
	CreateGate chan struct{}

	mu     sync.Mutex
	name   string
	exists bool
	snap   tui.Snapshot
	feed   []tui.FeedItem
	trace  *tui.TraceResult
	labs   []tui.Lab
	subs   []chan struct{}
	calls  []string
}

// New returns the demo cluster: a master and two workers in vxlan mode,
// pods on both workers.
func New() *Cluster { return NewSized(2, 6) }

// NewSized returns a cluster with a master, workers and pods spread over
// the workers.
func NewSized(workers, pods int) *Cluster {
	c := &Cluster{name: "demo", exists: true}
	c.snap = snapshot(workers, pods)
	c.feed = feed()
	c.trace = vxlanTrace()
	c.labs = labs()
	return c
}

// NewTwoSubnets returns a cluster whose workers sit in two subnets joined
// by a router, in ipip cross-subnet mode.
func NewTwoSubnets() *Cluster {
	c := NewSized(3, 6)
	s := &c.snap
	s.Cluster.Subnets = []tui.Subnet{
		{Name: "a", CIDR: "192.168.34.0/24", Gateway: "192.168.34.1"},
		{Name: "b", CIDR: "192.168.35.0/24", Gateway: "192.168.35.1"},
	}
	s.Network.Mode, s.Network.CrossSubnet = "ipip", true
	for i := range s.Network.Nodes {
		s.Network.Nodes[i].Mode, s.Network.Nodes[i].Implementation = "ipip", "ipip userspace"
	}
	// node2 and node3 move to subnet b.
	for i := range s.Nodes {
		if n := &s.Nodes[i]; n.Name == "node2" || n.Name == "node3" {
			n.Subnet = 1
			n.IP = strings.Replace(n.IP, "192.168.34.", "192.168.35.", 1)
		}
	}
	s.Nodes = append(s.Nodes, tui.Node{Name: "router", Role: "router", IPs: []string{"192.168.34.1", "192.168.35.1"}, Machine: "running"})
	return c
}

// NewMissing returns a cluster that does not exist yet; Create makes it.
func NewMissing(name string) *Cluster {
	c := NewSized(2, 4)
	c.name, c.exists = name, false
	return c
}

func snapshot(workers, pods int) tui.Snapshot {
	s := tui.Snapshot{
		Cluster: tui.ClusterInfo{
			Name: "demo", Provider: "netns", Phase: "ready", Created: T0,
			Subnets: []tui.Subnet{{Name: "a", CIDR: "192.168.34.0/24"}},
			HostIP:  "192.168.34.254/24", PodCIDR: "10.42.0.0/16", ServiceCIDR: "10.96.0.0/16",
		},
		Network: tui.Network{Mode: "vxlan", PodCIDR: "10.42.0.0/16", MTU: 1450, Generation: 2},
	}
	names := []string{"master"}
	for i := 1; i <= workers; i++ {
		names = append(names, fmt.Sprintf("node%d", i))
	}
	for i, name := range names {
		n := tui.Node{
			Name: name, Role: "worker", IP: fmt.Sprintf("192.168.34.%d", 10+i), Machine: "running",
			Registered: true, Ready: true, PodCIDR: fmt.Sprintf("10.42.%d.0/24", i),
			CPU: tui.Resource{Allocatable: 2000}, Memory: tui.Resource{Allocatable: 2 << 30},
			Components: []tui.Component{{Name: "agent", State: "running", Since: T0}},
		}
		if i == 0 {
			n.Role = "master"
			n.Components = append([]tui.Component{
				{Name: "etcd", State: "running", Since: T0},
				{Name: "apiserver", State: "running", Since: T0},
				{Name: "scheduler", State: "running", Since: T0, Restarts: 1},
				{Name: "controller-manager", State: "running", Since: T0},
			}, n.Components...)
		}
		s.Nodes = append(s.Nodes, n)
		s.Network.Nodes = append(s.Network.Nodes, tui.NodeNetwork{
			Node: name, Mode: "vxlan", Implementation: "vxlan kernel", Converged: true, ObservedGeneration: 2, Since: T0,
		})
	}
	for i := range pods {
		node := 1 + i%max(workers, 1)
		if workers == 0 {
			node = 0
		}
		nd := &s.Nodes[node]
		ip := fmt.Sprintf("10.42.%d.%d", node, 2+i/max(workers, 1))
		name := fmt.Sprintf("web-7d9c%02d-%c%c%c%c%c", i/26, 'a'+i%26, 'b'+i%20, 'x', 'k'+i%7, 'q')
		if i < 2 {
			name = []string{"a", "b"}[i]
		}
		s.Pods = append(s.Pods, tui.Pod{
			Namespace: "default", Name: name, Node: nd.Name, IP: ip, Phase: "Running", Status: "Running",
			Ready: 1, Total: 1, Created: T0.Add(time.Duration(i) * time.Second), Containers: []string{"c"},
		})
		nd.Pods++
		nd.CPU.Requested += 100
		nd.Memory.Requested += 64 << 20
	}
	slices.SortFunc(s.Pods, func(a, b tui.Pod) int {
		if a.Namespace != b.Namespace {
			return compare(a.Namespace, b.Namespace)
		}
		return compare(a.Name, b.Name)
	})
	return s
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func feed() []tui.FeedItem {
	at := func(s int) time.Time { return T0.Add(time.Duration(s) * time.Second) }
	return []tui.FeedItem{
		{Time: at(1), Source: "controllers", Reason: "ScalingReplicaSet", Object: "deployment/web", Message: "Scaled up replica set web-7d9c to 2"},
		{Time: at(2), Source: "scheduler", Reason: "Scheduled", Object: "default/a", Message: "Successfully assigned default/a to node1"},
		{Time: at(3), Source: "cni", Node: "node1", Reason: "ADD", Object: "default/a", Message: "eth0 10.42.1.2/32 via 169.254.1.1, host side cali1a2b3c4d5e6 (12.5ms)",
			Detail: "request (stdin):\n{\n  \"cniVersion\": \"1.1.0\",\n  \"name\": \"klab\",\n  \"type\": \"klab\",\n  \"mtu\": 1450,\n  \"ipam\": {\"type\": \"klab\", \"subnet\": \"10.42.1.0/24\"}\n}\nresult (stdout):\n{\n  \"ips\": [{\"address\": \"10.42.1.2/32\", \"gateway\": \"169.254.1.1\"}]\n}"},
		{Time: at(3), Source: "agent", Node: "node1", Reason: "SandboxReady", Object: "default/a", Message: "pause pid 4242 holds the pod's namespaces; CNI ADD gave eth0 10.42.1.2"},
		{Time: at(4), Source: "network", Node: "node2", Reason: "routes", Message: "+ 10.42.1.0/24 via 10.42.1.0 dev vxlan.calico onlink"},
		{Time: at(5), Source: "scheduler", Reason: "FailedScheduling", Object: "default/big", Message: "0/3 nodes are available: 3 Insufficient cpu", Warning: true},
	}
}

// vxlanTrace is a trace from pod a (node1) to pod b (node2) in vxlan mode,
// in the shape `klab trace -o json` prints.
func vxlanTrace() *tui.TraceResult {
	const js = `{"src":{"kind":"pod","name":"default/a","ip":"10.42.1.2","node":"node1"},
"dst":{"kind":"pod","name":"default/b","ip":"10.42.2.2","node":"node2"},
"mode":"vxlan","proto":"icmp","delivered":true,"t_us":83,"overhead_bytes":50,"lost_at":null,"reason":"",
"hops":[
{"index":0,"node":"node1","pod":"default/a","interface":"eth0","kind":"pod","direction":"out","seen":true,"t_us":0,
 "layers":[{"type":"Ethernet","src":"7a:00:00:00:00:01","dst":"ee:ee:ee:ee:ee:ee"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":64,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"","explain":"the pod's default route sends it to 169.254.1.1; the host answers ARP for it (proxy ARP)"},
{"index":1,"node":"node1","interface":"cali1a2b3c4d5e6","kind":"veth","direction":"in","seen":true,"t_us":9,
 "layers":[{"type":"Ethernet","src":"7a:00:00:00:00:01","dst":"ee:ee:ee:ee:ee:ee"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":64,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"same frame, on the host side of the veth","route":"10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink","route_origin":"learned from the API","explain":"node1 routes it to node2's block through the VTEP"},
{"index":2,"node":"node1","interface":"vxlan.calico","kind":"vxlan","direction":"out","seen":true,"t_us":21,
 "layers":[{"type":"Ethernet","src":"66:00:00:00:00:11","dst":"66:00:00:00:00:12"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":63,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"ttl 64 → 63; eth → VTEP 66:00:00:00:00:12","fdb":"66:00:00:00:00:12 dst 192.168.34.12","explain":"the FDB maps node2's VTEP MAC to its underlay address"},
{"index":3,"node":"node1","interface":"eth0","kind":"nic","direction":"out","seen":true,"t_us":28,"encap":"vxlan",
 "layers":[{"type":"Ethernet","src":"c6:00:00:00:00:11","dst":"c6:00:00:00:00:12"},{"type":"IPv4","src":"192.168.34.11","dst":"192.168.34.12","ttl":64,"protocol":17},{"type":"UDP","src_port":51234,"dst_port":4789},{"type":"VXLAN","vni":4096},{"type":"Ethernet","src":"66:00:00:00:00:11","dst":"66:00:00:00:00:12"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":63,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"+ outer 192.168.34.11 → 192.168.34.12 UDP 4789 VNI 4096 (+50 bytes)","explain":"the VTEP wraps the frame in UDP"},
{"index":4,"node":"underlay","interface":"node1","kind":"bridge-port","direction":"in","seen":true,"t_us":40,"encap":"vxlan",
 "layers":[{"type":"Ethernet","src":"c6:00:00:00:00:11","dst":"c6:00:00:00:00:12"},{"type":"IPv4","src":"192.168.34.11","dst":"192.168.34.12","ttl":64,"protocol":17},{"type":"UDP","src_port":51234,"dst_port":4789},{"type":"VXLAN","vni":4096}],
 "change":"","explain":"the underlay bridge br-a switches it to node2's port"},
{"index":5,"node":"underlay","interface":"node2","kind":"bridge-port","direction":"out","seen":true,"t_us":52,"encap":"vxlan",
 "layers":[{"type":"Ethernet","src":"c6:00:00:00:00:11","dst":"c6:00:00:00:00:12"},{"type":"IPv4","src":"192.168.34.11","dst":"192.168.34.12","ttl":64,"protocol":17},{"type":"UDP","src_port":51234,"dst_port":4789},{"type":"VXLAN","vni":4096}],
 "change":"","explain":""},
{"index":6,"node":"node2","interface":"eth0","kind":"nic","direction":"in","seen":true,"t_us":61,"encap":"vxlan",
 "layers":[{"type":"Ethernet","src":"c6:00:00:00:00:11","dst":"c6:00:00:00:00:12"},{"type":"IPv4","src":"192.168.34.11","dst":"192.168.34.12","ttl":64,"protocol":17},{"type":"UDP","src_port":51234,"dst_port":4789},{"type":"VXLAN","vni":4096}],
 "change":"","explain":"UDP 4789 goes to the VXLAN device"},
{"index":7,"node":"node2","interface":"vxlan.calico","kind":"vxlan","direction":"in","seen":true,"t_us":70,
 "layers":[{"type":"Ethernet","src":"66:00:00:00:00:11","dst":"66:00:00:00:00:12"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":63,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"− outer headers removed (decapsulated)","explain":"the VTEP unwraps it"},
{"index":8,"node":"node2","interface":"cali4d5e6f7a8b9","kind":"veth","direction":"out","seen":true,"t_us":79,
 "layers":[{"type":"Ethernet","src":"ee:ee:ee:ee:ee:ee","dst":"7a:00:00:00:00:02"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":62,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"ttl 63 → 62; eth → 7a:00:00:00:00:02","route":"10.42.2.2 dev cali4d5e6f7a8b9 scope link","route_origin":"CNI","explain":"a /32 route per pod"},
{"index":9,"node":"node2","pod":"default/b","interface":"eth0","kind":"pod","direction":"in","seen":true,"t_us":83,
 "layers":[{"type":"Ethernet","src":"ee:ee:ee:ee:ee:ee","dst":"7a:00:00:00:00:02"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":62,"protocol":1},{"type":"ICMPv4","icmp":"echo request","id":7,"seq":1}],
 "change":"","explain":"delivered"}
]}`
	var r tui.TraceResult
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		panic("fake trace: " + err.Error())
	}
	return &r
}

func labs() []tui.Lab {
	return []tui.Lab{
		{ID: "vxlan", Title: tui.Text{EN: "VXLAN mode (VTEP, FDB, 50 bytes)", ZH: "VXLAN 模式（VTEP、FDB、50 字节）"}, Active: true, Step: 1, Done: 1, Steps: []tui.LabStep{
			{Title: tui.Text{EN: "Switch to VXLAN", ZH: "切换到 VXLAN"}, Text: tui.Text{EN: "In **VXLAN mode** each node is a VTEP: run `klab net mode vxlan`.", ZH: "在 **VXLAN 模式**下，每个节点都是一个 VTEP。"},
				Commands: []string{"klab net mode vxlan"}, Checks: []tui.Text{{EN: "every node reports vxlan", ZH: "每个节点都报告 vxlan"}}},
			{Title: tui.Text{EN: "The FDB", ZH: "FDB"}, Text: tui.Text{EN: "Each node's FDB maps the other VTEPs to their nodes.", ZH: "每个节点的 FDB 把其他 VTEP 映射到它们的节点。"},
				Commands: []string{"klab net routes node1 -o wide"}, Checks: []tui.Text{{EN: "node1 has an FDB entry for node2's VTEP", ZH: "node1 有 node2 的 VTEP 的 FDB 条目"}}},
		}},
		{ID: "bgp", Title: tui.Text{EN: "BGP mode: learned routes", ZH: "BGP 模式：学到的路由"}, Steps: []tui.LabStep{
			{Title: tui.Text{EN: "Peers", ZH: "对等体"}, Text: tui.Text{EN: "Every node peers with every other.", ZH: "每个节点与其他每个节点建立对等。"}},
		}},
	}
}

// Calls are the calls that changed the cluster, in order ("switch vxlan",
// "delete default/a", "trace default/a default/b").
func (c *Cluster) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

func (c *Cluster) record(call string) {
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
}

// notify wakes every watcher; c.mu is held.
func (c *Cluster) notify() {
	for _, s := range c.subs {
		select {
		case s <- struct{}{}:
		default:
		}
	}
}

// Name implements tui.Cluster.
func (c *Cluster) Name() string { return c.name }

// Lookup implements tui.Cluster.
func (c *Cluster) Lookup(ctx context.Context) (tui.Presence, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := tui.Presence{Exists: c.exists, Others: []string{"lab2"}}
	if c.exists {
		p.Phase = "ready"
	}
	return p, nil
}

// Create implements tui.Cluster: it reports the steps `klab up` prints.
func (c *Cluster) Create(ctx context.Context, o tui.CreateOptions, progress chan<- string) error {
	c.record(fmt.Sprintf("create %s %d workers %s", o.Provider, o.Workers, o.Mode))
	steps := []string{
		"✓ underlay 192.168.34.0/24                             0.03s",
		fmt.Sprintf("✓ nodes master and %d workers                          0.07s", o.Workers),
		"✓ agents on 3 nodes registered and Ready               1.6s",
		"✓ network: " + o.Mode + " mode                                    2.1s",
	}
	for i, s := range steps {
		select {
		case progress <- s:
		case <-ctx.Done():
			return ctx.Err()
		}
		if i == 0 && c.CreateGate != nil {
			select {
			case <-c.CreateGate:
			case <-ctx.Done():
				c.record("create undone")
				return ctx.Err()
			}
		}
	}
	c.mu.Lock()
	c.exists = true
	c.snap.Cluster.Name = c.name
	c.mu.Unlock()
	return nil
}

// Watch implements tui.Cluster.
func (c *Cluster) Watch(ctx context.Context, out chan<- *tui.Snapshot) error {
	wake := make(chan struct{}, 1)
	c.mu.Lock()
	c.subs = append(c.subs, wake)
	c.mu.Unlock()
	wake <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		}
		c.mu.Lock()
		s := copySnapshot(c.snap)
		c.mu.Unlock()
		select {
		case out <- s:
		case <-ctx.Done():
			return nil
		}
	}
}

func copySnapshot(s tui.Snapshot) *tui.Snapshot {
	cp := s
	cp.Nodes = slices.Clone(s.Nodes)
	cp.Pods = slices.Clone(s.Pods)
	cp.Network.Nodes = slices.Clone(s.Network.Nodes)
	return &cp
}

// Feed implements tui.Cluster.
func (c *Cluster) Feed(ctx context.Context, out chan<- tui.FeedItem) error {
	c.mu.Lock()
	items := slices.Clone(c.feed)
	c.mu.Unlock()
	for _, it := range items {
		select {
		case out <- it:
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// Reports implements tui.Cluster: devices, routes and FDB of vxlan mode
// (or bgp's routes and sessions).
func (c *Cluster) Reports(ctx context.Context) ([]tui.NetworkReport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []tui.NetworkReport
	for i, n := range c.snap.Nodes {
		r := tui.NetworkReport{Node: n.Name, Mode: c.snap.Network.Spec(), Implementation: "kernel"}
		r.Devices = []tui.Device{
			{Name: "lo", Kind: "device", MTU: 65536, Up: true, Addrs: []string{"127.0.0.1/8"}},
			{Name: "eth0", Kind: "veth", MTU: 1500, Up: true, MAC: fmt.Sprintf("c6:00:00:00:00:%02x", 0x10+i), Addrs: []string{n.IP + "/24"}},
		}
		r.Routes = []tui.Route{{Dst: "0.0.0.0/0", Via: "192.168.34.254", Dev: "eth0", Proto: "boot"}}
		for j, m := range c.snap.Nodes {
			if j == i {
				continue
			}
			switch c.snap.Network.Mode {
			case "vxlan":
				r.Routes = append(r.Routes, tui.Route{Dst: m.PodCIDR, Via: fmt.Sprintf("10.42.%d.0", j), Dev: "vxlan.calico", Proto: "klab", OnLink: true})
				r.FDB = append(r.FDB, tui.FDBEntry{MAC: fmt.Sprintf("66:00:00:00:00:%02x", 0x10+j), Dst: m.IP, Dev: "vxlan.calico"})
			case "ipip":
				r.Routes = append(r.Routes, tui.Route{Dst: m.PodCIDR, Via: m.IP, Dev: "tunl0", Proto: "klab", OnLink: true})
			default:
				r.Routes = append(r.Routes, tui.Route{Dst: m.PodCIDR, Via: m.IP, Dev: "eth0", Proto: "klab"})
			}
		}
		r.Routes = append(r.Routes, tui.Route{Dst: "192.168.34.0/24", Dev: "eth0", Proto: "kernel", Scope: "link"})
		switch c.snap.Network.Mode {
		case "vxlan":
			r.Devices = append(r.Devices, tui.Device{Name: "vxlan.calico", Kind: "vxlan", MTU: 1450, Up: true, MAC: fmt.Sprintf("66:00:00:00:00:%02x", 0x10+i), VNI: 4096, Port: 4789, Local: n.IP})
		case "ipip":
			r.Devices = append(r.Devices, tui.Device{Name: "tunl0", Kind: "tun", MTU: 1480, Up: true})
		}
		bgp := &tui.BGPStatus{AS: 64512, RouterID: n.IP}
		for j, m := range c.snap.Nodes {
			if j != i {
				bgp.Sessions = append(bgp.Sessions, tui.BGPSession{Peer: m.Name, Address: m.IP, AS: 64512, State: "Established", Uptime: 90 * time.Second, Received: 1, Advertised: 1})
			}
		}
		r.BGP = bgp
		out = append(out, r)
	}
	return out, nil
}

// SwitchMode implements tui.Cluster: the spec changes, then every node
// converges in turn (after SwitchGate lets it, when set).
func (c *Cluster) SwitchMode(ctx context.Context, r tui.SwitchRequest) (*tui.SwitchResult, error) {
	c.record("switch " + r.String())
	c.mu.Lock()
	from := c.snap.Network.Spec()
	c.snap.Network.Mode, c.snap.Network.CrossSubnet = r.Mode, r.CrossSubnet
	c.snap.Network.Generation++
	gen := c.snap.Network.Generation
	names := make([]string, len(c.snap.Network.Nodes))
	for i := range c.snap.Network.Nodes {
		names[i] = c.snap.Network.Nodes[i].Node
	}
	c.notify()
	c.mu.Unlock()
	res := &tui.SwitchResult{From: from, To: r.String(), Took: 1200 * time.Millisecond}
	for i, name := range names {
		if c.SwitchGate != nil {
			select {
			case <-c.SwitchGate:
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		c.mu.Lock()
		st := &c.snap.Network.Nodes[i]
		st.Mode, st.Implementation, st.Converged, st.ObservedGeneration = r.Mode, r.Mode+" kernel", true, gen
		st.Took = time.Duration(300+100*i) * time.Millisecond
		st.Removed = []string{fmt.Sprintf("route 10.42.%d.0/24 via 10.42.%d.0 dev vxlan.calico onlink", (i+1)%len(names), (i+1)%len(names)), "device vxlan.calico"}
		st.Added = []string{fmt.Sprintf("route 10.42.%d.0/24 via 192.168.34.%d dev eth0", (i+1)%len(names), 10+(i+1)%len(names))}
		res.Nodes = append(res.Nodes, tui.SwitchNode{Node: name, Converged: true, Mode: r.Mode, Implementation: st.Implementation, Removed: st.Removed, Added: st.Added, Took: st.Took})
		c.notify()
		c.mu.Unlock()
	}
	return res, nil
}

// Trace implements tui.Cluster: the vxlan trace, whatever is asked.
func (c *Cluster) Trace(ctx context.Context, r tui.TraceRequest) (*tui.TraceResult, error) {
	c.record("trace " + r.Src + " " + r.Dst)
	if r.Src == r.Dst {
		return nil, errors.New("source and destination are the same pod")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := *c.trace
	return &cp, nil
}

// Describe implements tui.Cluster.
func (c *Cluster) Describe(ctx context.Context, p tui.PodRef) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pd := range c.snap.Pods {
		if pd.Namespace == p.Namespace && pd.Name == p.Name {
			return fmt.Sprintf("Name:         %s\nNamespace:    %s\nNode:         %s/%s\nStatus:       %s\nIP:           %s\nContainers:\n  c:\n    Image:      busybox\n    State:      Running\nEvents:\n  Normal  Scheduled  Successfully assigned %s/%s to %s\n",
				pd.Name, pd.Namespace, pd.Node, "192.168.34.11", pd.Status, pd.IP, pd.Namespace, pd.Name, pd.Node), nil
		}
	}
	return "", fmt.Errorf("pods %q not found", p.Name)
}

// Logs implements tui.Cluster: three lines, then it follows (nothing more
// comes) until ctx ends.
func (c *Cluster) Logs(ctx context.Context, p tui.PodRef, out chan<- string) error {
	for i := range 3 {
		select {
		case out <- fmt.Sprintf("hello from %s, line %d", p.Name, i+1):
		case <-ctx.Done():
			return nil
		}
	}
	<-ctx.Done()
	return nil
}

// DeletePod implements tui.Cluster.
func (c *Cluster) DeletePod(ctx context.Context, p tui.PodRef) error {
	c.record("delete " + p.String())
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.IndexFunc(c.snap.Pods, func(pd tui.Pod) bool { return pd.Ref() == tui.PodRef{Namespace: p.Namespace, Name: p.Name} })
	if i < 0 {
		return fmt.Errorf("pods %q not found", p.Name)
	}
	for j := range c.snap.Nodes {
		if c.snap.Nodes[j].Name == c.snap.Pods[i].Node {
			c.snap.Nodes[j].Pods--
		}
	}
	c.snap.Pods = slices.Delete(c.snap.Pods, i, i+1)
	c.notify()
	return nil
}

// Shell implements tui.Cluster: a command that prints where it would go.
func (c *Cluster) Shell(p tui.PodRef) *exec.Cmd {
	c.record("shell " + p.String())
	return exec.Command("true")
}

// Labs implements tui.Cluster.
func (c *Cluster) Labs(ctx context.Context) ([]tui.Lab, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.labs), nil
}

// CheckLab implements tui.Cluster: step 0 of vxlan passes when the mode is
// vxlan; the FDB step fails with its hint.
func (c *Cluster) CheckLab(ctx context.Context, r tui.LabCheckRequest) (*tui.LabCheck, error) {
	c.record(fmt.Sprintf("check %s %d", r.Lab, r.Step))
	c.mu.Lock()
	defer c.mu.Unlock()
	res := &tui.LabCheck{Lab: r.Lab, Step: r.Step}
	i := slices.IndexFunc(c.labs, func(l tui.Lab) bool { return l.ID == r.Lab })
	if i < 0 || r.Step >= len(c.labs[i].Steps) {
		return nil, fmt.Errorf("no step %d in lab %q", r.Step, r.Lab)
	}
	for _, chk := range c.labs[i].Steps[r.Step].Checks {
		cr := tui.CheckResult{Name: chk.In(r.Lang)}
		if r.Lab == "vxlan" && r.Step == 0 {
			cr.OK, cr.Detail, cr.Hint = c.snap.Network.Mode == "vxlan", "mode "+c.snap.Network.Spec(), "klab net mode vxlan"
		} else {
			cr.Detail, cr.Hint = "no entry for 66:00:00:00:00:12", "is node2's agent running? klab status"
		}
		res.Results = append(res.Results, cr)
	}
	// A step of the lab the cluster is doing that passes moves it on.
	if l := &c.labs[i]; l.Active && r.Step == l.Step && res.Passed() {
		l.Done++
		l.Step = min(l.Step+1, len(l.Steps)-1)
	}
	return res, nil
}
