package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/provision"
)

// netClient connects to the selected cluster's API and agents.
func (a *app) netClient() (*netctl.Client, *provision.Cluster, error) {
	c, err := provision.Load(a.cluster)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := client.Config(a.cluster, "")
	if err != nil {
		return nil, nil, err
	}
	nc, err := netctl.New(cfg, filepath.Join(provision.Dir(a.cluster), "pki"))
	return nc, c, err
}

func (a *app) netCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "net",
		Short: "The pod network: its mode (bgp, vxlan, ipip), routes and BGP sessions",
		Example: `  klab net status
  klab net mode vxlan
  klab net mode ipip --cross-subnet
  klab net routes node1
  klab net bgp`,
	}
	cmd.AddCommand(a.netStatusCmd(), a.netModeCmd(), a.netRoutesCmd(), a.netBGPCmd(), a.netPeerCmd(), a.netServicesCmd(), a.netPolicyCmd())
	return cmd
}

func (a *app) netStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the network mode and what every node reports",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			nc, _, err := a.netClient()
			if err != nil {
				return err
			}
			cn, err := nc.Network(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(a.stdout, format, cn, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintf(tw, "mode %s\tpods %s\tpod MTU %d\tgeneration %d\n\n", netctl.Spec(cn.Spec), cn.Spec.PodCIDR, cn.Spec.MTU, cn.Generation)
				fmt.Fprintln(tw, "NODE\tMODE\tIMPLEMENTATION\tCONVERGED\tSINCE\tMESSAGE")
				for _, name := range sortedKeys(cn.Status.Nodes) {
					s := cn.Status.Nodes[name]
					conv := "yes"
					if !s.Converged {
						conv = "no"
					} else if s.ObservedGeneration < cn.Generation {
						conv = "switching"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, s.Mode, s.Implementation, conv, since(s.LastTransition.Time), s.Message)
				}
			})
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

func (a *app) netModeCmd() *cobra.Command {
	var o struct {
		crossSubnet bool
		timeout     time.Duration
		format      string
	}
	cmd := &cobra.Command{
		Use:   "mode bgp|vxlan|ipip",
		Short: "Switch the pod network's mode live, and show what every node changed",
		Long: `Switch the pod network's mode: every node's agent removes the old mode's devices
and routes and adds the new ones, while pods keep their IPs. The command returns
when every node reports the new mode, printing what each one removed and added.
A node that does not converge in time is named, and the previous mode restored.`,
		Example: `  klab net mode vxlan                  # VTEPs, FDB, UDP 4789
  klab net mode ipip --cross-subnet    # encapsulate only between subnets
  klab net mode bgp                    # plain routes learned over BGP`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bgp", "vxlan", "ipip"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(o.format); err != nil {
				return err
			}
			nc, _, err := a.netClient()
			if err != nil {
				return err
			}
			pr := a.progress()
			step := pr.Start("network mode " + args[0])
			res, err := nc.Switch(cmd.Context(), api.NetworkMode(args[0]), o.crossSubnet, o.timeout)
			if res != nil {
				step.Rename(fmt.Sprintf("network mode %s → %s on %d nodes", res.From, res.To, len(res.Nodes)))
			}
			step.End(err)
			if res == nil {
				return err
			}
			perr := output.Print(a.stdout, o.format, res, func(tw *tabwriter.Writer, wide bool) {
				for _, n := range res.Nodes {
					mark := "✓"
					if !n.Converged {
						mark = "✗"
					}
					fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\n", mark, n.Node, n.Implementation, ms(n.Took), n.Message)
					for _, r := range n.Changes.Removed {
						fmt.Fprintf(tw, "    - %s\t\t\t\n", r)
					}
					for _, r := range n.Changes.Added {
						fmt.Fprintf(tw, "    + %s\t\t\t\n", r)
					}
				}
			})
			if err != nil {
				return err
			}
			return perr
		},
	}
	cmd.Flags().BoolVar(&o.crossSubnet, "cross-subnet", false, "encapsulate only between nodes in different subnets (vxlan, ipip)")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long every node has to converge")
	outputFlag(cmd, &o.format)
	return cmd
}

