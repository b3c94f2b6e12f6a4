package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/cluster/runtime"
	"github.com/klab-dev/klab/internal/testutil"
)

// fakeRuntime keeps sandboxes and containers in memory; tests end
// containers with kill.
type fakeRuntime struct {
	mu        sync.Mutex
	n         int
	sandboxes map[string]*runtime.Sandbox
	ctrs      map[string]*fakeCtr
	removed   []string
}

type fakeCtr struct {
	c    runtime.Container
	done chan struct{}
	exit *runtime.ExitStatus
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{sandboxes: map[string]*runtime.Sandbox{}, ctrs: map[string]*fakeCtr{}}
}

func (f *fakeRuntime) CreateSandbox(ctx context.Context, cfg runtime.SandboxConfig) (*runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb := &runtime.Sandbox{ID: cfg.ID, Config: cfg, PausePID: 100, NetNS: "/run/netns/" + cfg.ID, Created: time.Now()}
	f.sandboxes[cfg.ID] = sb
	return sb, nil
}
func (f *fakeRuntime) SetSandboxIPs(ctx context.Context, id string, ips []string) error { return nil }
func (f *fakeRuntime) RemoveSandbox(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sandboxes, id)
	f.removed = append(f.removed, "sandbox "+id)
	return nil
}
func (f *fakeRuntime) ListSandboxes(ctx context.Context) ([]runtime.Sandbox, error) { return nil, nil }
func (f *fakeRuntime) StartContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (*runtime.Container, error) {
	if cfg.Image != "busybox" {
		return nil, &runtime.StartError{Reason: runtime.ReasonImageNotFound, Err: fmt.Errorf("image %q not found on test: import it with klab image import", cfg.Image)}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	c := runtime.Container{ID: fmt.Sprintf("c%d", f.n), SandboxID: sandboxID, Config: cfg, PID: 1000 + f.n, Started: time.Now()}
	f.ctrs[c.ID] = &fakeCtr{c: c, done: make(chan struct{})}
	return &c, nil
}
func (f *fakeRuntime) kill(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	if c.exit == nil {
		c.exit = &runtime.ExitStatus{Code: code, Reason: runtime.ReasonError, FinishedAt: time.Now()}
		close(c.done)
	}
}
func (f *fakeRuntime) Wait(ctx context.Context, id string) (*runtime.ExitStatus, error) {
	f.mu.Lock()
	c := f.ctrs[id]
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.exit, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
func (f *fakeRuntime) Stop(ctx context.Context, id string, grace time.Duration) (*runtime.ExitStatus, error) {
	f.kill(id, 143)
	return f.Wait(ctx, id)
}
func (f *fakeRuntime) RemoveContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, "container "+id)
	return nil
}
func (f *fakeRuntime) ListContainers(ctx context.Context) ([]runtime.Container, error) {
	return nil, nil
}
func (f *fakeRuntime) Exec(ctx context.Context, id string, e runtime.ExecConfig) (int, error) {
	return 0, nil
}
func (f *fakeRuntime) Logs(ctx context.Context, id string, o runtime.LogOptions, w io.Writer) error {
	return nil
}
func (f *fakeRuntime) running() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, c := range f.ctrs {
		if c.exit == nil {
			out = append(out, id)
		}
	}
	return out
}

type fakeNet struct {
	mu   sync.Mutex
	dels []string
}

func (n *fakeNet) Add(ctx context.Context, id, netns, ifName string, a cni.PodArgs) (*cni.Attachment, error) {
	return &cni.Attachment{Interface: "cali0123456789a", IP: netip.MustParseAddr("10.42.1.2")}, nil
}
func (n *fakeNet) Del(ctx context.Context, id, netns, ifName string, a cni.PodArgs) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.dels = append(n.dels, id)
	return nil
}

func testPod(image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: types.UID("0f2d6c58-5b1e-4c50-9c1b-2a2f3c4d5e6f")},
		Spec: corev1.PodSpec{
			NodeName:      "node1",
			RestartPolicy: corev1.RestartPolicyAlways,
			Containers:    []corev1.Container{{Name: "app", Image: image, Command: []string{"sleep", "1000"}}},
		},
	}
}

