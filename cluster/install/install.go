// Package install brings a cluster up and down: it has the provider make
// the machines, then installs klab on every one of them over its transport
// (the binary, the node's configuration, the supervisor that runs its
// components) and waits until they run. A failed "up" deletes what it made.
package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// Options for Up.
type Options struct {
	Plan     provision.PlanOptions
	Provider provision.Provider
	// Binary is the klab executable copied to every machine.
	Binary string
	// Mode is the pod network's mode to start in (bgp when empty).
	Mode api.NetworkMode
	// Retain keeps what was made when Up fails, for debugging.
	Retain   bool
	Progress *progress.Printer
	Log      *slog.Logger
}

// Up creates a cluster and returns its state.
func Up(ctx context.Context, o Options) (c *provision.Cluster, err error) {
	if o.Progress == nil {
		o.Progress = progress.Discard()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.Plan.Provider = o.Provider.Name()
	if err := o.Plan.Validate(); err != nil {
		return nil, err
	}
	c, err = provision.Reserve(o.Plan.Name, func(slot int) (*provision.Cluster, error) {
		p := o.Plan
		p.Slot = slot
		c, err := provision.Plan(p)
		if err != nil {
			return nil, err
		}
		c.Phase, c.Created = provision.PhaseCreating, time.Now().UTC().Truncate(time.Second)
		return c, nil
	}, hostUsesRange)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil {
			return
		}
		if o.Retain {
			c.Phase = provision.PhaseFailed
			provision.Save(c)
			err = fmt.Errorf("%w (kept for debugging: remove it with klab down --name %s)", err, c.Name)
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if derr := deleteCluster(dctx, o.Provider, c); derr != nil {
			err = fmt.Errorf("%w; cleaning up also failed: %v", err, derr)
		}
	}()

	var subnets []string
	for _, s := range c.Subnets {
		subnets = append(subnets, s.CIDR.String())
	}
	if err := o.Progress.Do("underlay "+strings.Join(subnets, ", "), func(*progress.Step) error {
		return o.Provider.CreateNetwork(ctx, c)
	}); err != nil {
		return c, err
	}
	nodes := "nodes " + strings.Join(memberNames(c), ", ")
	if err := o.Progress.Do(nodes, func(s *progress.Step) error {
		if err := o.Provider.CreateNodes(ctx, c); err != nil {
			return err
		}
		if d, ok := o.Provider.(provision.Describer); ok {
			if how := d.Describe(c); how != "" {
				s.Rename(nodes + " (" + how + ")")
			}
		}
		return nil
	}); err != nil {
		return c, err
	}
	cp, err := installControlPlane(c, o.Progress)
	if err != nil {
		return c, err
	}
	if err := addNodeComponents(c, cp); err != nil {
		return c, err
	}
	slow := time.Duration(Slowdown(o.Provider, c))
	if err := o.Progress.Do(fmt.Sprintf("supervisors on %d machines", len(c.Nodes)), func(*progress.Step) error {
		bundles := cp.bundles
		// Files first, on every machine, and only then processes: a
		// process forked while another goroutine still holds a copy open
		// for writing would inherit that descriptor, and exec of the copy
		// would fail with ETXTBSY.
		if err := forEachNode(ctx, o.Provider, c, func(n provision.Node, t transport.Transport) error {
			return copyBundle(ctx, c, n, t, o.Binary, bundles[n.Name])
		}); err != nil {
			return err
		}
		return forEachNode(ctx, o.Provider, c, func(n provision.Node, t transport.Transport) error {
			return startSupervisor(ctx, t, slow*10*time.Second)
		})
	}); err != nil {
		return c, err
	}
	timeout := slow * readyTimeout
	if err := cp.started(ctx, o.Progress, timeout); err != nil {
		return c, err
	}
	if o.Mode == "" {
		o.Mode = api.ModeBGP
	}
	if err := startNodes(ctx, c, o.Mode, o.Progress, timeout); err != nil {
		return c, err
	}
	c.Phase = provision.PhaseReady
	return c, provision.Save(c)
}

// Slow is implemented by providers whose machines run slower than the
// host, such as VMs whose CPU QEMU emulates: up's waits for the control
// plane, the agents, the network and DNS are Slowdown times as long.
type Slow interface {
	Slowdown(c *provision.Cluster) int
}

// Slowdown is how many times as long as for namespaces up (or anything
// else that talks to c's machines) waits for the components on them.
func Slowdown(p provision.Provider, c *provision.Cluster) int {
	if s, ok := p.(Slow); ok {
		return max(1, s.Slowdown(c))
	}
	return 1
}

func memberNames(c *provision.Cluster) []string {
	var out []string
	for _, n := range c.Members() {
		out = append(out, n.Name)
	}
	return out
}

// hostUsesRange reports whether the host already has an address in one of
// the cluster's subnets (a libvirt network, another tool's bridge…).
func hostUsesRange(c *provision.Cluster) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		for _, s := range c.Subnets {
			if ipn.Contains(s.CIDR.Addr().AsSlice()) || s.CIDR.Contains(addrOf(ipn.IP)) {
				return true
			}
		}
	}
	return false
}

