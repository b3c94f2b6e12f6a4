package proxy

import (
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// TableName is the proxy's table, in the ip family.
const TableName = "klab-proxy"

// Marks a packet carries through the node's hooks (as kube-proxy's
// 0x4000): masquerade it, and it came in through a node port.
const (
	markMasquerade uint32 = 0x4000
	markNodePort   uint32 = 0x8000
)

// Chains that are always there.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainFwdFilter   = "filter-forward"
	chainInFilter    = "filter-input"
	chainOutFilter   = "filter-output"
	chainServices    = "services"
	chainNodePorts   = "nodeports"
	chainNoEndpoints = "no-endpoints"
)

// Comments of a service chain's counting rules, which reports look for.
const (
	commentAll      = "connections to the service"
	commentNodePort = "connections through the node port"
)

// podVethPrefix starts the names of pods' host-side veths.
const podVethPrefix = "cali"

// hook is where a base chain hangs.
type hook struct {
	typ      nftables.ChainType
	num      *nftables.ChainHook
	priority *nftables.ChainPriority
	name     string // for reports: "nat prerouting"
}

var hooks = map[string]hook{
	chainPrerouting:  {nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, "nat prerouting dstnat"},
	chainOutput:      {nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest, "nat output dstnat"},
	chainPostrouting: {nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, "nat postrouting srcnat"},
	chainFwdFilter:   {nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter, "filter forward"},
	chainInFilter:    {nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter, "filter input"},
	chainOutFilter:   {nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriorityFilter, "filter output"},
}

// baseOrder is the order reports list the base chains in.
var baseOrder = []string{chainPrerouting, chainOutput, chainPostrouting, chainFwdFilter, chainInFilter, chainOutFilter, chainServices, chainNodePorts, chainNoEndpoints}

func svcChain(sp ServicePort) string { return "svc-" + sp.key() }

func epChain(sp ServicePort, e Endpoint) string { return "ep-" + sp.key() + "@" + e.String() }

func affinitySet(sp ServicePort, e Endpoint) string { return "aff-" + sp.key() + "@" + e.String() }

func lbMap(sp ServicePort) string { return "lb-" + sp.key() }

