package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes/policy/nftrule"
)

// Proxier programs one network namespace's proxy table.
type Proxier struct {
	cfg Config
	nl  *netlink.Handle
	ns  netns.NsHandle // -1: the process's own namespace

	mu     sync.Mutex
	table  *nftrule.Table
	ports  []ServicePort // what the table serves
	synced time.Time
}

// New makes a proxier for the network namespace at path ("" is the
// process's own, where the agent runs on a node).
func New(cfg Config, path string) (*Proxier, error) {
	conn, ns, err := nftrule.Connect(path)
	if err != nil {
		return nil, err
	}
	// In the process's own namespace (netns.None()) it is NewHandle.
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		if !ns.IsOpen() {
			return nil, fmt.Errorf("netlink handle: %w", err)
		}
		ns.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", path, err)
	}
	return &Proxier{cfg: cfg, nl: h, ns: ns, table: nftrule.NewTable(conn, TableName)}, nil
}

// Close releases the proxier's handles; the rules stay, as kube-proxy's
// do when it stops (connections keep working until the next agent).
func (p *Proxier) Close() error {
	p.nl.Close()
	if p.ns.IsOpen() {
		return p.ns.Close()
	}
	return nil
}

// Changes says what a sync did.
type Changes struct {
	// Chains lists the chains written (added or rewritten) and removed.
	Written, Removed []string
	// FlushedFlows counts the UDP conntrack entries removed because their
	// endpoint went away (or their service got its first endpoint);
	// FlowsErr says why they could not be (they then time out).
	FlushedFlows uint
	FlowsErr     error
}

// Sync makes the table serve ports, rewriting only the chains that
// changed, in one transaction.
func (p *Proxier) Sync(ports []ServicePort) (Changes, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := plan(p.cfg, ports)
	written, removed, err := p.table.Sync(want.chains, want.sets)
	if err != nil {
		return Changes{}, err
	}
	ch := Changes{Written: written, Removed: removed}
	ch.FlushedFlows, ch.FlowsErr = p.flushStaleFlows(p.ports, ports)
	p.ports, p.synced = ports, time.Now()
	return ch, nil
}

// Delete removes the proxy's table, if there is one.
func (p *Proxier) Delete() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ports = nil
	return p.table.Delete()
}

// flushStaleFlows removes the UDP conntrack entries that would keep
// sending a client to an endpoint that is gone (UDP has no connection to
// break), and those made while a service had no endpoint, as kube-proxy
// does. It returns how many it removed; it fails only when conntrack
// cannot be read, and then the entries simply time out.
func (p *Proxier) flushStaleFlows(before, after []ServicePort) (uint, error) {
	old := map[string]ServicePort{}
	for _, sp := range before {
		old[sp.key()] = sp
	}
	var filters []netlink.CustomConntrackFilter
	filter := func(ipType netlink.ConntrackFilterType, ip netip.Addr, port uint16) {
		f := &netlink.ConntrackFilter{}
		f.AddIP(ipType, net.IP(ip.AsSlice()))
		f.AddProtocol(unix.IPPROTO_UDP)
		f.AddPort(netlink.ConntrackOrigDstPort, port)
		filters = append(filters, f)
	}
	for _, sp := range after {
		if sp.Protocol != "UDP" {
			continue
		}
		prev, existed := old[sp.key()]
		if existed && len(prev.Endpoints) == 0 && len(sp.Endpoints) > 0 {
			filter(netlink.ConntrackOrigDstIP, sp.ClusterIP, sp.Port)
			if sp.NodePort != 0 && p.cfg.NodeIP.IsValid() {
				filter(netlink.ConntrackOrigDstIP, p.cfg.NodeIP, sp.NodePort)
			}
		}
		for _, e := range prev.Endpoints {
			if slices.Contains(sp.Endpoints, e) {
				continue
			}
			filter(netlink.ConntrackReplySrcIP, e.IP, sp.Port)
			if sp.NodePort != 0 {
				filter(netlink.ConntrackReplySrcIP, e.IP, sp.NodePort)
			}
		}
	}
	if len(filters) == 0 {
		return 0, nil
	}
	return p.nl.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
}
