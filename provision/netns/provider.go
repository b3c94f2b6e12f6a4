// Package netns is the zero-setup provider: every machine of the cluster is
// a set of Linux namespaces on this host — a named network namespace
// (klab-CLUSTER-NODE, listed by "ip netns"), its own UTS namespace
// (hostname) and its own mount namespace (its own /run, /etc/klab,
// /etc/cni, /opt/cni, /var/lib/klab, /var/log/klab and /usr/local/bin) —
// plus a cgroup that holds every process started in it. Machines are
// attached by veth to an underlay bridge that lives in a namespace of its
// own; with two subnets a router namespace joins them.
package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/cgroups"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// Provider is the netns provider.
type Provider struct {
	// Binary is the klab executable; it is re-run as "klab internal nsinit"
	// to set up each machine's namespaces.
	Binary string
}

var _ provision.Provider = (*Provider)(nil)

// New returns the provider; binary is the klab executable.
func New(binary string) *Provider { return &Provider{Binary: binary} }

// Name implements provision.Provider.
func (p *Provider) Name() string { return "netns" }

const (
	netnsDir = "/run/netns"
	runDir   = "/run/klab"
)

// NetNSName names a machine's network namespace.
func NetNSName(cluster, node string) string { return "klab-" + cluster + "-" + node }

func underlayNS(cluster string) string { return NetNSName(cluster, "underlay") }

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// pinDir holds a cluster's UTS and mount namespace pins; it is a private
// mount so the pins never propagate into the namespaces they pin.
func pinDir(cluster string) string { return filepath.Join(runDir, cluster, "ns") }

func pin(cluster, node, kind string) string {
	return filepath.Join(pinDir(cluster), node+"."+kind)
}

// nodeRoot holds the host side of a machine's own directories.
func nodeRoot(cluster, node string) string {
	return filepath.Join(provision.Dir(cluster), "nodes", node, "root")
}

// nodeDirs are the machine's own directories, each backed by a host
// directory under nodeRoot.
var nodeDirs = []string{
	provision.NodeConfigDir,
	"/etc/cni",
	"/opt/cni",
	provision.NodeStateDir,
	provision.NodeLogDir,
	filepath.Dir(provision.NodeBinary),
}

// overlays make room for nodeDirs without touching the host.
var overlays = []string{"/etc", "/opt", "/var", "/usr/local"}

func dirs(cluster, node string) map[string]string {
	m := make(map[string]string, len(nodeDirs))
	for _, d := range nodeDirs {
		m[d] = filepath.Join(nodeRoot(cluster, node), d)
	}
	return m
}

func cgroupOf(h cgroups.Hierarchy, cluster, node string) cgroups.Group {
	return cgroups.Group{H: h, Rel: filepath.Join("klab", cluster, node)}
}

// Transport implements provision.Provider.
func (p *Provider) Transport(c *provision.Cluster, node string) (transport.Transport, error) {
	if _, ok := c.Node(node); !ok {
		return nil, unknownNode(c, node)
	}
	if _, err := os.Stat(netnsPath(NetNSName(c.Name, node))); err != nil {
		return nil, fmt.Errorf("node %s has no network namespace %s: is the cluster up? (klab status --name %s)", node, NetNSName(c.Name, node), c.Name)
	}
	t := &transport.Namespaces{
		Node:  node,
		Net:   netnsPath(NetNSName(c.Name, node)),
		UTS:   pin(c.Name, node, "uts"),
		Mount: pin(c.Name, node, "mnt"),
		Dirs:  dirs(c.Name, node),
	}
	if h, err := cgroups.Find(); err == nil {
		// A leaf below the machine's group: on cgroup v2 a group whose
		// children have controllers enabled (the pods') may hold no
		// processes of its own.
		g := cgroups.Group{H: h, Rel: filepath.Join(cgroupOf(h, c.Name, node).Rel, "system")}
		t.Cgroup = &g
	}
	return t, nil
}

func unknownNode(c *provision.Cluster, node string) error {
	return fmt.Errorf("no node %q in cluster %q: its nodes are %s", node, c.Name, strings.Join(c.NodeNames(), ", "))
}

// Nodes implements provision.Provider.
func (p *Provider) Nodes(ctx context.Context, c *provision.Cluster) ([]provision.NodeState, error) {
	h, herr := cgroups.Find()
	var out []provision.NodeState
	for _, n := range c.Nodes {
		ns := NetNSName(c.Name, n.Name)
		st := provision.NodeState{Name: n.Name, State: "missing", Detail: "netns " + ns}
		if _, err := os.Stat(netnsPath(ns)); err == nil {
			st.State = "stopped"
			if herr == nil {
				if pids, _ := cgroupOf(h, c.Name, n.Name).Procs(); len(pids) > 0 {
					st.State = "running"
				}
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// Delete implements provision.Provider. It removes, in order: every
// process of every machine (by cgroup, then by network namespace), the
// namespace pins, the host's link, and the run directory.
func (p *Provider) Delete(ctx context.Context, c *provision.Cluster) error {
	var errs []error
	h, herr := cgroups.Find()
	names := append(c.NodeNames(), "underlay")
	for _, n := range names {
		if herr == nil && n != "underlay" {
			g := cgroupOf(h, c.Name, n)
			kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := g.Kill(kctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
			if err := g.Remove(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := killInNetNS(ctx, netnsPath(NetNSName(c.Name, n))); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	// Pod limits live in the v1 hierarchies too (cpu, memory, pids on a
	// hybrid host): their groups go as well, now that no process is left.
	if all, err := cgroups.All(); err == nil {
		for _, hh := range all {
			g := cgroups.Group{H: hh, Rel: filepath.Join("klab", c.Name)}
			if err := g.Remove(); err != nil {
				errs = append(errs, err)
			}
			cgroupOf(hh, c.Name, "x").RemoveEmptyParents()
		}
	}
	for _, n := range names {
		for _, f := range []string{pin(c.Name, n, "mnt"), pin(c.Name, n, "uts"), netnsPath(NetNSName(c.Name, n))} {
			if err := unpin(f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if l, err := netlink.LinkByName(c.HostLink); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete host link %s: %w", c.HostLink, err))
		}
	}
	if err := unpin(pinDir(c.Name)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(filepath.Join(runDir, c.Name)); err != nil {
		errs = append(errs, err)
	}
	releaseRunDirs()
	return errors.Join(errs...)
}

// unpin unmounts a namespace pin (or the pin directory) and removes it.
func unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return err
	}
	return nil
}

// killInNetNS kills the processes whose network namespace is the one
// pinned at path — a safety net for processes that left the cgroup.
func killInNetNS(ctx context.Context, path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	wait := time.Millisecond
	for {
		pids := pidsWithNetNS(want)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v in %s did not exit", pids, path)
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

func pidsWithNetNS(want string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if l, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns/net")); err == nil && l == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// netnsHandle opens a machine's network namespace.
func netnsHandle(cluster, node string) (vnetns.NsHandle, error) {
	h, err := vnetns.GetFromPath(netnsPath(NetNSName(cluster, node)))
	if err != nil {
		return 0, fmt.Errorf("open network namespace of %s: %w", node, err)
	}
	return h, nil
}
