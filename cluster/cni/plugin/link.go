package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/klab-dev/klab/cluster/cni/ns"
)

// hostSysctls make the node side of a pod's veth a router port without an
// address: it answers the pod's ARP for the gateway by proxy ARP, at once,
// and forwards what the pod sends.
func hostSysctls(link string) map[string]string {
	return map[string]string{
		"net/ipv4/conf/" + link + "/proxy_arp":    "1",
		"net/ipv4/neigh/" + link + "/proxy_delay": "0",
		"net/ipv4/conf/" + link + "/forwarding":   "1",
	}
}

// veth is what setupVeth made.
type veth struct {
	hostMAC, podMAC string
}

// setupVeth creates the pair (ifName in the pod, hostName on the node),
// addresses and routes the pod side, and routes ip/32 to the node side. A
// veth left from an earlier ADD of the same container is replaced. On
// failure nothing it made is left.
func setupVeth(pod *ns.NS, hostName, ifName string, mtu int, ip netip.Addr) (v veth, err error) {
	if err := deleteLink(hostName); err != nil {
		return v, types.NewError(types.ErrInternal, err.Error(), "")
	}
	if err := pod.Do(func() error {
		_, err := netlink.LinkByName(ifName)
		return err
	}); err == nil {
		return v, types.NewError(types.ErrInternal, fmt.Sprintf("the pod's network namespace %s already has an interface %s", pod.Path(), ifName),
			"DEL the container first, or pick another CNI_IFNAME")
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = hostName, mtu
	pair := &netlink.Veth{LinkAttrs: la, PeerName: ifName, PeerNamespace: netlink.NsFd(pod.Fd())}
	if err := netlink.LinkAdd(pair); err != nil {
		return v, fmt.Errorf("create veth %s with peer %s in %s: %w", hostName, ifName, pod.Path(), err)
	}
	defer func() {
		if err != nil {
			if derr := deleteLink(hostName); derr != nil {
				err = errors.Join(err, derr)
			}
		}
	}()
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return v, fmt.Errorf("find veth %s: %w", hostName, err)
	}
	for k, val := range hostSysctls(hostName) {
		if err := writeSysctl(k, val); err != nil {
			return v, err
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return v, fmt.Errorf("set %s up: %w", hostName, err)
	}
	v.hostMAC = host.Attrs().HardwareAddr.String()
	err = pod.Do(func() error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("find %s in the pod: %w", ifName, err)
		}
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: hostNet(ip)}); err != nil {
			return fmt.Errorf("add %s/32 to %s in the pod: %w", ip, ifName, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up in the pod: %w", ifName, err)
		}
		// Containers of a pod talk over 127.0.0.1: bring lo up too.
		if lo, err := netlink.LinkByName("lo"); err == nil {
			if err := netlink.LinkSetUp(lo); err != nil {
				return fmt.Errorf("set lo up in the pod: %w", err)
			}
		}
		gw := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: hostNet(Gateway), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteAdd(gw); err != nil {
			return fmt.Errorf("add route %s dev %s scope link in the pod: %w", Gateway, ifName, err)
		}
		def := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.IP(Gateway.AsSlice())}
		if err := netlink.RouteAdd(def); err != nil {
			return fmt.Errorf("add default route via %s in the pod: %w", Gateway, err)
		}
		v.podMAC = l.Attrs().HardwareAddr.String()
		return nil
	})
	if err != nil {
		return v, err
	}
	r := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostNet(ip), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(r); err != nil {
		return v, fmt.Errorf("add route %s/32 dev %s on the node: %w", ip, hostName, err)
	}
	return v, nil
}

// checkVeth verifies what setupVeth made.
func checkVeth(pod *ns.NS, hostName, ifName string, w want) error {
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("the node has no veth %s: %w", hostName, err)
	}
	if host.Type() != "veth" {
		return fmt.Errorf("%s on the node is a %s, not a veth", hostName, host.Type())
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s on the node is down", hostName)
	}
	for k, val := range hostSysctls(hostName) {
		got, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		if strings.TrimSpace(string(got)) != val {
			return fmt.Errorf("%s is %s on the node, want %s", strings.ReplaceAll(k, "/", "."), strings.TrimSpace(string(got)), val)
		}
	}
	if !hasRoute(host.Attrs().Index, hostNet(w.ip), nil, netlink.SCOPE_LINK) {
		return fmt.Errorf("the node has no route %s/32 dev %s scope link", w.ip, hostName)
	}
	return pod.Do(func() error {
		l, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("the pod has no %s: %w", ifName, err)
		}
		if l.Type() != "veth" || l.Attrs().ParentIndex != host.Attrs().Index {
			return fmt.Errorf("%s in the pod is not the peer of %s on the node", ifName, hostName)
		}
		if w.podMAC != "" && l.Attrs().HardwareAddr.String() != w.podMAC {
			return fmt.Errorf("%s in the pod has MAC %s, the result says %s", ifName, l.Attrs().HardwareAddr, w.podMAC)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			return fmt.Errorf("%s in the pod is down", ifName)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list the addresses of %s in the pod: %w", ifName, err)
		}
		found := false
		for _, a := range addrs {
			ones, _ := a.Mask.Size()
			found = found || a.IP.Equal(net.IP(w.ip.AsSlice())) && ones == 32
		}
		if !found {
			return fmt.Errorf("%s in the pod does not have %s/32", ifName, w.ip)
		}
		if !hasRoute(l.Attrs().Index, hostNet(Gateway), nil, netlink.SCOPE_LINK) {
			return fmt.Errorf("the pod has no route %s dev %s scope link", Gateway, ifName)
		}
		if !hasRoute(l.Attrs().Index, nil, net.IP(Gateway.AsSlice()), netlink.SCOPE_UNIVERSE) {
			return fmt.Errorf("the pod has no default route via %s dev %s", Gateway, ifName)
		}
		return nil
	})
}

// hasRoute reports whether the main table of the current namespace routes
// dst (nil: the default route) through the link, via gw when set.
func hasRoute(link int, dst *net.IPNet, gw net.IP, scope netlink.Scope) bool {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: link}, netlink.RT_FILTER_OIF)
	if err != nil {
		return false
	}
	for _, r := range routes {
		sameDst := dst == nil && (r.Dst == nil || r.Dst.IP.IsUnspecified()) ||
			dst != nil && r.Dst != nil && r.Dst.String() == dst.String()
		if sameDst && r.Scope == scope && (gw == nil || r.Gw.Equal(gw)) {
			return true
		}
	}
	return false
}

// deleteLink deletes a link of the current namespace; a missing one is not
// an error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// gatewayRoute checks that the node routes 169.254.1.1 somewhere: the
// kernel answers ARP by proxy only for an address it has a route to.
func gatewayRoute() *types.Error {
	if _, err := netlink.RouteGet(net.IP(Gateway.AsSlice())); err != nil {
		return types.NewError(ErrNoGatewayRoute,
			fmt.Sprintf("the node has no route to %s (%v), so proxy ARP cannot answer the pods' gateway", Gateway, err),
			"give the node a default route (ip route add default via GATEWAY), as Calico needs too")
	}
	return nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(32, 32)}
}
