// Package ns enters network namespaces safely from Go: a namespace
// belongs to an OS thread, and Go moves goroutines between threads, so all
// work inside one goes through NS.Do on a locked thread (the reasons are
// those of containernetworking/plugins' pkg/ns).
package ns

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is an open network namespace, such as a pod's CNI_NETNS.
type NS struct {
	path string
	h    netns.NsHandle
}

// Open opens the network namespace at path (a /proc/PID/ns/net or a bind
// mount of one under /run/netns).
func Open(path string) (*NS, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h), &st); err != nil {
		h.Close()
		return nil, err
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		h.Close()
		return nil, fmt.Errorf("%s is not a namespace file", path)
	}
	return &NS{path: path, h: h}, nil
}

// Path is where the namespace was opened from.
func (n *NS) Path() string { return n.path }

// Fd is the namespace's file descriptor, valid until Close; netlink takes
// it to create a link inside the namespace (netlink.NsFd).
func (n *NS) Fd() int { return int(n.h) }

// IsCurrent reports whether the calling thread is in this namespace.
func (n *NS) IsCurrent() (bool, error) {
	cur, err := netns.Get()
	if err != nil {
		return false, fmt.Errorf("open the current network namespace: %w", err)
	}
	defer cur.Close()
	return n.h.Equal(cur), nil
}

// Close releases the handle; the namespace lives on while anything else
// holds it.
func (n *NS) Close() error { return n.h.Close() }

// Do runs fn with its thread in the namespace. A namespace belongs to an
// OS thread, not to a goroutine, and Go moves goroutines between threads:
// so fn runs on a fresh goroutine locked to its thread, which enters the
// namespace and comes back before it is unlocked. If it cannot come back,
// the thread stays locked and ends with the goroutine, so no other
// goroutine ever runs in the wrong namespace. fn must not start goroutines
// that expect to be in the namespace; a process that fn starts (os/exec)
// is forked from the locked thread, so it starts in the namespace.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", n.path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", n.path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
