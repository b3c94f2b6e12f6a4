package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/bench"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/netmodes"
)

func (a *app) benchModesCmd() *cobra.Command {
	var o struct {
		from, to string
		modes    []string
		rounds   int
		duration time.Duration
		control  bool
		format   string
	}
	cmd := &cobra.Command{
		Use:   "modes",
		Short: "Pod-to-pod throughput and latency in every network mode, next to the raw underlay",
		Long: `Start a pod on each of two nodes and measure TCP throughput and round-trip time
between them in each network mode (bgp, vxlan, ipip), alternating every round
with the same measurement node to node over the raw underlay. Prints the
ratio of each mode to the underlay, and a bar chart; the cluster's mode is
put back at the end.

Each ratio is the median of the rounds' ratios, shown with the lowest and
highest. With --control (the default) the underlay is then measured against
itself the same way: on a quiet machine that ratio is 1.00, and how far it
strays says how much of a mode's ratio is noise.`,
		Example: `  sudo klab bench modes
  sudo klab bench modes --modes vxlan,ipip --rounds 5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(o.format); err != nil {
				return err
			}
			var modes []api.NetworkMode
			for _, m := range o.modes {
				modes = append(modes, api.NetworkMode(m))
			}
			nc, c, err := a.netClient()
			if err != nil {
				return err
			}
			from, ok := c.Node(o.from)
			if !ok {
				return fmt.Errorf("--from %s: no such node", o.from)
			}
			to, ok := c.Node(o.to)
			if !ok {
				return fmt.Errorf("--to %s: no such node", o.to)
			}
			ft, err := a.transport(o.from)
			if err != nil {
				return err
			}
			defer ft.Close()
			tt, err := a.transport(o.to)
			if err != nil {
				return err
			}
			defer tt.Close()
			step := a.progress().Start("bench modes " + strings.Join(o.modes, ", "))
			r, err := bench.Modes(cmd.Context(), bench.ModesOptions{
				Net: nc, From: from, To: to, FromT: ft, ToT: tt, Modes: modes,
				Rounds: o.rounds, Duration: o.duration, ModeTimeout: 30 * time.Second, Control: o.control,
				Progress: func(s string) { step.Rename("bench modes: " + s) },
			})
			step.Rename("bench modes " + strings.Join(o.modes, ", "))
			if err := step.End(err); err != nil {
				return err
			}
			return output.Print(a.stdout, o.format, r, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintf(tw, "pod on %s → pod on %s, medians of %d rounds\n", r.From, r.To, o.rounds)
				fmt.Fprintln(tw, "MODE\tPOD→POD\tUNDERLAY\tRATIO\tRATIO RANGE\tRTT POD\tRTT UNDERLAY\t")
				row := func(name string, c netmodes.Comparison) {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f–%.2f\t%s\t%s\t\n", name, gbits(c.Path), gbits(c.Underlay),
						c.Ratio, c.RatioMin, c.RatioMax, c.Path.RTT, c.Underlay.RTT)
				}
				for _, m := range r.Results {
					row(fmt.Sprintf("%s (%s)", m.Mode, m.Implementation), m.Result)
				}
				if r.Control != nil {
					row("underlay (control)", *r.Control)
				}
				fmt.Fprintln(tw)
				for _, m := range r.Results {
					fmt.Fprintf(tw, "%-6s\t%s %.2f\t\t\t\t\t\t\n", m.Mode, bar(m.Result.Ratio, 40), m.Result.Ratio)
				}
				fmt.Fprintf(tw, "%-6s\t%s 1.00\t\t\t\t\t\t\n", "raw", bar(1, 40))
				if c := r.Control; c != nil {
					fmt.Fprintf(tw, "\ncontrol: the underlay against itself gave %.2f (%.2f–%.2f) where a quiet machine gives about 1.00: the ratios above carry noise of that size\n", c.Ratio, c.RatioMin, c.RatioMax)
				}
			})
		},
	}
	cmd.Flags().StringVar(&o.from, "from", "node1", "node of the client pod")
	cmd.Flags().StringVar(&o.to, "to", "node2", "node of the server pod")
	cmd.Flags().StringSliceVar(&o.modes, "modes", []string{"bgp", "vxlan", "ipip"}, "modes to measure")
	cmd.Flags().IntVar(&o.rounds, "rounds", 3, "rounds per mode (each round measures the underlay too)")
	cmd.Flags().DurationVar(&o.duration, "duration", 2*time.Second, "length of each throughput test")
	cmd.Flags().BoolVar(&o.control, "control", true, "also measure the underlay against itself, to show the noise")
	outputFlag(cmd, &o.format)
	return cmd
}

func gbits(r netmodes.BenchResult) string { return fmt.Sprintf("%.2f Gbit/s", r.BitsPerSecond/1e9) }

func bar(ratio float64, width int) string {
	n := int(ratio*float64(width) + 0.5)
	n = min(max(n, 0), width)
	return strings.Repeat("█", n) + strings.Repeat("░", width-n)
}

// benchServeCmd and benchRunCmd are the two ends of "klab bench modes",
// run on the nodes.
func (a *app) benchServeCmd() *cobra.Command {
	var o struct {
		netns, listen, run string
		dur                time.Duration
	}
	cmd := &cobra.Command{
		Use:   "bench-serve",
		Short: "Answer bench clients (run on a node by klab bench modes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := netmodes.OpenNetns(o.netns)
			if err != nil {
				return err
			}
			defer ns.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), o.dur)
			defer cancel()
			ln, err := ns.Listen(ctx, "tcp", o.listen)
			if err != nil {
				return err
			}
			return netmodes.ServeBench(ctx, ln)
		},
	}
	cmd.Flags().StringVar(&o.netns, "netns", "", "network namespace to listen in (empty: this one)")
	cmd.Flags().StringVar(&o.listen, "listen", "", "address to listen on")
	cmd.Flags().StringVar(&o.run, "run", "", "the run this server belongs to")
	cmd.Flags().DurationVar(&o.dur, "for", 10*time.Minute, "stop after this long")
	return cmd
}

func (a *app) benchStopCmd() *cobra.Command {
	var run, listen string
	cmd := &cobra.Command{
		Use:   "bench-stop",
		Short: "Stop bench servers on this machine: one run's, or the one on an address (run on a node by klab bench modes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (run == "") == (listen == "") {
				return errors.New("give --run or --listen")
			}
			flag, value := "--run", run
			if listen != "" {
				flag, value = "--listen", listen
			}
			_, err := bench.StopServers(flag, value)
			return err
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "stop the servers of this run")
	cmd.Flags().StringVar(&listen, "listen", "", "stop the server listening on this address")
	return cmd
}

func (a *app) benchRunCmd() *cobra.Command {
	var o struct {
		netns, to, underlay string
		rounds              int
		dur                 time.Duration
	}
	cmd := &cobra.Command{
		Use:   "bench-run",
		Short: "Measure a path next to the underlay (run on a node by klab bench modes)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := netmodes.OpenNetns(o.netns)
			if err != nil {
				return err
			}
			defer ns.Close()
			path := listening(func(ctx context.Context) (net.Conn, error) { return ns.Dial(ctx, "tcp", o.to) })
			under := listening(func(ctx context.Context) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", o.underlay)
			})
			c, err := netmodes.Compare(cmd.Context(), path, under, netmodes.BenchOptions{Duration: o.dur}, o.rounds)
			if err != nil {
				return err
			}
			return json.NewEncoder(a.stdout).Encode(c)
		},
	}
	cmd.Flags().StringVar(&o.netns, "netns", "", "network namespace to dial from (the client pod's)")
	cmd.Flags().StringVar(&o.to, "to", "", "the bench server in the other pod")
	cmd.Flags().StringVar(&o.underlay, "underlay", "", "the bench server on the other node")
	cmd.Flags().IntVar(&o.rounds, "rounds", 3, "rounds")
	cmd.Flags().DurationVar(&o.dur, "duration", 2*time.Second, "length of each throughput test")
	return cmd
}

// listening retries a dial that is refused for up to 10 s: klab bench
// modes starts the servers just before, and one may not listen yet.
func listening(dial netmodes.Dialer) netmodes.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		deadline := time.Now().Add(10 * time.Second)
		wait := 10 * time.Millisecond
		for {
			c, err := dial(ctx)
			if err == nil || !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
				return c, err
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			wait = min(2*wait, 500*time.Millisecond)
		}
	}
}
