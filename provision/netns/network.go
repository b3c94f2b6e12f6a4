package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/cgroups"
	"github.com/klab-dev/klab/provision"
)

var noIPv6 = []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"}

// bridgeName names the underlay bridge of a subnet.
func bridgeName(s provision.Subnet) string { return "br-" + s.Name }

// CreateNetwork implements provision.Provider: the underlay namespace with
// one bridge per subnet, the host's link into subnet a, and the router.
func (p *Provider) CreateNetwork(ctx context.Context, c *provision.Cluster) error {
	if err := prepareRunDirs(c.Name); err != nil {
		return err
	}
	uns := underlayNS(c.Name)
	if err := p.spawn(ctx, syscall.CLONE_NEWNET, map[string]string{"net": netnsPath(uns)}, sysctlArgs(noIPv6)); err != nil {
		return fmt.Errorf("underlay namespace: %w", err)
	}
	uh, err := netnsHandle(c.Name, "underlay")
	if err != nil {
		return err
	}
	defer uh.Close()
	h, err := netlink.NewHandleAt(uh, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := linkUp(h, "lo"); err != nil {
		return err
	}
	for _, s := range c.Subnets {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName(s), MTU: c.MTU}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", br.Name, err)
		}
		if err := h.LinkSetUp(br); err != nil {
			return err
		}
	}
	// The host's link: how the host (kubectl, the CLI) reaches the cluster.
	hl := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: c.HostLink, MTU: c.MTU}, PeerName: "host", PeerNamespace: netlink.NsFd(int(uh))}
	if err := netlink.LinkAdd(hl); err != nil {
		return fmt.Errorf("create host link %s: %w", c.HostLink, err)
	}
	if err := attach(h, "host", bridgeName(c.Subnets[0])); err != nil {
		return err
	}
	if err := netlink.AddrAdd(hl, &netlink.Addr{IPNet: ipNet(c.HostIP)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", c.HostIP, c.HostLink, err)
	}
	if err := netlink.LinkSetUp(hl); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if n.Role != provision.RoleRouter {
			continue
		}
		if err := p.createMachine(ctx, c, n); err != nil {
			return err
		}
		// The host reaches the other subnets through the router.
		for _, s := range c.Subnets[1:] {
			r := &netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipNet(s.CIDR), Gw: net.IP(c.Subnets[0].Gateway.AsSlice())}
			if err := netlink.RouteAdd(r); err != nil {
				return fmt.Errorf("route %s via the router: %w", s.CIDR, err)
			}
		}
	}
	return nil
}

// CreateNodes implements provision.Provider; machines are made in parallel.
func (p *Provider) CreateNodes(ctx context.Context, c *provision.Cluster) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, n := range c.Nodes {
		if n.Role == provision.RoleRouter {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.createMachine(ctx, c, n); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// iface is one of a machine's underlay interfaces.
type iface struct {
	name   string // in the machine: eth0, eth1
	peer   string // in the underlay namespace
	addr   netip.Prefix
	bridge string
}

func interfaces(c *provision.Cluster, n provision.Node) []iface {
	if n.Role == provision.RoleRouter {
		var out []iface
		for i, s := range c.Subnets {
			out = append(out, iface{name: fmt.Sprintf("eth%d", i), peer: n.Name + "-" + s.Name, addr: netip.PrefixFrom(s.Gateway, s.CIDR.Bits()), bridge: bridgeName(s)})
		}
		return out
	}
	s := c.Subnets[n.Subnet]
	return []iface{{name: "eth0", peer: n.Name, addr: netip.PrefixFrom(n.IP, s.CIDR.Bits()), bridge: bridgeName(s)}}
}

// createMachine makes a machine's namespaces, directories and cgroup, and
// wires it to the underlay.
func (p *Provider) createMachine(ctx context.Context, c *provision.Cluster, n provision.Node) error {
	args := []string{"--hostname", n.Name}
	for _, d := range nodeDirs {
		host := filepath.Join(nodeRoot(c.Name, n.Name), d)
		if err := os.MkdirAll(host, 0o755); err != nil {
			return err
		}
		args = append(args, "--bind", host+"="+d)
	}
	for _, o := range overlays {
		args = append(args, "--overlay", o)
	}
	sysctls := noIPv6
	if n.Role == provision.RoleRouter {
		sysctls = append(sysctls, "net.ipv4.ip_forward=1")
	}
	args = append(args, sysctlArgs(sysctls)...)
	if h, err := cgroups.Find(); err == nil {
		if err := (cgroups.Group{H: h, Rel: filepath.Join(cgroupOf(h, c.Name, n.Name).Rel, "system")}).Create(); err != nil {
			return err
		}
	}
	pins := map[string]string{
		"net": netnsPath(NetNSName(c.Name, n.Name)),
		"uts": pin(c.Name, n.Name, "uts"),
		"mnt": pin(c.Name, n.Name, "mnt"),
	}
	if err := p.spawn(ctx, syscall.CLONE_NEWNET|syscall.CLONE_NEWUTS|syscall.CLONE_NEWNS, pins, args); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if err := p.wire(c, n); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	return nil
}

// wire connects a machine's interfaces to the underlay bridges, addresses
// them, and routes to the other subnets through the router.
func (p *Provider) wire(c *provision.Cluster, n provision.Node) error {
	uns, err := netnsHandle(c.Name, "underlay")
	if err != nil {
		return err
	}
	defer uns.Close()
	nns, err := netnsHandle(c.Name, n.Name)
	if err != nil {
		return err
	}
	defer nns.Close()
	uh, err := netlink.NewHandleAt(uns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer uh.Close()
	nh, err := netlink.NewHandleAt(nns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return err
	}
	for _, i := range interfaces(c, n) {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: i.peer, MTU: c.MTU}, PeerName: i.name, PeerNamespace: netlink.NsFd(int(nns))}
		if err := uh.LinkAdd(v); err != nil {
			return fmt.Errorf("create veth %s: %w", i.peer, err)
		}
		if err := attach(uh, i.peer, i.bridge); err != nil {
			return err
		}
		l, err := nh.LinkByName(i.name)
		if err != nil {
			return err
		}
		if err := nh.AddrAdd(l, &netlink.Addr{IPNet: ipNet(i.addr)}); err != nil {
			return fmt.Errorf("address %s on %s: %w", i.addr, i.name, err)
		}
		if err := nh.LinkSetUp(l); err != nil {
			return err
		}
	}
	// A default route, as a machine on a real network has: through the
	// router when there is one, or the host's link. Pods need it too: the
	// node answers a pod's ARP for its gateway (169.254.1.1, proxy ARP)
	// only when it has a route to that address.
	gw := c.Subnets[n.Subnet].Gateway
	if n.Role == provision.RoleRouter || !gw.IsValid() {
		gw = c.HostIP.Addr()
	}
	l, err := nh.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(gw.AsSlice())}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

func attach(h *netlink.Handle, link, bridge string) error {
	l, err := h.LinkByName(link)
	if err != nil {
		return err
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		return err
	}
	if err := h.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", link, bridge, err)
	}
	return h.LinkSetUp(l)
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func sysctlArgs(kv []string) []string {
	var out []string
	for _, s := range kv {
		out = append(out, "--sysctl", s)
	}
	return out
}
