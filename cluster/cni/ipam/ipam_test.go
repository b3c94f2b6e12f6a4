package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRange(t *testing.T) {
	for _, tc := range []struct {
		subnet      string
		first, last string
		err         bool
	}{
		{"10.42.1.0/24", "10.42.1.2", "10.42.1.254", false},
		{"10.244.9.0/29", "10.244.9.2", "10.244.9.6", false},
		{"10.244.9.4/30", "10.244.9.6", "10.244.9.6", false},
		{"10.42.0.0/16", "10.42.0.2", "10.42.255.254", false},
		{"10.244.9.0/31", "", "", true},
		{"10.244.9.1/32", "", "", true},
		{"10.42.1.7/24", "", "", true}, // host bits set
		{"fd00::/64", "", "", true},
	} {
		t.Run(tc.subnet, func(t *testing.T) {
			first, last, err := Range(netip.MustParsePrefix(tc.subnet))
			if tc.err {
				if err == nil {
					t.Fatalf("Range(%s) = %s-%s, want an error", tc.subnet, first, last)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if first.String() != tc.first || last.String() != tc.last {
				t.Errorf("Range(%s) = %s-%s, want %s-%s", tc.subnet, first, last, tc.first, tc.last)
			}
		})
	}
}

func open(t *testing.T, dir, subnet string) *Store {
	t.Helper()
	s, err := Open(dir, "net1", netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func allocate(t *testing.T, s *Store, id string) (netip.Addr, bool) {
	t.Helper()
	ip, fresh, err := s.Allocate(context.Background(), id, "eth0")
	if err != nil {
		t.Fatalf("allocate for %s: %v", id, err)
	}
	return ip, fresh
}

func TestAllocateInOrderAndIdempotent(t *testing.T) {
	s := open(t, t.TempDir(), "10.244.1.0/24")
	for i, id := range []string{"a", "b", "c"} {
		ip, fresh := allocate(t, s, id)
		want := netip.AddrFrom4([4]byte{10, 244, 1, byte(2 + i)})
		if ip != want || !fresh {
			t.Errorf("%s got %s (fresh %v), want %s (fresh)", id, ip, fresh, want)
		}
	}
	ip, fresh := allocate(t, s, "b")
	if ip.String() != "10.244.1.3" || fresh {
		t.Errorf("a repeated allocation for b got %s (fresh %v), want its 10.244.1.3 again", ip, fresh)
	}
	// Another interface of the same container is another allocation.
	ip2, _, err := s.Allocate(context.Background(), "b", "net1")
	if err != nil || ip2.String() != "10.244.1.5" {
		t.Errorf("b net1 got %s, %v; want 10.244.1.5", ip2, err)
	}
}

func TestReleaseAndRoundRobin(t *testing.T) {
	s := open(t, t.TempDir(), "10.244.1.0/24")
	a, _ := allocate(t, s, "a")
	allocate(t, s, "b")
	ip, ok, err := s.Release(context.Background(), "a", "eth0")
	if err != nil || !ok || ip != a {
		t.Fatalf("release a = %s, %v, %v; want %s, true", ip, ok, err, a)
	}
	if _, ok, err := s.Release(context.Background(), "a", "eth0"); err != nil || ok {
		t.Errorf("second release of a = %v, %v; want nothing released and no error", ok, err)
	}
	if _, ok, err := s.Release(context.Background(), "never", "eth0"); err != nil || ok {
		t.Errorf("release of an unknown container = %v, %v; want nothing and no error", ok, err)
	}
	// Round robin: the next address after the last reserved, not a's.
	c, _ := allocate(t, s, "c")
	if c.String() != "10.244.1.4" {
		t.Errorf("c got %s, want 10.244.1.4 (after the last reserved)", c)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), a.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the file of released %s is still there: %v", a, err)
	}
}

func TestExhaustionAndWrap(t *testing.T) {
	s := open(t, t.TempDir(), "10.244.9.0/29") // .2 to .6
	for i := range 5 {
		allocate(t, s, fmt.Sprint("c", i))
	}
	_, _, err := s.Allocate(context.Background(), "c5", "eth0")
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("sixth allocation: %v, want ErrExhausted", err)
	}
	if free, err := s.Free(context.Background()); err != nil || free != 0 {
		t.Errorf("Free = %d, %v; want 0", free, err)
	}
	if _, _, err := s.Release(context.Background(), "c1", "eth0"); err != nil {
		t.Fatal(err)
	}
	// The search wraps from .6 to the start and finds the released .3.
	ip, _ := allocate(t, s, "c5")
	if ip.String() != "10.244.9.3" {
		t.Errorf("after a release got %s, want 10.244.9.3", ip)
	}
}

func TestSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	a, _ := allocate(t, open(t, dir, "10.244.1.0/24"), "a")
	s := open(t, dir, "10.244.1.0/24")
	got, ok, err := s.Lookup(context.Background(), "a", "eth0")
	if err != nil || !ok || got != a {
		t.Errorf("after reopening, a holds %s (%v, %v), want %s", got, ok, err, a)
	}
	if b, _ := allocate(t, s, "b"); b == a {
		t.Errorf("b got a's %s", a)
	}
}

func TestConcurrentAllocationsNeverShare(t *testing.T) {
	dir := t.TempDir()
	const n = 60
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// A store each, as separate CNI processes would open it.
			s, err := Open(dir, "net1", netip.MustParsePrefix("10.244.1.0/24"))
			if err == nil {
				ips[i], _, err = s.Allocate(context.Background(), fmt.Sprint("c", i), "eth0")
			}
			errs[i] = err
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatalf("c%d: %v", i, errs[i])
		}
		if j, dup := seen[ip]; dup {
			t.Errorf("c%d and c%d both got %s", j, i, ip)
		}
		seen[ip] = i
	}
	all, err := open(t, dir, "10.244.1.0/24").List(context.Background())
	if err != nil || len(all) != n {
		t.Errorf("List = %d allocations, %v; want %d", len(all), err, n)
	}
}

