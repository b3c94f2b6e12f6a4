// Package netmodes programs a node's pod network the way Calico does, in one
// of three modes: bgp (plain routes to the other nodes' pod blocks), vxlan
// (a vxlan.calico device with FDB and neighbour entries per peer) and ipip
// (tunl0, in the kernel or in userspace). The modes live in the bgp, vxlan
// and ipip subpackages; this package holds what they share: the plain node
// and configuration types, the Mode interface, route bookkeeping marked with
// klab's own route protocol number, and the Reconciler that switches a node
// from one mode to another.
//
// Nothing here knows about Kubernetes or klab's API types: the network agent
// translates its ClusterNetwork object into a Config and its node list (or
// what BGP learned) into Nodes.
package netmodes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Kind names a network mode.
type Kind string

// The modes.
const (
	BGP   Kind = "bgp"   // no encapsulation: routes via the peers' underlay addresses
	VXLAN Kind = "vxlan" // VXLAN: UDP 4789, VNI 4096, device vxlan.calico
	IPIP  Kind = "ipip"  // IP in IP (IP protocol 4), device tunl0
)

// Implementations of a mode.
const (
	Kernel    = "kernel"    // devices and encapsulation in the kernel
	Userspace = "userspace" // a TUN device and klab's own encapsulator (ipip only)
)

// Defaults, as in Calico.
const (
	DefaultVNI  = 4096
	DefaultPort = 4789
	// VXLANOverhead is what VXLAN adds to a packet: outer IPv4 (20), UDP (8),
	// VXLAN (8) and the inner Ethernet header (14).
	VXLANOverhead = 50
	// IPIPOverhead is the outer IPv4 header.
	IPIPOverhead = 20
)

// Node is a machine of the cluster as the pod network sees it: this node, or
// one of its peers.
type Node struct {
	Name string `json:"name"`
	// Underlay is the node's address on the underlay network together with
	// the prefix length of its subnet, e.g. 192.168.34.11/24.
	Underlay netip.Prefix `json:"underlay"`
	// Block is the node's pod address block, e.g. 10.42.1.0/24.
	Block netip.Prefix `json:"block"`
	// VTEPMAC is the MAC address of the node's vxlan.calico device; empty
	// means the one VTEPMAC derives from the underlay address.
	VTEPMAC net.HardwareAddr `json:"vtepMAC,omitempty"`
}

// IP is the node's underlay address.
func (n Node) IP() netip.Addr { return n.Underlay.Addr() }

// TunnelAddress is the node's address on its tunnel device (vxlan.calico or
// tunl0): the first address of its pod block.
func (n Node) TunnelAddress() netip.Addr { return n.Block.Masked().Addr() }

// SameSubnet reports whether peer's underlay address is in n's underlay
// subnet, that is reachable without a router.
func (n Node) SameSubnet(peer Node) bool { return n.Underlay.Masked().Contains(peer.IP()) }

// MAC is the node's VTEP MAC: VTEPMAC when set, else the derived one.
func (n Node) MAC() net.HardwareAddr {
	if len(n.VTEPMAC) == 6 {
		return n.VTEPMAC
	}
	return VTEPMAC(n.IP())
}

// VTEPMAC derives a node's VTEP MAC address from its underlay IPv4 address,
// so every peer can compute it: 66:6b (locally administered, unicast, "k")
// followed by the four bytes of the address; 192.168.34.12 gives
// 66:6b:c0:a8:22:0c.
func VTEPMAC(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x66, 0x6b, a[0], a[1], a[2], a[3]}
}

// String is the node for messages: its name and underlay address.
func (n Node) String() string {
	if n.Name == "" {
		return n.IP().String()
	}
	return fmt.Sprintf("%s (%s)", n.Name, n.IP())
}

func (n Node) validate() error {
	if !n.Underlay.IsValid() || !n.Underlay.Addr().Is4() {
		return fmt.Errorf("node %q: underlay %q is not an IPv4 address with a prefix length", n.Name, n.Underlay)
	}
	if !n.Block.IsValid() || !n.Block.Addr().Is4() || n.Block.Bits() > 30 {
		return fmt.Errorf("node %q: pod block %q is not an IPv4 prefix of /30 or larger", n.Name, n.Block)
	}
	if n.Block.Masked() != n.Block {
		return fmt.Errorf("node %q: pod block %s has host bits set (want %s)", n.Name, n.Block, n.Block.Masked())
	}
	return nil
}

// Config is the mode configuration of the cluster's network.
type Config struct {
	Mode Kind `json:"mode"`
	// CrossSubnet encapsulates (ipip, vxlan) only towards peers in another
	// underlay subnet; same-subnet peers get plain routes.
	CrossSubnet bool `json:"crossSubnet,omitempty"`
	// MTU is the underlay MTU; 0 takes it from the underlay interface. The
	// tunnel devices get MTU-50 (vxlan) and MTU-20 (ipip).
	MTU int `json:"mtu,omitempty"`
	// VNI and Port are VXLAN's network identifier and UDP port (4096, 4789).
	VNI  int `json:"vni,omitempty"`
	Port int `json:"port,omitempty"`
	// Implementation picks kernel or userspace ipip; empty picks the kernel
	// device where the kernel has ipip and userspace where it has not.
	Implementation string `json:"implementation,omitempty"`
}

