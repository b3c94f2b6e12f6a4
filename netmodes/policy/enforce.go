package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

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
	conn *nftables.Conn
	ns   netns.NsHandle

	mu      sync.Mutex
	applied map[string]string // chain → its rules' text; nil: not known
	eps     []Endpoint
	synced  time.Time
}

// New makes an enforcer for node in the network namespace at path (""
// is the process's own, where the agent runs).
func New(node, path string) (*Enforcer, error) {
	e := &Enforcer{node: node, ns: netns.None()}
	if path == "" {
		conn, err := nftables.New()
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		e.conn = conn
		return e, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("nftables in %s: %w", path, err)
	}
	e.conn, e.ns = conn, ns
	return e, nil
}

// Close releases the namespace; the rules stay.
func (e *Enforcer) Close() error {
	if e.ns.IsOpen() {
		return e.ns.Close()
	}
	return nil
}

func (e *Enforcer) table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

func (e *Enforcer) chainObj(name string) *nftables.Chain {
	c := &nftables.Chain{Name: name, Table: e.table()}
	switch name {
	case chainForward:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter
	case chainInput:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter
	}
	return c
}

type chain struct {
	name  string
	rules []*nftrule.Rule
}

func (c *chain) text() string {
	var b strings.Builder
	for _, r := range c.rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// chains lays out the table for the endpoints.
func chains(eps []Endpoint) []*chain {
	from, to := map[string]string{}, map[string]string{}
	var sides []*chain
	for _, ep := range eps {
		if ep.Egress != nil {
			from[ep.Veth] = fromChain(ep.Veth)
			sides = append(sides, &chain{name: fromChain(ep.Veth), rules: sideRules(ep, Egress, ep.Egress)})
		}
		if ep.Ingress != nil {
			to[ep.Veth] = toChain(ep.Veth)
			sides = append(sides, &chain{name: toChain(ep.Veth), rules: sideRules(ep, Ingress, ep.Ingress)})
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
	return append([]*chain{{name: chainForward, rules: fwd}, {name: chainInput, rules: in}}, sides...)
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
	var ch Changes
	if e.applied == nil {
		if err := e.discover(); err != nil {
			return ch, err
		}
	}
	want := chains(eps)
	e.conn.AddTable(e.table())
	texts := map[string]string{}
	var changed []*chain
	for _, c := range want {
		texts[c.name] = c.text()
		old, exists := e.applied[c.name]
		if !exists {
			e.conn.AddChain(e.chainObj(c.name))
		}
		if !exists || old != texts[c.name] {
			changed = append(changed, c)
			if exists {
				e.conn.FlushChain(e.chainObj(c.name))
			}
		}
	}
	var stale []string
	for name := range e.applied {
		if _, ok := texts[name]; !ok {
			stale = append(stale, name)
			e.conn.FlushChain(e.chainObj(name))
		}
	}
	slices.Sort(stale)
	for _, name := range stale {
		e.conn.DelChain(e.chainObj(name))
	}
	for _, c := range changed {
		obj := e.chainObj(c.name)
		for _, r := range c.rules {
			if err := r.AddTo(e.conn, obj); err != nil {
				e.applied = nil
				return ch, err
			}
		}
		ch.Written = append(ch.Written, c.name)
	}
	if err := e.conn.Flush(); err != nil {
		e.applied = nil
		return ch, fmt.Errorf("write table ip %s: %w", TableName, err)
	}
	ch.Removed = stale
	e.applied, e.eps, e.synced = texts, eps, time.Now()
	return ch, nil
}

// discover learns the chains a previous agent left: they are rewritten
// or removed.
func (e *Enforcer) discover() error {
	e.applied = map[string]string{}
	chains, err := e.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name == TableName {
			e.applied[c.Name] = "\x00unknown"
		}
	}
	return nil
}

// Delete removes the policy table, if there is one.
func (e *Enforcer) Delete() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applied, e.eps = nil, nil
	e.conn.DelTable(e.table())
	if err := e.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}
