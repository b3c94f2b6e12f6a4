package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/providers"
)

// app holds what every command shares: the selected cluster, the streams,
// the logger.
type app struct {
	cluster string
	verbose int
	stdout  io.Writer
	stderr  io.Writer
	log     *slog.Logger
}

func newApp() *app { return &app{stdout: os.Stdout, stderr: os.Stderr} }

func (a *app) run(ctx context.Context, args []string) error {
	root := a.root()
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	return root.ExecuteContext(ctx)
}

func defaultCluster() string {
	if n := os.Getenv("KLAB_CLUSTER"); n != "" {
		return n
	}
	return "klab"
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "klab",
		Short: "A Kubernetes-style cluster on your machine, to learn how it and its pod network work",
		Long: `klab turns this machine into a small cluster: nodes are network namespaces
(or libvirt VMs), the control plane and node components are klab's own, and
the pod network runs in Calico-style BGP, VXLAN or IPIP mode.`,
		Example: `  sudo klab up                      # master + 2 nodes as network namespaces
  klab status                       # the nodes and what runs on them
  klab node exec node1 -- ip addr   # a command on a node
  sudo klab down                    # remove everything up made`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// klab alone opens the TUI on a terminal, and prints help elsewhere.
		RunE: func(cmd *cobra.Command, args []string) error {
			if !isTerminal() {
				return cmd.Help()
			}
			return a.runTUI(cmd.Context(), tuiOptions{view: 1})
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// Components log what they do; commands only what went wrong.
			level := slog.LevelWarn
			if cmd.GroupID == "components" || cmd.HasParent() && cmd.Parent().GroupID == "components" {
				level = slog.LevelInfo
			}
			switch {
			case a.verbose >= 2:
				level = slog.LevelDebug
			case a.verbose == 1:
				level = slog.LevelInfo
			}
			a.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			slog.SetDefault(a.log)
			if cmd.Flags().Lookup("name") != nil {
				return provision.ValidateName(a.cluster)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.cluster, "name", defaultCluster(), "cluster name (or $KLAB_CLUSTER)")
	root.PersistentFlags().CountVarP(&a.verbose, "verbose", "v", "log more (-v info, -vv debug)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%s: %w (see %s --help)", c.CommandPath(), err, c.CommandPath())
	})
	root.AddGroup(
		&cobra.Group{ID: "cluster", Title: "Cluster:"},
		&cobra.Group{ID: "nodes", Title: "Nodes:"},
		&cobra.Group{ID: "network", Title: "Network:"},
		&cobra.Group{ID: "components", Title: "Components (run on the nodes):"},
	)
	for _, c := range []*cobra.Command{a.upCmd(), a.downCmd(), a.statusCmd(), a.benchCmd()} {
		c.GroupID = "cluster"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.nodeCmd(), a.sshCmd(), a.logsCmd(), a.execCmd()} {
		c.GroupID = "nodes"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.netCmd(), a.traceCmd()} {
		c.GroupID = "network"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{a.superviseCmd(), a.agentCmd(), a.cniCmd(root), a.dnsCmd()} {
		c.GroupID = "components"
		root.AddCommand(c)
	}
	root.AddCommand(a.versionCmd(), a.internalCmd())
	root.AddCommand(a.tuiCmd())
	a.addRuntimeCmds(root)
	a.addImageBuild(root)
	a.addNodeConsole(root)
	a.addControlPlane(root)
	a.addWorkloads(root)
	root.AddCommand(a.labCmd())
	return root
}

// binary is the klab executable, which is what gets installed on nodes.
func binary() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

// load returns the selected cluster and its provider.
func (a *app) load() (*provision.Cluster, provision.Provider, error) {
	c, err := provision.Load(a.cluster)
	if err != nil {
		return nil, nil, err
	}
	bin, err := binary()
	if err != nil {
		return nil, nil, err
	}
	p, _, err := providers.Get(c.Provider, bin)
	return c, p, err
}

func (a *app) progress() *progress.Printer { return progress.New(a.stderr) }

func needRoot(what string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s needs root (namespaces, links, mounts): run it with sudo", what)
	}
	return nil
}

// outputFlag adds -o to a command that prints a table.
func outputFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "output", "o", "table", "output format: table, wide, json or yaml")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(output.Formats, cobra.ShellCompDirectiveNoFileComp))
}

// completeNodes completes node names of the selected cluster.
func (a *app) completeNodes(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	name := defaultCluster()
	if f := cmd.Flags().Lookup("name"); f != nil && f.Changed {
		name = f.Value.String()
	}
	c, err := provision.Load(name)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return c.NodeNames(), cobra.ShellCompDirectiveNoFileComp
}
