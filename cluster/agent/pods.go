package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/cluster/runtime"
)

// podRuntime is what the agent needs of the container runtime.
type podRuntime interface {
	CreateSandbox(ctx context.Context, cfg runtime.SandboxConfig) (*runtime.Sandbox, error)
	SetSandboxIPs(ctx context.Context, id string, ips []string) error
	RemoveSandbox(ctx context.Context, id string) error
	ListSandboxes(ctx context.Context) ([]runtime.Sandbox, error)
	StartContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (*runtime.Container, error)
	Wait(ctx context.Context, id string) (*runtime.ExitStatus, error)
	Stop(ctx context.Context, id string, grace time.Duration) (*runtime.ExitStatus, error)
	RemoveContainer(ctx context.Context, id string) error
	ListContainers(ctx context.Context) ([]runtime.Container, error)
	Exec(ctx context.Context, id string, e runtime.ExecConfig) (int, error)
	Logs(ctx context.Context, id string, o runtime.LogOptions, w io.Writer) error
}

// podNetwork is what the agent needs of CNI.
type podNetwork interface {
	Add(ctx context.Context, containerID, netnsPath, ifName string, args cni.PodArgs) (*cni.Attachment, error)
	Del(ctx context.Context, containerID, netnsPath, ifName string, args cni.PodArgs) error
}

// Restart backoff: the first restart is immediate, then 1s doubling to
// 30s; a container that ran a minute starts over.
const (
	firstBackoff   = time.Second
	maxBackoff     = 30 * time.Second
	backoffResetAt = time.Minute
	retrySandbox   = 2 * time.Second
	idle           = time.Hour
)

// podManager runs one worker per pod bound to the node.
type podManager struct {
	cfg      *Config
	cs       kubernetes.Interface
	rt       podRuntime
	net      podNetwork
	recorder record.EventRecorder
	log      *slog.Logger
	// volumeRoot holds the pods' configMap, secret and service account
	// volumes.
	volumeRoot string
	tokens     *tokenManager

	wg      sync.WaitGroup
	mu      sync.Mutex
	workers map[types.UID]*podWorker
}

// worker returns the pod's worker, starting it when needed.
func (m *podManager) worker(ctx context.Context, uid types.UID) *podWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w, ok := m.workers[uid]; ok {
		return w
	}
	w := &podWorker{m: m, uid: uid, kick: make(chan struct{}, 1), events: make(chan event, 16), ctrs: map[string]*ctr{}}
	m.workers[uid] = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run(ctx)
		m.mu.Lock()
		delete(m.workers, uid)
		m.mu.Unlock()
	}()
	return w
}

// byName finds the worker of a pod by namespace and name.
func (m *podManager) byName(ns, name string) *podWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.workers {
		if p := w.latest(); p != nil && p.Namespace == ns && p.Name == name {
			return w
		}
	}
	return nil
}

// update hands the latest version of a pod (nil: gone from the API) to
// its worker.
func (m *podManager) update(ctx context.Context, uid types.UID, pod *corev1.Pod) {
	w := m.worker(ctx, uid)
	w.mu.Lock()
	w.pod, w.seen = pod, true
	w.mu.Unlock()
	w.poke()
}

// podWorker owns one pod's sandbox and containers. Only its goroutine
// touches its state; the informer, container waiters and probes reach it
// through pod, kick and events.
type podWorker struct {
	m   *podManager
	uid types.UID

	mu   sync.Mutex
	pod  *corev1.Pod
	seen bool // pod was set at least once
	ids  map[string]containerIDs

	kick   chan struct{}
	events chan event

	sandbox    *runtime.Sandbox
	podIP      string
	started    time.Time
	sandboxErr string
	// sandboxReason is the waiting reason a failed sandbox gives its
	// containers: ContainerCreating, or the runtime's (a bad volume is a
	// CreateContainerConfigError).
	sandboxReason string
	ctrs          map[string]*ctr
}

// containerIDs are a container's current and previous instances.
type containerIDs struct{ current, previous string }

// ctr is one container's state.
type ctr struct {
	name     string
	id       string
	prevID   string // the instance before, kept for its logs
	running  bool
	started  time.Time
	exit     *exitView
	last     *exitView
	restarts int32
	backoff  time.Duration
	next     time.Time // no restart before
	waiting  string    // reason it does not run
	message  string
	ready    bool
	startup  bool // startup probe passed, or there is none
	imageID  string
	stop     context.CancelFunc // ends its waiter and probes
	stopping bool
}

