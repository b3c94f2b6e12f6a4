package cgroups

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Controllers finds, for each named resource controller (memory, cpu,
// pids…), the hierarchy that has it: the v2 hierarchy when the controller
// is available there (pure v2 hosts, or hybrid hosts that left it
// unbound), else the v1 hierarchy it is mounted on. Controllers that no
// hierarchy has are missing from the map.
func Controllers(names ...string) (map[string]Hierarchy, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Hierarchy, len(names))
	var v1 []MountInfo
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		mi, ok := ParseMountInfo(sc.Text())
		if !ok {
			continue
		}
		switch mi.FSType {
		case "cgroup2":
			avail, err := os.ReadFile(filepath.Join(mi.MountPoint, "cgroup.controllers"))
			if err != nil {
				continue
			}
			for _, n := range names {
				if _, done := out[n]; !done && slices.Contains(strings.Fields(string(avail)), n) {
					out[n] = Hierarchy{Root: mi.MountPoint, V2: true}
				}
			}
		case "cgroup":
			v1 = append(v1, mi)
		}
	}
	for _, mi := range v1 {
		opts := strings.Split(mi.Options, ",")
		for _, n := range names {
			if _, done := out[n]; !done && slices.Contains(opts, n) {
				out[n] = Hierarchy{Root: mi.MountPoint}
			}
		}
	}
	return out, nil
}

// EnableControllers makes the named controllers available in a v2 group
// by enabling them in cgroup.subtree_control of every group above it,
// from the hierarchy root down. It does nothing on v1. It fails when a
// group on the way holds processes itself (v2's "no internal processes"
// rule): such processes belong in a leaf group of their own.
func (g Group) EnableControllers(names ...string) error {
	if !g.H.V2 || len(names) == 0 {
		return nil
	}
	parts := strings.Split(strings.Trim(filepath.ToSlash(g.Rel), "/"), "/")
	dir := g.H.Root
	for _, p := range parts {
		if err := enableIn(dir, names); err != nil {
			return err
		}
		dir = filepath.Join(dir, p)
	}
	return nil
}

func enableIn(dir string, names []string) error {
	cur, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("read controllers of cgroup %s: %w", dir, err)
	}
	var add []string
	for _, n := range names {
		if !slices.Contains(strings.Fields(string(cur)), n) {
			add = append(add, "+"+n)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0o644); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("enable %s in cgroup %s: it holds processes of its own, which v2 forbids for a group that delegates controllers: %w", strings.Join(names, ","), dir, err)
		}
		return fmt.Errorf("enable %s in cgroup %s: %w", strings.Join(names, ","), dir, err)
	}
	return nil
}

// Set writes value to one of the group's control files.
func (g Group) Set(file, value string) error {
	if err := os.WriteFile(filepath.Join(g.Path(), file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("set %s of cgroup %s to %q: %w", file, g.Path(), value, err)
	}
	return nil
}

// Get reads one of the group's control files.
func (g Group) Get(file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(g.Path(), file))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
