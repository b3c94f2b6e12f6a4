package labs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// How a runner is driven.
const (
	// ModeCheck: the student runs the commands and then "klab lab check".
	ModeCheck = iota
	// ModeInteractive: "klab lab run" waits for Enter before each check.
	ModeInteractive
	// ModeAuto: "klab lab run --auto" runs the commands itself.
	ModeAuto
)

// Runner takes a cluster through a lab, printing what the student sees.
type Runner struct {
	Lab  *Lab
	Env  *Env
	Mode int
	// Quiet hides what the commands print (ModeAuto).
	Quiet bool
	p     *printer
}

// NewRunner makes a runner that prints to out in lang (en or zh).
func NewRunner(lab *Lab, env *Env, mode int, lang string, out io.Writer) *Runner {
	return &Runner{Lab: lab, Env: env, Mode: mode, p: newPrinter(out, lang)}
}

// StepFailed is a step that did not pass: a check that did not hold in
// time, or a command that did not end as the lab expects. The runner has
// printed the details and the check's hint.
type StepFailed struct {
	Lab   string
	Step  int // index
	Steps int
	Title string
	Err   error
}

func (e *StepFailed) Error() string {
	return fmt.Sprintf("lab %s: step %d of %d (%s): %v", e.Lab, e.Step+1, e.Steps, e.Title, e.Err)
}

func (e *StepFailed) Unwrap() error { return e.Err }

// Start begins the lab on the runner's cluster: it restores what an
// earlier lab left broken there, runs the lab's cleanup, starts a fresh
// progress and enters the first step.
func (r *Runner) Start(ctx context.Context) (*Progress, error) {
	name := r.Env.Cluster.Name
	old, err := LoadProgress(name)
	if err != nil {
		return nil, err
	}
	if old != nil {
		if err := r.restore(ctx, old, func(*Applied) bool { return true }); err != nil {
			return nil, err
		}
	}
	r.p.printf("%s\n", r.p.dim(r.p.msg("cluster", name, name)))
	if len(r.Lab.Cleanup) > 0 {
		r.p.printf("%s\n", r.p.dim(r.p.msg("cleanup")))
		for _, c := range r.Lab.Cleanup {
			run, err := expand(c.Run, live{ctx: ctx, env: r.Env})
			if err != nil {
				continue // what it would clean does not exist
			}
			cctx, cancel := context.WithTimeout(ctx, c.Timeout.Or(2*time.Minute))
			_, _, err = r.Env.shell(cctx, run)
			cancel()
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil {
				return nil, fmt.Errorf("cleanup %q: %w", run, err)
			}
		}
	}
	src := r.Lab.Source
	if !strings.HasPrefix(src, "embedded:") {
		if abs, err := filepath.Abs(src); err == nil {
			src = abs
		}
	}
	p := &Progress{Lab: r.Lab.ID, Source: src, Started: time.Now(), Passed: []int{}}
	return p, r.enter(ctx, p, 0)
}

// enter makes step i the current one: it prints the step and applies its
// faults, each recorded in the progress before it is applied.
func (r *Runner) enter(ctx context.Context, p *Progress, i int) error {
	name := r.Env.Cluster.Name
	p.Step, p.StepStarted = i, time.Now()
	r.Env.Since = p.Started
	if err := p.Save(name); err != nil {
		return err
	}
	s := &r.Lab.Steps[i]
	r.p.step(r.Lab, i)
	for j := range s.Faults {
		a, err := s.Faults[j].Prepare(ctx, r.Env, i)
		if err != nil {
			return fmt.Errorf("step %d: fault %d: %w", i+1, j+1, err)
		}
		p.Faults = append(p.Faults, a)
		if err := p.Save(name); err != nil {
			return err
		}
		r.p.fault(a)
		if err := a.Apply(ctx, r.Env); err != nil {
			// Undo the half that may have happened; the record stays if
			// even that fails, for the next restore.
			if rerr := a.Restore(context.WithoutCancel(ctx), r.Env); rerr == nil {
				p.Faults = p.Faults[:len(p.Faults)-1]
				p.Save(name)
			}
			return fmt.Errorf("step %d: %s: %w", i+1, a.Describe("en"), err)
		}
	}
	if r.Mode == ModeAuto {
		return nil
	}
	for _, c := range s.Commands {
		r.p.command(r.display(ctx, c.Run))
	}
	if r.Mode == ModeCheck {
		r.p.printf("%s\n", r.p.dim(r.p.msg("checkNext")))
	}
	return nil
}

// display expands a command for showing it: with the cluster's values
// where they are known, placeholders where they are not (yet).
func (r *Runner) display(ctx context.Context, s string) string {
	if out, err := expand(s, live{ctx: ctx, env: r.Env}); err == nil {
		return out
	}
	out, err := expand(s, placeholders{})
	if err != nil {
		return s
	}
	return out
}

