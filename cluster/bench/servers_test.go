package bench

import (
	"bytes"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testutil"
)

func TestIsServer(t *testing.T) {
	argv := func(s string) [][]byte { return bytes.Split([]byte(s), []byte(" ")) }
	for _, tc := range []struct {
		cmd  string
		want bool
	}{
		{"/usr/local/bin/klab internal bench-serve --run abc --for 600s --listen 1.2.3.4:5202", true},
		{"/usr/local/bin/klab internal bench-serve --run abcd --for 600s", false},
		{"/usr/local/bin/klab internal bench-run --run abc", false},
		{"sleep --run abc bench-serve", false},
		{"klab internal bench-serve --run", false},
	} {
		if got := isServer(argv(tc.cmd), "--run", "abc"); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.cmd, got, tc.want)
		}
	}
	if !isServer(argv("klab internal bench-serve --run x --listen 1.2.3.4:5202"), "--listen", "1.2.3.4:5202") {
		t.Error("a server is not found by its address")
	}
}

// TestStopServers starts two processes that look like bench servers, of
// two runs, and stops only the first run's.
func TestStopServers(t *testing.T) {
	testutil.RequireCommand(t, "sh")
	run := "t" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := func(run string) *exec.Cmd {
		// sh's command line ends in "bench-serve --run RUN" ($0 and the
		// arguments); "; :" keeps sh from replacing itself with sleep.
		c := exec.Command("sh", "-c", "sleep 60; :", "bench-serve", "--run", run)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	mine, other := start(run), start(run+"x")
	n, err := StopServers("--run", run)
	if err != nil || n != 1 {
		t.Fatalf("StopServers: %d, %v; want 1 stopped", n, err)
	}
	if err := mine.Wait(); err == nil {
		t.Error("the run's server exited cleanly: want it ended by SIGTERM")
	}
	if err := syscall.Kill(other.Process.Pid, 0); err != nil {
		t.Errorf("the other run's server is gone: %v", err)
	}
	if _, err := StopServers("--run", ""); err == nil {
		t.Error("StopServers with no run: want an error")
	}
}
