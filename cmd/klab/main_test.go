package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"klab": func() { os.Exit(report(newApp().run(context.Background(), os.Args[1:]))) },
	})
}

// TestScripts runs the CLI scripts in testdata/script: what a user types
// and what klab answers. State goes to the script's own directory.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("KLAB_STATE_DIR", filepath.Join(env.WorkDir, "state"))
			env.Setenv("KLAB_CLUSTER", "")
			return nil
		},
	})
}

// TestUpNeedsRoot runs klab as an unprivileged user.
func TestUpNeedsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary must be reachable by nobody.
	dir, err := os.MkdirTemp("", "klab-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "klab")
	if err := exec.Command("cp", exe, bin).Run(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	for _, args := range [][]string{{"up"}, {"down"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"KLAB_STATE_DIR=" + state, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("klab %v as nobody succeeded", args)
		}
		if got := strings.TrimSpace(string(out)); got != "klab: klab "+args[0]+" needs root (namespaces, links, mounts): run it with sudo" {
			t.Errorf("klab %v: %q", args, got)
		}
	}
	if _, err := os.Stat(state); err == nil {
		t.Error("klab up as nobody created state")
	}
}