func proto(p string) uint8 {
	switch p {
	case "UDP":
		return unix.IPPROTO_UDP
	case "SCTP":
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}

// desired is the table the proxy wants: its chains (base chains first)
// and its named sets (affinity sets of client addresses, load-balancing
// maps to endpoint chains).
type desired struct {
	chains []*nftrule.Chain
	sets   map[string]nftrule.Set
}

// plan lays out the rules for the service ports.
func plan(cfg Config, ports []ServicePort) *desired {
	d := &desired{sets: map[string]nftrule.Set{}}
	add := func(name string, rules ...*nftrule.Rule) {
		c := &nftrule.Chain{Name: name, Rules: rules}
		if h, ok := hooks[name]; ok {
			c.Hook = &nftrule.Hook{Type: h.typ, Num: h.num, Priority: h.priority}
		}
		d.chains = append(d.chains, c)
	}
	add(chainPrerouting, nftrule.New().Jump(chainServices).Comment("packets from pods and other nodes: to a service?"))
	add(chainOutput, nftrule.New().Jump(chainServices).Comment("packets of this node's own processes: to a service?"))
	add(chainPostrouting,
		nftrule.New().MarkHas(markMasquerade).Counter().Masquerade().Comment("hairpin: a pod reached itself through its service"),
		nftrule.New().MarkHas(markNodePort).OIFNamePrefix(podVethPrefix, true).Counter().Masquerade().
			Comment("node port traffic leaving for an endpoint on another node: replies must come back here"))
	for _, c := range []string{chainFwdFilter, chainInFilter, chainOutFilter} {
		add(c, nftrule.New().Jump(chainNoEndpoints))
	}

	var services, nodePorts, noEndpoints []*nftrule.Rule
	var perService []*nftrule.Chain
	for _, sp := range ports {
		p := proto(sp.Protocol)
		if len(sp.Endpoints) == 0 {
			noEndpoints = append(noEndpoints, nftrule.New().DAddr(sp.ClusterIP).L4Proto(p).DPort(sp.Port).Counter().Reject().
				Comment("%s has no ready endpoints", sp.Name()))
			if sp.NodePort != 0 && cfg.NodeIP.IsValid() {
				noEndpoints = append(noEndpoints, nftrule.New().DAddr(cfg.NodeIP).L4Proto(p).DPort(sp.NodePort).Counter().Reject().
					Comment("%s node port has no ready endpoints", sp.Name()))
			}
			continue
		}
		svc := svcChain(sp)
		services = append(services, nftrule.New().DAddr(sp.ClusterIP).L4Proto(p).DPort(sp.Port).Goto(svc).
			Comment("%s cluster IP", sp.Name()))
		// The service's counters live in its own chain, which changes only
		// with its endpoints (services and nodeports change with any).
		rules := []*nftrule.Rule{nftrule.New().Counter().Comment(commentAll)}
		if sp.NodePort != 0 {
			nodePorts = append(nodePorts, nftrule.New().L4Proto(p).DPort(sp.NodePort).MarkSet(markNodePort).Goto(svc).
				Comment("%s node port", sp.Name()))
			rules = append(rules, nftrule.New().MarkHas(markNodePort).Counter().Comment(commentNodePort))
		}
		var eps, uses []string
		for _, e := range sp.Endpoints {
			eps = append(eps, epChain(sp, e))
		}
		if sp.Affinity > 0 {
			for i, e := range sp.Endpoints {
				set := affinitySet(sp, e)
				d.sets[set] = nftrule.AddrTimeoutSet(sp.Affinity)
				uses = append(uses, set)
				rules = append(rules, nftrule.New().SAddrInSet(set).Counter().Goto(eps[i]).
					Comment("ClientIP affinity: clients seen in the last %s go back to %s", sp.Affinity, e))
			}
		}
		if len(eps) == 1 {
			rules = append(rules, nftrule.New().Goto(eps[0]).Comment("the only endpoint"))
		} else {
			m := lbMap(sp)
			d.sets[m] = nftrule.NumgenMapSet(eps)
			uses = append(uses, m)
			rules = append(rules, nftrule.New().NumgenMap(m, len(eps)).
				Comment("balance: each of the %d endpoints with probability 1/%d", len(eps), len(eps)))
		}
		perService = append(perService, &nftrule.Chain{Name: svc, Rules: rules, Uses: uses})
		for i, e := range sp.Endpoints {
			var r []*nftrule.Rule
			r = append(r, nftrule.New().SAddr(e.IP).MarkSet(markMasquerade).
				Comment("hairpin: the endpoint itself is the client, masquerade"))
			var epUses []string
			if sp.Affinity > 0 {
				r = append(r, nftrule.New().UpdateSAddr(affinitySet(sp, e), sp.Affinity).Comment("remember the client for ClientIP affinity"))
				epUses = append(epUses, affinitySet(sp, e))
			}
			r = append(r, nftrule.New().Counter().DNAT(e.IP, e.Port).Comment("%s → %s", sp.Name(), e.describe()))
			perService = append(perService, &nftrule.Chain{Name: eps[i], Rules: r, Uses: epUses})
		}
	}
	if cfg.NodeIP.IsValid() {
		services = append(services, nftrule.New().DAddr(cfg.NodeIP).Jump(chainNodePorts).Comment("node ports, on this node's address %s", cfg.NodeIP))
	}
	add(chainServices, services...)
	add(chainNodePorts, nodePorts...)
	add(chainNoEndpoints, noEndpoints...)
	d.chains = append(d.chains, perService...)
	return d
}

// describeChain names what a chain is for, in reports.
func describeChain(name string) string {
	if h, ok := hooks[name]; ok {
		return fmt.Sprintf("type %s hook", h.name)
	}
	return ""
}
