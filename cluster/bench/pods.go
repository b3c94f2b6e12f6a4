// Package bench measures klab on a running cluster, each figure next to
// its floor measured in the same run.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// PodsOptions configure Pods.
type PodsOptions struct {
	Kube kubernetes.Interface
	// Node is where the pods go; Transport reaches it (for the floor and
	// the agent's memory).
	Node      string
	Transport transport.Transport
	Pods      int // how many pods in all
	RSSAt     int // measure the agent's memory once this many pods run
	Progress  func(string)
}

// PodsResult is pod startup latency next to its floor.
type PodsResult struct {
	Node     string        `json:"node"`
	Pods     int           `json:"pods"`
	P50      time.Duration `json:"p50Ns"`
	P99      time.Duration `json:"p99Ns"`
	FloorP50 time.Duration `json:"floorP50Ns"`
	FloorP99 time.Duration `json:"floorP99Ns"`
	// SLO is upstream's pod startup SLO (p99 ≤ 5 s, without image pulls).
	SLO      time.Duration `json:"sloNs"`
	RSSPods  int           `json:"rssPods"`
	AgentRSS int64         `json:"agentRSSBytes"`
}

// Pods creates pods on one node and measures, through a watch, how long
// each takes from its creation to Running and Ready; the floor is the same
// namespaces, a veth and the same command made by unshare and ip in a
// shell loop on that node. Between the two batches it reads the agent's
// resident memory. The pods are deleted at the end.
func Pods(ctx context.Context, o PodsOptions) (*PodsResult, error) {
	res := &PodsResult{Node: o.Node, Pods: o.Pods, SLO: 5 * time.Second, RSSPods: o.RSSAt}
	floor, err := floor(ctx, o.Transport, o.Pods)
	if err != nil {
		return nil, err
	}
	res.FloorP50, res.FloorP99 = percentile(floor, 50), percentile(floor, 99)

	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	pods := o.Kube.CoreV1().Pods(metav1.NamespaceDefault)
	sel := "klab-bench=" + run
	defer pods.DeleteCollection(context.WithoutCancel(ctx), metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: sel})

	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	created := map[string]time.Time{}
	var lat []time.Duration
	ready := make(chan struct{}, o.Pods)
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted || !podReady(p) {
				continue
			}
			mu.Lock()
			if t, ok := created[p.Name]; ok {
				lat = append(lat, time.Since(t))
				delete(created, p.Name)
				ready <- struct{}{}
			}
			mu.Unlock()
		}
	}()
	batch := func(from, to int) error {
		for i := from; i < to; i++ {
			p := benchPod(run, i, o.Node)
			mu.Lock()
			created[p.Name] = time.Now()
			mu.Unlock()
			if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create pod %s: %w", p.Name, err)
			}
		}
		for i := from; i < to; i++ {
			select {
			case <-ready:
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Minute):
				return fmt.Errorf("%d of %d pods not Running after 2 minutes", to-i, to-from)
			}
			if o.Progress != nil {
				o.Progress(fmt.Sprintf("%d of %d pods running", i+1, o.Pods))
			}
		}
		return nil
	}
	first := min(o.RSSAt, o.Pods)
	if err := batch(0, first); err != nil {
		return nil, err
	}
	if res.AgentRSS, err = agentRSS(ctx, o.Transport); err != nil {
		return nil, err
	}
	if err := batch(first, o.Pods); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	res.P50, res.P99 = percentile(lat, 50), percentile(lat, 99)
	return res, nil
}

func benchPod(run string, i int, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%s-%03d", run, i), Labels: map[string]string{"klab-bench": run}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": node},
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}},
		},
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// floorScript makes, n times, what a pod is at its simplest: new net, IPC,
// UTS, mount and PID namespaces, a veth, and the command — and prints how
// long each took, in nanoseconds.
const floorScript = `i=0; while [ $i -lt $1 ]; do
  s=$(date +%s%N)
  unshare --net --ipc --uts --mount --pid --fork sh -c 'ip link add eth0 type veth peer name h0 && exec sleep 0'
  e=$(date +%s%N); echo $((e-s)); i=$((i+1))
done`

func floor(ctx context.Context, t transport.Transport, n int) ([]time.Duration, error) {
	out, err := transport.Output(ctx, t, "sh", "-c", floorScript, "floor", strconv.Itoa(n))
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	var ds []time.Duration
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		ns, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("floor: %q: %w", sc.Text(), err)
		}
		ds = append(ds, time.Duration(ns))
	}
	return ds, nil
}

// agentRSS reads the resident memory of the node's agent.
func agentRSS(ctx context.Context, t transport.Transport) (int64, error) {
	out, err := transport.Output(ctx, t, provision.NodeBinary, "supervise", "status", "-o", "json")
	if err != nil {
		return 0, err
	}
	var st supervisor.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return 0, err
	}
	for _, c := range st.Components {
		if c.Name != "agent" {
			continue
		}
		status, err := transport.Output(ctx, t, "cat", fmt.Sprintf("/proc/%d/status", c.PID))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no agent runs on the node")
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}