type eventKind int

const (
	evExit eventKind = iota
	evReady
	evNotReady
	evStarted
	evLivenessFailed
)

type event struct {
	kind eventKind
	name string
	id   string // the container instance the event is about
	exit *runtime.ExitStatus
	msg  string
}

func (w *podWorker) latest() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			// The agent stops; the pod's processes keep running and the
			// next agent finds them again.
			for _, c := range w.ctrs {
				if c.stop != nil {
					c.stop()
				}
			}
			return
		case <-w.kick:
		case ev := <-w.events:
			w.apply(ctx, ev)
		case <-timer.C:
		}
		for drained := false; !drained; {
			select {
			case ev := <-w.events:
				w.apply(ctx, ev)
			default:
				drained = true
			}
		}
		next, finished := w.sync(ctx)
		if finished {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (w *podWorker) apply(ctx context.Context, ev event) {
	c, ok := w.ctrs[ev.name]
	if !ok || c.id != ev.id {
		return // about an earlier instance
	}
	switch ev.kind {
	case evExit:
		c.running, c.ready = false, false
		if c.stop != nil {
			c.stop()
			c.stop = nil
		}
		e := ev.exit
		c.exit = &exitView{Code: int32(e.Code), Signal: e.Signal, Reason: e.Reason, Message: e.Message, StartedAt: c.started, FinishedAt: e.FinishedAt}
		if c.exit.Message == "" && ev.msg != "" {
			c.exit.Message = ev.msg
		}
		if e.FinishedAt.Sub(c.started) >= backoffResetAt {
			c.backoff = 0
		}
		c.next = time.Now().Add(c.backoff)
		c.backoff = nextBackoff(c.backoff)
	case evReady:
		c.ready = true
	case evNotReady:
		c.ready = false
	case evStarted:
		c.startup = true
	case evLivenessFailed:
		if pod := w.latest(); pod != nil && !c.stopping {
			w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "Unhealthy", "%s", ev.msg)
			w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Container %s failed liveness probe, will be restarted", c.name)
			c.stopping = true
			id, grace := c.id, graceOf(pod)
			go w.m.rt.Stop(context.WithoutCancel(ctx), id, grace)
		}
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return firstBackoff
	}
	return min(2*d, maxBackoff)
}

func graceOf(pod *corev1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// sync moves the pod towards its spec and reports its status. It returns
// when it wants to run again, or that the pod is gone.
func (w *podWorker) sync(ctx context.Context) (next time.Duration, finished bool) {
	w.mu.Lock()
	pod, seen := w.pod, w.seen
	w.mu.Unlock()
	if !seen {
		return idle, false // recovered from disk, waiting for the informer
	}
	if pod == nil {
		w.teardown(ctx, nil, 0)
		return 0, true
	}
	if pod.DeletionTimestamp != nil {
		w.teardown(ctx, pod, graceOf(pod))
		err := w.m.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			w.m.log.Warn("delete pod", "pod", klog(pod), "err", err)
			return retrySandbox, false
		}
		return 0, true
	}
	next = idle
	if terminal(pod.Status.Phase) && !w.anyRunning() {
		return idle, false // it ran to its end; nothing to restart
	}
	if err := w.m.tokens.ensure(ctx, pod, filepath.Join(w.m.volumeRoot, string(pod.UID))); err != nil {
		w.sandboxErr = err.Error()
		w.report(ctx, pod)
		return retrySandbox, false
	}
	if w.sandbox == nil {
		if err := w.createSandbox(ctx, pod); err != nil {
			w.sandboxErr, w.sandboxReason = err.Error(), "ContainerCreating"
			var se *runtime.StartError
			if errors.As(err, &se) {
				w.sandboxReason = se.Reason
			}
			w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			w.m.log.Warn("create sandbox", "pod", klog(pod), "err", err)
			w.report(ctx, pod)
			return retrySandbox, false
		}
		w.sandboxErr = ""
	}
	now := time.Now()
	for i := range pod.Spec.Containers {
		spec := &pod.Spec.Containers[i]
		c := w.ctrs[spec.Name]
		if c == nil {
			c = &ctr{name: spec.Name}
			w.ctrs[spec.Name] = c
		}
		if c.running || (c.exit != nil && !restarts(pod.Spec.RestartPolicy, c.exit.Code)) {
			continue
		}
		if now.Before(c.next) {
			if c.exit != nil {
				c.waiting, c.message = "CrashLoopBackOff", fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", c.backoff/2, c.name, klog(pod))
			}
			next = min(next, c.next.Sub(now))
			continue
		}
		if err := w.start(ctx, pod, spec, c); err != nil {
			c.next = now.Add(c.backoff)
			next = min(next, c.backoff)
		}
	}
	w.report(ctx, pod)
	return max(next, 10*time.Millisecond), false
}