func newTestManager(t *testing.T, pod *corev1.Pod) (*podManager, *fake.Clientset, *fakeRuntime, *fakeNet) {
	cs := fake.NewSimpleClientset(pod)
	rt, nw := newFakeRuntime(), &fakeNet{}
	m := &podManager{
		cfg: &Config{NodeName: "node1", NodeIP: "192.168.34.11"}, cs: cs, rt: rt, net: nw,
		recorder: record.NewFakeRecorder(100), log: slog.New(slog.DiscardHandler),
		volumeRoot: t.TempDir(), workers: map[types.UID]*podWorker{},
	}
	return m, cs, rt, nw
}

func getPod(t *testing.T, cs *fake.Clientset) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPodLifecycle(t *testing.T) {
	pod := testPod("busybox")
	m, cs, rt, nw := newTestManager(t, pod)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.update(ctx, pod.UID, pod)

	testutil.Poll(t, 5*time.Second, "the pod to run", func() bool {
		p := getPod(t, cs)
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP == "10.42.1.2" && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
	})
	first := rt.running()
	if len(first) != 1 {
		t.Fatalf("running containers %v", first)
	}

	// The container dies: it is restarted at once, and counted.
	rt.kill(first[0], 1)
	testutil.Poll(t, 5*time.Second, "a restart", func() bool {
		p := getPod(t, cs)
		s := p.Status.ContainerStatuses
		return len(s) == 1 && s[0].RestartCount == 1 && s[0].State.Running != nil && s[0].LastTerminationState.Terminated != nil &&
			s[0].LastTerminationState.Terminated.ExitCode == 1 && len(rt.running()) == 1
	})
	second := rt.running()[0]
	// A second death waits out the backoff: the status says so.
	rt.kill(second, 2)
	testutil.Poll(t, 5*time.Second, "CrashLoopBackOff", func() bool {
		s := getPod(t, cs).Status.ContainerStatuses
		return len(s) == 1 && s[0].State.Waiting != nil && s[0].State.Waiting.Reason == "CrashLoopBackOff"
	})
	testutil.Poll(t, 5*time.Second, "the restart after the backoff", func() bool {
		s := getPod(t, cs).Status.ContainerStatuses
		return len(s) == 1 && s[0].RestartCount == 2 && s[0].State.Running != nil
	})

	// Graceful delete: containers stop, the network and sandbox go, and
	// the agent removes the object.
	p := getPod(t, cs)
	now := metav1.Now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, new(int64)
	m.update(ctx, p.UID, p)
	testutil.Poll(t, 5*time.Second, "the pod's object to be deleted", func() bool {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if len(rt.running()) != 0 {
		t.Errorf("containers still running: %v", rt.running())
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if len(nw.dels) != 1 || nw.dels[0] != string(pod.UID) {
		t.Errorf("CNI DEL calls %v", nw.dels)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.sandboxes) != 0 || !strings.Contains(strings.Join(rt.removed, ","), "sandbox "+string(pod.UID)) {
		t.Errorf("sandboxes left %v, removed %v", rt.sandboxes, rt.removed)
	}
}

func TestPodUnknownImage(t *testing.T) {
	pod := testPod("nginx:1.25")
	m, cs, _, _ := newTestManager(t, pod)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.update(ctx, pod.UID, pod)
	testutil.Poll(t, 5*time.Second, "the pod to report the missing image", func() bool {
		s := getPod(t, cs).Status.ContainerStatuses
		return len(s) == 1 && s[0].State.Waiting != nil && s[0].State.Waiting.Reason == runtime.ReasonImageNotFound &&
			strings.Contains(s[0].State.Waiting.Message, "import it with klab image import")
	})
	if ph := getPod(t, cs).Status.Phase; ph != corev1.PodPending {
		t.Errorf("phase %s", ph)
	}
}
