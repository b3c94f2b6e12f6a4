package runtime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klab-dev/klab/internal/cgroups"
)

// cgroupSetting is one control file and the value written to it.
type cgroupSetting struct {
	File, Value string
}

// cpuPeriod is the CFS period quotas are expressed in, in microseconds.
const cpuPeriod = 100000

// limitFiles maps a container's resources to control files, per
// controller, for a v2 or a v1 hierarchy.
func limitFiles(res Resources, controller string, v2 bool) []cgroupSetting {
	var out []cgroupSetting
	switch controller {
	case "memory":
		if res.MemoryLimit > 0 {
			if v2 {
				out = append(out, cgroupSetting{"memory.max", strconv.FormatInt(res.MemoryLimit, 10)})
			} else {
				out = append(out, cgroupSetting{"memory.limit_in_bytes", strconv.FormatInt(res.MemoryLimit, 10)})
			}
		}
	case "cpu":
		if res.CPURequestMilli > 0 {
			shares := max(2, res.CPURequestMilli*1024/1000)
			if v2 {
				// The conversion runc and the kubelet use.
				weight := 1 + ((shares-2)*9999)/262142
				out = append(out, cgroupSetting{"cpu.weight", strconv.FormatInt(weight, 10)})
			} else {
				out = append(out, cgroupSetting{"cpu.shares", strconv.FormatInt(shares, 10)})
			}
		}
		if res.CPULimitMilli > 0 {
			quota := max(1000, res.CPULimitMilli*cpuPeriod/1000)
			if v2 {
				out = append(out, cgroupSetting{"cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriod)})
			} else {
				out = append(out,
					cgroupSetting{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)},
					cgroupSetting{"cpu.cfs_quota_us", strconv.FormatInt(quota, 10)})
			}
		}
	case "pids":
		if res.PidsLimit > 0 {
			out = append(out, cgroupSetting{"pids.max", strconv.FormatInt(res.PidsLimit, 10)})
		}
	}
	return out
}

// createGroups makes the group rel in every hierarchy; on failure it
// removes what it made.
func (r *Runtime) createGroups(rel string) (err error) {
	var made []cgroups.Group
	defer func() {
		if err != nil {
			for _, g := range made {
				g.Remove()
			}
		}
	}()
	for _, g := range r.groups(rel) {
		if err := g.Create(); err != nil {
			return err
		}
		made = append(made, g)
	}
	return nil
}

// applyLimits writes a container's limits, each to the hierarchy that has
// its controller (enabling v2 controllers on the way down).
func (r *Runtime) applyLimits(rel string, res Resources) error {
	for _, c := range controllers {
		h, ok := r.ctrl[c]
		settings := limitFiles(res, c, h.V2)
		if len(settings) == 0 {
			continue
		}
		if !ok {
			return fmt.Errorf("cannot limit %s: no cgroup hierarchy on %s has the %s controller", c, r.cfg.Node, c)
		}
		g := cgroups.Group{H: h, Rel: rel}
		if err := g.EnableControllers(c); err != nil {
			return err
		}
		for _, s := range settings {
			if err := g.Set(s.File, s.Value); err != nil {
				return err
			}
		}
		if c == "memory" && h.V2 {
			// No swap either, so that the limit is the limit.
			if _, err := os.Stat(filepath.Join(g.Path(), "memory.swap.max")); err == nil {
				if err := g.Set("memory.swap.max", "0"); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// removeGroups kills what is left in group rel (tracking hierarchy) and
// removes it from every hierarchy. A group that is already gone is fine.
func (r *Runtime) removeGroups(ctx context.Context, rel string) error {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := (cgroups.Group{H: r.track, Rel: rel}).Kill(kctx); err != nil {
		return err
	}
	var errs []error
	for _, g := range r.groups(rel) {
		if err := removeGroup(kctx, g); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeGroup removes g, retrying while the kernel still counts exiting
// tasks (v1 groups answer EBUSY for a moment after their last process).
func removeGroup(ctx context.Context, g cgroups.Group) error {
	wait := time.Millisecond
	for {
		err := g.Remove()
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !strings.Contains(err.Error(), "busy") {
			return err
		}
		// Stragglers in this hierarchy only (a v1 group outside the
		// tracking one).
		g.Kill(ctx)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// oomKilled reports whether the kernel's OOM killer killed a process of
// group rel.
func (r *Runtime) oomKilled(rel string) bool {
	h, ok := r.ctrl["memory"]
	if !ok {
		return false
	}
	g := cgroups.Group{H: h, Rel: rel}
	file := "memory.oom_control"
	if h.V2 {
		file = "memory.events"
	}
	s, err := g.Get(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == "oom_kill" {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

// v1Dirs are the directories of group rel in the v1 hierarchies, which
// the shim moves processes into itself.
func (r *Runtime) v1Dirs(rel string) []string {
	var out []string
	for _, g := range r.groups(rel) {
		if !g.H.V2 {
			out = append(out, g.Path())
		}
	}
	return out
}

// v2Dir is the directory of group rel in the v2 hierarchy, if there is
// one: processes are cloned straight into it.
func (r *Runtime) v2Dir(rel string) string {
	for _, g := range r.groups(rel) {
		if g.H.V2 {
			return g.Path()
		}
	}
	return ""
}
