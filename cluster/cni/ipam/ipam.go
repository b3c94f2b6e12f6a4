// Package ipam hands out pod addresses from a node's block, the way
// host-local does: one file per allocated address in a directory on the
// node, serialised with a file lock so that concurrent CNI ADDs never share
// an address, surviving restarts of whatever calls it, released on DEL.
package ipam

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDataDir holds one directory per network, on the node.
const DefaultDataDir = "/var/lib/klab/cni/networks"

const (
	lockFile     = "lock"
	lastReserved = "last_reserved_ip"
)

// ErrExhausted means every assignable address of the block is in use.
var ErrExhausted = errors.New("no free address")

// Allocation is one address held by one container interface.
type Allocation struct {
	IP          netip.Addr `json:"ip"`
	ContainerID string     `json:"containerID"`
	IfName      string     `json:"ifName"`
}

// Range returns the first and last address handed out from subnet: all
// but the network address (.0, which the network modes give the node's
// tunnel device), the gateway-ish .1 and the broadcast address.
func Range(subnet netip.Prefix) (first, last netip.Addr, err error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return first, last, fmt.Errorf("subnet %s: want an IPv4 CIDR such as 10.42.1.0/24", subnet)
	}
	if subnet.Masked() != subnet {
		return first, last, fmt.Errorf("subnet %s has host bits set: did you mean %s?", subnet, subnet.Masked())
	}
	if subnet.Bits() > 30 {
		return first, last, fmt.Errorf("subnet %s is too small: it needs at least 4 addresses (a /30)", subnet)
	}
	network := subnet.Addr()
	first = network.Next().Next()
	bcast := broadcast(subnet)
	return first, bcast.Prev(), nil
}