// forEachNode runs fn for every machine in parallel with its transport.
func forEachNode(ctx context.Context, p provision.Provider, c *provision.Cluster, fn func(provision.Node, transport.Transport) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t, err := p.Transport(c, n.Name)
			if err != nil {
				errs[i] = err
				return
			}
			defer t.Close()
			if err := fn(n, t); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SupervisorCgroup is the cgroup a machine's supervisor and components live in.
func SupervisorCgroup(cluster, node string) string {
	return filepath.Join("klab", cluster, node, "system")
}

// File is a file to write on a machine.
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// Bundle is what gets installed on one machine: files (configuration,
// certificates) and the components its supervisor runs.
type Bundle struct {
	Files      []File
	Components []supervisor.Component
}

// copyBundle copies klab and a bundle to a machine, with the supervisor's
// configuration.
func copyBundle(ctx context.Context, c *provision.Cluster, n provision.Node, t transport.Transport, binary string, b Bundle) error {
	if err := t.CopyFile(ctx, binary, provision.NodeBinary, 0o755); err != nil {
		return fmt.Errorf("copy klab: %w", err)
	}
	for _, f := range b.Files {
		if err := t.WriteFile(ctx, f.Path, bytes.NewReader(f.Data), f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	cfg := supervisor.Config{Cgroup: SupervisorCgroup(c.Name, n.Name), Components: b.Components}
	if cfg.Components == nil {
		cfg.Components = []supervisor.Component{}
	}
	data, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return t.WriteFile(ctx, supervisor.DefaultConfig, bytes.NewReader(data), 0o644)
}

// startSupervisor starts a machine's supervisor and waits until it
// answers, at most wait.
func startSupervisor(ctx context.Context, t transport.Transport, wait time.Duration) error {
	if err := t.Start(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "supervise"}}, filepath.Join(provision.NodeLogDir, "supervise.log")); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	if err := t.Run(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "supervise", "status", "--wait", wait.String()}}); err != nil {
		return fmt.Errorf("supervisor did not come up: %w", err)
	}
	return nil
}

// Down deletes a cluster: every machine, network and file that Up made. It
// works from the state file, and without a readable one from the names
// klab gives to what it makes.
func Down(ctx context.Context, name string, providerFor func(name string) (provision.Provider, error), pr *progress.Printer) error {
	if pr == nil {
		pr = progress.Discard()
	}
	c, err := provision.Load(name)
	if errors.Is(err, provision.ErrNotFound) || errors.Is(err, provision.ErrBadState) {
		var found bool
		if c, found = discover(name); !found {
			if names, _ := provision.List(); len(names) > 0 {
				return fmt.Errorf("no cluster %q: the clusters here are %s (pick one with --name)", name, strings.Join(names, ", "))
			}
			return fmt.Errorf("no cluster %q: there is nothing to delete", name)
		}
	} else if err != nil {
		return err
	}
	p, err := providerFor(c.Provider)
	if err != nil {
		return err
	}
	c.Phase = provision.PhaseDeleting
	provision.Save(c)
	return pr.Do(fmt.Sprintf("cluster %q deleted (%d machines, underlay, state)", name, len(c.Nodes)), func(*progress.Step) error {
		return deleteCluster(ctx, p, c)
	})
}

func deleteCluster(ctx context.Context, p provision.Provider, c *provision.Cluster) error {
	if err := p.Delete(ctx, c); err != nil {
		return err
	}
	if err := waitGone(ctx, c.Name); err != nil {
		return err
	}
	return provision.Remove(c.Name)
}

var nodeNameRE = regexp.MustCompile(`^(master\d*|node\d+|router)$`)

// discover rebuilds the record of a netns cluster whose state file is
// missing or unreadable from the namespaces named klab-NAME-NODE. found
// says whether anything of the cluster exists.
func discover(name string) (c *provision.Cluster, found bool) {
	c = &provision.Cluster{Name: name, Provider: "netns", HostLink: provision.HostLinkName(name)}
	found = dirExists(provision.Dir(name))
	entries, _ := filepath.Glob("/run/netns/klab-" + name + "-*")
	for _, e := range entries {
		node := strings.TrimPrefix(filepath.Base(e), "klab-"+name+"-")
		if node == "underlay" {
			found = true
		} else if nodeNameRE.MatchString(node) {
			found = true
			c.Nodes = append(c.Nodes, provision.Node{Name: node})
		}
	}
	return c, found
}
