// Package cgroups tracks groups of processes with Linux control groups: a
// node's processes (so that "down" finds every one of them, even orphans)
// and, later, a pod's containers (for resource limits).
//
// It prefers the cgroup v2 hierarchy (mounted at /sys/fs/cgroup on pure v2
// hosts, or /sys/fs/cgroup/unified on hybrid ones) and falls back to a v1
// hierarchy when no v2 one is mounted.
package cgroups

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hierarchy is a mounted cgroup hierarchy.
type Hierarchy struct {
	Root string // mount point
	V2   bool
}

// Find returns the cgroup v2 hierarchy, or a v1 hierarchy that can hold
// processes (pids, freezer, memory or the named systemd one) when there is no
// v2 mount.
func Find() (Hierarchy, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Hierarchy{}, err
	}
	defer f.Close()
	var v1 []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mi, ok := ParseMountInfo(sc.Text())
		if !ok {
			continue
		}
		switch mi.FSType {
		case "cgroup2":
			return Hierarchy{Root: mi.MountPoint, V2: true}, nil
		case "cgroup":
			v1 = append(v1, mi.MountPoint)
		}
	}
	for _, want := range []string{"pids", "freezer", "memory", "systemd"} {
		for _, m := range v1 {
			if filepath.Base(m) == want {
				return Hierarchy{Root: m}, nil
			}
		}
	}
	if len(v1) > 0 {
		return Hierarchy{Root: v1[0]}, nil
	}
	return Hierarchy{}, errors.New("no cgroup hierarchy is mounted: mount cgroup2 on /sys/fs/cgroup")
}

// All returns every mounted cgroup hierarchy, v1 and v2.
func All() ([]Hierarchy, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []Hierarchy
	for _, line := range strings.Split(string(b), "\n") {
		mi, ok := ParseMountInfo(line)
		if ok && (mi.FSType == "cgroup" || mi.FSType == "cgroup2") {
			out = append(out, Hierarchy{Root: mi.MountPoint, V2: mi.FSType == "cgroup2"})
		}
	}
	return out, nil
}

// MountInfo is one line of /proc/PID/mountinfo.
type MountInfo struct {
	MountPoint string
	FSType     string
	Source     string
	Options    string // per-superblock options
}

// ParseMountInfo parses one mountinfo line.
func ParseMountInfo(line string) (MountInfo, bool) {
	fields := strings.Fields(line)
	sep := slices.Index(fields, "-")
	if sep < 5 || len(fields) < sep+4 {
		return MountInfo{}, false
	}
	return MountInfo{
		MountPoint: unescape(fields[4]),
		FSType:     fields[sep+1],
		Source:     fields[sep+2],
		Options:    fields[sep+3],
	}, true
}

// unescape undoes mountinfo's octal escapes (\040 for a space, …).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Group is one cgroup, by its path relative to the hierarchy root.
type Group struct {
	H   Hierarchy
	Rel string
}

// Path is the group's directory.
func (g Group) Path() string { return filepath.Join(g.H.Root, g.Rel) }

// Create makes the group (and its parents).
func (g Group) Create() error {
	if err := os.MkdirAll(g.Path(), 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", g.Path(), err)
	}
	return nil
}

// Exists reports whether the group's directory exists.
func (g Group) Exists() bool {
	_, err := os.Stat(g.Path())
	return err == nil
}

// Open opens the group's directory, for clone(CLONE_INTO_CGROUP) through
// syscall.SysProcAttr.CgroupFD. Only v2 groups can be used that way.
func (g Group) Open() (*os.File, error) {
	if !g.H.V2 {
		return nil, errors.New("cgroup v1 directories cannot be used with CLONE_INTO_CGROUP")
	}
	return os.Open(g.Path())
}

// Add moves a process into the group.
func (g Group) Add(pid int) error {
	return os.WriteFile(filepath.Join(g.Path(), "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// Procs lists the processes in the group and every group below it.
func (g Group) Procs() ([]int, error) {
	var pids []int
	err := filepath.WalkDir(g.Path(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}

// Kill kills every process in the group and below it and waits until they
// are gone or ctx ends. On v2 it uses cgroup.kill, which also catches
// processes forked while the kill runs; otherwise it signals until empty.
func (g Group) Kill(ctx context.Context) error {
	if !g.Exists() {
		return nil
	}
	useKill := g.H.V2 && os.WriteFile(filepath.Join(g.Path(), "cgroup.kill"), []byte("1"), 0o644) == nil
	wait := time.Millisecond
	for {
		pids, err := g.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 && !g.populated() {
			return nil
		}
		if !useKill {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v in cgroup %s did not exit: %w", pids, g.Path(), ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// populated reports whether a v2 group still has tasks, exiting ones
// included (they are no longer listed in cgroup.procs, but keep the group
// busy until they are gone).
func (g Group) populated() bool {
	if !g.H.V2 {
		return false
	}
	b, err := os.ReadFile(filepath.Join(g.Path(), "cgroup.events"))
	return err == nil && strings.Contains(string(b), "populated 1")
}

// Remove deletes the group and every group below it; they must be empty.
func (g Group) Remove() error {
	var dirs []string
	err := filepath.WalkDir(g.Path(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// RemoveEmptyParents removes the directories above the group, up to but not
// including the hierarchy root, while they are empty.
func (g Group) RemoveEmptyParents() {
	for dir := filepath.Dir(g.Rel); dir != "." && dir != "/"; dir = filepath.Dir(dir) {
		if os.Remove(filepath.Join(g.H.Root, dir)) != nil {
			return
		}
	}
}
