package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"k8s.io/client-go/kubernetes"

	"github.com/klab-dev/klab/cluster/bench"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/provision/netns"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure klab against the floor of what it does, in one run",
	}
	cmd.AddCommand(a.benchUpCmd(), a.benchPodsCmd(), a.benchModesCmd())
	return cmd
}

func (a *app) benchPodsCmd() *cobra.Command {
	var o struct {
		pods, rss int
		node      string
		format    string
	}
	cmd := &cobra.Command{
		Use:   "pods",
		Short: "Pod startup latency on one node next to its floor, and the agent's memory",
		Long: `Create pods on one node and measure, through a watch, how long each takes from
its creation to Running and Ready (scheduling, sandbox, CNI, container start,
status), next to the floor measured in the same run on that node: the same
namespaces, a veth and the same command made by unshare and ip in a shell loop.
Reads the agent's resident memory once --rss-at pods run. Upstream's SLO is
p99 ≤ 5 s without image pulls.`,
		Example: `  sudo klab bench pods
  sudo klab bench pods --pods 30 --node node2 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(o.format); err != nil {
				return err
			}
			if o.pods < 1 || o.pods > 110 {
				return fmt.Errorf("--pods %d: use 1 to 110 (a node holds at most 110)", o.pods)
			}
			t, err := a.transport(o.node)
			if err != nil {
				return err
			}
			defer t.Close()
			cfg, err := client.Config(a.cluster, "")
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(client.ForComponent(cfg, "bench"))
			if err != nil {
				return err
			}
			step := a.progress().Start(fmt.Sprintf("%d pods on %s", o.pods, o.node))
			r, err := bench.Pods(cmd.Context(), bench.PodsOptions{Kube: cs, Node: o.node, Transport: t, Pods: o.pods, RSSAt: o.rss,
				Progress: func(s string) { step.Rename(s) }})
			step.Rename(fmt.Sprintf("%d pods on %s", o.pods, o.node))
			if err := step.End(err); err != nil {
				return err
			}
			return output.Print(a.stdout, o.format, r, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintln(tw, "\tP50\tP99\tRATIO P99 TO FLOOR")
				fmt.Fprintf(tw, "floor: unshare + veth + exec\t%s\t%s\t1.00\n", ms(r.FloorP50), ms(r.FloorP99))
				fmt.Fprintf(tw, "pod created → Running\t%s\t%s\t%.1f\n", ms(r.P50), ms(r.P99), float64(r.P99)/float64(r.FloorP99))
				fmt.Fprintf(tw, "upstream SLO\t\t%s\t\n", ms(r.SLO))
				fmt.Fprintf(tw, "agent memory with %d pods\t%.1f MiB\t\t\n", r.RSSPods, float64(r.AgentRSS)/(1<<20))
			})
		},
	}
	cmd.Flags().IntVar(&o.pods, "pods", 100, "pods to start")
	cmd.Flags().IntVar(&o.rss, "rss-at", 30, "read the agent's memory once this many pods run")
	cmd.Flags().StringVar(&o.node, "node", "node1", "the node to start them on")
	outputFlag(cmd, &o.format)
	return cmd
}

func (a *app) benchUpCmd() *cobra.Command {
	var o struct {
		runs, nodes int
		format      string
	}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Time up + down of a netns cluster next to the same plumbing made by ip commands",
		Long: `Time, alternating in one run: a minimal script of ip commands making the same
namespaces, veths, bridge and addresses (the floor); klab's netns provider making
and deleting the machines; and a full klab up + down. Prints medians and the
ratio of each to the floor.`,
		Example: `  sudo klab bench up
  sudo klab bench up --runs 20 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(o.format); err != nil {
				return err
			}
			if o.runs < 1 {
				return fmt.Errorf("--runs %d: run at least once", o.runs)
			}
			if err := needRoot("klab bench up"); err != nil {
				return err
			}
			bin, err := binary()
			if err != nil {
				return err
			}
			pr := a.progress()
			step := pr.Start(fmt.Sprintf("%d runs of up + down, %d nodes", o.runs, 1+o.nodes))
			r, err := install.BenchUp(cmd.Context(), install.BenchOptions{
				Runs: o.runs, Workers: o.nodes, Provider: netns.New(bin), Binary: bin,
				Progress: func(run int) { step.Rename(fmt.Sprintf("run %d of %d: up + down, %d nodes", run, o.runs, 1+o.nodes)) },
			})
			step.Rename(fmt.Sprintf("%d runs of up + down, %d nodes", o.runs, 1+o.nodes))
			if err := step.End(err); err != nil {
				return err
			}
			return output.Print(a.stdout, o.format, r, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintf(tw, "medians of %d runs, %d nodes\n", r.Runs, r.Nodes)
				fmt.Fprintln(tw, "\tUP\tDOWN\tTOTAL\tRATIO TO FLOOR")
				for _, t := range r.Results {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\n", t.Name, ms(t.Up), ms(t.Down), ms(t.Total()), t.Ratio)
				}
			})
		},
	}
	cmd.Flags().IntVar(&o.runs, "runs", 5, "how many times to measure each")
	cmd.Flags().IntVar(&o.nodes, "nodes", 2, "worker nodes")
	outputFlag(cmd, &o.format)
	return cmd
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
