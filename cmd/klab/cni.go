package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/cluster/cni/plugin"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// cniCmd is the CNI plugin and its call log. A runtime executes the plugin
// as /opt/cni/bin/klab with no arguments and CNI_COMMAND set: for that,
// cniCmd makes root itself run the plugin when CNI_COMMAND is set.
func (a *app) cniCmd(root *cobra.Command) *cobra.Command {
	if os.Getenv("CNI_COMMAND") != "" {
		root.RunE = func(cmd *cobra.Command, args []string) error { return runPlugin(cmd) }
	}
	cmd := &cobra.Command{
		Use:   "cni",
		Short: "The CNI plugin, installed on nodes as /opt/cni/bin/klab (runs on nodes)",
		Long: `klab's CNI plugin: with CNI_COMMAND (ADD, DEL, CHECK, VERSION, GC, STATUS)
and the other CNI_ variables in the environment and the network configuration
on stdin, it gives a pod a veth (eth0 in the pod, cali<hash> on the node), an
address from the node's block and Calico-style routes, and prints the result
(or a CNI error) as JSON on stdout. Runtimes run it as /opt/cni/bin/klab.`,
		Example: `  echo '{"cniVersion":"1.0.0","name":"klab","type":"klab","ipam":{"type":"klab","subnet":"10.42.1.0/24"}}' |
    CNI_COMMAND=ADD CNI_CONTAINERID=c1 CNI_NETNS=/run/netns/pod1 CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin klab cni
  CNI_COMMAND=VERSION klab cni </dev/null
  klab node exec node1 -- klab cni log --tail 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runPlugin(cmd) },
	}
	cmd.AddCommand(a.cniLogCmd())
	return cmd
}

// runPlugin runs the plugin; a failure is already printed as CNI error
// JSON on stdout, so klab only exits non-zero.
func runPlugin(cmd *cobra.Command) error {
	if e := plugin.Main(cmd.Context()); e != nil {
		if err := e.Print(); err != nil {
			return fmt.Errorf("print the CNI error %q: %w", e.Msg, err)
		}
		return exitCode(1)
	}
	return nil
}

func (a *app) cniLogCmd() *cobra.Command {
	var o struct {
		path   string
		format string
		tail   int
		follow bool
	}
	cmd := &cobra.Command{
		Use:   "log [NODE]",
		Short: "Print a node's CNI calls: each request (environment, stdin) and result (stdout)",
		Long: `Print the CNI calls the node's agent made, from ` + cni.DefaultLogPath + `: for
each, the command, the plugin, how long it took, the CNI_ environment, the
JSON configuration it got on stdin and the result or error it printed.
With NODE it asks that node (from the host); without, it reads this machine's.`,
		Example: `  klab cni log node1 --tail 2
  klab cni log node1 -f
  klab cni log node1 -o json | jq .result`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.format != "text" && o.format != "json" {
				return fmt.Errorf("unknown output format %q: use text or json", o.format)
			}
			if len(args) == 1 {
				t, err := a.transport(args[0])
				if err != nil {
					return err
				}
				defer t.Close()
				argv := []string{provision.NodeBinary, "cni", "log", "-o", o.format, "--tail", strconv.Itoa(o.tail), "--log", o.path}
				if o.follow {
					argv = append(argv, "-f")
				}
				err = t.Run(cmd.Context(), transport.Cmd{Args: argv, Stdout: a.stdout, Stderr: a.stderr})
				if cmd.Context().Err() != nil {
					return nil
				}
				return remoteExit(err)
			}
			return cni.PrintLog(cmd.Context(), a.stdout, o.path, o.tail, o.follow, o.format == "json")
		},
	}
	cmd.Flags().StringVarP(&o.format, "output", "o", "text", "output format: text (pretty, one block a call) or json (one line a call)")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.Flags().IntVar(&o.tail, "tail", -1, "print only the last N calls (-1: all)")
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing calls as they are made")
	cmd.Flags().StringVar(&o.path, "log", cni.DefaultLogPath, "the call log")
	return cmd
}
