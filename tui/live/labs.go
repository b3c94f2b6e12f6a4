package live

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/klab-dev/klab/labs"
	"github.com/klab-dev/klab/tui"
)

// checkLimit caps how long one check is retried from the TUI.
const checkLimit = 15 * time.Second

// Labs implements tui.Cluster: the labs built into klab, with this
// cluster's progress in the one it is doing.
func (c *Cluster) Labs(ctx context.Context) ([]tui.Lab, error) {
	all, err := labs.Bundled()
	if err != nil {
		return nil, err
	}
	p, err := labs.LoadProgress(c.name)
	if err != nil {
		return nil, err
	}
	out := make([]tui.Lab, 0, len(all))
	for _, l := range all {
		tl := tui.Lab{ID: l.ID, Title: text(l.Title), Summary: text(l.Summary)}
		for _, s := range l.Steps {
			ts := tui.LabStep{Title: text(s.Title), Text: text(s.Text)}
			for _, cmd := range s.Commands {
				ts.Commands = append(ts.Commands, cmd.Run)
			}
			for _, chk := range s.Checks {
				ts.Checks = append(ts.Checks, text(chk.Title))
			}
			tl.Steps = append(tl.Steps, ts)
		}
		if p != nil && p.Lab == l.ID {
			tl.Active, tl.Step, tl.Done = true, p.Step, len(p.Passed)
		}
		out = append(out, tl)
	}
	return out, nil
}

func text(t labs.Text) tui.Text { return tui.Text{EN: t.En, ZH: t.Zh} }

// CheckLab implements tui.Cluster: it runs every check of the step on this
// cluster, as klab lab check does. When the cluster is doing this lab and
// the step is its current one, a step that passes moves the lab on (its
// faults restored, the next step entered), as klab lab check does.
func (c *Cluster) CheckLab(ctx context.Context, r tui.LabCheckRequest) (*tui.LabCheck, error) {
	all, err := labs.Bundled()
	if err != nil {
		return nil, err
	}
	lab, err := labs.Find(all, r.Lab)
	if err != nil {
		return nil, err
	}
	if r.Step < 0 || r.Step >= len(lab.Steps) {
		return nil, fmt.Errorf("lab %s has steps 1 to %d", lab.ID, len(lab.Steps))
	}
	env, err := labs.Connect(c.name, c.binary)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	p, err := labs.LoadProgress(c.name)
	if err != nil {
		return nil, err
	}
	doing := p != nil && p.Lab == lab.ID
	// Events before the step began are not the step's.
	env.Since = time.Time{}
	if doing {
		env.Since = p.Started
		if r.Step == p.Step {
			env.Since = p.StepStarted
		}
	}
	res := &tui.LabCheck{Lab: lab.ID, Step: r.Step}
	for _, chk := range lab.Steps[r.Step].Checks {
		err := chk.Eval(ctx, env, checkLimit)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cr := tui.CheckResult{Name: chk.Title.In(r.Lang), OK: err == nil, Detail: chk.Subject()}
		if err != nil {
			cr.Detail, cr.Hint = err.Error(), chk.Hint.In(r.Lang)
		}
		res.Results = append(res.Results, cr)
	}
	if doing && res.Passed() && r.Step == p.Step && !p.Done {
		runner := labs.NewRunner(lab, env, labs.ModeCheck, r.Lang, io.Discard)
		if err := runner.Check(ctx, p, r.Step, checkLimit); err != nil {
			return res, fmt.Errorf("move lab %s on: %w", lab.ID, err)
		}
	}
	return res, nil
}
