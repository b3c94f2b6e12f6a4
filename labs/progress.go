package labs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/klab-dev/klab/provision"
)

// Progress is how far a cluster is through a lab, kept in the cluster's
// state directory so that "klab lab check" carries on where "start" left
// off — and what the lab broke, so that it is always restored.
type Progress struct {
	Lab string `json:"lab"`
	// Source is where the lab was read: "embedded:…" or a file's path.
	Source string `json:"source"`
	// Step is the index of the step the student is on.
	Step        int       `json:"step"`
	Passed      []int     `json:"passed"`
	Done        bool      `json:"done,omitempty"`
	Started     time.Time `json:"started"`
	StepStarted time.Time `json:"stepStarted"`
	Updated     time.Time `json:"updated"`
	// Faults are those applied and not yet restored.
	Faults []*Applied `json:"faults,omitempty"`
}

const progressFile = "lab.json"

func progressPath(cluster string) string { return filepath.Join(provision.Dir(cluster), progressFile) }

// LoadProgress reads a cluster's lab progress; nil when it has none.
func LoadProgress(cluster string) (*Progress, error) {
	b, err := os.ReadFile(progressPath(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p Progress
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("lab progress %s: %w", progressPath(cluster), err)
	}
	return &p, nil
}

// Save writes the progress atomically.
func (p *Progress) Save(cluster string) error {
	p.Updated = time.Now()
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	path := progressPath(cluster)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save lab progress: %w", err)
	}
	return os.Rename(tmp, path)
}

// ClearProgress forgets a cluster's lab progress.
func ClearProgress(cluster string) error {
	err := os.Remove(progressPath(cluster))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// LatestProgress finds the cluster whose lab progress was updated last:
// the lab a student is doing, when they name no cluster.
func LatestProgress() (cluster string, p *Progress, err error) {
	names, err := provision.List()
	if err != nil {
		return "", nil, err
	}
	for _, n := range names {
		q, err := LoadProgress(n)
		if err != nil || q == nil {
			continue
		}
		if p == nil || q.Updated.After(p.Updated) {
			cluster, p = n, q
		}
	}
	return cluster, p, nil
}

// LabOf finds the lab a progress refers to.
func (p *Progress) LabOf() (*Lab, error) {
	if strings.HasPrefix(p.Source, "embedded:") {
		all, err := Bundled()
		if err != nil {
			return nil, err
		}
		return Find(all, p.Lab)
	}
	labs, err := LoadPath(p.Source)
	if err != nil {
		return nil, fmt.Errorf("the lab this cluster is doing: %w", err)
	}
	for _, l := range labs {
		if l.ID == p.Lab {
			return l, nil
		}
	}
	return nil, fmt.Errorf("%s no longer holds lab %q", p.Source, p.Lab)
}

func (p *Progress) passed(step int) bool { return slices.Contains(p.Passed, step) }