func terminal(p corev1.PodPhase) bool { return p == corev1.PodSucceeded || p == corev1.PodFailed }

func restarts(policy corev1.RestartPolicy, code int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return code != 0
	}
	return true
}

func (w *podWorker) anyRunning() bool {
	for _, c := range w.ctrs {
		if c.running {
			return true
		}
	}
	return false
}

func klog(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

// createSandbox makes the pod's pause process and namespaces, and
// attaches it to the network through CNI.
func (w *podWorker) createSandbox(ctx context.Context, pod *corev1.Pod) (err error) {
	volDir := filepath.Join(w.m.volumeRoot, string(pod.UID))
	cfg, err := sandboxConfig(pod, volDir)
	if err != nil {
		return err
	}
	cfg.Volumes = append(cfg.Volumes, w.m.tokens.volumes(pod)...)
	files, err := volumeFiles(ctx, w.m.cs, pod)
	if err != nil {
		return err
	}
	for vol, fs := range files {
		for name, data := range fs {
			p := filepath.Join(volDir, vol, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return err
			}
		}
	}
	sb, err := w.m.rt.CreateSandbox(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			w.m.rt.RemoveSandbox(context.WithoutCancel(ctx), sb.ID)
		}
	}()
	att, err := w.m.net.Add(ctx, sb.ID, sb.NetNS, "eth0", podArgs(pod))
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	ip := att.IP.String()
	if err := w.m.rt.SetSandboxIPs(ctx, sb.ID, []string{ip}); err != nil {
		w.m.net.Del(context.WithoutCancel(ctx), sb.ID, sb.NetNS, "eth0", podArgs(pod))
		return err
	}
	w.sandbox, w.podIP, w.started = sb, ip, time.Now()
	host := "?"
	if att.Result != nil {
		for _, i := range att.Result.Interfaces {
			if i.Sandbox == "" {
				host = i.Name
			}
		}
	}
	w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "SandboxReady",
		"pause pid %d holds the pod's namespaces; CNI ADD gave eth0 %s (netns %s, host side %s)", sb.PausePID, ip, sb.NetNS, host)
	return nil
}

func podArgs(pod *corev1.Pod) cni.PodArgs {
	return cni.PodArgs{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
}

// start starts (or restarts) a container.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, c *ctr) error {
	attempt := int(c.restarts)
	if c.exit != nil {
		attempt++
	}
	cfg, err := containerConfig(ctx, w.m.cs, pod, spec, w.podIP, attempt)
	cfg.Mounts = append(cfg.Mounts, w.m.tokens.mounts(pod, spec)...)
	var rc *runtime.Container
	if err == nil {
		rc, err = w.m.rt.StartContainer(ctx, w.sandbox.ID, cfg)
	}
	if err != nil {
		reason := runtime.ReasonConfigError
		var se *runtime.StartError
		if errors.As(err, &se) {
			reason = se.Reason
		}
		c.waiting, c.message = reason, err.Error()
		c.backoff = nextBackoff(c.backoff)
		w.m.recorder.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return err
	}
	if c.exit != nil {
		c.last, c.exit = c.exit, nil
		c.restarts++
	}
	if c.prevID != "" {
		w.m.rt.RemoveContainer(context.WithoutCancel(ctx), c.prevID)
	}
	c.prevID, c.id, c.running, c.started, c.imageID = c.id, rc.ID, true, rc.Started, rc.ImageID
	w.publishIDs()
	c.waiting, c.message, c.ready, c.stopping = "", "", false, false
	c.startup = spec.StartupProbe == nil
	if rc.PID > 0 {
		w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s (pid %d)", spec.Name, rc.PID)
	} else {
		w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", spec.Name)
	}
	w.watch(ctx, pod, spec, c)
	return nil
}

