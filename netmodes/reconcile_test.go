package netmodes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fakeMode records what the reconciler does with it.
type fakeMode struct {
	kind Kind
	id   int
	log  *[]string
	fail map[string]bool // "apply", "release"
}

func (m *fakeMode) Kind() Kind             { return m.kind }
func (m *fakeMode) Implementation() string { return Kernel }
func (m *fakeMode) record(op string) error {
	*m.log = append(*m.log, fmt.Sprintf("%s#%d %s", m.kind, m.id, op))
	if m.fail[op] {
		return errors.New(op + " failed")
	}
	return nil
}

func (m *fakeMode) Apply(ctx context.Context, cfg Config, self Node, peers []Node) (Changes, error) {
	var ch Changes
	ch.Add("%s applied", m.kind)
	return ch, m.record("apply")
}

func (m *fakeMode) Remove(ctx context.Context) (Changes, error) { return Changes{}, m.record("remove") }

func (m *fakeMode) Release(ctx context.Context) (Changes, error) {
	var ch Changes
	ch.Remove("%s released", m.kind)
	return ch, m.record("release")
}

type fakes struct {
	log   []string
	n     int
	fail  map[string]bool // "kind op"
	modes map[Kind]Factory
}

func newFakes() *fakes {
	f := &fakes{fail: map[string]bool{}}
	f.modes = map[Kind]Factory{}
	for _, k := range []Kind{BGP, VXLAN, IPIP} {
		f.modes[k] = func(context.Context, *Netns) Mode {
			f.n++
			fail := map[string]bool{}
			for _, op := range []string{"apply", "release"} {
				fail[op] = f.fail[string(k)+" "+op]
			}
			return &fakeMode{kind: k, id: f.n, log: &f.log, fail: fail}
		}
	}
	return f
}

func (f *fakes) take() string {
	s := strings.Join(f.log, ", ")
	f.log = nil
	return s
}

func TestReconcilerSwitches(t *testing.T) {
	f := newFakes()
	r := NewReconciler(t.Context(), nil, f.modes)
	self := Node{Name: "n1"}
	apply := func(k Kind) Result {
		t.Helper()
		res, err := r.Apply(t.Context(), Config{Mode: k}, self, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// First apply: the mode, then what other modes left from before.
	apply(VXLAN)
	if got, want := f.take(), "vxlan#1 apply, bgp#2 release, ipip#3 release"; got != want {
		t.Fatalf("first apply: %s, want %s", got, want)
	}
	apply(VXLAN)
	if got, want := f.take(), "vxlan#1 apply"; got != want {
		t.Fatalf("same mode: %s, want %s", got, want)
	}
	// A switch makes the new mode before breaking the old.
	res := apply(IPIP)
	if got, want := f.take(), "ipip#4 apply, vxlan#1 release"; got != want {
		t.Fatalf("switch: %s, want %s", got, want)
	}
	if res.Previous != VXLAN || res.Mode != IPIP || !slices.Equal(res.Changes.Added, []string{"ipip applied"}) ||
		!slices.Equal(res.Changes.Removed, []string{"vxlan released"}) {
		t.Fatalf("switch result: %+v", res)
	}
	if k, impl, cfg := r.Current(); k != IPIP || impl != Kernel || cfg.VNI != DefaultVNI {
		t.Fatalf("current: %s %s %+v", k, impl, cfg)
	}
}

func TestReconcilerFailedSwitchGoesBack(t *testing.T) {
	f := newFakes()
	r := NewReconciler(t.Context(), nil, f.modes)
	self := Node{Name: "n1"}
	if _, err := r.Apply(t.Context(), Config{Mode: IPIP}, self, nil); err != nil {
		t.Fatal(err)
	}
	f.take()
	f.fail["bgp apply"] = true
	_, err := r.Apply(t.Context(), Config{Mode: BGP}, self, nil)
	if err == nil || !strings.Contains(err.Error(), "apply bgp mode: apply failed") {
		t.Fatalf("error %v", err)
	}
	if got, want := f.take(), "bgp#4 apply"; got != want {
		t.Fatalf("failed switch: %s, want %s (ipip kept)", got, want)
	}
	// Going back takes up the ipip mode that was kept, and drops bgp.
	res, err := r.Apply(t.Context(), Config{Mode: IPIP}, self, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.take(), "ipip#1 apply, bgp#4 release"; got != want {
		t.Fatalf("going back: %s, want %s", got, want)
	}
	if res.Previous != BGP {
		t.Fatalf("previous %q", res.Previous)
	}
}

func TestReconcilerErrors(t *testing.T) {
	f := newFakes()
	delete(f.modes, IPIP)
	r := NewReconciler(t.Context(), nil, f.modes)
	if _, err := r.Apply(t.Context(), Config{Mode: IPIP}, Node{}, nil); err == nil || err.Error() != "network mode ipip is not available here (have bgp, vxlan)" {
		t.Fatalf("error %v", err)
	}
	if _, err := r.Apply(t.Context(), Config{Mode: "bogus"}, Node{}, nil); err == nil {
		t.Fatal("no error for a bad mode")
	}
	if len(f.log) != 0 {
		t.Fatalf("modes touched: %v", f.log)
	}
}
