package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// zombiesOf lists the zombie children of process pid.
func zombiesOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || parentPID(p) != pid {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && len(b) > i+2 && b[i+2] == 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// childrenOf counts the processes whose parent is pid.
func childrenOf(pid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		if p, err := strconv.Atoi(e.Name()); err == nil && parentPID(p) == pid {
			n++
		}
	}
	return n
}

// A container whose children become orphans leaves no zombies, whether
// it has a PID namespace of its own or shares the pod's.
func TestIntegrationOrphansLeaveNoZombies(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	for _, share := range []bool{false, true} {
		t.Run(fmt.Sprintf("sharePID=%v", share), func(t *testing.T) {
			sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "orphans", SharePID: share})
			if err != nil {
				t.Fatal(err)
			}
			defer r.RemoveSandbox(ctx, sb.ID)
			// Each inner shell exits at once, leaving its sleep an orphan.
			c, err := r.StartContainer(ctx, sb.ID, busybox("parent", "sh", "-c",
				`for i in 1 2 3 4 5; do sh -c 'sleep 0.2 & echo orphan $!'; done; exec sleep 3600`))
			if err != nil {
				t.Fatal(err)
			}
			testutil.Poll(t, 10*time.Second, "five orphans", func() bool {
				return strings.Count(logsOf(r, c.ID), "orphan") == 5
			})
			// The orphans end after 0.2s: then only the main process is
			// left under the shim, and nothing undead.
			testutil.Poll(t, 10*time.Second, "the orphans to end and be reaped", func() bool {
				return childrenOf(c.ShimPID) == 1 && len(zombiesOf(c.ShimPID)) == 0
			})
			if share {
				if got, want := nsOf(t, c.PID, "pid"), nsOf(t, sb.PausePID, "pid"); got != want {
					t.Errorf("PID namespace %s, pause's is %s", got, want)
				}
				if out, _ := execOut(t, r, c.ID, "cat", "/proc/1/cmdline"); !strings.Contains(out, "pause") {
					t.Errorf("PID 1 of a shared PID namespace is %q, want pause", out)
				}
			}
			if z := zombiesOf(sb.PausePID); len(z) > 0 {
				t.Errorf("zombies under pause: %v", z)
			}
		})
	}
}

