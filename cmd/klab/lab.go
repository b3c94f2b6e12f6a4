package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/labs"
)

// labFlags are the flags every lab command shares.
type labFlags struct {
	lang  string
	paths []string
}

func (a *app) labCmd() *cobra.Command {
	var f labFlags
	cmd := &cobra.Command{
		Use:     "lab",
		GroupID: "cluster",
		Short:   "Teaching labs: steps to follow on a cluster, checked against its real state",
		Long: `Labs take you through how the cluster and its pod network work, step by
step, in English or Chinese: each step explains something, gives the commands
to run, and checks the cluster's real state (a route on a node, a BGP session,
a packet's path) to tell you whether the step is done — with a hint when it is
not. Some steps break something on purpose; the lab puts it back afterwards.

Labs are built in (klab lab list); --labs adds your own files or directories
(the format is in docs/labs.md). A lab runs on a cluster named after it
(lab-ID) unless you give --name; start makes it, or reuses one of the right
shape, and puts the network in the lab's mode.`,
		Example: `  klab lab list
  klab lab show vxlan --lang zh
  sudo klab lab start vxlan        # then run the commands it shows, and:
  sudo klab lab check
  sudo klab lab run vxlan --auto   # every step, commands and checks, unattended
  sudo klab lab stop               # put back what the lab broke`,
	}
	cmd.PersistentFlags().StringVar(&f.lang, "lang", labs.DefaultLang(), "language: en or zh (default from LANG)")
	cmd.PersistentFlags().StringArrayVar(&f.paths, "labs", labPathsFromEnv(), "a lab file or a directory of them, besides the built-in labs (or $KLAB_LABS, colon-separated)")
	cmd.AddCommand(a.labListCmd(&f), a.labShowCmd(&f), a.labStartCmd(&f), a.labCheckCmd(&f), a.labRunCmd(&f), a.labStopCmd(&f))
	return cmd
}

func labPathsFromEnv() []string {
	var out []string
	for _, p := range filepath.SplitList(os.Getenv("KLAB_LABS")) {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (f *labFlags) catalog() ([]*labs.Lab, error) {
	if err := labs.CheckLang(f.lang); err != nil {
		return nil, err
	}
	return labs.Catalog(f.paths...)
}

func (f *labFlags) find(id string) (*labs.Lab, error) {
	all, err := f.catalog()
	if err != nil {
		return nil, err
	}
	return labs.Find(all, id)
}

// labCluster is the cluster a lab runs on: the one named by --name or
// $KLAB_CLUSTER, else lab-ID.
func (a *app) labCluster(cmd *cobra.Command, l *labs.Lab) string {
	if cmd.Flags().Changed("name") || os.Getenv("KLAB_CLUSTER") != "" {
		return a.cluster
	}
	return l.ClusterName()
}

// labDone maps a step that did not pass to exit code 1: the runner has
// printed the check, its hint and what it saw.
func labDone(err error) error {
	var sf *labs.StepFailed
	if errors.As(err, &sf) {
		return exitCode(1)
	}
	return err
}

// labEntry is a lab as "klab lab list" prints it.
type labEntry struct {
	Number   int    `json:"number,omitempty"`
	ID       string `json:"id"`
	Title    string `json:"title"`
	Summary  string `json:"summary"`
	Cluster  string `json:"cluster"`
	Steps    int    `json:"steps"`
	Source   string `json:"source"`
	Progress string `json:"progress,omitempty"`
}

func (a *app) labListCmd(f *labFlags) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the labs, with your progress in each",
		Example: `  klab lab list
  klab lab list --lang zh
  klab lab list --labs ./my-labs -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(format); err != nil {
				return err
			}
			all, err := f.catalog()
			if err != nil {
				return err
			}
			var entries []labEntry
			for _, l := range all {
				e := labEntry{Number: l.Number, ID: l.ID, Title: l.Title.In(f.lang), Summary: l.Summary.In(f.lang),
					Cluster: l.Cluster.Shape(), Steps: len(l.Steps), Source: strings.TrimPrefix(l.Source, "embedded:")}
				if p, err := labs.LoadProgress(a.labCluster(cmd, l)); err == nil && p != nil && p.Lab == l.ID {
					e.Progress = fmt.Sprintf("step %d of %d", p.Step+1, len(l.Steps))
					if p.Done {
						e.Progress = "done"
					}
				}
				entries = append(entries, e)
			}
			return output.Print(a.stdout, format, entries, func(tw *tabwriter.Writer, wide bool) {
				fmt.Fprintln(tw, "#\tID\tTITLE\tSTEPS\tPROGRESS")
				for _, e := range entries {
					num := "-"
					if e.Number > 0 {
						num = fmt.Sprint(e.Number)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", num, e.ID, e.Title, e.Steps, e.Progress)
					if wide {
						fmt.Fprintf(tw, "\t\t%s\t\t\n\t\tcluster: %s\t\t\n", e.Summary, e.Cluster)
					}
				}
			})
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

func (a *app) labShowCmd(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Print a lab: every step's explanation, commands and checks",
		Example: `  klab lab show vxlan
  klab lab show 8 --lang zh
  klab lab show ./my-lab.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.find(args[0])
			if err != nil {
				return err
			}
			labs.Show(a.stdout, l, f.lang)
			return nil
		},
	}
}

