package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/provision/libvirt"
)

// addNodeConsole adds "console" to the "node" command group.
func (a *app) addNodeConsole(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "node" {
			c.AddCommand(a.consoleCmd())
		}
	}
}

func (a *app) consoleCmd() *cobra.Command {
	var o struct {
		follow bool
		tail   int
		raw    bool
	}
	cmd := &cobra.Command{
		Use:   "console NODE",
		Short: "Print a VM's serial console log",
		Long: `Print what a VM wrote to its serial console: the kernel, klab's init, sshd,
and anything logged to the console since it booted. Only for VMs (the
libvirt provider). For an interactive console, use
"virsh console klab-CLUSTER-NODE".`,
		Example: `  klab node console node1
  klab node console master -f
  klab node console node2 --tail 20`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, p, err := a.load()
			if err != nil {
				return err
			}
			lp, ok := p.(*libvirt.Provider)
			if !ok {
				return fmt.Errorf("node console: cluster %q uses the %s provider, whose nodes have no serial console: use klab ssh %s", c.Name, p.Name(), args[0])
			}
			path, local, err := lp.SerialLog(c, args[0])
			if err != nil {
				return err
			}
			if !local {
				return fmt.Errorf("node console: the serial log of %s is on the libvirt host, in %s", args[0], path)
			}
			f, err := os.Open(path)
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("node console: %s has no serial log yet (%s): has its VM started? (klab status)", args[0], path)
			} else if err != nil {
				return err
			}
			defer f.Close()
			b, err := io.ReadAll(f)
			if err != nil {
				return err
			}
			if !o.raw {
				b = libvirt.CleanConsole(b)
			}
			if o.tail >= 0 {
				b = lastLines(b, o.tail)
			}
			if _, err := a.stdout.Write(b); err != nil {
				return err
			}
			if !o.follow {
				return nil
			}
			return follow(cmd, f, a.stdout, !o.raw)
		},
	}
	cmd.Flags().BoolVarP(&o.follow, "follow", "f", false, "keep printing as the VM writes")
	cmd.Flags().IntVar(&o.tail, "tail", -1, "print only the last N lines first (-1: all)")
	cmd.Flags().BoolVar(&o.raw, "raw", false, "keep terminal control sequences")
	return cmd
}

// follow prints what is appended to f until the command's context ends.
func follow(cmd *cobra.Command, f *os.File, w io.Writer, clean bool) error {
	buf := make([]byte, 32<<10)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				out := buf[:n]
				if clean {
					out = libvirt.CleanConsole(out)
				}
				if _, werr := w.Write(out); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				break
			} else if err != nil {
				return err
			}
		}
		select {
		case <-cmd.Context().Done():
			return nil // Ctrl-C ends -f
		case <-t.C:
		}
	}
}

// lastLines keeps the last n lines of b.
func lastLines(b []byte, n int) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return []byte(strings.Join(lines, ""))
}
