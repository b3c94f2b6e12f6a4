// Package testutil holds what klab's tests share: the klab binary, and
// checks that skip a test (with the reason) when the machine cannot run it.
package testutil

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireRoot skips a test that needs root (namespaces, links, mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for namespaces, links and mounts: run sudo make test")
	}
}

// RequireCommand skips a test when a program is missing.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("needs %s (make deps installs it)", n)
		}
	}
}

// ModuleRoot is the repository root.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// KlabBinary returns a static klab binary built from this tree:
// $KLAB_TEST_BINARY when set (make test sets it to bin/klab), or one built
// once per test process.
func KlabBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KLAB_TEST_BINARY"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "klab-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "klab")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", built, "./cmd/klab")
		cmd.Dir = ModuleRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = &buildError{out: strings.TrimSpace(string(out)), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build klab: %v", buildErr)
	}
	return built
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// Poll calls cond until it returns true or the deadline passes; it fails
// the test with what on timeout. It is how tests wait: never a fixed sleep.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}
