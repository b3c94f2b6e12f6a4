package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/providers"
	"github.com/klab-dev/klab/provision/transport"
)

func (a *app) upCmd() *cobra.Command {
	var o struct {
		provider string
		masters  int
		nodes    int
		subnets  int
		mtu      int
		mode     string
		retain   bool
		accel    string
		image    string
		uri      string
	}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create a cluster",
		Long: `Create a cluster: the underlay network, the machines (network namespaces or
VMs), and klab's components on them, started under each machine's supervisor.`,
		Example: `  sudo klab up                         # master + 2 nodes, provider chosen automatically
  sudo klab up --nodes 4 --subnets 2   # nodes in two subnets joined by a router
  sudo klab up --name lab2 --nodes 1   # a second cluster beside the first
  sudo klab up --mode vxlan            # start in VXLAN mode
  sudo klab up --mtu 9000              # a jumbo-frame underlay: pods get MTU 8950
  sudo klab up --provider libvirt      # nodes are VMs (klab's own node image)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			plan := provision.PlanOptions{Name: a.cluster, Masters: o.masters, Workers: o.nodes, Subnets: o.subnets, MTU: o.mtu}
			if err := plan.Validate(); err != nil {
				return err
			}
			if !slices.Contains(api.Modes, api.NetworkMode(o.mode)) {
				return fmt.Errorf("--mode %s: use bgp, vxlan or ipip", o.mode)
			}
			bin, err := binary()
			if err != nil {
				return err
			}
			lo := providers.LibvirtOptions()
			for _, f := range []struct {
				flag, val string
				dst       *string
			}{{"accel", o.accel, &lo.Accel}, {"image", o.image, &lo.CloudImage}, {"libvirt-uri", o.uri, &lo.URI}} {
				if cmd.Flags().Changed(f.flag) {
					*f.dst = f.val
				}
			}
			if lo.Accel != "" && lo.Accel != "auto" && lo.Accel != "kvm" && lo.Accel != "tcg" {
				return fmt.Errorf("--accel %s: use auto, kvm or tcg", lo.Accel)
			}
			p, why, err := providers.GetWith(o.provider, bin, lo)
			if err != nil {
				return err
			}
			if err := needRoot("klab up"); err != nil {
				return err
			}
			pr := a.progress()
			if why != "" {
				why = ": " + why
			}
			pr.Printf("klab: creating cluster %q (provider %s%s)\n", a.cluster, p.Name(), why)
			start := time.Now()
			c, err := install.Up(cmd.Context(), install.Options{
				Plan: plan, Provider: p, Binary: bin, Mode: api.NetworkMode(o.mode), Retain: o.retain, Progress: pr, Log: a.log,
			})
			if err != nil {
				return err
			}
			pr.Printf("cluster %q is ready in %.1fs\n", c.Name, time.Since(start).Seconds())
			pr.Printf("next: klab status · klab node exec %s -- ip addr · klab ssh %s\n", c.Nodes[len(c.Masters())%len(c.Nodes)].Name, c.Nodes[0].Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.provider, "provider", "auto", "where nodes run: auto, netns or libvirt")
	cmd.Flags().IntVar(&o.masters, "masters", 1, "master nodes (1, 3 or 5: etcd needs a majority)")
	cmd.Flags().IntVar(&o.nodes, "nodes", 2, "worker nodes (0 for a master-only cluster)")
	cmd.Flags().IntVar(&o.subnets, "subnets", 1, "underlay subnets: 2 puts half the nodes behind a router")
	cmd.Flags().IntVar(&o.mtu, "mtu", provision.DefaultMTU, "MTU of the underlay network; pods get 50 less, what VXLAN leaves")
	cmd.Flags().StringVar(&o.mode, "mode", "bgp", "the pod network's mode: bgp, vxlan or ipip (switch later with klab net mode)")
	cmd.Flags().BoolVar(&o.retain, "retain", false, "keep what was made if up fails, for debugging")
	cmd.Flags().StringVar(&o.accel, "accel", "auto", "libvirt: kvm, tcg (plain QEMU emulation) or auto (a boot probe decides)")
	cmd.Flags().StringVar(&o.image, "image", "", "libvirt: a qcow2 cloud image to boot with cloud-init instead of klab's node image")
	cmd.Flags().StringVar(&o.uri, "libvirt-uri", "qemu:///system", "libvirt: the connection, e.g. qemu+ssh://host/system")
	cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"bgp", "vxlan", "ipip"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("provider", cobra.FixedCompletions(providers.Names, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) downCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Delete a cluster and everything up made for it",
		Long: `Delete a cluster: its processes, machines, links, routes, mounts and files.
It works from the cluster's state even when processes died or up was interrupted.`,
		Example: `  sudo klab down
  sudo klab down --name lab2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot("klab down"); err != nil {
				return err
			}
			bin, err := binary()
			if err != nil {
				return err
			}
			return install.Down(cmd.Context(), a.cluster, providers.ForCluster(bin), a.progress())
		},
	}
}

// statusView is what "klab status" prints.
type statusView struct {
	Name     string             `json:"name"`
	Provider string             `json:"provider"`
	Machines string             `json:"machines,omitempty"`
	Phase    provision.Phase    `json:"phase"`
	Created  time.Time          `json:"created"`
	Subnets  []provision.Subnet `json:"subnets"`
	MTU      int                `json:"mtu"`
	HostLink string             `json:"hostLink"`
	HostIP   string             `json:"hostIP"`
	Nodes    []nodeView         `json:"nodes"`
}

type nodeView struct {
	provision.Node
	State      string                       `json:"state"`
	Components []supervisor.ComponentStatus `json:"components"`
	Error      string                       `json:"error,omitempty"`
}

func (a *app) statusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a cluster's machines and the components running on them",
		Example: `  klab status
  klab status -o json
  klab status --name lab2 -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			c, p, err := a.load()
			if err != nil {
				return err
			}
			v := collectStatus(cmd.Context(), c, p)
			return output.Print(a.stdout, format, v, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintf(tw, "cluster %s\tprovider %s\t%s\n", v.Name, v.Provider, v.Phase)
				if v.Machines != "" {
					fmt.Fprintf(tw, "machines\t%s\n", v.Machines)
				}
				for _, s := range v.Subnets {
					fmt.Fprintf(tw, "underlay %s\t%s mtu %d\t", s.Name, s.CIDR, v.MTU)
					if s.Gateway.IsValid() {
						fmt.Fprintf(tw, "router %s", s.Gateway)
					}
					fmt.Fprintln(tw)
				}
				fmt.Fprintf(tw, "host link\t%s %s\t\n\n", v.HostLink, v.HostIP)
				fmt.Fprintln(tw, "NAME\tROLE\tIP\tSTATE\tCOMPONENTS")
				for _, n := range v.Nodes {
					var comps []string
					for _, cs := range n.Components {
						s := cs.Name
						if cs.State != supervisor.StateRunning {
							s += "(" + cs.State + ")"
						} else if wide && cs.Restarts > 0 {
							s += fmt.Sprintf("(%d restarts)", cs.Restarts)
						}
						comps = append(comps, s)
					}
					switch {
					case n.Error != "":
						first, _, _ := strings.Cut(n.Error, "\n")
						comps = []string{"? (" + first + ")"}
					case len(comps) == 0 && n.State == "running":
						comps = []string{"supervise"}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.IP, n.State, strings.Join(comps, ","))
				}
			})
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

