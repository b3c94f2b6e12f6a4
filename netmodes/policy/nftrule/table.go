package nftrule

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// unknown is the text of a chain, or the spec of a set, that an earlier
// program left: it matches nothing wanted, so it is rewritten or removed.
const unknown = "\x00unknown"

// Hook is where a base chain hangs.
type Hook struct {
	Type     nftables.ChainType
	Num      *nftables.ChainHook
	Priority *nftables.ChainPriority
}

// Chain is a chain a Table is to hold.
type Chain struct {
	Name string
	// Hook is set on base chains.
	Hook  *Hook
	Rules []*Rule
	// Uses names the named sets the rules use.
	Uses []string
}

// Text is what tells a changed chain from an unchanged one: its rules as
// nft prints them, and what the sets they use hold (a set is only
// replaced once no rule uses it, so its users are rewritten with it).
func (c *Chain) Text(sets map[string]Set) string {
	var b strings.Builder
	for _, r := range c.Rules {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	for _, u := range c.Uses {
		fmt.Fprintf(&b, "uses %s %s\n", u, sets[u].spec)
	}
	return b.String()
}

// Set is a named set or map a Table is to hold, made by AddrTimeoutSet
// or NumgenMapSet.
type Set struct {
	spec  string // what it is; a set whose spec changes is replaced
	set   *nftables.Set
	elems []nftables.SetElement
}

// Connect opens nftables in the network namespace at path ("" is the
// process's own). It returns the namespace too, for the caller to open
// other handles in and to close (netns.None() for the process's own).
func Connect(path string) (*nftables.Conn, netns.NsHandle, error) {
	if path == "" {
		conn, err := nftables.New()
		if err != nil {
			return nil, netns.None(), fmt.Errorf("nftables: %w", err)
		}
		return conn, netns.None(), nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, netns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		ns.Close()
		return nil, netns.None(), fmt.Errorf("nftables in %s: %w", path, err)
	}
	return conn, ns, nil
}

// Table keeps an nftables table of the ip family in step with the chains
// and named sets a program wants, rewriting only what changed, in one
// transaction. It is not safe for concurrent use.
type Table struct {
	name    string
	conn    *nftables.Conn
	applied map[string]string // chain → its Text; nil: not known
	sets    map[string]string // named set → its spec
}

// NewTable manages the table "ip name" through conn. What an earlier
// program left in it is found on the first Sync.
func NewTable(conn *nftables.Conn, name string) *Table {
	return &Table{name: name, conn: conn}
}

func (t *Table) table() *nftables.Table {
	return &nftables.Table{Name: t.name, Family: nftables.TableFamilyIPv4}
}

func (t *Table) chain(name string) *nftables.Chain {
	return &nftables.Chain{Name: name, Table: t.table()}
}

// Sync makes the table hold chains, in that order, and sets (by name),
// and says which chains it wrote (added or rewritten) and removed. When
// it fails, the next Sync finds out what the table holds.
func (t *Table) Sync(chains []*Chain, sets map[string]Set) (written, removed []string, err error) {
	if t.applied == nil {
		if err := t.discover(); err != nil {
			return nil, nil, err
		}
	}
	tab := t.table()
	t.conn.AddTable(tab)

	texts := map[string]string{}
	var changed []*Chain
	for _, c := range chains {
		texts[c.Name] = c.Text(sets)
		old, exists := t.applied[c.Name]
		if !exists {
			nc := t.chain(c.Name)
			if h := c.Hook; h != nil {
				nc.Type, nc.Hooknum, nc.Priority = h.Type, h.Num, h.Priority
			}
			t.conn.AddChain(nc)
		}
		if !exists || old != texts[c.Name] {
			changed = append(changed, c)
		}
	}
	// Flush what changes or goes first: a chain or set may only be
	// deleted once no rule refers to it (a chain's text names the sets it
	// uses, so a replaced set's users are rewritten too).
	for _, c := range changed {
		if _, exists := t.applied[c.Name]; exists {
			t.conn.FlushChain(t.chain(c.Name))
		}
	}
	for name := range t.applied {
		if _, ok := texts[name]; !ok {
			removed = append(removed, name)
		}
	}
	slices.Sort(removed)
	for _, name := range removed {
		t.conn.FlushChain(t.chain(name))
	}
	specs := map[string]string{}
	for name, s := range sets {
		specs[name] = s.spec
	}
	for name, have := range t.sets {
		if specs[name] != have {
			t.conn.DelSet(&nftables.Set{Table: tab, Name: name})
		}
	}
	// Chains go after the maps whose entries go to them.
	for _, name := range removed {
		t.conn.DelChain(t.chain(name))
	}
	for name, s := range sets {
		if have, ok := t.sets[name]; ok && have == s.spec {
			continue
		}
		s.set.Table, s.set.Name = tab, name
		if err := t.conn.AddSet(s.set, s.elems); err != nil {
			t.applied = nil
			return nil, nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	for _, c := range changed {
		nc := t.chain(c.Name)
		for _, r := range c.Rules {
			if err := r.AddTo(t.conn, nc); err != nil {
				t.applied = nil
				return nil, nil, err
			}
		}
		written = append(written, c.Name)
	}
	if err := t.conn.Flush(); err != nil {
		t.applied = nil
		return nil, nil, fmt.Errorf("write table ip %s: %w", t.name, err)
	}
	t.applied, t.sets = texts, specs
	return written, removed, nil
}

// discover learns which chains and named sets the table has (left by an
// earlier program): their contents are unknown, so every chain still
// wanted is rewritten, every set replaced and every other one removed.
func (t *Table) discover() error {
	chains, err := t.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables chains: %w", err)
	}
	applied, sets := map[string]string{}, map[string]string{}
	for _, c := range chains {
		if c.Table.Name == t.name {
			applied[c.Name] = unknown
		}
	}
	if len(applied) > 0 {
		all, err := t.conn.GetSets(t.table())
		if err != nil {
			return fmt.Errorf("list sets of ip %s: %w", t.name, err)
		}
		for _, s := range all {
			if !s.Anonymous {
				sets[s.Name] = unknown
			}
		}
	}
	t.applied, t.sets = applied, sets
	return nil
}

// Delete removes the table, if there is one.
func (t *Table) Delete() error {
	t.applied, t.sets = nil, nil
	t.conn.DelTable(t.table())
	if err := t.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete table ip %s: %w", t.name, err)
	}
	return nil
}

// KernelChain is a chain of the table as the kernel holds it.
type KernelChain struct {
	Name  string       `json:"name"`
	Rules []KernelRule `json:"rules"`
}

// KernelRule is a rule the kernel holds, printed in nft's syntax, with
// its counter.
type KernelRule struct {
	Text    string `json:"text"`
	Comment string `json:"comment,omitempty"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Read reads the table's chains back from the kernel: the chains named
// in first in that order, then the others by name.
func (t *Table) Read(first ...string) ([]KernelChain, error) {
	all, err := t.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var names []string
	for _, c := range all {
		if c.Table.Name == t.name {
			names = append(names, c.Name)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		ia, ib := slices.Index(first, a), slices.Index(first, b)
		switch {
		case ia >= 0 && ib >= 0:
			return ia - ib
		case ia >= 0:
			return -1
		case ib >= 0:
			return 1
		}
		return strings.Compare(a, b)
	})
	var out []KernelChain
	for _, name := range names {
		rules, err := t.conn.GetRules(t.table(), t.chain(name))
		if err != nil {
			return nil, fmt.Errorf("rules of chain %s: %w", name, err)
		}
		c := KernelChain{Name: name}
		for _, r := range rules {
			pk, by := counterOf(r)
			c.Rules = append(c.Rules, KernelRule{Text: kernelString(t.conn, r), Comment: commentOf(r), Packets: pk, Bytes: by})
		}
		out = append(out, c)
	}
	return out, nil
}