func TestLockWaitEndsWithContext(t *testing.T) {
	s := open(t, t.TempDir(), "10.244.1.0/24")
	f, err := os.OpenFile(filepath.Join(s.Dir(), lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := s.Allocate(ctx, "a", "eth0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("allocate while another holds the lock: %v, want a deadline error", err)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if _, _, err := s.Allocate(context.Background(), "a", "eth0"); err != nil {
		t.Fatalf("allocate after the lock is free: %v", err)
	}
}

func TestGC(t *testing.T) {
	s := open(t, t.TempDir(), "10.244.1.0/24")
	for _, id := range []string{"keep", "stale1", "stale2"} {
		allocate(t, s, id)
	}
	released, err := s.GC(context.Background(), func(id, ifName string) bool { return id == "keep" && ifName == "eth0" })
	if err != nil {
		t.Fatal(err)
	}
	if len(released) != 2 || released[0].ContainerID != "stale1" || released[1].ContainerID != "stale2" {
		t.Errorf("GC released %+v, want stale1 and stale2", released)
	}
	all, _ := s.List(context.Background())
	if len(all) != 1 || all[0].ContainerID != "keep" {
		t.Errorf("after GC: %+v, want keep only", all)
	}
}

func TestReadsHostLocalFiles(t *testing.T) {
	s := open(t, t.TempDir(), "10.244.1.0/24")
	if err := os.WriteFile(filepath.Join(s.Dir(), "10.244.1.9"), []byte("abc\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	ip, ok, err := s.Lookup(context.Background(), "abc", "eth0")
	if err != nil || !ok || ip.String() != "10.244.1.9" {
		t.Errorf("Lookup = %s, %v, %v; want 10.244.1.9", ip, ok, err)
	}
}

func TestOpenChecksNames(t *testing.T) {
	for _, name := range []string{"", "..", "a/b"} {
		if _, err := Open(t.TempDir(), name, netip.MustParsePrefix("10.244.1.0/24")); err == nil {
			t.Errorf("Open with network %q succeeded", name)
		}
	}
}
