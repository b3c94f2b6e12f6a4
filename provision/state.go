package provision

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"sigs.k8s.io/yaml"
)

// StateRoot is where klab keeps its clusters: $KLAB_STATE_DIR or /var/lib/klab.
func StateRoot() string {
	if d := os.Getenv("KLAB_STATE_DIR"); d != "" {
		return d
	}
	return "/var/lib/klab"
}

// Dir is a cluster's state directory.
func Dir(name string) string { return filepath.Join(StateRoot(), name) }

const stateFile = "cluster.yaml"

// Errors of Load.
var (
	ErrNotFound = errors.New("cluster not found")
	ErrBadState = errors.New("unreadable cluster state")
)

// Load reads a cluster's state.
func Load(name string) (*Cluster, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(Dir(name), stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(Dir(name)); serr == nil {
			return nil, fmt.Errorf("cluster %q: %s is missing: %w", name, filepath.Join(Dir(name), stateFile), ErrNotFound)
		}
		return nil, fmt.Errorf("no cluster %q: create one with 'sudo klab up --name %s': %w", name, name, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("cluster %q: %w: %s: %v", name, ErrBadState, stateFile, err)
	}
	return &c, nil
}

// Save writes a cluster's state atomically.
func Save(c *Cluster) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	dir := Dir(c.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

// List returns the names of the clusters with state on this machine.
func List() ([]string, error) {
	entries, err := os.ReadDir(StateRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidateName(e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names, nil
}

// Reserve claims a cluster name and an underlay slot under a lock, so that
// concurrent "up"s neither share a name nor a range. taken reports slots
// in use outside klab (a host address in the range, say). It creates the
// state directory and saves the plan that plan builds for the slot.
func Reserve(name string, plan func(slot int) (*Cluster, error), taken func(*Cluster) bool) (*Cluster, error) {
	if err := os.MkdirAll(StateRoot(), 0o755); err != nil {
		return nil, err
	}
	lock, err := os.Open(StateRoot())
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if _, err := os.Stat(Dir(name)); err == nil {
		return nil, fmt.Errorf("cluster %q already exists: remove it with 'sudo klab down --name %s', or pick another --name", name, name)
	}
	used := map[int]bool{}
	names, err := List()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if c, err := Load(n); err == nil {
			used[c.Slot] = true
		}
	}
	for slot := range MaxSlots {
		if used[slot] {
			continue
		}
		c, err := plan(slot)
		if err != nil {
			return nil, err
		}
		if taken != nil && taken(c) {
			continue
		}
		if err := os.Mkdir(Dir(name), 0o700); err != nil {
			return nil, err
		}
		if err := Save(c); err != nil {
			os.RemoveAll(Dir(name))
			return nil, err
		}
		return c, nil
	}
	return nil, errors.New("no free underlay range in 192.168.34.0-192.168.233.0: remove a cluster with klab down")
}

// Remove deletes a cluster's state directory, and the state root when it
// was the last cluster.
func Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := os.RemoveAll(Dir(name)); err != nil {
		return err
	}
	os.Remove(StateRoot()) // only if empty
	return nil
}