// watch waits for a running container's end and runs its probes.
func (w *podWorker) watch(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, c *ctr) {
	cctx, cancel := context.WithCancel(ctx)
	c.stop = cancel
	name, id := c.name, c.id
	go func() {
		st, err := w.m.rt.Wait(cctx, id)
		if err != nil {
			return
		}
		select {
		case w.events <- event{kind: evExit, name: name, id: id, exit: st}:
		case <-ctx.Done():
		}
	}()
	w.startProbes(cctx, pod, spec, id, w.podIP)
	if spec.ReadinessProbe == nil && spec.StartupProbe == nil {
		c.ready = true
	}
}

// teardown stops the pod's containers (gracefully when pod is given),
// detaches it from the network and removes everything it had.
func (w *podWorker) teardown(ctx context.Context, pod *corev1.Pod, grace time.Duration) {
	w.m.tokens.forget(w.uid)
	var wg sync.WaitGroup
	for _, c := range w.ctrs {
		if c.id == "" {
			continue
		}
		if pod != nil && c.running {
			w.m.recorder.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", c.name)
		}
		wg.Add(1)
		go func(c *ctr) {
			defer wg.Done()
			if c.running {
				w.preStop(ctx, pod, c, grace)
				if _, err := w.m.rt.Stop(ctx, c.id, grace); err != nil {
					w.m.log.Warn("stop container", "container", c.name, "err", err)
				}
			}
			if c.stop != nil {
				c.stop()
			}
			for _, id := range []string{c.id, c.prevID} {
				if id == "" {
					continue
				}
				if err := w.m.rt.RemoveContainer(ctx, id); err != nil {
					w.m.log.Warn("remove container", "container", c.name, "err", err)
				}
			}
		}(c)
	}
	wg.Wait()
	if sb := w.sandbox; sb != nil {
		args := cni.PodArgs{Namespace: sb.Config.Namespace, Name: sb.Config.Name, UID: sb.Config.UID}
		if err := w.m.net.Del(ctx, sb.ID, sb.NetNS, "eth0", args); err != nil {
			w.m.log.Warn("CNI DEL", "sandbox", sb.ID, "err", err)
		}
		if err := w.m.rt.RemoveSandbox(ctx, sb.ID); err != nil {
			w.m.log.Warn("remove sandbox", "sandbox", sb.ID, "err", err)
		}
	}
	os.RemoveAll(filepath.Join(w.m.volumeRoot, string(w.uid)))
	w.sandbox, w.ctrs = nil, map[string]*ctr{}
	w.publishIDs()
}

// publishIDs makes the containers' instances visible to the API server.
func (w *podWorker) publishIDs() {
	ids := map[string]containerIDs{}
	for name, c := range w.ctrs {
		ids[name] = containerIDs{current: c.id, previous: c.prevID}
	}
	w.mu.Lock()
	w.ids = ids
	w.mu.Unlock()
}

// preStop runs a container's preStop exec hook, within the grace period.
func (w *podWorker) preStop(ctx context.Context, pod *corev1.Pod, c *ctr, grace time.Duration) {
	if pod == nil {
		return
	}
	for _, spec := range pod.Spec.Containers {
		if spec.Name != c.name || spec.Lifecycle == nil || spec.Lifecycle.PreStop == nil || spec.Lifecycle.PreStop.Exec == nil {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, grace)
		w.m.rt.Exec(hctx, c.id, runtime.ExecConfig{Cmd: spec.Lifecycle.PreStop.Exec.Command})
		cancel()
	}
}

