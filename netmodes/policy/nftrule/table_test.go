package nftrule

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
)

func TestChainText(t *testing.T) {
	c := &Chain{Name: "svc", Rules: []*Rule{New().Counter(), New().NumgenMap("lb", 2)}, Uses: []string{"lb", "aff"}}
	sets := map[string]Set{"lb": NumgenMapSet([]string{"a", "b"}), "aff": AddrTimeoutSet(time.Minute)}
	want := `counter packets 0 bytes 0
numgen random mod 2 vmap @lb
uses lb map a,b
uses aff timeout 1m0s
`
	if got := c.Text(sets); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestIntegrationTable syncs a table in a namespace through changes, a
// failed write, a takeover by a new Table, and its deletion.
func TestIntegrationTable(t *testing.T) {
	testutil.RequireRoot(t)
	lab := testnet.NewNodeLab(t)
	conn, ns, err := Connect(lab.Node.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	const name = "ts-table"
	input := &Hook{Type: nftables.ChainTypeFilter, Num: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter}
	// want is a base chain that balances over the chains named, each of
	// which counts, the last one also what the affinity set holds.
	want := func(names ...string) ([]*Chain, map[string]Set) {
		chains := []*Chain{{Name: "in", Hook: input, Rules: []*Rule{New().NumgenMap("lb", len(names))}, Uses: []string{"lb"}}}
		for _, n := range names[:len(names)-1] {
			chains = append(chains, &Chain{Name: n, Rules: []*Rule{New().Counter()}})
		}
		last := names[len(names)-1]
		chains = append(chains, &Chain{Name: last, Rules: []*Rule{New().SAddrInSet("aff").Counter()}, Uses: []string{"aff"}})
		return chains, map[string]Set{"lb": NumgenMapSet(names), "aff": AddrTimeoutSet(time.Minute)}
	}
	sync := func(tb *Table, wantWritten, wantRemoved string, names ...string) {
		t.Helper()
		written, removed, err := tb.Sync(want(names...))
		if err != nil {
			t.Fatal(err)
		}
		if w, r := strings.Join(written, ","), strings.Join(removed, ","); w != wantWritten || r != wantRemoved {
			t.Errorf("sync to %v wrote %q and removed %q, want %q and %q", names, w, r, wantWritten, wantRemoved)
		}
	}
	read := func(tb *Table) string {
		t.Helper()
		chains, err := tb.Read("in")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, c := range chains {
			b.WriteString(c.Name + ":")
			for _, r := range c.Rules {
				b.WriteString(" " + r.Text)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	setNames := func() []string {
		t.Helper()
		sets, err := conn.GetSets(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range sets {
			if !s.Anonymous {
				out = append(out, s.Name)
			}
		}
		slices.Sort(out)
		return out
	}

	tb := NewTable(conn, name)
	sync(tb, "in,a,b", "", "a", "b")
	sync(tb, "", "", "a", "b")
	if got, want := read(tb), "in: numgen random mod 2 vmap { 0 : goto a, 1 : goto b }\na: counter packets 0 bytes 0\nb: ip saddr @aff counter packets 0 bytes 0\n"; got != want {
		t.Errorf("read back\n%s\nwant\n%s", got, want)
	}
	// b goes: the map changes, so its user is rewritten; a now uses aff.
	sync(tb, "in,a", "b", "a")
	if got, want := read(tb), "in: numgen random mod 1 vmap { 0 : goto a }\na: ip saddr @aff counter packets 0 bytes 0\n"; got != want {
		t.Errorf("read back after b went\n%s\nwant\n%s", got, want)
	}

	// A write that fails leaves the table as it was; the next sync finds
	// out what it holds.
	bad := []*Chain{{Name: "in", Hook: input, Rules: []*Rule{New().SAddrInSet("missing").Accept()}}}
	if _, _, err := tb.Sync(bad, nil); err == nil || !strings.HasPrefix(err.Error(), "write table ip "+name+": ") {
		t.Fatalf("a rule using a missing set: %v", err)
	}
	sync(tb, "in,a,c", "", "a", "c")

	// A new Table (an agent restart) takes over what an earlier one left:
	// it replaces the sets, so it must empty c, which used one, before it
	// deletes them, and it removes a chain it never made.
	conn.AddChain(&nftables.Chain{Name: "old", Table: &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	tb2 := NewTable(conn, name)
	sync(tb2, "in,d,a", "c,old", "d", "a")
	if got, want := read(tb2), "in: numgen random mod 2 vmap { 0 : goto d, 1 : goto a }\na: ip saddr @aff counter packets 0 bytes 0\nd: counter packets 0 bytes 0\n"; got != want {
		t.Errorf("read back after the takeover\n%s\nwant\n%s", got, want)
	}
	if got := setNames(); !slices.Equal(got, []string{"aff", "lb"}) {
		t.Errorf("named sets %v, want aff and lb", got)
	}

	if err := tb2.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := tb2.Delete(); err != nil {
		t.Errorf("deleting a table that is gone: %v", err)
	}
	if got := read(tb2); got != "" {
		t.Errorf("chains left after Delete:\n%s", got)
	}
}
