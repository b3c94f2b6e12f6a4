package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// Report is what a node enforces, with the kernel's counters: "klab net
// policy NODE", and what "klab trace" reads to name the policy that
// dropped a packet.
type Report struct {
	Node   string    `json:"node"`
	Table  string    `json:"table"` // "ip klab-policy"
	Synced time.Time `json:"synced,omitzero"`
	// Policies are the policies that isolate a pod on this node.
	Policies []PolicyStatus `json:"policies"`
	// Endpoints are the node's isolated pods.
	Endpoints []EndpointStatus `json:"endpoints"`
	// Chains are the table's chains as the kernel holds them.
	Chains []Chain `json:"chains"`
}

// PolicyStatus sums up one policy on this node.
type PolicyStatus struct {
	Policy string `json:"policy"` // namespace/name
	// Ingress and Egress list the node's pods it isolates that way.
	Ingress []string `json:"ingress,omitempty"`
	Egress  []string `json:"egress,omitempty"`
	// Allowed counts the packets its rules let through (first packets of
	// connections: replies pass without a rule).
	Allowed uint64 `json:"allowed"`
	// Dropped counts the packets dropped at pods it isolates, which it
	// and those pods' other policies together did not allow.
	Dropped uint64 `json:"dropped"`
}

// EndpointStatus is an isolated pod with its chains' counters.
type EndpointStatus struct {
	Pod     string      `json:"pod"`
	IP      string      `json:"ip,omitempty"`
	Veth    string      `json:"veth"`
	Ingress *SideStatus `json:"ingress,omitempty"`
	Egress  *SideStatus `json:"egress,omitempty"`
}

// SideStatus is a pod's chain for one direction.
type SideStatus struct {
	Chain    string       `json:"chain"`
	Policies []string     `json:"policies"`
	Rules    []RuleStatus `json:"rules"`
	// Dropped and DroppedBytes count what no rule allowed.
	Dropped      uint64 `json:"dropped"`
	DroppedBytes uint64 `json:"droppedBytes"`
}

// RuleStatus is one rule of a pod's chain: a match of a policy's rule.
type RuleStatus struct {
	Policy  string `json:"policy"`
	Rule    int    `json:"rule"`
	Text    string `json:"text"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Chain is a chain of the table as the kernel holds it.
type Chain = nftrule.KernelChain

// Rule is a kernel rule in nft's syntax with its counter.
type Rule = nftrule.KernelRule

// Report reads the table back from the kernel.
func (e *Enforcer) Report() (*Report, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	chains, err := e.table.Read(chainForward, chainInput)
	if err != nil {
		return nil, err
	}
	rep := &Report{Node: e.node, Table: "ip " + TableName, Synced: e.synced, Chains: chains}
	byName := map[string]*Chain{}
	for i := range rep.Chains {
		byName[rep.Chains[i].Name] = &rep.Chains[i]
	}
	policies := map[string]*PolicyStatus{}
	policy := func(name string) *PolicyStatus {
		if p, ok := policies[name]; ok {
			return p
		}
		p := &PolicyStatus{Policy: name}
		policies[name] = p
		return p
	}
	for _, ep := range e.eps {
		st := EndpointStatus{Pod: ep.Pod, Veth: ep.Veth}
		if ep.IP.IsValid() {
			st.IP = ep.IP.String()
		}
		if ep.Ingress != nil {
			st.Ingress = sideStatus(byName[toChain(ep.Veth)], toChain(ep.Veth), ep.Ingress)
			for _, p := range ep.Ingress.Policies {
				ps := policy(p)
				ps.Ingress = append(ps.Ingress, ep.Pod)
				ps.Dropped += st.Ingress.Dropped
			}
			for _, r := range st.Ingress.Rules {
				policy(r.Policy).Allowed += r.Packets
			}
		}
		if ep.Egress != nil {
			st.Egress = sideStatus(byName[fromChain(ep.Veth)], fromChain(ep.Veth), ep.Egress)
			for _, p := range ep.Egress.Policies {
				ps := policy(p)
				ps.Egress = append(ps.Egress, ep.Pod)
				ps.Dropped += st.Egress.Dropped
			}
			for _, r := range st.Egress.Rules {
				policy(r.Policy).Allowed += r.Packets
			}
		}
		rep.Endpoints = append(rep.Endpoints, st)
	}
	for _, name := range slices.Sorted(maps.Keys(policies)) {
		rep.Policies = append(rep.Policies, *policies[name])
	}
	return rep, nil
}

// sideStatus reads a pod's chain: its rules are the side's matches in
// order, then the drop.
func sideStatus(c *Chain, name string, s *Side) *SideStatus {
	st := &SideStatus{Chain: name, Policies: s.Policies}
	if c == nil {
		return st
	}
	var owners []Allow
	for _, a := range s.Allows {
		for range a.Matches {
			owners = append(owners, a)
		}
	}
	for i, r := range c.Rules {
		if i == len(c.Rules)-1 {
			st.Dropped, st.DroppedBytes = r.Packets, r.Bytes
			break
		}
		rs := RuleStatus{Text: r.Text, Packets: r.Packets, Bytes: r.Bytes}
		if i < len(owners) {
			rs.Policy, rs.Rule = owners[i].Policy, owners[i].Rule
		}
		st.Rules = append(st.Rules, rs)
	}
	return st
}

// Drop is a pod's side whose drop counter grew.
type Drop struct {
	Pod       string    `json:"pod"`
	Direction Direction `json:"direction"`
	// Policies are the policies that isolate the pod that way: none of
	// them allowed the packets.
	Policies []string `json:"policies"`
	Packets  uint64   `json:"packets"`
}

// String is "default/web-1 ingress: 3 packets dropped by default/deny-all".
func (d Drop) String() string {
	return fmt.Sprintf("%s %s: %d packets dropped by %s", d.Pod, d.Direction, d.Packets, strings.Join(d.Policies, ", "))
}

// Drops lists what a node's policies dropped between two of its reports
// (a trace reads one before and one after its probe).
func Drops(before, after *Report) []Drop {
	prev := map[string]uint64{}
	if before != nil {
		for _, ep := range before.Endpoints {
			if ep.Ingress != nil {
				prev[ep.Ingress.Chain] = ep.Ingress.Dropped
			}
			if ep.Egress != nil {
				prev[ep.Egress.Chain] = ep.Egress.Dropped
			}
		}
	}
	var out []Drop
	for _, ep := range after.Endpoints {
		for _, s := range []struct {
			d  Direction
			st *SideStatus
		}{{Egress, ep.Egress}, {Ingress, ep.Ingress}} {
			if s.st == nil || s.st.Dropped <= prev[s.st.Chain] {
				continue
			}
			out = append(out, Drop{Pod: ep.Pod, Direction: s.d, Policies: s.st.Policies, Packets: s.st.Dropped - prev[s.st.Chain]})
		}
	}
	return out
}
