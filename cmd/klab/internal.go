package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/provision/netns"
)

// internalCmd holds subcommands that klab runs itself.
func (a *app) internalCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "internal", Hidden: true, Short: "Commands klab runs itself"}
	var o netns.InitOptions
	var binds []string
	nsinit := &cobra.Command{
		Use:   "nsinit",
		Short: "Set up a new machine's namespaces (run by the netns provider in them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, b := range binds {
				src, dst, ok := strings.Cut(b, "=")
				if !ok {
					return fmt.Errorf("--bind %q: want HOSTDIR=DIR", b)
				}
				o.Binds = append(o.Binds, [2]string{src, dst})
			}
			return netns.Init(o, os.Stdin, os.Stdout)
		},
	}
	nsinit.Flags().StringVar(&o.Hostname, "hostname", "", "the machine's hostname (none: a network namespace only)")
	nsinit.Flags().StringArrayVar(&binds, "bind", nil, "HOSTDIR=DIR: show a host directory at DIR")
	nsinit.Flags().StringArrayVar(&o.Overlays, "overlay", nil, "a host directory seen copy-on-write")
	nsinit.Flags().StringArrayVar(&o.Sysctls, "sysctl", nil, "KEY=VALUE in the new network namespace")
	cmd.AddCommand(nsinit, a.benchServeCmd(), a.benchStopCmd(), a.benchRunCmd())
	return cmd
}
