package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/internal/output"
)

func (a *app) superviseCmd() *cobra.Command {
	o := supervisor.Options{}
	cmd := &cobra.Command{
		Use:   "supervise",
		Short: "Run a node's components and restart them when they crash (runs on nodes)",
		Long: `Run the components listed in the node's supervise.yaml, each with its output in
its own log file, restarting any that exits with a backoff from 250ms to 16s.
The subcommands talk to the running supervisor through its socket.`,
		Example: `  klab node exec node1 -- klab supervise status
  klab node exec master -- klab supervise restart apiserver`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Log = a.log
			return supervisor.Run(cmd.Context(), o, nil)
		},
	}
	cmd.PersistentFlags().StringVar(&o.Config, "config", supervisor.DefaultConfig, "components to run")
	cmd.PersistentFlags().StringVar(&o.Socket, "socket", supervisor.DefaultSocket, "control socket")
	cmd.PersistentFlags().StringVar(&o.LogDir, "log-dir", supervisor.DefaultLogDir, "directory of the components' logs")

	var format string
	var wait time.Duration
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the components and their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			c := supervisor.NewClient(o.Socket)
			var st *supervisor.Status
			var err error
			if wait > 0 {
				ctx, cancel := context.WithTimeout(cmd.Context(), wait)
				defer cancel()
				st, err = c.WaitStatus(ctx)
			} else {
				st, err = c.Status(cmd.Context())
			}
			if err != nil {
				return err
			}
			return output.Print(a.stdout, format, st, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintf(tw, "supervisor pid %d, up %s\n", st.PID, time.Since(st.Since).Round(time.Second))
				fmt.Fprintln(tw, "COMPONENT\tSTATE\tPID\tRESTARTS\tLAST EXIT")
				for _, c := range st.Components {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", c.Name, c.State, c.PID, c.Restarts, c.LastExit)
				}
			})
		},
	}
	outputFlag(status, &format)
	status.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the supervisor to answer")

	var logs struct {
		follow bool
		tail   int
	}
	logsCmd := &cobra.Command{
		Use:   "logs COMPONENT",
		Short: "Print a component's log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return supervisor.Tail(cmd.Context(), supervisor.LogPath(o.LogDir, args[0]), logs.tail, logs.follow, a.stdout)
		},
	}
	logsCmd.Flags().BoolVarP(&logs.follow, "follow", "f", false, "keep printing as the log grows")
	logsCmd.Flags().IntVar(&logs.tail, "tail", -1, "print only the last N lines (-1: all)")

	reload := &cobra.Command{
		Use:   "reload",
		Short: "Reread supervise.yaml: start new components, stop removed ones, restart changed ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return supervisor.NewClient(o.Socket).Reload(cmd.Context())
		},
	}
	cmd.AddCommand(status, logsCmd, reload)
	for _, action := range []string{"start", "stop", "restart"} {
		cmd.AddCommand(&cobra.Command{
			Use:   action + " COMPONENT",
			Short: action + " a component",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return supervisor.NewClient(o.Socket).Control(cmd.Context(), action, args[0])
			},
		})
	}
	return cmd
}
