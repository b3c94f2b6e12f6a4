package main

import (
	"github.com/spf13/cobra"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure klab against the floor of what it does, in one run",
	}
	return cmd
}
