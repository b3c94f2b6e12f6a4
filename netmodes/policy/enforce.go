package policy

import (
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// TableName is the policy's table, in the ip family.
const TableName = "klab-policy"

const (
	chainForward = "forward"
	chainInput   = "input"
)

func toChain(veth string) string   { return "to-" + veth }
func fromChain(veth string) string { return "from-" + veth }

// Enforcer programs one network namespace's policy table.
type Enforcer struct {
	node string
	ns   netns.NsHandle

	mu     sync.Mutex
	table  *nftrule.Table
	eps    []Endpoint
	synced time.Time
}

// New makes an enforcer for node in the network namespace at path (""
// is the process's own, where the agent runs).
func New(node, path string) (*Enforcer, error) {
	conn, ns, err := nftrule.Connect(path)
	if err != nil {
		return nil, err
	}
	return &Enforcer{node: node, ns: ns, table: nftrule.NewTable(conn, TableName)}, nil
}

// Close releases the namespace; the rules stay.
func (e *Enforcer) Close() error {
	if e.ns.IsOpen() {
		return e.ns.Close()
	}
	return nil
}

// chains lays out the table for the endpoints.
func chains(eps []Endpoint) []*nftrule.Chain {
	from, to := map[string]string{}, map[string]string{}
	var sides []*nftrule.Chain
	for _, ep := range eps {
		if ep.Egress != nil {
			from[ep.Veth] = fromChain(ep.Veth)
			sides = append(sides, &nftrule.Chain{Name: fromChain(ep.Veth), Rules: sideRules(ep, Egress, ep.Egress)})
		}
		if ep.Ingress != nil {
			to[ep.Veth] = toChain(ep.Veth)
			sides = append(sides, &nftrule.Chain{Name: toChain(ep.Veth), Rules: sideRules(ep, Ingress, ep.Ingress)})
		}
	}
	established := func() *nftrule.Rule {
		return nftrule.New().CTState(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED).Accept().
			Comment("replies and the rest of allowed connections")
	}
	fwd := []*nftrule.Rule{established()}
	in := []*nftrule.Rule{established()}
	if len(from) > 0 {
		fwd = append(fwd, nftrule.New().IfNameVmap(nftrule.In, from).Comment("egress: traffic from pods that policies isolate"))
		in = append(in, nftrule.New().IfNameVmap(nftrule.In, from).Comment("egress: traffic from isolated pods to this node"))
	}
	if len(to) > 0 {
		fwd = append(fwd, nftrule.New().IfNameVmap(nftrule.Out, to).Comment("ingress: traffic to pods that policies isolate"))
	}
	filter := func(h *nftables.ChainHook) *nftrule.Hook {
		return &nftrule.Hook{Type: nftables.ChainTypeFilter, Num: h, Priority: nftables.ChainPriorityFilter}
	}
	return append([]*nftrule.Chain{
		{Name: chainForward, Hook: filter(nftables.ChainHookForward), Rules: fwd},
		{Name: chainInput, Hook: filter(nftables.ChainHookInput), Rules: in},
	}, sides...)
}

// sideRules are a pod's chain for one direction: a rule per match that
// returns (lets the packet on), then a drop that counts the rest.
func sideRules(ep Endpoint, d Direction, s *Side) []*nftrule.Rule {
	peer := nftrule.Source
	if d == Egress {
		peer = nftrule.Dest
	}
	var out []*nftrule.Rule
	for _, a := range s.Allows {
		for _, m := range a.Matches {
			r := nftrule.New()
			if !m.AnyPeer {
				r.AddrIn(peer, m.Peers, false)
			}
			if m.Protocol != 0 {
				r.L4Proto(m.Protocol)
				if m.PortFrom != 0 {
					r.DPortRange(m.PortFrom, m.PortTo)
				}
			}
			out = append(out, r.Counter().Return().Comment("%s %s rule %d", a.Policy, d, a.Rule))
		}
	}
	return append(out, nftrule.New().Counter().Drop().Comment("%s %s: denied by %s", ep.Pod, d, strings.Join(s.Policies, ", ")))
}

// Changes says what a sync did.
type Changes struct {
	Written, Removed []string
}

// Sync makes the table enforce eps, rewriting only the chains that
// changed, in one transaction.
func (e *Enforcer) Sync(eps []Endpoint) (Changes, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	written, removed, err := e.table.Sync(chains(eps), nil)
	if err != nil {
		return Changes{}, err
	}
	e.eps, e.synced = eps, time.Now()
	return Changes{Written: written, Removed: removed}, nil
}

// Delete removes the policy table, if there is one.
func (e *Enforcer) Delete() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.eps = nil
	return e.table.Delete()
}
