package netmodes

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/nsrun"
)

// Netns is a node's network namespace: a netlink handle bound to it and a
// way to run code on a thread inside it (to open sockets and TUN devices
// there, which stay in the namespace whichever thread uses them later).
type Netns struct {
	path    string
	ns      netns.NsHandle // closed by Close; -1 for the process's own namespace
	h       *netlink.Handle
	current bool
}

// OpenNetns opens the network namespace at path (/run/netns/NAME,
// /proc/PID/ns/net); "" is the process's own namespace, which is where the
// network agent runs on a node.
func OpenNetns(path string) (*Netns, error) {
	if path == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		return &Netns{ns: netns.None(), h: h, current: true}, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return &Netns{path: path, ns: ns, h: h}, nil
}

// String names the namespace for messages.
func (n *Netns) String() string {
	if n.current {
		return "this network namespace"
	}
	return "network namespace " + n.path
}

// Netlink is a handle bound to the namespace.
func (n *Netns) Netlink() *netlink.Handle { return n.h }

// Do runs fn on an OS thread inside the namespace and waits for it (see
// nsrun.In for what fn may do).
func (n *Netns) Do(fn func() error) error {
	if n.current {
		return fn()
	}
	return nsrun.In(n.ns, n.String(), fn)
}

// Listen opens a listener in the namespace.
func (n *Netns) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = (&net.ListenConfig{}).Listen(ctx, network, addr)
		return err
	})
	return ln, err
}

// Dial connects from the namespace.
func (n *Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet connection (udp, ip4:icmp …) in the namespace.
func (n *Netns) ListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = (&net.ListenConfig{}).ListenPacket(ctx, network, addr)
		return err
	})
	return c, err
}

// Close releases the handle and the namespace reference (the namespace
// itself lives on).
func (n *Netns) Close() error {
	n.h.Close()
	if n.current {
		return nil
	}
	return n.ns.Close()
}