// labProvider is the --provider flag of the commands that make clusters.
func labProvider(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "provider", "auto", "where a new cluster's nodes run: auto, netns or libvirt")
}

// prepare makes or reuses the lab's cluster and connects to it.
func (a *app) prepareLab(cmd *cobra.Command, l *labs.Lab, provider string) (*labs.Env, error) {
	if err := needRoot("klab lab"); err != nil {
		return nil, err
	}
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	return labs.PrepareCluster(cmd.Context(), l, labs.ClusterOptions{
		Name: a.labCluster(cmd, l), Provider: provider, Binary: bin, Progress: a.progress(), Log: a.log,
	})
}

func (a *app) labStartCmd(f *labFlags) *cobra.Command {
	var provider string
	cmd := &cobra.Command{
		Use:   "start ID",
		Short: "Start a lab: make (or reuse) its cluster and show the first step",
		Long: `Start a lab from its first step: make a cluster of the shape the lab needs
(or reuse the one of that name if it fits), put the pod network in the lab's
mode, restore anything an earlier lab left broken there, and show step 1.
Run the commands it shows, then "klab lab check".`,
		Example: `  sudo klab lab start vxlan
  sudo klab lab start 7 --lang zh
  sudo klab lab start bgp --name mylab --provider netns`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.find(args[0])
			if err != nil {
				return err
			}
			env, err := a.prepareLab(cmd, l, provider)
			if err != nil {
				return err
			}
			defer env.Close()
			_, err = labs.NewRunner(l, env, labs.ModeCheck, f.lang, a.stdout).Start(cmd.Context())
			return err
		},
	}
	labProvider(cmd, &provider)
	return cmd
}

// current finds the cluster and progress a check or stop is about: the
// lab's cluster when an ID is given, the --name cluster, or the cluster
// whose lab progress moved last.
func (a *app) current(cmd *cobra.Command, f *labFlags, args []string) (string, *labs.Progress, *labs.Lab, error) {
	var l *labs.Lab
	var name string
	if len(args) == 1 {
		var err error
		if l, err = f.find(args[0]); err != nil {
			return "", nil, nil, err
		}
		name = a.labCluster(cmd, l)
	} else if cmd.Flags().Changed("name") || os.Getenv("KLAB_CLUSTER") != "" {
		name = a.cluster
	}
	var p *labs.Progress
	var err error
	if name == "" {
		name, p, err = labs.LatestProgress()
	} else {
		p, err = labs.LoadProgress(name)
	}
	if err != nil {
		return "", nil, nil, err
	}
	if p == nil {
		if name == "" {
			return "", nil, nil, errors.New("no lab in progress: start one with 'sudo klab lab start ID' (klab lab list shows them)")
		}
		return "", nil, nil, fmt.Errorf("no lab in progress on cluster %s: start one with 'sudo klab lab start ID'", name)
	}
	if l != nil && l.ID != p.Lab {
		return "", nil, nil, fmt.Errorf("cluster %s is doing lab %s, not %s: finish it, or 'sudo klab lab start %s'", name, p.Lab, l.ID, l.ID)
	}
	if l == nil {
		if l, err = p.LabOf(); err != nil {
			return "", nil, nil, err
		}
	}
	return name, p, l, nil
}