// collectStatus asks the provider for every machine's state, and every
// running machine's supervisor for its components.
func collectStatus(ctx context.Context, c *provision.Cluster, p provision.Provider) statusView {
	v := statusView{Name: c.Name, Provider: c.Provider, Phase: c.Phase, Created: c.Created, Subnets: c.Subnets, MTU: c.MTU, HostLink: c.HostLink, HostIP: c.HostIP.String()}
	if d, ok := p.(provision.Describer); ok {
		v.Machines = d.Describe(c)
	}
	states, err := p.Nodes(ctx, c)
	byName := map[string]string{}
	for _, s := range states {
		byName[s.Name] = s.State
	}
	v.Nodes = make([]nodeView, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		v.Nodes[i] = nodeView{Node: n, State: byName[n.Name], Components: []supervisor.ComponentStatus{}}
		if err != nil {
			v.Nodes[i].Error = err.Error()
			continue
		}
		if v.Nodes[i].State != "running" {
			continue
		}
		wg.Add(1)
		go func(nv *nodeView) {
			defer wg.Done()
			t, err := p.Transport(c, nv.Name)
			if err != nil {
				nv.Error = err.Error()
				return
			}
			defer t.Close()
			timeout := time.Duration(install.Slowdown(p, c)) * 5 * time.Second
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			out, err := transport.Output(ctx, t, provision.NodeBinary, "supervise", "status", "-o", "json")
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				nv.Error = fmt.Sprintf("its supervisor did not answer within %s", timeout)
				return
			}
			if err != nil {
				nv.Error = err.Error()
				return
			}
			var st supervisor.Status
			if err := json.Unmarshal(out, &st); err != nil {
				nv.Error = err.Error()
				return
			}
			nv.Components = st.Components
		}(&v.Nodes[i])
	}
	wg.Wait()
	return v
}