func broadcast(p netip.Prefix) netip.Addr {
	v := u32(p.Addr()) | (uint32(1)<<(32-p.Bits()) - 1)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// size is the number of addresses from first to last.
func size(first, last netip.Addr) int { return int(u32(last)-u32(first)) + 1 }

// Store is the allocation directory of one network on one node.
type Store struct {
	dir         string
	subnet      netip.Prefix
	first, last netip.Addr
}

// Open returns the store of network under dataDir for subnet, creating
// its directory. It holds no lock: every operation takes the lock itself.
func Open(dataDir, network string, subnet netip.Prefix) (*Store, error) {
	if network == "" || strings.ContainsAny(network, `/\`) || network == "." || network == ".." {
		return nil, fmt.Errorf("network name %q cannot name a directory: use letters, digits, - and _", network)
	}
	first, last, err := Range(subnet)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, network)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the allocation directory: %w", err)
	}
	return &Store{dir: dir, subnet: subnet, first: first, last: last}, nil
}

// Dir is the directory that holds the allocations.
func (s *Store) Dir() string { return s.dir }

// Allocate gives the container's interface an address, or the one it
// already holds (then fresh is false), so a repeated ADD gets the same
// address. Addresses are handed out round-robin after the last one
// reserved, so a released address is not reused at once.
func (s *Store) Allocate(ctx context.Context, containerID, ifName string) (ip netip.Addr, fresh bool, err error) {
	err = s.locked(ctx, func() error {
		held, err := s.list()
		if err != nil {
			return err
		}
		used := make(map[netip.Addr]bool, len(held))
		for _, a := range held {
			if a.ContainerID == containerID && a.IfName == ifName {
				ip = a.IP
				return nil
			}
			used[a.IP] = true
		}
		start := s.first
		if b, err := os.ReadFile(filepath.Join(s.dir, lastReserved)); err == nil {
			if last, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && s.inRange(last) {
				start = s.next(last)
			}
		}
		n := size(s.first, s.last)
		for c, i := start, 0; i < n; c, i = s.next(c), i+1 {
			if used[c] {
				continue
			}
			if err := s.write(c, containerID, ifName); err != nil {
				return err
			}
			ip, fresh = c, true
			return writeFile(filepath.Join(s.dir, lastReserved), c.String()+"\n")
		}
		return fmt.Errorf("%w in %s: all %d addresses are in use; delete pods on this node or give it a bigger pod CIDR", ErrExhausted, s.subnet, n)
	})
	return ip, fresh, err
}

// Release frees what the container's interface holds; releasing nothing
// is not an error (ok is false then), so DEL can be repeated.
func (s *Store) Release(ctx context.Context, containerID, ifName string) (ip netip.Addr, ok bool, err error) {
	err = s.locked(ctx, func() error {
		held, err := s.list()
		if err != nil {
			return err
		}
		for _, a := range held {
			if a.ContainerID != containerID || a.IfName != ifName {
				continue
			}
			if err := os.Remove(filepath.Join(s.dir, a.IP.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("release %s: %w", a.IP, err)
			}
			ip, ok = a.IP, true
		}
		return nil
	})
	return ip, ok, err
}

// Lookup returns the address the container's interface holds.
func (s *Store) Lookup(ctx context.Context, containerID, ifName string) (ip netip.Addr, ok bool, err error) {
	err = s.locked(ctx, func() error {
		held, err := s.list()
		for _, a := range held {
			if a.ContainerID == containerID && a.IfName == ifName {
				ip, ok = a.IP, true
			}
		}
		return err
	})
	return ip, ok, err
}

// List returns every allocation, in address order.
func (s *Store) List(ctx context.Context) (all []Allocation, err error) {
	err = s.locked(ctx, func() error {
		all, err = s.list()
		return err
	})
	return all, err
}

// Free counts the addresses that are still free.
func (s *Store) Free(ctx context.Context) (int, error) {
	all, err := s.List(ctx)
	if err != nil {
		return 0, err
	}
	used := 0
	for _, a := range all {
		if s.inRange(a.IP) {
			used++
		}
	}
	return size(s.first, s.last) - used, nil
}

// GC releases every allocation for which keep returns false and returns
// what it released.
func (s *Store) GC(ctx context.Context, keep func(containerID, ifName string) bool) (released []Allocation, err error) {
	err = s.locked(ctx, func() error {
		held, err := s.list()
		if err != nil {
			return err
		}
		for _, a := range held {
			if keep(a.ContainerID, a.IfName) {
				continue
			}
			if err := os.Remove(filepath.Join(s.dir, a.IP.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("release %s: %w", a.IP, err)
			}
			released = append(released, a)
		}
		return nil
	})
	return released, err
}

func (s *Store) inRange(a netip.Addr) bool {
	return a.Is4() && s.first.Compare(a) <= 0 && a.Compare(s.last) <= 0
}

// next is the address after a, wrapping from the last to the first.
func (s *Store) next(a netip.Addr) netip.Addr {
	if n := a.Next(); s.inRange(n) {
		return n
	}
	return s.first
}

// list reads the allocations; the caller holds the lock. Files whose name
// is not an address (the lock, last_reserved_ip, temporary files) are not
// allocations.
func (s *Store) list() ([]Allocation, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read allocations: %w", err)
	}
	var out []Allocation
	for _, e := range ents {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read allocation %s: %w", ip, err)
		}
		// "ID\nIFNAME\n"; host-local writes "ID\r\nIFNAME".
		f := strings.Fields(string(b))
		a := Allocation{IP: ip}
		if len(f) > 0 {
			a.ContainerID = f[0]
		}
		if len(f) > 1 {
			a.IfName = f[1]
		}
		out = append(out, a)
	}
	// ReadDir sorts by name; addresses sort by value.
	slices.SortFunc(out, func(a, b Allocation) int { return a.IP.Compare(b.IP) })
	return out, nil
}

func (s *Store) write(ip netip.Addr, containerID, ifName string) error {
	if err := writeFile(filepath.Join(s.dir, ip.String()), containerID+"\n"+ifName+"\n"); err != nil {
		return fmt.Errorf("reserve %s: %w", ip, err)
	}
	return nil
}

// writeFile replaces path with data in one rename, so a process that dies
// halfway leaves the old file or the new one, never half of one. (No
// fsync: allocations must outlive processes, and the page cache does.)
func writeFile(path, data string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// locked runs fn holding the store's exclusive file lock, waiting for it
// until ctx ends. The lock is flock(2) on a file in the directory: it
// serialises processes (one per CNI call) and is dropped by the kernel
// when a holder dies.
func (s *Store) locked(ctx context.Context, fn func() error) error {
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open the allocation lock: %w", err)
	}
	defer f.Close()
	wait := 100 * time.Microsecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lock %s: %w", s.dir, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for the allocation lock on %s: %w", s.dir, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Millisecond)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}
