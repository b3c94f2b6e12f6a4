// Package ns opens the network namespaces the CNI plugin is given, and
// runs code inside them through NS.Do on a locked thread (see
// internal/nsrun).
package ns

import (
	"fmt"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/nsrun"
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

// Do runs fn on a thread inside the namespace and waits for it (see
// nsrun.In for what fn may do).
func (n *NS) Do(fn func() error) error {
	return nsrun.In(n.h, "network namespace "+n.path, fn)
}
