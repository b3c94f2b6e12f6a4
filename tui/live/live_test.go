package live

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/netns"
)

// tmux drives a terminal with its own server, so that the test touches no
// other session.
type tmux struct {
	t      *testing.T
	socket string
}

func (x *tmux) run(args ...string) string {
	x.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", x.socket}, args...)...).CombinedOutput()
	if err != nil {
		x.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (x *tmux) screen() string {
	out, _ := exec.Command("tmux", "-L", x.socket, "capture-pane", "-p", "-t", "tui").Output()
	return string(out)
}

// waitFor polls the screen until it shows every text, and fails with the
// last screen when the deadline passes.
func (x *tmux) waitFor(timeout time.Duration, texts ...string) string {
	x.t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		last := x.screen()
		ok := true
		for _, s := range texts {
			ok = ok && strings.Contains(last, s)
		}
		if ok {
			return last
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("after %s the screen does not show %q:\n%s", timeout, texts, last)
		}
		time.Sleep(wait)
	}
}

func (x *tmux) keys(keys ...string) {
	x.t.Helper()
	x.run(append([]string{"send-keys", "-t", "tui"}, keys...)...)
}

// TestIntegrationTUI runs `klab tui` in tmux against a netns cluster: it
// goes to the Trace view with the keys, picks two pods on different nodes
// with the search, traces, and reads the hops off the screen.
func TestIntegrationTUI(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "tmux", "nsenter", "ip")
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	bin := testutil.KlabBinary(t)
	p := netns.New(bin)
	name := fmt.Sprintf("tu%d", os.Getpid()%100000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := install.Up(ctx, install.Options{Plan: provision.PlanOptions{Name: name, Masters: 1, Workers: 2, Subnets: 1}, Provider: p, Binary: bin})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() {
		start := time.Now()
		install.Down(context.Background(), c.Name, func(string) (provision.Provider, error) { return p, nil }, nil)
		t.Logf("down in %s", time.Since(start).Round(time.Millisecond))
	})
	t.Logf("cluster %s up in %s", name, time.Since(start).Round(time.Millisecond))

	cfg, err := client.Config(name, "")
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	for pod, node := range map[string]string{"a": "node1", "b": "node2"} {
		_, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
				Name: "c", Image: "busybox", Command: []string{"sleep", "3600"},
			}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.Poll(t, time.Minute, "pods a and b Running", func() bool {
		for _, pod := range []string{"a", "b"} {
			p, err := cs.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return false
			}
		}
		return true
	})

	t.Logf("pods running after %s", time.Since(start).Round(time.Millisecond))
	x := &tmux{t: t, socket: "klab-test-" + name}
	x.run("new-session", "-d", "-s", "tui", "-x", "100", "-y", "32",
		"env", "KLAB_STATE_DIR="+os.Getenv("KLAB_STATE_DIR"), "TERM=xterm-256color", bin, "--name", name, "tui")
	t.Cleanup(func() { exec.Command("tmux", "-L", x.socket, "kill-server").Run() })

	x.waitFor(30*time.Second, "cluster "+name, "COMPONENTS", "● agent")
	t.Logf("the TUI shows the cluster after %s", time.Since(start).Round(time.Millisecond))
	x.keys("5")
	x.waitFor(10*time.Second, "trace a packet from one pod to another")
	x.keys("Enter")
	x.waitFor(10*time.Second, "from █")
	x.keys("a")
	x.waitFor(10*time.Second, "▸ default/a")
	x.keys("Enter")
	x.waitFor(10*time.Second, "to   █")
	x.keys("b")
	x.waitFor(10*time.Second, "▸ default/b", "node2 (another node)")
	x.keys("Enter")
	traced := time.Now()
	screen := x.waitFor(time.Minute, "✓ delivered in", "default/a (10.42.")
	t.Logf("the trace, %s after enter:\n%s", time.Since(traced).Round(time.Millisecond), screen)
	// The animation ends on the last hop: b's eth0, on node2.
	screen = x.waitFor(10*time.Second, "default/b · eth0 in")
	for _, want := range []string{"node1", "node2", "underlay", "cali", "eth0 out", "IPv4", "ICMPv4"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the trace screen does not show %q:\n%s", want, screen)
		}
	}
	// g goes to the first hop: the packet leaving a.
	x.keys("g")
	x.waitFor(10*time.Second, "hop 1 of", "default/a · eth0 out")
	x.keys("q")
	testutil.Poll(t, 10*time.Second, "the TUI to quit", func() bool {
		return exec.Command("tmux", "-L", x.socket, "has-session", "-t", "tui").Run() != nil
	})
}