// Killing a container's process, or its ending by itself, is reported
// with exit code and reason.
func TestIntegrationExitIsReported(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "exits"})
	if err != nil {
		t.Fatal(err)
	}
	long, err := r.StartContainer(ctx, sb.ID, busybox("long", "sleep", "3600"))
	if err != nil {
		t.Fatal(err)
	}
	ok, err := r.StartContainer(ctx, sb.ID, busybox("ok", "true"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err := r.StartContainer(ctx, sb.ID, busybox("bad", "sh", "-c", "echo failing >&2; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(long.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		c      *Container
		code   int
		signal string
		reason string
	}{
		{long, 137, "SIGKILL", ReasonError},
		{ok, 0, "", ReasonCompleted},
		{bad, 3, "", ReasonError},
	} {
		st, err := r.Wait(wctx, tc.c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Code != tc.code || st.Signal != tc.signal || st.Reason != tc.reason {
			t.Errorf("%s: exit %+v, want code %d signal %q reason %s", tc.c.Config.Name, st, tc.code, tc.signal, tc.reason)
		}
		c, err := r.Status(ctx, tc.c.ID)
		if err != nil || c.State != Exited {
			t.Errorf("%s: status %v, %v; want exited", tc.c.Config.Name, c, err)
		}
	}
	var b bytes.Buffer
	if err := r.Logs(ctx, bad.ID, LogOptions{Stream: "stderr"}, &b); err != nil || b.String() != "failing\n" {
		t.Errorf("stderr log %q, %v; want \"failing\\n\"", b.String(), err)
	}
}

// Limits land in the cgroup files of whichever hierarchy has the
// controller; a memory hog is reported as OOMKilled.
func TestIntegrationLimits(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "limits"})
	if err != nil {
		t.Fatal(err)
	}
	res := Resources{MemoryLimit: 64 << 20, PidsLimit: 50, CPULimitMilli: 500, CPURequestMilli: 250}
	c, err := r.StartContainer(ctx, sb.ID, ContainerConfig{Name: "limited", Image: "busybox", Command: []string{"sleep", "3600"}, Resources: res})
	if err != nil {
		t.Fatal(err)
	}
	rel := containerCgroup(r.cfg.CgroupParent, sb.ID, c.ID)
	want := map[string]map[bool]map[string]string{
		"memory": {true: {"memory.max": "67108864"}, false: {"memory.limit_in_bytes": "67108864"}},
		"pids":   {true: {"pids.max": "50"}, false: {"pids.max": "50"}},
		"cpu":    {true: {"cpu.max": "50000 100000", "cpu.weight": "10"}, false: {"cpu.cfs_quota_us": "50000", "cpu.shares": "256"}},
	}
	for ctrl, byVersion := range want {
		h, ok := r.ctrl[ctrl]
		if !ok {
			t.Logf("no %s controller here", ctrl)
			continue
		}
		g := cgroups.Group{H: h, Rel: rel}
		for file, value := range byVersion[h.V2] {
			if got, err := g.Get(file); err != nil || got != value {
				t.Errorf("%s/%s = %q, %v; want %q", g.Path(), file, got, err, value)
			}
		}
		// The main process is in that group.
		procs, _ := g.Procs()
		if !slices.Contains(procs, c.PID) {
			t.Errorf("main process %d is not in %s (%v)", c.PID, g.Path(), procs)
		}
	}
	if _, ok := r.ctrl["memory"]; ok {
		hog, err := r.StartContainer(ctx, sb.ID, ContainerConfig{Name: "hog", Image: "busybox",
			Command:   []string{"sh", "-c", `x=a; while true; do x="$x$x"; done`},
			Resources: Resources{MemoryLimit: 16 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := r.Wait(wctx, hog.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Reason != ReasonOOMKilled || st.Code != 137 {
			t.Errorf("memory hog ended with %+v, want OOMKilled, 137", st)
		}
	}
}

// leftovers lists what the runtime has left of a sandbox and its
// containers: netns pin, processes, cgroups, state, sockets, logs.
func leftovers(r *Runtime, sb *Sandbox, pids ...int) []string {
	var out []string
	exists := func(p string) {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	exists(sb.NetNS)
	exists(r.sandboxDir(sb.ID))
	exists(filepath.Join(r.cfg.LogDir, sb.ID))
	for _, g := range r.groups(podCgroup(r.cfg.CgroupParent, sb.ID)) {
		exists(g.Path())
	}
	for _, dir := range []string{filepath.Join(r.cfg.StateDir, "containers"), r.cfg.RunDir} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), sb.ID) {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, pid := range pids {
		if alive(pid, startTime(pid)) {
			out = append(out, fmt.Sprintf("process %d", pid))
		}
	}
	return out
}

// Removing a sandbox removes its namespaces, processes, cgroups and files.
func TestIntegrationRemoveSandboxLeavesNothing(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	host := t.TempDir()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "gone", SharePID: true, Volumes: []Volume{
		{Name: "scratch", EmptyDir: true},
		{Name: "host", HostPath: &HostPathVolume{Path: host, Type: "Directory"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	mounts := []Mount{{Volume: "scratch", Path: "/scratch"}, {Volume: "host", Path: "/host", ReadOnly: true}}
	a, err := r.StartContainer(ctx, sb.ID, ContainerConfig{Name: "a", Image: "busybox", Mounts: mounts,
		Command: []string{"sh", "-c", "echo shared > /scratch/f; sleep 3600 & exec sleep 3600"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.StartContainer(ctx, sb.ID, ContainerConfig{Name: "b", Image: "busybox", Mounts: mounts, Command: []string{"sleep", "3600"}})
	if err != nil {
		t.Fatal(err)
	}
	// The emptyDir is shared; the hostPath is read-only.
	testutil.Poll(t, 5*time.Second, "b to see a's file in the emptyDir", func() bool {
		out, _ := execOut(t, r, b.ID, "cat", "/scratch/f")
		return out == "shared\n"
	})
	if out, code := execOut(t, r, b.ID, "touch", "/host/x"); code == 0 {
		t.Errorf("writing to a read-only hostPath worked: %s", out)
	}
	if sbs, _ := r.ListSandboxes(ctx); len(sbs) != 1 || sbs[0].ID != sb.ID || !sbs[0].Ready {
		t.Errorf("ListSandboxes = %+v", sbs)
	}
	if cs, _ := r.ListContainers(ctx); len(cs) != 2 {
		t.Errorf("ListContainers = %d containers, want 2", len(cs))
	}
	if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(r, sb, sb.PausePID, a.ShimPID, a.PID, b.ShimPID, b.PID); len(left) > 0 {
		t.Errorf("left after removal: %v", left)
	}
	if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Errorf("removing it again: %v", err)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Errorf("the host path got files: %v", entries)
	}
}

// Specs that cannot run fail with a clear reason and leave nothing.
func TestIntegrationBadSpecs(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	noCmd := importTestImage(t, r, "example.com/nocmd:1", nil, nil)
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "bad", Volumes: []Volume{{Name: "data", EmptyDir: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      ContainerConfig
		reason string
		msg    string
	}{
		{"unknown image", ContainerConfig{Name: "c", Image: "nginx:1.25"}, ReasonImageNotFound,
			`image "nginx:1.25" not found on testnode: import it with klab image import`},
		{"no command", ContainerConfig{Name: "c", Image: noCmd}, ReasonConfigError, `container "c" has no command`},
		{"unknown volume", ContainerConfig{Name: "c", Image: "busybox", Mounts: []Mount{{Volume: "nope", Path: "/x"}}}, ReasonConfigError,
			`container "c" mounts volume "nope", which the pod does not have`},
		{"command not found", busybox("c", "no-such-command"), ReasonContainerCannotRun, `executable file not found`},
		{"bad working dir", ContainerConfig{Name: "c", Image: "busybox", WorkingDir: "relative"}, ReasonConfigError, "not an absolute path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.StartContainer(ctx, sb.ID, tc.c)
			var se *StartError
			if !errors.As(err, &se) || se.Reason != tc.reason || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want reason %s and %q", err, tc.reason, tc.msg)
			}
			if cs, _ := r.ListContainers(ctx); len(cs) != 0 {
				t.Errorf("containers left: %+v", cs)
			}
			for _, dir := range []string{filepath.Join(r.cfg.StateDir, "containers"), r.cfg.RunDir, filepath.Join(r.cfg.LogDir, sb.ID, "c")} {
				if entries, _ := os.ReadDir(dir); len(entries) > 0 {
					t.Errorf("%s has %v", dir, entries)
				}
			}
			for _, g := range r.groups(podCgroup(r.cfg.CgroupParent, sb.ID)) {
				entries, _ := os.ReadDir(g.Path())
				for _, e := range entries {
					if e.IsDir() && e.Name() != "infra" {
						t.Errorf("cgroup left: %s/%s", g.Path(), e.Name())
					}
				}
			}
		})
	}
	// A sandbox with a host path that does not exist is refused whole.
	_, err = r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "bad2", Volumes: []Volume{{Name: "h", HostPath: &HostPathVolume{Path: "/nonexistent/kt-rt"}}}})
	var se *StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), `volume "h": host path /nonexistent/kt-rt does not exist on testnode`) {
		t.Errorf("sandbox with a missing host path: %v", err)
	}
	if sbs, _ := r.ListSandboxes(ctx); len(sbs) != 1 {
		t.Errorf("sandboxes: %+v, want only the first", sbs)
	}
}

// Stop with grace, logs (tail, follow, timestamps) and exec with and
// without a terminal.
func TestIntegrationStopLogsExec(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "life"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.StartContainer(ctx, sb.ID, busybox("talker", "sh", "-c",
		`trap 'echo got TERM; exit 7' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done`))
	if err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "five lines", func() bool { return strings.Count(logsOf(r, c.ID), "line") >= 5 })

	var tail bytes.Buffer
	if err := r.Logs(ctx, c.ID, LogOptions{Tail: 2, Timestamps: true}, &tail); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(tail.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("tail 2 gave %q", tail.String())
	}
	for _, l := range lines {
		ts, text, _ := strings.Cut(l, " ")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasPrefix(text, "line ") {
			t.Errorf("timestamped line %q", l)
		}
	}

	// Exec: stdin in, stdout and stderr apart, exit code back.
	var out, errb bytes.Buffer
	code, err := r.Exec(ctx, c.ID, ExecConfig{Cmd: []string{"sh", "-c", "cat; echo oops >&2; exit 4"},
		Stdin: strings.NewReader("from stdin\n"), Stdout: &out, Stderr: &errb})
	if err != nil || code != 4 || out.String() != "from stdin\n" || errb.String() != "oops\n" {
		t.Errorf("exec: code %d, err %v, stdout %q, stderr %q", code, err, out.String(), errb.String())
	}
	// With a terminal.
	out.Reset()
	code, err = r.Exec(ctx, c.ID, ExecConfig{Cmd: []string{"sh", "-c", "test -t 0 && test -t 1 && echo on a tty"}, TTY: true, Stdout: &out})
	if err != nil || code != 0 || !strings.Contains(out.String(), "on a tty") {
		t.Errorf("tty exec: code %d, err %v, output %q", code, err, out.String())
	}
	// Ending the context kills the exec'd command.
	xctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	_, err = r.Exec(xctx, c.ID, ExecConfig{Cmd: []string{"sleep", "3600"}})
	cancel()
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("exec past its context: %v after %s", err, time.Since(start))
	}
	testutil.Poll(t, 5*time.Second, "the cancelled exec's process to be gone", func() bool {
		pids, _ := (cgroups.Group{H: r.track, Rel: containerCgroup(r.cfg.CgroupParent, sb.ID, c.ID)}).Procs()
		return len(pids) <= 2 // the shell and its sleep 0.05
	})

	// Follow until the container ends; Stop sends TERM, which it traps.
	followed := make(chan string)
	go func() {
		var b bytes.Buffer
		r.Logs(ctx, c.ID, LogOptions{Follow: true}, &b)
		followed <- b.String()
	}()
	st, err := r.Stop(ctx, c.ID, 10*time.Second)
	if err != nil || st.Code != 7 || st.Reason != ReasonError {
		t.Fatalf("stop: %+v, %v; want exit 7 from its TERM trap", st, err)
	}
	select {
	case got := <-followed:
		if !strings.HasSuffix(got, "got TERM\n") || !strings.HasPrefix(got, "line 0\n") {
			t.Errorf("followed log %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("following the log did not end with the container")
	}

	// A process that ignores TERM is killed after the grace period.
	stubborn, err := r.StartContainer(ctx, sb.ID, busybox("stubborn", "sh", "-c", `trap '' TERM; while true; do sleep 0.05; done`))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	st, err = r.Stop(ctx, stubborn.ID, 300*time.Millisecond)
	if err != nil || st.Signal != "SIGKILL" || time.Since(start) < 300*time.Millisecond {
		t.Errorf("stop of a TERM-ignoring process: %+v, %v after %s", st, err, time.Since(start))
	}
	if err := r.RemoveContainer(ctx, stubborn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stubborn.LogPath); err == nil {
		t.Error("the removed container's log is still there")
	}
	if _, err := r.Status(ctx, stubborn.ID); err == nil {
		t.Error("the removed container still has a status")
	}
}
