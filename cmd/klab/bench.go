package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/provision/netns"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure klab against the floor of what it does, in one run",
	}
	cmd.AddCommand(a.benchUpCmd())
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
