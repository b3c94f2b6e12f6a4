package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// Proxier programs one network namespace's proxy table.
type Proxier struct {
	cfg  Config
	conn *nftables.Conn
	nl   *netlink.Handle
	ns   netns.NsHandle // -1: the process's own namespace

	mu      sync.Mutex
	applied map[string]string // chain → its rules' text; nil: not known
	sets    map[string]string // named sets and what they hold (setSpec)
	ports   []ServicePort     // what the table serves
	synced  time.Time
}

// New makes a proxier for the network namespace at path ("" is the
// process's own, where the agent runs on a node).
func New(cfg Config, path string) (*Proxier, error) {
	p := &Proxier{cfg: cfg, ns: netns.None()}
	if path == "" {
		conn, err := nftables.New()
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		p.conn, p.nl = conn, h
		return p, nil
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
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	p.conn, p.nl, p.ns = conn, h, ns
	return p, nil
}

// Close releases the proxier's handles; the rules stay, as kube-proxy's
// do when it stops (connections keep working until the next agent).
func (p *Proxier) Close() error {
	p.nl.Close()
	if p.ns.IsOpen() {
		return p.ns.Close()
	}
	return nil
}

func (p *Proxier) table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// Changes says what a sync did.
type Changes struct {
	// Chains lists the chains written (added or rewritten) and removed.
	Written, Removed []string
	// FlushedFlows counts the UDP conntrack entries removed because their
	// endpoint went away (or their service got its first endpoint);
	// FlowsErr says why they could not be (they then time out).
	FlushedFlows uint
	FlowsErr     error
}

// Sync makes the table serve ports, rewriting only the chains that
// changed, in one transaction.
func (p *Proxier) Sync(ports []ServicePort) (Changes, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ch Changes
	if p.applied == nil {
		if err := p.discover(); err != nil {
			return ch, err
		}
	}
	want := plan(p.cfg, ports)
	t := p.table()
	p.conn.AddTable(t)

	texts := map[string]string{}
	var changed []*chain
	for _, c := range want.chains {
		texts[c.name] = c.text(want.sets)
		old, exists := p.applied[c.name]
		if !exists {
			p.conn.AddChain(p.chainObj(c.name))
		}
		if !exists || old != texts[c.name] {
			changed = append(changed, c)
		}
	}
	// Flush what changes or goes first: a chain or set may only be
	// deleted once no rule refers to it (a chain's text names the sets it
	// uses, so a replaced set's users are rewritten too).
	for _, c := range changed {
		if _, exists := p.applied[c.name]; exists {
			p.conn.FlushChain(p.chainObj(c.name))
		}
	}
	var stale []string
	for name := range p.applied {
		if _, ok := texts[name]; !ok {
			stale = append(stale, name)
			p.conn.FlushChain(p.chainObj(name))
		}
	}
	specs := map[string]string{}
	for name, spec := range want.sets {
		specs[name] = spec.String()
	}
	for name, have := range p.sets {
		if specs[name] != have {
			p.conn.DelSet(&nftables.Set{Table: t, Name: name})
		}
	}
	// Chains go after the maps whose entries go to them.
	slices.Sort(stale)
	for _, name := range stale {
		p.conn.DelChain(p.chainObj(name))
	}
	for name, spec := range want.sets {
		if have, ok := p.sets[name]; ok && have == specs[name] {
			continue
		}
		var s *nftables.Set
		var elems []nftables.SetElement
		if spec.timeout > 0 {
			s = &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr, HasTimeout: true, Timeout: spec.timeout, Dynamic: true}
		} else {
			s, elems = nftrule.NumgenMapSet(t, name, spec.chains)
		}
		if err := p.conn.AddSet(s, elems); err != nil {
			p.applied = nil
			return ch, fmt.Errorf("set %s: %w", name, err)
		}
	}
	for _, c := range changed {
		obj := p.chainObj(c.name)
		for _, r := range c.rules {
			if err := r.AddTo(p.conn, obj); err != nil {
				p.applied = nil
				return ch, err
			}
		}
		ch.Written = append(ch.Written, c.name)
	}
	if err := p.conn.Flush(); err != nil {
		p.applied = nil // find out what is there next time
		return ch, fmt.Errorf("write table ip %s: %w", TableName, err)
	}
	ch.Removed = stale
	ch.FlushedFlows, ch.FlowsErr = p.flushStaleFlows(p.ports, ports)
	p.applied, p.sets, p.ports, p.synced = texts, specs, ports, time.Now()
	return ch, nil
}

// chainObj is a chain of the table, with its hook when it is a base chain.
func (p *Proxier) chainObj(name string) *nftables.Chain {
	c := &nftables.Chain{Name: name, Table: p.table()}
	if h, ok := hooks[name]; ok {
		c.Type, c.Hooknum, c.Priority = h.typ, h.num, h.priority
	}
	return c
}

// discover learns which chains and sets the table has (left by an agent
// before this one): their contents are unknown, so every chain still
// wanted is rewritten and every other one removed.
func (p *Proxier) discover() error {
	p.applied, p.sets = map[string]string{}, map[string]string{}
	chains, err := p.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name == TableName {
			p.applied[c.Name] = "\x00unknown"
		}
	}
	if len(p.applied) == 0 {
		return nil
	}
	sets, err := p.conn.GetSets(p.table())
	if err != nil {
		return fmt.Errorf("list sets of ip %s: %w", TableName, err)
	}
	for _, s := range sets {
		if !s.Anonymous {
			p.sets[s.Name] = "\x00unknown" // replaced by what is wanted
		}
	}
	return nil
}

// Delete removes the proxy's table, if there is one.
func (p *Proxier) Delete() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied, p.sets, p.ports = nil, nil, nil
	p.conn.DelTable(p.table())
	err := p.conn.Flush()
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	return err
}

// flushStaleFlows removes the UDP conntrack entries that would keep
// sending a client to an endpoint that is gone (UDP has no connection to
// break), and those made while a service had no endpoint, as kube-proxy
// does. It returns how many it removed; it fails only when conntrack
// cannot be read, and then the entries simply time out.
func (p *Proxier) flushStaleFlows(before, after []ServicePort) (uint, error) {
	old := map[string]ServicePort{}
	for _, sp := range before {
		old[sp.key()] = sp
	}
	var filters []netlink.CustomConntrackFilter
	filter := func(ipType netlink.ConntrackFilterType, ip netip.Addr, port uint16) {
		f := &netlink.ConntrackFilter{}
		f.AddIP(ipType, net.IP(ip.AsSlice()))
		f.AddProtocol(unix.IPPROTO_UDP)
		f.AddPort(netlink.ConntrackOrigDstPort, port)
		filters = append(filters, f)
	}
	for _, sp := range after {
		if sp.Protocol != "UDP" {
			continue
		}
		prev, existed := old[sp.key()]
		if existed && len(prev.Endpoints) == 0 && len(sp.Endpoints) > 0 {
			filter(netlink.ConntrackOrigDstIP, sp.ClusterIP, sp.Port)
			if sp.NodePort != 0 && p.cfg.NodeIP.IsValid() {
				filter(netlink.ConntrackOrigDstIP, p.cfg.NodeIP, sp.NodePort)
			}
		}
		for _, e := range prev.Endpoints {
			if slices.Contains(sp.Endpoints, e) {
				continue
			}
			filter(netlink.ConntrackReplySrcIP, e.IP, sp.Port)
			if sp.NodePort != 0 {
				filter(netlink.ConntrackReplySrcIP, e.IP, sp.NodePort)
			}
		}
	}
	if len(filters) == 0 {
		return 0, nil
	}
	return p.nl.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
}
