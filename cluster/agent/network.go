package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/bgp"
	"github.com/klab-dev/klab/netmodes/ipip"
	"github.com/klab-dev/klab/netmodes/vxlan"
)

// network is the agent's network half — Calico's felix (devices, routes),
// bird (BGP) and confd (configuration from the API) in one: it watches the
// ClusterNetwork, the nodes and the BGP peers, runs the node's BGP speaker,
// programs the mode through a netmodes.Reconciler, and reports in the
// ClusterNetwork's status.
type network struct {
	cfg  *Config
	cs   kubernetes.Interface
	api  *api.Client
	log  *slog.Logger
	self netmodes.Node

	rec     *netmodes.Reconciler
	speaker *bgp.Speaker
	loop    *loop

	nodes    cache.Indexer
	networks cache.Indexer
	peers    cache.Indexer

	mu       sync.Mutex
	reported api.NodeNetworkStatus
	meshed   []bgp.Peer
	confMTU  int32 // the pods' MTU in the CNI configuration written last
}

// startNetwork starts the network half once the node has its block.
func startNetwork(ctx context.Context, cfg *Config, cs kubernetes.Interface, client *api.Client, block netip.Prefix, log *slog.Logger) (*network, error) {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("enable forwarding: %w", err)
	}
	ip, err := netip.ParseAddr(cfg.NodeIP)
	if err != nil {
		return nil, err
	}
	bits := 24
	if p, err := netip.ParsePrefix(cfg.UnderlayCIDR); err == nil {
		bits = p.Bits()
	}
	n := &network{
		cfg: cfg, cs: cs, api: client, log: log.With("part", "network"),
		self: netmodes.Node{Name: cfg.NodeName, Underlay: netip.PrefixFrom(ip, bits), Block: block},
		// A failed reconcile is retried every few seconds; reconcile
		// logs why itself.
		loop: newLoop(3*time.Second, nil),
	}
	ns, err := netmodes.OpenNetns("")
	if err != nil {
		return nil, err
	}
	n.rec = netmodes.NewReconciler(ctx, ns, map[netmodes.Kind]netmodes.Factory{
		netmodes.BGP: bgp.NewMode, netmodes.VXLAN: vxlan.New, netmodes.IPIP: ipip.New,
	})
	podCIDR := netip.MustParsePrefix("10.42.0.0/16")
	n.speaker, err = bgp.Start(ctx, bgp.Config{
		Name: cfg.NodeName, Address: ip, Block: block, PodCIDR: podCIDR,
		OnRoutes: func([]bgp.Route) { n.loop.poke() },
		Logger:   n.log.With("part", "bgp"),
	})
	if err != nil {
		return nil, fmt.Errorf("BGP speaker: %w", err)
	}

	factory := informers.NewSharedInformerFactory(cs, 0)
	nodeInf := factory.Core().V1().Nodes().Informer()
	n.nodes = nodeInf.GetIndexer()
	netInf := cache.NewSharedIndexInformer(listWatch(ctx, client.ClusterNetworks()), &api.ClusterNetwork{}, 0, cache.Indexers{})
	n.networks = netInf.GetIndexer()
	peerInf := cache.NewSharedIndexInformer(listWatch(ctx, client.BGPPeers()), &api.BGPPeer{}, 0, cache.Indexers{})
	n.peers = peerInf.GetIndexer()
	for _, inf := range []cache.SharedIndexInformer{nodeInf, peerInf} {
		inf.AddEventHandler(n.loop.handler())
	}
	// The ClusterNetwork's spec, not its status: every node writes its
	// own entry there, and reacting to the others' would have all of them
	// write again.
	netInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { n.loop.poke() },
		UpdateFunc: func(old, cur any) {
			if old.(*api.ClusterNetwork).Generation != cur.(*api.ClusterNetwork).Generation {
				n.loop.poke()
			}
		},
		DeleteFunc: func(any) { n.loop.poke() },
	})
	factory.Start(ctx.Done())
	go netInf.Run(ctx.Done())
	go peerInf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), nodeInf.HasSynced, netInf.HasSynced, peerInf.HasSynced) {
		return nil, ctx.Err()
	}
	n.loop.poke()
	go n.loop.run(ctx, func() error { return n.reconcile(ctx) })
	return n, nil
}

// listWatch adapts klab's typed client to an informer.
func listWatch[T runtime.Object, L runtime.Object](ctx context.Context, r *api.Resource[T, L]) *cache.ListWatch {
	return &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) { return r.List(ctx, o) },
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			return r.Watch(ctx, o)
		},
	}
}

