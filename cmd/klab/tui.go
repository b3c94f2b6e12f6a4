package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/klab-dev/klab/tui"
	"github.com/klab-dev/klab/tui/live"
)

func (a *app) tuiCmd() *cobra.Command {
	var o tuiOptions
	cmd := &cobra.Command{
		Use:   "tui",
		Short: "Explore the cluster in the terminal: nodes, pods, network, topology, traces, control plane, labs",
		Long: `Open klab's terminal UI on a cluster (klab with no arguments does too). Its
views: 1 Overview (nodes, components), 2 Pods (filter, details, logs, shell,
delete), 3 Network (mode, routes, devices, FDB, BGP; m switches the mode),
4 Topology (subnets, nodes, pods, tunnels), 5 Trace (a packet between two pods,
hop by hop), 6 Control plane (events, CNI calls, route changes as they
happen), 7 Labs. ? lists the keys. When the cluster does not exist, the TUI
offers to create it.`,
		Example: `  sudo klab tui
  sudo klab tui --name lab2
  sudo klab tui --lang zh --log /tmp/klab-tui.log`,
		Args:    cobra.NoArgs,
		GroupID: "cluster",
		RunE:    func(cmd *cobra.Command, args []string) error { return a.runTUI(cmd.Context(), o) },
	}
	o.flags(cmd)
	return cmd
}

// tuiOptions are the TUI's flags.
type tuiOptions struct {
	lang    string
	logFile string
	view    int
}

func (o *tuiOptions) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.lang, "lang", "", "language of labs and traces: en or zh (default from $LANG)")
	cmd.Flags().StringVar(&o.logFile, "log", "", "append what the TUI cannot show (client retries, warnings) to this file")
	cmd.Flags().IntVar(&o.view, "view", 1, "the view to open: 1 Overview … 7 Labs")
	cmd.RegisterFlagCompletionFunc("lang", cobra.FixedCompletions([]string{"en", "zh"}, cobra.ShellCompDirectiveNoFileComp))
}

// isTerminal tells whether stdin and stdout are terminals.
func isTerminal() bool {
	return term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd()))
}

// runTUI runs the TUI on the selected cluster until the user quits.
func (a *app) runTUI(ctx context.Context, o tuiOptions) error {
	if !isTerminal() {
		return errors.New("klab tui needs a terminal on stdin and stdout: run it in one (klab status prints the cluster without)")
	}
	lang := o.lang
	if lang == "" {
		lang = "en"
		for _, v := range []string{os.Getenv("LC_ALL"), os.Getenv("LC_MESSAGES"), os.Getenv("LANG")} {
			if v != "" {
				if strings.HasPrefix(v, "zh") {
					lang = "zh"
				}
				break
			}
		}
	}
	if lang != "en" && lang != "zh" {
		return fmt.Errorf("--lang %s: use en or zh", lang)
	}
	if o.view < 1 || o.view > 7 {
		return fmt.Errorf("--view %d: the views are 1 to 7", o.view)
	}
	// Nothing may write to the terminal under the TUI: logs go to --log.
	var w io.Writer = io.Discard
	if o.logFile != "" {
		f, err := os.OpenFile(o.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--log: %w", err)
		}
		defer f.Close()
		w = f
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	bin, err := binary()
	if err != nil {
		return err
	}
	m := tui.New(ctx, live.New(a.cluster, bin, log), tui.Options{Lang: lang, Start: o.view - 1})
	_, err = tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx)).Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // interrupted
	}
	return err
}