func (a *app) labCheckCmd(f *labFlags) *cobra.Command {
	var o struct {
		step int
		wait time.Duration
	}
	cmd := &cobra.Command{
		Use:   "check [ID]",
		Short: "Check the current step of the lab in progress (and move on when it passes)",
		Long: `Check the step you are on against the cluster's real state. When every check
holds, what the step broke is put back and the next step is shown; when one
does not, its hint says what to look at. --step checks another step.`,
		Example: `  sudo klab lab check
  sudo klab lab check vxlan --step 2
  sudo klab lab check --wait 30s     # give slow things (a node going NotReady) time`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := labs.CheckLang(f.lang); err != nil {
				return err
			}
			if err := needRoot("klab lab check"); err != nil {
				return err
			}
			name, p, l, err := a.current(cmd, f, args)
			if err != nil {
				return err
			}
			step := p.Step
			if o.step != 0 {
				if o.step < 1 || o.step > len(l.Steps) {
					return fmt.Errorf("--step %d: lab %s has steps 1 to %d", o.step, l.ID, len(l.Steps))
				}
				step = o.step - 1
			} else if p.Done {
				fmt.Fprintf(a.stdout, "lab %s is complete on cluster %s: check a step again with --step N, or start it again\n", l.ID, name)
				return nil
			}
			env, err := a.connectLab(name)
			if err != nil {
				return err
			}
			defer env.Close()
			return labDone(labs.NewRunner(l, env, labs.ModeCheck, f.lang, a.stdout).Check(cmd.Context(), p, step, o.wait))
		},
	}
	cmd.Flags().IntVar(&o.step, "step", 0, "check step N instead of the current one")
	cmd.Flags().DurationVar(&o.wait, "wait", 5*time.Second, "how long each check may wait for the state it wants")
	return cmd
}

func (a *app) connectLab(name string) (*labs.Env, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	return labs.Connect(name, bin)
}

func (a *app) labRunCmd(f *labFlags) *cobra.Command {
	var o struct {
		auto, quiet bool
		provider    string
		wait        time.Duration
	}
	cmd := &cobra.Command{
		Use:   "run ID",
		Short: "Go through a lab: you run each step's commands and press Enter (or --auto runs them)",
		Long: `Go through a lab from its first step. Without --auto, each step is shown, you
run its commands in another terminal and press Enter to check. With --auto,
klab runs every command itself and checks every step, stopping at the first
check that fails with its hint (exit code 1); whatever happens, what the lab
broke is put back before it returns.`,
		Example: `  sudo klab lab run pods
  sudo klab lab run vxlan --auto
  sudo klab lab run ./my-lab.yaml --auto --quiet`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.find(args[0])
			if err != nil {
				return err
			}
			env, err := a.prepareLab(cmd, l, o.provider)
			if err != nil {
				return err
			}
			defer env.Close()
			mode := labs.ModeInteractive
			if o.auto {
				mode = labs.ModeAuto
			}
			r := labs.NewRunner(l, env, mode, f.lang, a.stdout)
			r.Quiet = o.quiet
			p, err := r.Start(cmd.Context())
			if err != nil {
				if p != nil {
					// Put back what the first step broke before it failed.
					err = errors.Join(err, r.Stop(context.WithoutCancel(cmd.Context()), p))
				}
				return err
			}
			if o.auto {
				return labDone(r.Auto(cmd.Context(), p))
			}
			return labDone(r.Interactive(cmd.Context(), p, os.Stdin, o.wait))
		},
	}
	cmd.Flags().BoolVar(&o.auto, "auto", false, "run the commands too, and stop at the first failing check")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "with --auto: do not print what the commands print")
	cmd.Flags().DurationVar(&o.wait, "wait", 10*time.Second, "without --auto: how long each check may wait for the state it wants")
	labProvider(cmd, &o.provider)
	return cmd
}

func (a *app) labStopCmd(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stop [ID]",
		Short: "Stop the lab in progress: put back what it broke, forget the progress",
		Example: `  sudo klab lab stop
  sudo klab lab stop vxlan`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needRoot("klab lab stop"); err != nil {
				return err
			}
			name, p, l, err := a.current(cmd, f, args)
			if err != nil {
				return err
			}
			env, err := a.connectLab(name)
			if err != nil {
				return err
			}
			defer env.Close()
			if err := labs.NewRunner(l, env, labs.ModeCheck, f.lang, a.stdout).Stop(context.WithoutCancel(cmd.Context()), p); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "lab %s stopped; cluster %s is kept ('sudo klab down --name %s' removes it)\n", l.ID, name, name)
			return nil
		},
	}
}