// writeCNIConf keeps the node's CNI configuration in step with the
// ClusterNetwork, as confd renders Calico's: the node's pod block and the
// pods' MTU, which pods created from then on get. It returns the file.
func (n *network) writeCNIConf() (string, error) {
	mtu := int32(api.DefaultPodMTU)
	if cn, ok := n.clusterNetwork(); ok && cn.Spec.MTU != 0 {
		mtu = cn.Spec.MTU
	}
	path := filepath.Join(n.cfg.CNIConfDir, cni.ConfListName)
	n.mu.Lock()
	defer n.mu.Unlock()
	if mtu == n.confMTU {
		return path, nil
	}
	if _, err := cni.WriteConfList(n.cfg.CNIConfDir, cni.ConfListOptions{PodCIDR: n.self.Block, MTU: int(mtu)}); err != nil {
		return "", err
	}
	if n.confMTU != 0 {
		n.log.Info("pod MTU changed: pods created from now on get it", "mtu", mtu, "was", n.confMTU, "conflist", path)
	}
	n.confMTU = mtu
	return path, nil
}

// clusterNetwork is the ClusterNetwork the node follows.
func (n *network) clusterNetwork() (*api.ClusterNetwork, bool) {
	o, ok, _ := n.networks.GetByKey(api.ClusterNetworkName)
	if !ok {
		return nil, false
	}
	return o.(*api.ClusterNetwork), true
}

// apiPeers are the other nodes with a pod block, from the API: what VXLAN
// mode routes to (Calico distributes VTEPs through its datastore).
func (n *network) apiPeers() []netmodes.Node {
	var out []netmodes.Node
	for _, o := range n.nodes.List() {
		node := o.(*corev1.Node)
		if node.Name == n.cfg.NodeName {
			continue
		}
		block, err := netip.ParsePrefix(node.Spec.PodCIDR)
		if err != nil {
			continue
		}
		ip, ok := internalIP(node)
		if !ok {
			continue
		}
		out = append(out, netmodes.Node{Name: node.Name, Underlay: netip.PrefixFrom(ip, ip.BitLen()), Block: block})
	}
	slices.SortFunc(out, func(a, b netmodes.Node) int { return a.Block.Addr().Compare(b.Block.Addr()) })
	return out
}

func internalIP(node *corev1.Node) (netip.Addr, bool) {
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip, err := netip.ParseAddr(a.Address)
			return ip, err == nil
		}
	}
	return netip.Addr{}, false
}

// bgpPeers are the speaker's neighbours: the external routers whose
// BGPPeer selects this node, and the other nodes (full mesh) — only those
// in this node's subnet once a router peers with it, as with Calico's
// top-of-rack design: the router brings the other subnets' blocks, with
// itself as the next hop.
func (n *network) bgpPeers() []bgp.Peer {
	var me *corev1.Node
	if o, ok, _ := n.nodes.GetByKey(n.cfg.NodeName); ok {
		me = o.(*corev1.Node)
	}
	var out []bgp.Peer
	for _, o := range n.peers.List() {
		bp := o.(*api.BGPPeer)
		addr, err := netip.ParseAddr(bp.Spec.PeerIP)
		if err != nil {
			continue
		}
		if sel := bp.Spec.NodeSelector; sel != nil && me != nil {
			s, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil || !s.Matches(labels.Set(me.Labels)) {
				continue
			}
		}
		out = append(out, bgp.Peer{Name: bp.Name, Address: addr, AS: bp.Spec.ASN})
	}
	routed := len(out) > 0
	for _, p := range n.apiPeers() {
		if routed && !n.self.SameSubnet(p) {
			continue
		}
		out = append(out, bgp.Peer{Name: p.Name, Address: p.IP()})
	}
	return out
}

// reconcile brings the node to the ClusterNetwork's spec and reports.
func (n *network) reconcile(ctx context.Context) error {
	cn, ok := n.clusterNetwork()
	if !ok {
		return errors.New("no ClusterNetwork yet")
	}
	if _, err := n.writeCNIConf(); err != nil {
		return err
	}
	peers := n.bgpPeers()
	n.mu.Lock()
	changed := !slices.Equal(peers, n.meshed)
	n.mu.Unlock()
	if changed {
		if err := n.speaker.SetPeers(ctx, peers); err != nil {
			n.log.Warn("BGP peers", "err", err)
		} else {
			n.mu.Lock()
			n.meshed = peers
			n.mu.Unlock()
		}
	}
	cfg := netmodes.Config{Mode: netmodes.Kind(cn.Spec.Mode), CrossSubnet: cn.Spec.CrossSubnet}
	// VXLAN learns its peers from the API; BGP and IPIP from BGP, as in
	// Calico (in IPIP mode bird still distributes the routes).
	var routes []netmodes.Node
	switch cfg.Mode {
	case netmodes.VXLAN:
		routes = n.apiPeers()
	case netmodes.IPIP:
		routes = tunnelEnds(bgp.Nodes(n.speaker.Routes()), n.apiPeers())
	default:
		routes = bgp.Nodes(n.speaker.Routes())
	}
	res, err := n.rec.Apply(ctx, cfg, n.self, routes)
	failed := err != nil
	if err == nil && cfg.Mode != netmodes.VXLAN {
		err = missingRoutes(n.apiPeers(), routes)
	}
	st := api.NodeNetworkStatus{
		Mode:               api.NetworkMode(res.Mode),
		Converged:          err == nil,
		Failed:             failed,
		ObservedGeneration: cn.Generation,
		Implementation:     string(res.Mode) + " " + res.Implementation,
		Changes:            api.NetworkChanges{Added: res.Changes.Added, Removed: res.Changes.Removed},
		Took:               metav1.Duration{Duration: res.Took},
	}
	if err != nil {
		st.Mode = cn.Spec.Mode
		st.Implementation = ""
		if k, impl, _ := n.rec.Current(); k != "" {
			st.Mode, st.Implementation = api.NetworkMode(k), string(k)+" "+impl
		}
		st.Message = err.Error()
		n.log.Warn("network mode", "mode", cfg.String(), "err", err)
	} else if !res.Changes.Empty() {
		n.log.Info("network mode applied", "mode", cfg.String(), "implementation", res.Implementation,
			"added", len(res.Changes.Added), "removed", len(res.Changes.Removed), "took", res.Took)
	}
	if perr := n.report(ctx, st); perr != nil {
		n.log.Warn("report network status", "err", perr)
		return perr
	}
	return err
}