// report writes the pod's status when it changed.
func (w *podWorker) report(ctx context.Context, pod *corev1.Pod) {
	var views []containerView
	for _, spec := range pod.Spec.Containers {
		v := containerView{Name: spec.Name, Image: spec.Image, WaitingReason: "ContainerCreating", Started: spec.StartupProbe == nil}
		if w.sandboxErr != "" {
			v.WaitingReason, v.WaitingMessage = w.sandboxReason, w.sandboxErr
		}
		if c := w.ctrs[spec.Name]; c != nil {
			v = containerView{
				Name: spec.Name, Image: spec.Image, ImageID: c.imageID, ID: c.id,
				Running: c.running, StartedAt: c.started, Exit: c.exit, Last: c.last,
				WaitingReason: c.waiting, WaitingMessage: c.message,
				Restarts: c.restarts, Ready: c.ready, Started: c.startup,
			}
		}
		views = append(views, v)
	}
	st := podStatus(pod, w.m.cfg.NodeIP, ipsOf(w.podIP), w.sandbox != nil, w.started, views, time.Now())
	if equality.Semantic.DeepEqual(st, pod.Status) {
		return
	}
	for range 3 {
		cur := pod.DeepCopy()
		cur.Status = st
		_, err := w.m.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil || apierrors.IsNotFound(err) {
			return
		}
		if !apierrors.IsConflict(err) {
			w.m.log.Warn("update pod status", "pod", klog(pod), "err", err)
			return
		}
		fresh, gerr := w.m.cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return
		}
		pod = fresh
	}
}

func ipsOf(ip string) []string {
	if ip == "" {
		return nil
	}
	return []string{ip}
}

// recover rebuilds workers for the sandboxes and containers found on
// disk, so pods survive an agent restart.
func (m *podManager) recover(ctx context.Context) error {
	sbs, err := m.rt.ListSandboxes(ctx)
	if err != nil {
		return err
	}
	cs, err := m.rt.ListContainers(ctx)
	if err != nil {
		return err
	}
	for i := range sbs {
		sb := sbs[i]
		w := &podWorker{m: m, uid: types.UID(sb.Config.UID), kick: make(chan struct{}, 1), events: make(chan event, 16), ctrs: map[string]*ctr{}}
		w.sandbox, w.started = &sb, sb.Created
		if len(sb.IPs) > 0 {
			w.podIP = sb.IPs[0]
		}
		for _, c := range cs {
			if c.SandboxID != sb.ID {
				continue
			}
			cur := w.ctrs[c.Config.Name]
			if cur != nil && int(cur.restarts) >= c.Config.Attempt {
				cur.prevID = c.ID // an older attempt
				continue
			}
			k := &ctr{name: c.Config.Name, id: c.ID, started: c.Started, restarts: int32(c.Config.Attempt), imageID: c.ImageID, startup: true, ready: true}
			if cur != nil {
				k.prevID = cur.id
			}
			if c.State == runtime.Running {
				k.running = true
			} else if e := c.Exit; e != nil {
				k.exit = &exitView{Code: int32(e.Code), Signal: e.Signal, Reason: e.Reason, Message: e.Message, StartedAt: c.Started, FinishedAt: e.FinishedAt}
			}
			w.ctrs[k.name] = k
		}
		w.publishIDs()
		m.mu.Lock()
		m.workers[w.uid] = w
		m.mu.Unlock()
		m.log.Info("recovered pod", "pod", sb.Config.Namespace+"/"+sb.Config.Name, "containers", len(w.ctrs))
	}
	return nil
}

// startRecovered starts the goroutines of recovered workers once their
// pods are known: running containers get waiters and probes again.
func (m *podManager) startRecovered(ctx context.Context, known func(types.UID) *corev1.Pod) {
	m.mu.Lock()
	var ws []*podWorker
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	for _, w := range ws {
		pod := known(w.uid)
		w.mu.Lock()
		w.pod, w.seen = pod, true
		w.mu.Unlock()
		if pod != nil {
			for i := range pod.Spec.Containers {
				spec := &pod.Spec.Containers[i]
				if c := w.ctrs[spec.Name]; c != nil && c.running {
					w.watch(ctx, pod, spec, c)
				}
			}
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			w.run(ctx)
			m.mu.Lock()
			delete(m.workers, w.uid)
			m.mu.Unlock()
		}()
	}
}

// containerID returns the runtime ID of a pod's container: the current
// instance, or with previous the one before (for "logs --previous").
// Safe to call from other goroutines: it asks the worker's state only
// through a snapshot the worker publishes.
func (w *podWorker) containerID(name string, previous bool) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.ids[name]
	if previous {
		ids.current = ids.previous
	}
	return ids.current, ids.current != ""
}
