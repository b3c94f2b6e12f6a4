package provision

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func planFor(name string) func(slot int) (*Cluster, error) {
	return func(slot int) (*Cluster, error) {
		return Plan(PlanOptions{Name: name, Masters: 1, Workers: 1, Subnets: 1, Slot: slot})
	}
}

func TestReserveAllocatesDistinctRanges(t *testing.T) {
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	a, err := Reserve("a", planFor("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Slot 1 is taken by something outside klab.
	b, err := Reserve("b", planFor("b"), func(c *Cluster) bool { return c.Slot == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if a.Slot != 0 || b.Slot != 2 {
		t.Errorf("slots %d and %d, want 0 and 2", a.Slot, b.Slot)
	}
	if _, err := Reserve("a", planFor("a"), nil); err == nil || !strings.Contains(err.Error(), `cluster "a" already exists`) {
		t.Errorf("reserving an existing name: %v", err)
	}
	got, err := Load("b")
	if err != nil {
		t.Fatal(err)
	}
	if got.Subnets[0].CIDR.String() != "192.168.38.0/24" {
		t.Errorf("loaded %s", got.Subnets[0].CIDR)
	}
	names, _ := List()
	if strings.Join(names, ",") != "a,b" {
		t.Errorf("List = %v", names)
	}
	if err := Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := Remove("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(StateRoot()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state root left behind after the last cluster: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	if _, err := Load("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "klab up --name nope") {
		t.Errorf("missing cluster: %v", err)
	}
	if err := os.MkdirAll(Dir("bad"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Dir("bad")+"/cluster.yaml", []byte("name: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load("bad"); !errors.Is(err, ErrBadState) {
		t.Errorf("corrupt state: %v", err)
	}
	if _, err := Load("a/b"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("invalid name: %v", err)
	}
}