// Check runs the checks of step i, each until it holds or its timeout
// (capped by limit when limit is not zero), and prints them; it stops at
// the first that fails. When the current step passes, its faults are
// restored and the next step is entered.
func (r *Runner) Check(ctx context.Context, p *Progress, i int, limit time.Duration) error {
	if i < 0 || i >= len(r.Lab.Steps) {
		return fmt.Errorf("lab %s has steps 1 to %d", r.Lab.ID, len(r.Lab.Steps))
	}
	s := &r.Lab.Steps[i]
	r.Env.Since = p.Started
	for j := range s.Checks {
		c := &s.Checks[j]
		err := c.Eval(ctx, r.Env, limit)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.p.checkLine(c, err)
		if err != nil {
			return &StepFailed{Lab: r.Lab.ID, Step: i, Steps: len(r.Lab.Steps), Title: s.Title.In("en"), Err: err}
		}
	}
	if !p.passed(i) {
		p.Passed = append(p.Passed, i)
	}
	if i != p.Step || p.Done {
		return p.Save(r.Env.Cluster.Name)
	}
	if err := r.restore(ctx, p, func(a *Applied) bool { return a.Step == i && a.Until != "end" }); err != nil {
		return err
	}
	r.p.printf(" %s\n", r.p.green(r.p.msg("stepPassed", i+1)))
	if i+1 < len(r.Lab.Steps) {
		return r.enter(ctx, p, i+1)
	}
	if err := r.restore(ctx, p, func(*Applied) bool { return true }); err != nil {
		return err
	}
	p.Done = true
	r.p.printf("\n%s\n", r.p.green(r.p.msg("complete", r.Lab.ID, len(r.Lab.Steps))))
	return p.Save(r.Env.Cluster.Name)
}

// Auto runs the lab from its current step to the end: each step's
// commands, then its checks. It stops at the first step that fails, and
// whatever happens — a failure, an interrupt — restores every fault the
// lab applied before it returns.
func (r *Runner) Auto(ctx context.Context, p *Progress) (err error) {
	defer func() {
		if rerr := r.restore(context.WithoutCancel(ctx), p, func(*Applied) bool { return true }); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if err != nil {
			var sf *StepFailed
			if errors.As(err, &sf) {
				r.p.printf("\n%s\n", r.p.red(r.p.msg("stopped", r.Lab.ID, sf.Step+1, sf.Steps, r.Lab.Steps[sf.Step].Title.In(r.p.lang))))
			}
		}
	}()
	for !p.Done {
		i := p.Step
		if err := r.runCommands(ctx, i); err != nil {
			return err
		}
		if err := r.Check(ctx, p, i, 0); err != nil {
			return err
		}
	}
	return nil
}

// DefaultCommandTimeout bounds a command the runner runs.
const DefaultCommandTimeout = 2 * time.Minute

// runCommands runs step i's commands as the student would, printing each
// and (unless Quiet) its output.
func (r *Runner) runCommands(ctx context.Context, i int) error {
	s := &r.Lab.Steps[i]
	fail := func(err error) error {
		return &StepFailed{Lab: r.Lab.ID, Step: i, Steps: len(r.Lab.Steps), Title: s.Title.In("en"), Err: err}
	}
	for _, c := range s.Commands {
		run, err := expand(c.Run, live{ctx: ctx, env: r.Env, wait: 30 * time.Second})
		if err != nil {
			r.p.command(r.display(ctx, c.Run))
			r.p.printf(" %s %s\n", r.p.red("✗"), err)
			return fail(err)
		}
		r.p.command(run)
		cctx, cancel := context.WithTimeout(ctx, c.Timeout.Or(DefaultCommandTimeout))
		out, code, err := r.Env.shell(cctx, run)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !r.Quiet || err != nil || (code != 0) != c.Fails {
			r.p.output(out)
		}
		switch {
		case err != nil:
			r.p.printf(" %s %s\n", r.p.red("✗"), err)
			return fail(fmt.Errorf("%q: %w", run, err))
		case code != 0 && !c.Fails:
			r.p.printf(" %s %s\n", r.p.red("✗"), r.p.msg("commandFail", code))
			return fail(fmt.Errorf("%q exited %d: %s", run, code, oneLine(out, "(no output)")))
		case code == 0 && c.Fails:
			r.p.printf(" %s %s\n", r.p.red("✗"), r.p.msg("commandOK"))
			return fail(fmt.Errorf("%q succeeded, but the lab expects it to fail", run))
		}
	}
	return nil
}

// Interactive takes the student through the lab from its current step:
// they run the commands, press Enter, and the runner checks; a failing
// check shows its hint and waits again. "q" ends the session, keeping the
// progress (and the step's faults) for "klab lab check".
func (r *Runner) Interactive(ctx context.Context, p *Progress, in io.Reader, limit time.Duration) error {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for !p.Done {
		r.p.printf("%s", r.p.msg("press"))
		var line string
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l, ok := <-lines:
			if !ok {
				return nil // end of input
			}
			line = l
		}
		if strings.TrimSpace(line) == "q" {
			return nil
		}
		err := r.Check(ctx, p, p.Step, limit)
		var sf *StepFailed
		if err != nil && !errors.As(err, &sf) {
			return err
		}
	}
	return nil
}

// Stop restores everything the lab broke on the cluster and forgets its
// progress.
func (r *Runner) Stop(ctx context.Context, p *Progress) error {
	if p != nil {
		if err := r.restore(ctx, p, func(*Applied) bool { return true }); err != nil {
			return err
		}
	}
	return ClearProgress(r.Env.Cluster.Name)
}

// restore undoes the faults which selects, newest first, and saves the
// progress without those that were undone.
func (r *Runner) restore(ctx context.Context, p *Progress, which func(*Applied) bool) error {
	var errs []error
	var keep []*Applied
	for k := len(p.Faults) - 1; k >= 0; k-- {
		a := p.Faults[k]
		if !which(a) {
			keep = append([]*Applied{a}, keep...)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := a.Restore(rctx, r.Env)
		cancel()
		if err != nil {
			errs = append(errs, err)
			keep = append([]*Applied{a}, keep...)
			continue
		}
		r.p.printf(" %s %s\n", r.p.green("↺"), a.Restored(r.p.lang))
	}
	p.Faults = keep
	if err := p.Save(r.Env.Cluster.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
