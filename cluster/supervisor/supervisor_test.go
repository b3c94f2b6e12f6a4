package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testutil"
)

func TestNextBackoff(t *testing.T) {
	tests := []struct {
		prev, ran, want time.Duration
	}{
		{0, 0, InitialBackoff},
		{InitialBackoff, time.Second, 2 * InitialBackoff},
		{8 * time.Second, time.Second, MaxBackoff},
		{MaxBackoff, time.Second, MaxBackoff},
		{MaxBackoff, StableAfter, InitialBackoff},
	}
	for _, tt := range tests {
		if got := NextBackoff(tt.prev, tt.ran); got != tt.want {
			t.Errorf("NextBackoff(%s, %s) = %s, want %s", tt.prev, tt.ran, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Components: []Component{{Name: "Bad", Args: []string{"x"}}}}, `components[0].name "Bad"`},
		{Config{Components: []Component{{Name: "a", Args: []string{"x"}}, {Name: "a", Args: []string{"y"}}}}, "duplicate"},
		{Config{Components: []Component{{Name: "a"}}}, "components[0].args: Required value"},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate() = %v, want %q", err, tt.want)
		}
	}
}

func writeConfig(t *testing.T, path string, cfg Config) {
	t.Helper()
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func component(st *Status, name string) ComponentStatus {
	for _, c := range st.Components {
		if c.Name == name {
			return c
		}
	}
	return ComponentStatus{}
}

// TestSupervisor runs real processes: restarts with backoff, logs,
// stop/start, reload, and a clean stop of everything at the end.
func TestSupervisor(t *testing.T) {
	dir := t.TempDir()
	o := Options{
		Config: filepath.Join(dir, "supervise.yaml"),
		Socket: filepath.Join(dir, "s.sock"),
		LogDir: filepath.Join(dir, "log"),
		Log:    slog.New(slog.DiscardHandler),
	}
	writeConfig(t, o.Config, Config{Components: []Component{
		{Name: "sleeper", Args: []string{"sleep", "1000"}},
		{Name: "crasher", Args: []string{"sh", "-c", "echo hello from $NAME; exit 3"}, Env: []string{"NAME=crasher"}},
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	c := NewClient(o.Socket)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := c.WaitStatus(wctx); err != nil {
		t.Fatal(err)
	}
	status := func() *Status {
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	testutil.Poll(t, 10*time.Second, "crasher restarted twice", func() bool {
		return component(status(), "crasher").Restarts >= 2
	})
	if got := component(status(), "crasher").LastExit; got != "exit code 3" {
		t.Errorf("crasher last exit %q", got)
	}
	log, err := os.ReadFile(LogPath(o.LogDir, "crasher"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "hello from crasher") || !strings.Contains(string(log), "starting crasher (restart 1)") {
		t.Errorf("crasher log:\n%s", log)
	}

	sl := component(status(), "sleeper")
	if sl.State != StateRunning || sl.PID == 0 {
		t.Fatalf("sleeper %+v", sl)
	}
	if err := syscall.Kill(sl.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "sleeper restarted after a kill", func() bool {
		s := component(status(), "sleeper")
		return s.Restarts == 1 && s.State == StateRunning && s.PID != sl.PID
	})
	if got := component(status(), "sleeper").LastExit; got != "signal: killed" {
		t.Errorf("sleeper last exit %q", got)
	}

	if err := c.Control(ctx, "stop", "sleeper"); err != nil {
		t.Fatal(err)
	}
	if s := component(status(), "sleeper"); s.State != StateStopped || s.PID != 0 {
		t.Errorf("after stop: %+v", s)
	}
	if err := c.Control(ctx, "start", "sleeper"); err != nil {
		t.Fatal(err)
	}
	last := component(status(), "sleeper")
	if last.State != StateRunning {
		t.Errorf("after start: %+v", last)
	}
	if err := c.Control(ctx, "stop", "nope"); err == nil || !strings.Contains(err.Error(), `no component "nope"`) {
		t.Errorf("stopping an unknown component: %v", err)
	}

	// Reload: crasher goes, another comes.
	writeConfig(t, o.Config, Config{Components: []Component{
		{Name: "sleeper", Args: []string{"sleep", "1000"}},
		{Name: "other", Args: []string{"sleep", "999"}},
	}})
	if err := c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	st := status()
	if len(st.Components) != 2 || component(st, "other").State != StateRunning || component(st, "crasher").Name != "" {
		t.Errorf("after reload: %+v", st.Components)
	}
	if component(st, "sleeper").PID != last.PID {
		t.Error("an unchanged component was restarted by reload")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	for _, cs := range st.Components {
		if err := syscall.Kill(cs.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still runs after the supervisor stopped: %v", cs.Name, cs.PID, err)
		}
	}
	if _, err := os.Stat(o.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Error("socket left behind")
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(p, []byte("one\ntwo\nthree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[int]string{-1: "one\ntwo\nthree\n", 0: "", 1: "three\n", 2: "two\nthree\n", 5: "one\ntwo\nthree\n"} {
		var b strings.Builder
		if err := Tail(context.Background(), p, n, false, &b); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("tail %d = %q, want %q", n, b.String(), want)
		}
	}
	if err := Tail(context.Background(), p+".nope", 1, false, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "no log") {
		t.Errorf("missing log: %v", err)
	}
}
