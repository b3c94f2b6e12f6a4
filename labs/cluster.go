package labs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/providers"
)

// ClusterOptions say where a lab's cluster is and how to make it.
type ClusterOptions struct {
	// Name is the cluster's name (Lab.ClusterName when the user gives none).
	Name string
	// Provider is what the user asked for: auto (or empty), netns or libvirt.
	Provider string
	// Binary is the klab executable installed on the nodes.
	Binary   string
	Progress *progress.Printer
	Log      *slog.Logger
}

// PrepareCluster returns the lab's cluster, connected: it reuses the
// cluster called o.Name when it has the lab's shape, makes it when it
// does not exist, and puts the pod network in the lab's mode.
func PrepareCluster(ctx context.Context, lab *Lab, o ClusterOptions) (*Env, error) {
	if o.Progress == nil {
		o.Progress = progress.Discard()
	}
	want := lab.Cluster
	c, err := provision.Load(o.Name)
	switch {
	case errors.Is(err, provision.ErrNotFound):
		if err := createCluster(ctx, lab, o); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if err := fits(lab, c); err != nil {
			return nil, err
		}
		o.Progress.Printf("klab: lab %s reuses cluster %q (%s)\n", lab.ID, c.Name, want.Shape())
	}
	e, err := Connect(o.Name, o.Binary)
	if err != nil {
		return nil, err
	}
	if err := setMode(ctx, e, want, o.Progress); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// fits tells whether an existing cluster has the shape a lab needs.
func fits(lab *Lab, c *provision.Cluster) error {
	want := lab.Cluster
	workers, subnets := 0, len(c.Subnets)
	for _, n := range c.Nodes {
		if n.Role == provision.RoleWorker {
			workers++
		}
	}
	have := ClusterSpec{Masters: len(c.Masters()), Nodes: workers, Subnets: subnets}
	if c.Phase != provision.PhaseReady {
		return fmt.Errorf("cluster %q is %s, not ready: remove it with 'sudo klab down --name %s' and start the lab again", c.Name, c.Phase, c.Name)
	}
	if have.Masters != want.Masters || have.Nodes != want.Nodes || have.Subnets != want.Subnets {
		return fmt.Errorf("cluster %q has %s, %s in %s, but lab %s needs %s, %s in %s: give another --name, or remove it with 'sudo klab down --name %s'",
			c.Name, plural(have.Masters, "master"), plural(have.Nodes, "node"), plural(have.Subnets, "subnet"),
			lab.ID, plural(want.Masters, "master"), plural(want.Nodes, "node"), plural(want.Subnets, "subnet"), c.Name)
	}
	if want.Provider != "any" && c.Provider != want.Provider {
		return fmt.Errorf("cluster %q runs on the %s provider, but lab %s needs %s: give another --name", c.Name, c.Provider, lab.ID, want.Provider)
	}
	return nil
}

func createCluster(ctx context.Context, lab *Lab, o ClusterOptions) error {
	want := lab.Cluster
	prov := o.Provider
	if prov == "" {
		prov = "auto"
	}
	switch {
	case want.Provider == "any":
	case prov == "auto":
		prov = want.Provider
	case prov != want.Provider:
		return fmt.Errorf("lab %s runs on the %s provider, not %s", lab.ID, want.Provider, prov)
	}
	p, why, err := providers.GetWith(prov, o.Binary, providers.LibvirtOptions())
	if err != nil {
		return err
	}
	if why != "" {
		why = ": " + why
	}
	o.Progress.Printf("klab: creating cluster %q for lab %s (%s; provider %s%s)\n", o.Name, lab.ID, want.Shape(), p.Name(), why)
	_, err = install.Up(ctx, install.Options{
		Plan:     provision.PlanOptions{Name: o.Name, Masters: want.Masters, Workers: want.Nodes, Subnets: want.Subnets},
		Provider: p, Binary: o.Binary, Mode: api.NetworkMode(want.Mode), Progress: o.Progress, Log: o.Log,
	})
	return err
}

// setMode switches the pod network to the lab's mode when it is in another.
func setMode(ctx context.Context, e *Env, want ClusterSpec, pr *progress.Printer) error {
	cn, err := e.Net.Network(ctx)
	if err != nil {
		return err
	}
	if string(cn.Spec.Mode) == want.Mode && cn.Spec.CrossSubnet == want.CrossSubnet {
		return nil
	}
	to := want.Mode
	if want.CrossSubnet {
		to += " cross-subnet"
	}
	step := pr.Start(fmt.Sprintf("network mode %s → %s", netctl.Spec(cn.Spec), to))
	_, err = e.Net.Switch(ctx, api.NetworkMode(want.Mode), want.CrossSubnet, time.Minute)
	return step.End(err)
}
