package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

func (a *app) nodeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Work on the cluster's machines",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "exec NODE -- COMMAND [ARG...]",
		Short: "Run a command on a node",
		Long: `Run a command on a node: inside its namespaces on the netns provider, over
SSH on VMs. Standard input, output and the exit code are the command's.`,
		Example: `  klab node exec node1 -- ip route
  klab node exec node1 -- ping -c1 192.168.34.12
  klab node exec master -- cat /etc/klab/supervise.yaml`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return errors.New("usage: klab node exec NODE -- COMMAND [ARG...]")
			}
			return nil
		},
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.transport(args[0])
			if err != nil {
				return err
			}
			defer t.Close()
			err = t.Run(cmd.Context(), transport.Cmd{Args: args[1:], Stdin: os.Stdin, Stdout: a.stdout, Stderr: a.stderr})
			return remoteExit(err)
		},
	})
	return cmd
}

// remoteExit turns a command that ran and failed into klab's exit code:
// the command printed its own error.
func remoteExit(err error) error {
	var re *transport.RunError
	if errors.As(err, &re) && re.Code > 0 {
		return exitCode(re.Code)
	}
	return err
}

func (a *app) transport(node string) (transport.Transport, error) {
	c, p, err := a.load()
	if err != nil {
		return nil, err
	}
	return p.Transport(c, node)
}

func (a *app) sshCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ssh NODE [COMMAND...]",
		Short: "Open a shell on a node",
		Long: `Open an interactive shell on a node (its hostname, network and files are the
node's), or run a command on it with a terminal.`,
		Example: `  klab ssh node1
  klab ssh master -- top`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.transport(args[0])
			if err != nil {
				return err
			}
			defer t.Close()
			argv := args[1:]
			if len(argv) == 0 {
				argv = []string{"/bin/sh", "-c", `exec "$(command -v bash || echo sh)" -l`}
			}
			// The terminal's Ctrl-C belongs to the remote shell.
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, os.Interrupt, syscall.SIGQUIT)
			defer signal.Stop(sigs)
			err = t.Interactive(context.WithoutCancel(cmd.Context()), transport.Cmd{Args: argv, Stdout: a.stdout, Stderr: a.stderr}, os.Stdin)
			return remoteExit(err)
		},
	}
}

func (a *app) logsCmd() *cobra.Command {
	var o struct {
		node      string
		container string
		follow    bool
		previous  bool
		stamps    bool
		tail      int
		kube      kubeFlags
	}
	cmd := &cobra.Command{
		Use:   "logs POD | --node NODE COMPONENT",
		Short: "Print a container's log, or the log of a node's component",
		Long: `Print the log of a pod's container, through the API server and the node's
agent, or with --node the log of a component the node's supervisor runs
(supervise, agent, etcd, apiserver, scheduler, controller-manager).`,
		Example: `  klab logs web -c httpd
  klab logs web -c client -f
  klab logs web --previous          # the container's run before its last restart
  klab logs --node master apiserver
  klab logs --node node1 agent -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.node == "" {
				cfg, err := a.restConfig(&o.kube)
				if err != nil {
					return err
				}
				return podio.Logs(cmd.Context(), cfg, o.kube.ns(), args[0], podio.LogOptions{
					Container: o.container, Follow: o.follow, Previous: o.previous, Timestamps: o.stamps, Tail: int64(o.tail),
				}, a.stdout)
			}
			t, err := a.transport(o.node)
			if err != nil {
				return err
			}
			defer t.Close()
			argv := []string{provision.NodeBinary, "supervise", "logs", args[0], "--tail", strconv.Itoa(o.tail)}
			if o.follow {
				argv = append(argv, "-f")
			}
			err = t.Run(cmd.Context(), transport.Cmd{Args: argv, Stdout: a.stdout, Stderr: a.stderr})
			if cmd.Context().Err() != nil {
				return nil // Ctrl-C ends -f
			}
			return remoteExit(err)
		},
	}
	cmd.Flags().StringVar(&o.node, "node", "", "print the log of a component on this node")
	cmd.Flags().StringVarP(&o.container, "container", "c", "", "the pod's container (needed when it has several)")
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing as the log grows")
	cmd.Flags().BoolVarP(&o.previous, "previous", "p", false, "the container's previous run")
	cmd.Flags().BoolVar(&o.stamps, "timestamps", false, "prefix each line with its time")
	cmd.Flags().IntVar(&o.tail, "tail", -1, "print only the last N lines (-1: all)")
	o.kube.add(cmd)
	cmd.RegisterFlagCompletionFunc("node", a.completeNodes)
	return cmd
}

func (a *app) execCmd() *cobra.Command {
	var o struct {
		container  string
		stdin, tty bool
		kube       kubeFlags
	}
	cmd := &cobra.Command{
		Use:   "exec POD [-c CONTAINER] [-it] -- COMMAND [ARG...]",
		Short: "Run a command in a pod's container",
		Long: `Run a command in a container of a pod, through the API server and the node's
agent: it joins the container's namespaces (the pod's network, IPC and UTS, its
own mount namespace) like every process of the container.`,
		Example: `  klab exec web -c client -- wget -qO- 127.0.0.1
  klab exec -it web -c client -- sh
  klab exec web -c httpd -- cat /proc/1/status`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return errors.New("usage: klab exec POD [-c CONTAINER] [-it] -- COMMAND [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.restConfig(&o.kube)
			if err != nil {
				return err
			}
			eo := podio.ExecOptions{Container: o.container, Command: args[1:], TTY: o.tty, Stdout: a.stdout, Stderr: a.stderr}
			if o.stdin {
				eo.Stdin = os.Stdin
			}
			code, err := podio.Exec(cmd.Context(), cfg, o.kube.ns(), args[0], eo)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&o.container, "container", "c", "", "the container (needed when the pod has several)")
	cmd.Flags().BoolVarP(&o.stdin, "stdin", "i", false, "pass standard input to the command")
	cmd.Flags().BoolVarP(&o.tty, "tty", "t", false, "give the command a terminal (with -i)")
	o.kube.add(cmd)
	return cmd
}
