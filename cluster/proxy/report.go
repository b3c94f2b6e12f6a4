package proxy

import (
	"strings"
	"time"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// Report is what a node's proxy serves and the rules it holds, read back
// from the kernel: "klab net services NODE".
type Report struct {
	Node   string `json:"node"`
	NodeIP string `json:"nodeIP,omitempty"`
	// Table is the nftables table: "ip klab-proxy".
	Table string `json:"table"`
	// Synced is when the rules were last written.
	Synced   time.Time       `json:"synced,omitzero"`
	Services []ServiceStatus `json:"services"`
	Chains   []Chain         `json:"chains"`
}

// ServiceStatus is a Service port with how many connections went where.
type ServiceStatus struct {
	ServicePort
	// Chain is the port's chain ("" when it has no endpoint).
	Chain string `json:"chain,omitempty"`
	// Connections counts the connections this node sent to the
	// service's endpoints (since they last changed), NodeConnections those
	// of them that came through the node port.
	Connections     uint64 `json:"connections"`
	NodeConnections uint64 `json:"nodePortConnections,omitempty"`
	// Rejected counts connections refused for want of an endpoint.
	Rejected  uint64           `json:"rejected,omitempty"`
	Endpoints []EndpointStatus `json:"endpointStatus"`
}

// EndpointStatus is an endpoint with the connections DNATed to it.
type EndpointStatus struct {
	Endpoint
	Chain       string `json:"chain"`
	Connections uint64 `json:"connections"`
	// AffinityHits counts connections sent back by ClientIP affinity.
	AffinityHits uint64 `json:"affinityHits,omitempty"`
}

// Chain is a chain of the table as the kernel holds it.
type Chain struct {
	Name  string `json:"name"`
	Hook  string `json:"hook,omitempty"` // "type nat hook prerouting dstnat" for base chains
	Rules []Rule `json:"rules"`
}

// Rule is one rule, printed in nft's syntax, with its counter.
type Rule = nftrule.KernelRule

// Report reads the table back from the kernel.
func (p *Proxier) Report() (*Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	chains, err := p.table.Read(baseOrder...)
	if err != nil {
		return nil, err
	}
	rep := &Report{Node: p.cfg.Node, Table: "ip " + TableName, Synced: p.synced}
	if p.cfg.NodeIP.IsValid() {
		rep.NodeIP = p.cfg.NodeIP.String()
	}
	for _, c := range chains {
		rep.Chains = append(rep.Chains, Chain{Name: c.Name, Hook: describeChain(c.Name), Rules: c.Rules})
	}
	byName := map[string]*Chain{}
	for i := range rep.Chains {
		byName[rep.Chains[i].Name] = &rep.Chains[i]
	}
	for _, sp := range p.ports {
		st := ServiceStatus{ServicePort: sp}
		if len(sp.Endpoints) == 0 {
			st.Rejected = counted(byName[chainNoEndpoints], func(r Rule) bool { return strings.HasPrefix(r.Comment, sp.Name()+" ") })
		} else {
			st.Chain = svcChain(sp)
			st.Connections = counted(byName[st.Chain], func(r Rule) bool { return r.Comment == commentAll })
			st.NodeConnections = counted(byName[st.Chain], func(r Rule) bool { return r.Comment == commentNodePort })
		}
		for _, e := range sp.Endpoints {
			es := EndpointStatus{Endpoint: e, Chain: epChain(sp, e)}
			es.Connections = counted(byName[es.Chain], func(r Rule) bool { return strings.Contains(r.Text, " dnat to ") })
			es.AffinityHits = counted(byName[st.Chain], func(r Rule) bool {
				return strings.Contains(r.Text, "@"+affinitySet(sp, e)+" ") && strings.HasSuffix(r.Text, "goto "+es.Chain)
			})
			st.Endpoints = append(st.Endpoints, es)
		}
		rep.Services = append(rep.Services, st)
	}
	return rep, nil
}

// counted sums the packets of the chain's rules that match.
func counted(c *Chain, match func(Rule) bool) uint64 {
	if c == nil {
		return 0
	}
	var n uint64
	for _, r := range c.Rules {
		if match(r) {
			n += r.Packets
		}
	}
	return n
}