// WithDefaults fills in VNI and port.
func (c Config) WithDefaults() Config {
	if c.VNI == 0 {
		c.VNI = DefaultVNI
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	return c
}

// Validate checks a configuration (after WithDefaults).
func (c Config) Validate() error {
	switch c.Mode {
	case BGP, VXLAN, IPIP:
	default:
		return fmt.Errorf("unknown network mode %q: use bgp, vxlan or ipip", c.Mode)
	}
	if c.CrossSubnet && c.Mode == BGP {
		return errors.New("cross-subnet applies to ipip and vxlan, not bgp")
	}
	if c.VNI < 1 || c.VNI > 1<<24-1 {
		return fmt.Errorf("VXLAN VNI %d is out of range 1-16777215", c.VNI)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("VXLAN port %d is out of range 1-65535", c.Port)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return fmt.Errorf("underlay MTU %d is out of range 576-65535", c.MTU)
	}
	switch c.Implementation {
	case "", Kernel:
	case Userspace:
		if c.Mode != IPIP {
			return fmt.Errorf("%s mode has no userspace implementation (only ipip has)", c.Mode)
		}
	default:
		return fmt.Errorf("unknown implementation %q: use kernel or userspace", c.Implementation)
	}
	return nil
}

// Encapsulates reports whether traffic from self to peer is encapsulated.
func (c Config) Encapsulates(self, peer Node) bool {
	if c.Mode == BGP {
		return false
	}
	return !c.CrossSubnet || !self.SameSubnet(peer)
}

// String is the configuration in the CLI's words: "vxlan", "ipip cross-subnet".
func (c Config) String() string {
	s := string(c.Mode)
	if c.CrossSubnet {
		s += " cross-subnet"
	}
	return s
}

// Changes is what an Apply or Remove did to a node, in human form:
// "device vxlan.calico", "fdb 66:6b:c0:a8:22:0c dst 192.168.34.12",
// "route 10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink".
type Changes struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// Add records something added.
func (c *Changes) Add(format string, args ...any) {
	c.Added = append(c.Added, fmt.Sprintf(format, args...))
}

// Remove records something removed.
func (c *Changes) Remove(format string, args ...any) {
	c.Removed = append(c.Removed, fmt.Sprintf(format, args...))
}

// Merge appends o's changes to c's.
func (c *Changes) Merge(o Changes) {
	c.Added = append(c.Added, o.Added...)
	c.Removed = append(c.Removed, o.Removed...)
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool { return len(c.Added) == 0 && len(c.Removed) == 0 }

// String lists the changes, one a line, "-" for removed and "+" for added.
func (c Changes) String() string {
	var b strings.Builder
	for _, s := range c.Removed {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	for _, s := range c.Added {
		fmt.Fprintf(&b, "+ %s\n", s)
	}
	return b.String()
}

// Mode programs one network mode into a node's network namespace.
type Mode interface {
	// Kind is the mode's name.
	Kind() Kind
	// Implementation is Kernel or Userspace; before the first Apply it is
	// the one Apply would pick.
	Implementation() string
	// Apply makes the namespace carry pod traffic from self to every peer
	// in this mode, and reports what it changed. A second Apply with the
	// same arguments changes nothing. It owns every route marked with
	// RouteProtocol: it replaces those that differ and deletes those it
	// does not want.
	Apply(ctx context.Context, cfg Config, self Node, peers []Node) (Changes, error)
	// Remove deletes every device, route, FDB and neighbour entry the mode
	// made (finding them by name and by RouteProtocol, so it also cleans up
	// after an earlier process), stops its background work, and reports
	// what it deleted. It is idempotent.
	Remove(ctx context.Context) (Changes, error)
	// Release is Remove without the routes: the Reconciler calls it after
	// the next mode's Apply has replaced them, so that traffic moves to the
	// new mode before the old one's devices go.
	Release(ctx context.Context) (Changes, error)
}

// Factory makes a mode for the node whose namespace is ns. Background work
// the mode starts (the userspace ipip encapsulator) stops when ctx ends.
type Factory func(ctx context.Context, ns *Netns) Mode

// NotOnLinkError is the real-world failure of pure BGP routing across
// subnets: the kernel refuses a route whose next hop is not on a directly
// connected network.
type NotOnLinkError struct {
	NextHop netip.Addr // the peer's underlay address
	From    netip.Addr // this node's underlay address
	Block   netip.Prefix
	Err     error // the kernel's error
}

func (e *NotOnLinkError) Error() string {
	return fmt.Sprintf("next hop %s is not on-link from %s: BGP without encapsulation needs every node in one L2 segment, "+
		"or the router to learn the routes (klab net peer router), or IPIP/VXLAN CrossSubnet", e.NextHop, e.From)
}

func (e *NotOnLinkError) Unwrap() error { return e.Err }
