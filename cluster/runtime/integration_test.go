package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klab-dev/klab/cluster/runtime/image"
	"github.com/klab-dev/klab/internal/cgroups"
	"github.com/klab-dev/klab/internal/testutil"
)

// testRuntime is a runtime whose every path (state, sockets, logs,
// images, cgroup parent) is the test's own, named kt-rt-….
func testRuntime(t testing.TB) *Runtime {
	t.Helper()
	testutil.RequireRoot(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs busybox-static (/bin/busybox): apt-get install busybox-static")
	}
	bin := testutil.KlabBinary(t)
	base, err := os.MkdirTemp("", "kt-rt-")
	if err != nil {
		t.Fatal(err)
	}
	parent := filepath.Base(base)
	r, err := New(Config{
		Node:         "testnode",
		Binary:       bin,
		StateDir:     filepath.Join(base, "state"),
		RunDir:       filepath.Join(base, "run"),
		LogDir:       filepath.Join(base, "log"),
		NetNSDir:     "/run/netns",
		CgroupParent: parent + "/pods",
		Images:       &image.Store{Root: filepath.Join(base, "images"), Node: "testnode"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sbs, _ := r.ListSandboxes(ctx)
		for _, sb := range sbs {
			if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		for _, h := range r.hierarchies() {
			g := cgroups.Group{H: h, Rel: parent}
			g.Kill(ctx)
			if err := g.Remove(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		os.RemoveAll(base)
	})
	return r
}

func testID(t testing.TB) string {
	return fmt.Sprintf("kt-rt-%x", time.Now().UnixNano()&0xffffffffff)
}

func busybox(name string, cmd ...string) ContainerConfig {
	return ContainerConfig{Name: name, Image: "busybox", Command: cmd}
}

func nsOf(t testing.TB, pid int, kind string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatalf("namespace of %d: %v", pid, err)
	}
	return l
}

func execOut(t testing.TB, r *Runtime, id string, cmd ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := r.Exec(ctx, id, ExecConfig{Cmd: cmd, Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	return out.String() + errb.String(), code
}

func logsOf(r *Runtime, id string) string {
	var b bytes.Buffer
	r.Logs(context.Background(), id, LogOptions{}, &b)
	return b.String()
}

// The seed's example: two containers of one pod share its network, IPC
// and UTS namespaces; one serves a page that the other fetches over
// localhost.
func TestIntegrationPodSharesNamespaces(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "web-pod"})
	if err != nil {
		t.Fatal(err)
	}
	web, err := r.StartContainer(ctx, sb.ID, busybox("web", "sh", "-c",
		"mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 80 -h /www"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := r.StartContainer(ctx, sb.ID, busybox("client", "sh", "-c",
		"until wget -qO- 127.0.0.1; do sleep 0.1; done; exec sleep 3600"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "the client's log to have the page", func() bool {
		return strings.Contains(logsOf(r, client.ID), "hello from web")
	})
	for _, c := range []*Container{web, client} {
		if c.PID == 0 {
			t.Fatalf("%s: no main PID", c.Config.Name)
		}
		for _, kind := range []string{"net", "ipc", "uts"} {
			if got, want := nsOf(t, c.PID, kind), nsOf(t, sb.PausePID, kind); got != want {
				t.Errorf("%s: %s namespace %s, pause's is %s", c.Config.Name, kind, got, want)
			}
		}
		if nsOf(t, c.PID, "mnt") == nsOf(t, sb.PausePID, "mnt") {
			t.Errorf("%s shares the mount namespace of pause", c.Config.Name)
		}
		if out, code := execOut(t, r, c.ID, "hostname"); strings.TrimSpace(out) != "web-pod" || code != 0 {
			t.Errorf("%s: hostname %q (exit %d), want web-pod", c.Config.Name, out, code)
		}
	}
	if nsOf(t, web.PID, "mnt") == nsOf(t, client.PID, "mnt") {
		t.Error("the containers share a mount namespace")
	}
	if nsOf(t, web.PID, "pid") == nsOf(t, client.PID, "pid") {
		t.Error("the containers share a PID namespace, but the pod does not ask for it")
	}
}
