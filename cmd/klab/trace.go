package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/cni/plugin"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/policy"
	"github.com/klab-dev/klab/netmodes/trace"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/libvirt"
	"github.com/klab-dev/klab/provision/netns"
)

func (a *app) traceCmd() *cobra.Command {
	var o struct {
		proto, pcap, format, lang string
		port, count, size         int
		timeout                   time.Duration
	}
	cmd := &cobra.Command{
		Use:   "trace SRC DST",
		Short: "Send one real packet from SRC to DST and show every hop, with the headers it gains and loses",
		Long: `Trace one real packet through the pod network. klab computes the path from the
cluster's state for the current mode (the nodes' routes, FDB and neighbours),
captures at once on every interface of it — the pods' eth0 and cali veths,
vxlan.calico or tunl0, the nodes' eth0, the underlay bridge ports and the
router — and sends one probe carrying a unique marker from SRC's network
namespace. Every hop shows the frame it saw (Ethernet, IPv4, UDP/VXLAN, inner
Ethernet/IPv4, IPIP, ICMP/TCP/UDP), what changed since the hop before, the
route (and FDB entry) that sent it on, and why, in English or Chinese.

SRC and DST are pods (NAMESPACE/NAME, or NAME in default), pod IPs, node names
or node IPs; DST may also be a Service (svc/NAME or its ClusterIP), traced
through the proxy's DNAT to the endpoint it picks.

A packet that does not arrive is reported with the last hop that saw it and
the likely cause (a missing route, named; a policy drop; an ARP/neighbour or
FDB failure; the MTU), and klab exits with status 1.

-o json prints the trace as
  {"src":{kind,name,ip,node}, "dst":{…}, "mode":…, "delivered":bool,
   "hops":[{"index":n, "node":…, "pod":…, "interface":…, "netns":…,
            "kind":"pod|veth|vxlan|tunnel|nic|bridge-port|router",
            "direction":"in|out", "seen":bool, "stray":bool, "t_us":n,
            "length":n, "encap":"none|vxlan|ipip",
            "layers":[{"type":"Ethernet|IPv4|IPIP|UDP|VXLAN|ICMPv4|TCP|Payload", …}],
            "change":…, "explain":…, "route":…, "route_origin":…, "fdb":…}],
   "lost_at":{"hop":n,"node":…,"interface":…}|null, "reason":…, "cause":…,
   "missing_route":…, "t_us":n, "overhead_bytes":n, "notes":[…]}
(the shape is stable: fields are only ever added).`,
		Example: `  sudo klab trace a b                       # pod a to pod b, ICMP echo
  sudo klab trace default/a 10.42.2.2 -o json
  sudo klab trace a node2 --proto tcp --port 10250
  sudo klab trace node1 b --lang zh
  sudo klab trace a b --pcap a-b.pcapng && tshark -r a-b.pcapng -Y vxlan
  sudo klab trace a svc/web --proto tcp     # through the Service's DNAT`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(o.format); err != nil {
				return err
			}
			lang, err := trace.ParseLang(o.lang)
			if err != nil {
				return err
			}
			if o.count < 1 || o.count > 100 {
				return fmt.Errorf("--count %d: send 1 to 100 probes", o.count)
			}
			if !cmd.Flags().Changed("size") {
				o.size = trace.DefaultSize(o.proto)
			}
			if err := needRoot("klab trace"); err != nil {
				return err
			}
			ctx := cmd.Context()
			start := time.Now()
			// Services only when DST may be one: it is named so, or no pod
			// or node answers to it.
			c, err := provision.Load(a.cluster)
			if err != nil {
				return err
			}
			withServices := maybeService(c, args[1])
			topo, backend, err := a.traceTopology(ctx, c, withServices)
			if err != nil {
				return err
			}
			src, err := topo.Resolve(args[0], false, o.proto, 0)
			if err != nil {
				return err
			}
			dst, err := topo.Resolve(args[1], true, o.proto, o.port)
			if err != nil && !withServices {
				if topo, backend, err = a.traceTopology(ctx, c, true); err != nil {
					return err
				}
				dst, err = topo.Resolve(args[1], true, o.proto, o.port)
			}
			if err != nil {
				return err
			}
			a.log.Debug("trace topology", "nodes", len(topo.Nodes), "pods", len(topo.Pods), "services", len(topo.Services), "took", time.Since(start))
			port := o.port
			if dst.Kind == trace.KindService {
				port = dst.Port
			}
			res, err := trace.Run(ctx, topo, trace.Request{
				Src: src, Dst: dst, Proto: o.proto, Port: port, Size: o.size, Count: o.count,
				Timeout: o.timeout, Lang: lang, SeparateClocks: c.Provider != "netns",
			}, backend)
			if err != nil {
				return err
			}
			if o.pcap != "" {
				if err := writePcap(o.pcap, res); err != nil {
					return err
				}
			}
			if o.format == "json" || o.format == "yaml" {
				err = output.Print(a.stdout, o.format, res, nil)
			} else {
				err = trace.Render(a.stdout, res, o.format == "wide")
			}
			if err != nil {
				return err
			}
			if !res.Delivered {
				return exitCode(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.proto, "proto", trace.ICMP, "the probe: icmp (echo request), tcp (SYN) or udp")
	f.IntVar(&o.port, "port", 0, "destination port (tcp, udp; for a Service, which of its ports)")
	f.IntVar(&o.count, "count", 1, "probes to send, one after the other")
	f.IntVar(&o.size, "size", 0, "payload bytes after the ICMP/TCP/UDP header (default: 56 icmp, 16 udp, 0 tcp)")
	f.StringVar(&o.pcap, "pcap", "", "write every hop's frames to this pcapng file, one interface per hop")
	f.StringVar(&o.lang, "lang", "", "language of the explanations: en or zh (default from $LANG)")
	f.DurationVar(&o.timeout, "timeout", trace.DefaultTimeout, "how long one probe may take end to end")
	outputFlag(cmd, &o.format)
	cmd.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions([]string{trace.ICMP, trace.TCP, trace.UDP}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("lang", cobra.FixedCompletions([]string{"en", "zh"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// maybeService tells whether DST names a Service: svc/NAME, or an
// address in the cluster's service range.
func maybeService(c *provision.Cluster, dst string) bool {
	if strings.HasPrefix(dst, "svc/") || strings.HasPrefix(dst, "service/") || strings.HasPrefix(dst, "services/") {
		return true
	}
	ip, err := netip.ParseAddr(dst)
	return err == nil && c.ServiceCIDR.Contains(ip)
}

func writePcap(path string, res *trace.Result) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--pcap: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("--pcap: %w", cerr)
		}
	}()
	return trace.WritePcap(f, res)
}

// traceTopology gathers what a trace needs, in parallel: the cluster's
// plan, the ClusterNetwork, nodes, pods (and Services with their
// endpoints) from the API, and every agent's network report.
func (a *app) traceTopology(ctx context.Context, c *provision.Cluster, withServices bool) (*trace.Topology, *traceBackend, error) {
	cfg, err := client.Config(a.cluster, "")
	if err != nil {
		return nil, nil, err
	}
	nc, err := netctl.New(cfg, filepath.Join(provision.Dir(a.cluster), "pki"))
	if err != nil {
		return nil, nil, err
	}
	var (
		wg      sync.WaitGroup
		cn      *api.ClusterNetwork
		nodes   *corev1.NodeList
		pods    *corev1.PodList
		svcs    *corev1.ServiceList
		eps     *corev1.EndpointsList
		reports []*agent.NetworkReport
		errs    [6]error
	)
	run := func(i int, fn func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn() }()
	}
	list := metav1.ListOptions{}
	run(0, func() (err error) { cn, err = nc.Network(ctx); return })
	run(1, func() (err error) { nodes, err = nc.Kube.CoreV1().Nodes().List(ctx, list); return })
	run(2, func() (err error) { pods, err = nc.Kube.CoreV1().Pods("").List(ctx, list); return })
	if withServices {
		run(3, func() (err error) { svcs, err = nc.Kube.CoreV1().Services("").List(ctx, list); return })
		run(5, func() (err error) { eps, err = nc.Kube.CoreV1().Endpoints("").List(ctx, list); return })
	}
	// A node whose agent does not answer is reported where the path
	// needs it; the others still count.
	run(4, func() error { reports, _ = nc.Reports(ctx, c, ""); return nil })
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, nil, fmt.Errorf("read the cluster %s: %w", a.cluster, err)
	}
	t := &trace.Topology{
		Cluster: c.Name,
		Mode:    netmodes.Config{Mode: netmodes.Kind(cn.Spec.Mode), CrossSubnet: cn.Spec.CrossSubnet},
	}
	byName := map[string]*agent.NetworkReport{}
	for _, r := range reports {
		if r != nil {
			byName[r.Node] = r
		}
	}
	blocks := map[string]netip.Prefix{}
	for _, n := range nodes.Items {
		if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil {
			blocks[n.Name] = p
		}
	}
	b := &traceBackend{agents: nc.Agents, ips: map[string]string{}}
	for _, m := range c.Members() {
		n := trace.Node{Name: m.Name, IP: m.IP, Block: blocks[m.Name]}
		if c.Provider == "netns" {
			n.Netns = netns.NetNSName(c.Name, m.Name)
		}
		if r := byName[m.Name]; r != nil {
			n.State, n.Implementation = r.State, r.Implementation
			if r.BGP != nil {
				for _, l := range r.BGP.Routes {
					n.Learned = append(n.Learned, trace.Learned{Prefix: l.Prefix, From: l.From})
				}
			}
		}
		t.Nodes = append(t.Nodes, n)
		b.ips[m.Name] = m.IP.String()
	}
	for _, p := range pods.Items {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || p.Spec.NodeName == "" || p.Spec.HostNetwork || p.Status.Phase != corev1.PodRunning {
			continue
		}
		// The sandbox's ID is the pod's UID; CNI names the veth after it.
		t.Pods = append(t.Pods, trace.Pod{Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName, IP: ip, HostVeth: plugin.HostVethName(string(p.UID))})
	}
	if withServices {
		t.Services = services(svcs, eps)
	}
	if t.Underlay, err = underlay(c); err != nil {
		return nil, nil, err
	}
	return t, b, nil
}

// services are the Services with a ClusterIP and their ready endpoints.
func services(svcs *corev1.ServiceList, eps *corev1.EndpointsList) []trace.Service {
	ready := map[string]*corev1.Endpoints{}
	for i := range eps.Items {
		ready[eps.Items[i].Namespace+"/"+eps.Items[i].Name] = &eps.Items[i]
	}
	var out []trace.Service
	for _, s := range svcs.Items {
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil {
			continue
		}
		ts := trace.Service{Namespace: s.Namespace, Name: s.Name, ClusterIP: ip}
		for _, p := range s.Spec.Ports {
			sp := trace.ServicePort{Name: p.Name, Protocol: strings.ToLower(string(p.Protocol)), Port: int(p.Port), TargetPort: p.TargetPort.IntValue()}
			if sp.Protocol == "" {
				sp.Protocol = trace.TCP
			}
			if e := ready[s.Namespace+"/"+s.Name]; e != nil {
				for _, sub := range e.Subsets {
					if !slicesHasPort(sub.Ports, p.Name) {
						continue
					}
					for _, a := range sub.Addresses {
						if ip, err := netip.ParseAddr(a.IP); err == nil {
							sp.Endpoints = append(sp.Endpoints, ip)
						}
					}
				}
			}
			ts.Ports = append(ts.Ports, sp)
		}
		out = append(out, ts)
	}
	return out
}

func slicesHasPort(ps []corev1.EndpointPort, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return len(ps) == 0
}

// underlay describes the cluster's underlay as the provider made it.
func underlay(c *provision.Cluster) (trace.Underlay, error) {
	var u trace.Underlay
	switch c.Provider {
	case "netns":
		// The netns provider's names: bridges br-SUBNET in the underlay
		// namespace, a machine's port named after it (the router's
		// ROUTER-SUBNET), the host's port "host".
		u.NetnsName = netns.NetNSName(c.Name, "underlay")
		u.Netns = "/run/netns/" + u.NetnsName
		for _, s := range c.Subnets {
			u.Subnets = append(u.Subnets, trace.Subnet{Name: s.Name, CIDR: s.CIDR, Bridge: "br-" + s.Name})
		}
		for _, n := range c.Nodes {
			m := trace.Machine{Name: n.Name, Role: trace.RoleNode}
			if n.Role == provision.RoleRouter {
				m.Role = trace.RoleRouter
				m.NetnsName = netns.NetNSName(c.Name, n.Name)
				m.Netns = "/run/netns/" + m.NetnsName
				// Its routes (connected, and what BIRD learned once
				// peered): unread, it routes between its subnets.
				m.State, _ = inspectNetns(m.Netns)
				for i, s := range c.Subnets {
					m.Links = append(m.Links, trace.Link{Subnet: i, IP: s.Gateway, Port: n.Name + "-" + s.Name, NIC: fmt.Sprintf("eth%d", i)})
				}
			} else {
				m.Links = []trace.Link{{Subnet: n.Subnet, IP: n.IP, Port: n.Name, NIC: "eth0"}}
			}
			u.Machines = append(u.Machines, m)
		}
		u.Machines = append(u.Machines, trace.Machine{Name: "host", Role: trace.RoleHost, Links: []trace.Link{{Subnet: 0, IP: c.HostIP.Addr(), Port: "host"}}})
	case "libvirt":
		// libvirt's bridges are on the host; a VM's port is the tap whose
		// MAC is the VM's with fe as its first byte.
		taps, err := tapsByMAC()
		if err != nil {
			return u, err
		}
		for i, s := range c.Subnets {
			u.Subnets = append(u.Subnets, trace.Subnet{Name: s.Name, CIDR: s.CIDR, Bridge: libvirt.BridgeName(c, i)})
		}
		for _, n := range c.Nodes {
			m := trace.Machine{Name: n.Name, Role: trace.RoleNode}
			if n.Role == provision.RoleRouter {
				m.Role = trace.RoleRouter
				for i, s := range c.Subnets {
					m.Links = append(m.Links, trace.Link{Subnet: i, IP: s.Gateway, Port: taps["fe"+libvirt.MAC(c.Name, n.Name, i)[2:]], NIC: fmt.Sprintf("eth%d", i)})
				}
			} else {
				m.Links = []trace.Link{{Subnet: n.Subnet, IP: n.IP, Port: taps["fe"+libvirt.MAC(c.Name, n.Name, 0)[2:]], NIC: "eth0"}}
			}
			u.Machines = append(u.Machines, m)
		}
		u.Machines = append(u.Machines, trace.Machine{Name: "host", Role: trace.RoleHost, Links: []trace.Link{{Subnet: 0, IP: c.HostIP.Addr(), Port: libvirt.BridgeName(c, 0)}}})
	default:
		return u, fmt.Errorf("klab trace does not know the underlay of provider %q", c.Provider)
	}
	return u, nil
}

// inspectNetns reads the devices and routes of the namespace at path.
func inspectNetns(path string) (*netmodes.State, error) {
	ns, err := netmodes.OpenNetns(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netmodes.Inspect(ns.Netlink())
}

// tapsByMAC maps the host's interfaces by MAC to their names.
func tapsByMAC() (map[string]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the host's interfaces: %w", err)
	}
	out := map[string]string{}
	for _, l := range links {
		if mac := l.Attrs().HardwareAddr; len(mac) == 6 {
			out[mac.String()] = l.Attrs().Name
		}
	}
	return out, nil
}

// traceBackend reaches the node agents for klab trace, and runs the
// host's own captures.
type traceBackend struct {
	agents *agent.Client
	ips    map[string]string // node name → underlay address
}

func (b *traceBackend) ip(node string) (string, error) {
	ip, ok := b.ips[node]
	if !ok {
		return "", fmt.Errorf("no node %s", node)
	}
	return ip, nil
}

// Capture implements trace.Backend.
func (b *traceBackend) Capture(ctx context.Context, node string, req trace.CaptureRequest) (trace.Stream, error) {
	if node == "" {
		return trace.LocalCapture(ctx, req), nil
	}
	ip, err := b.ip(node)
	if err != nil {
		return nil, err
	}
	return b.agents.Capture(ctx, ip, req)
}

// Probe implements trace.Backend.
func (b *traceBackend) Probe(ctx context.Context, node string, req trace.ProbeRequest) (*trace.ProbeResult, error) {
	ip, err := b.ip(node)
	if err != nil {
		return nil, err
	}
	return b.agents.Probe(ctx, ip, req)
}

// PolicyDrops implements trace.PolicyReader: the drop counter of every
// isolated pod's ingress and egress on the node (a node that does not
// enforce policy has none).
func (b *traceBackend) PolicyDrops(ctx context.Context, node string) ([]trace.PolicyDrop, error) {
	ip, err := b.ip(node)
	if err != nil {
		return nil, err
	}
	rep, err := b.agents.Policy(ctx, ip)
	if err != nil {
		return nil, err
	}
	var out []trace.PolicyDrop
	for _, ep := range rep.Endpoints {
		for _, side := range []struct {
			dir policy.Direction
			st  *policy.SideStatus
		}{{policy.Ingress, ep.Ingress}, {policy.Egress, ep.Egress}} {
			if side.st == nil {
				continue
			}
			out = append(out, trace.PolicyDrop{
				Policy: strings.Join(side.st.Policies, ", "),
				Rule:   fmt.Sprintf("%s %s: no rule of its policies allows it", ep.Pod, side.dir),
				Drops:  side.st.Dropped,
			})
		}
	}
	return out, nil
}

// NodeState implements trace.StateReader.
func (b *traceBackend) NodeState(ctx context.Context, node string) (*netmodes.State, error) {
	ip, err := b.ip(node)
	if err != nil {
		return nil, err
	}
	rep, err := b.agents.Network(ctx, ip)
	if err != nil {
		return nil, err
	}
	return rep.State, nil
}