// tunnelEnds points IPIP's tunnels at the nodes that own the blocks BGP
// brought: a route reflector may have put itself as the next hop (the
// router does, for plain BGP across subnets), but the packet must be
// wrapped for the node behind it.
func tunnelEnds(learned, nodes []netmodes.Node) []netmodes.Node {
	owner := map[netip.Prefix]netmodes.Node{}
	for _, n := range nodes {
		owner[n.Block] = n
	}
	out := make([]netmodes.Node, 0, len(learned))
	for _, l := range learned {
		if o, ok := owner[l.Block]; ok {
			l.Name, l.Underlay = o.Name, o.Underlay
		}
		out = append(out, l)
	}
	return out
}

// missingRoutes says which nodes' blocks BGP has not brought yet: until
// it has, a node is not converged in a mode that routes by BGP.
func missingRoutes(nodes, learned []netmodes.Node) error {
	have := map[netip.Prefix]bool{}
	for _, l := range learned {
		have[l.Block] = true
	}
	var missing []string
	for _, n := range nodes {
		if !have[n.Block] {
			missing = append(missing, fmt.Sprintf("%s (%s)", n.Block, n.Name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("waiting for BGP to bring the routes to %s", strings.Join(missing, ", "))
	}
	return nil
}

// report writes the node's entry of the ClusterNetwork's status, when it
// changed. Nothing-changed reconciles keep the last changes on record.
func (n *network) report(ctx context.Context, st api.NodeNetworkStatus) error {
	n.mu.Lock()
	prev := n.reported
	n.mu.Unlock()
	// A reconcile that changed nothing (also one that keeps failing the
	// same way) keeps the last changes and their time on record.
	if len(st.Changes.Added) == 0 && len(st.Changes.Removed) == 0 && st.Converged == prev.Converged && prev.Mode == st.Mode {
		st.Changes, st.Took = prev.Changes, prev.Took
	}
	st.LastTransition = prev.LastTransition
	if st.Mode != prev.Mode || st.Converged != prev.Converged || st.LastTransition.IsZero() {
		st.LastTransition = metav1.Now()
	}
	if equalStatus(st, prev) {
		return nil
	}
	// A merge patch keeps fields it does not mention: what went empty
	// (a message once converged) must be set to null to go.
	entry := map[string]any{}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &entry); err != nil {
		return err
	}
	for _, k := range []string{"message", "implementation", "changes", "took", "observedGeneration", "failed"} {
		if _, ok := entry[k]; !ok {
			entry[k] = nil
		}
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"nodes": map[string]any{n.cfg.NodeName: entry}}})
	if err != nil {
		return err
	}
	if _, err := n.api.ClusterNetworks().Patch(ctx, api.ClusterNetworkName, types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	n.mu.Lock()
	n.reported = st
	n.mu.Unlock()
	return nil
}

func equalStatus(a, b api.NodeNetworkStatus) bool {
	return a.Mode == b.Mode && a.Converged == b.Converged && a.Failed == b.Failed && a.ObservedGeneration == b.ObservedGeneration &&
		a.Implementation == b.Implementation && a.Message == b.Message && a.Took == b.Took &&
		slices.Equal(a.Changes.Added, b.Changes.Added) && slices.Equal(a.Changes.Removed, b.Changes.Removed)
}

// bgpStatus is the speaker's state, for the agent's API.
func (n *network) bgpStatus(ctx context.Context) (bgp.Status, error) {
	return n.speaker.Status(ctx)
}