func (a *app) netRoutesCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "routes NODE",
		Short: "Show a node's routes, network devices, VXLAN FDB and neighbours",
		Example: `  klab net routes node1
  klab net routes node1 -o wide    # with devices, FDB and neighbours
  klab net routes node1 -o json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			nc, c, err := a.netClient()
			if err != nil {
				return err
			}
			reps, err := nc.Reports(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			rep := reps[0]
			return output.Print(a.stdout, format, rep, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintf(tw, "node %s\tmode %s\t%s\n\n", rep.Node, rep.Mode, rep.Implementation)
				fmt.Fprintln(tw, "DESTINATION\tVIA\tDEVICE\tPROTO\tFLAGS")
				for _, r := range rep.State.Routes {
					via := ""
					if r.Via.IsValid() {
						via = r.Via.String()
					}
					var flags []string
					if r.OnLink {
						flags = append(flags, "onlink")
					}
					if r.Scope != "" {
						flags = append(flags, "scope "+r.Scope)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Dst, via, r.Dev, r.Proto, strings.Join(flags, " "))
				}
				if !wide {
					return
				}
				fmt.Fprintln(tw, "\nDEVICE\tKIND\tMTU\tMAC\tADDRESSES")
				for _, d := range rep.State.Devices {
					kind := d.Kind
					if d.VNI != 0 {
						kind = fmt.Sprintf("vxlan vni %d port %d local %s", d.VNI, d.Port, d.Local)
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", d.Name, kind, d.MTU, d.MAC, strings.Join(d.Addrs, " "))
				}
				if len(rep.State.FDB) > 0 {
					fmt.Fprintln(tw, "\nFDB MAC\tDST\tDEVICE\t\t")
					for _, f := range rep.State.FDB {
						fmt.Fprintf(tw, "%s\t%s\t%s\t\t\n", f.MAC, f.Dst, f.Dev)
					}
				}
				fmt.Fprintln(tw, "\nNEIGHBOUR\tMAC\tDEVICE\tSTATE\t")
				for _, n := range rep.State.Neighbors {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", n.IP, n.MAC, n.Dev, n.State)
				}
			})
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

func (a *app) netBGPCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "bgp",
		Short: "Show every node's BGP sessions and the routes they learned",
		Example: `  klab net bgp
  klab net bgp -o wide    # with learned routes
  klab net bgp -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			nc, c, err := a.netClient()
			if err != nil {
				return err
			}
			reps, err := nc.Reports(cmd.Context(), c, "")
			if err != nil {
				return err
			}
			return output.Print(a.stdout, format, reps, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintln(tw, "NODE\tPEER\tADDRESS\tAS\tSTATE\tUPTIME\tRECEIVED\tADVERTISED")
				for _, r := range reps {
					if r.BGP == nil {
						fmt.Fprintf(tw, "%s\t(no speaker)\t\t\t\t\t\t\n", r.Node)
						continue
					}
					for _, s := range r.BGP.Sessions {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\n", r.Node, s.Peer, s.Address, s.AS, s.State, s.Uptime, s.Received, s.Advertised)
					}
				}
				if !wide {
					return
				}
				fmt.Fprintln(tw, "\nNODE\tLEARNED\tNEXT HOP\tFROM\t\t\t\t")
				for _, r := range reps {
					if r.BGP == nil {
						continue
					}
					for _, rt := range r.BGP.Routes {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t\n", r.Node, rt.Prefix, rt.NextHop, rt.From)
					}
				}
			})
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

func (a *app) netPeerCmd() *cobra.Command {
	var o struct {
		remove bool
		asn    uint32
	}
	cmd := &cobra.Command{
		Use:   "peer router",
		Short: "Peer the nodes with the router (BIRD), so pure BGP works across subnets",
		Long: `With --subnets 2, plain BGP mode fails between the subnets the way it does on a
real network: node1 learns node2's block with node2's address as next hop, and
the kernel refuses a route whose next hop is not on a connected network. This
runs BIRD on the router as a route reflector that installs every node's block
in its own routing table and hands the blocks on with itself as next hop, and
peers each node with the router's address in its subnet (BGPPeer objects).`,
		Example: `  sudo klab up --subnets 2 --nodes 2
  klab net status                  # bgp: next hop … is not on-link
  sudo klab net peer router        # fixed through the router
  klab net bgp                     # sessions with the router
  klab node exec router -- birdc -s /run/klab/bird.ctl show route
  sudo klab net peer router --remove`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"router"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "router" {
				return fmt.Errorf("klab net peer %s: only the cluster's router can be peered with (klab net peer router); for another BGP speaker create a BGPPeer object", args[0])
			}
			nc, c, err := a.netClient()
			if err != nil {
				return err
			}
			if _, ok := c.Node("router"); !ok {
				return fmt.Errorf("cluster %q has no router: create one with sudo klab up --subnets 2", c.Name)
			}
			t, err := a.transport("router")
			if err != nil {
				return err
			}
			defer t.Close()
			if o.remove {
				return a.progress().Do("router peering removed", func(*progress.Step) error {
					return nc.UnpeerRouter(cmd.Context(), c, t)
				})
			}
			return a.progress().Do("nodes peered with the router (BIRD route reflector)", func(*progress.Step) error {
				return nc.PeerRouter(cmd.Context(), c, t, o.asn)
			})
		},
	}
	cmd.Flags().BoolVar(&o.remove, "remove", false, "stop peering with the router")
	cmd.Flags().Uint32Var(&o.asn, "asn", api.DefaultASN, "the AS number the router and the nodes share")
	return cmd
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func since(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return time.Since(t).Round(time.Second).String()
}
