package main

import (
	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/agent"
)

func (a *app) agentCmd() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node's agent: the kubelet, running the pods bound to the node (runs on nodes)",
		Long: `Run the node agent: it registers the node and renews its Lease, waits for the
node's pod CIDR and writes the CNI configuration, then runs every pod bound to
the node through klab's runtime (pause + containers) and CNI plugin, probes them,
reports their status and serves their logs and exec to the API server on :10250.`,
		Example: `  klab node exec node1 -- klab supervise status     # the agent runs under the supervisor
  klab logs --node node1 agent                       # what it did`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := agent.LoadConfig(config)
			if err != nil {
				return err
			}
			bin, err := binary()
			if err != nil {
				return err
			}
			return agent.Run(cmd.Context(), cfg, bin, a.log)
		},
	}
	cmd.Flags().StringVar(&config, "config", agent.DefaultConfig, "the agent's configuration")
	return cmd
}
