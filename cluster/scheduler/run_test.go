package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/klab-dev/klab/cluster/client/fakeclient"
	"github.com/klab-dev/klab/internal/testutil"
)

// start runs a scheduler on cs until the test ends.
func start(t *testing.T, cs *fakeclient.Client, o Options) {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s, err := New(cs, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := cs.WaitWatching(10*time.Second, "pods", "nodes"); err != nil {
		t.Fatal(err)
	}
}

func nodeOf(t *testing.T, cs *fakeclient.Client, name string) string {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Spec.NodeName
}

func events(t *testing.T, cs *fakeclient.Client, reason string) []v1.Event {
	t.Helper()
	l, err := cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Event
	for _, e := range l.Items {
		if e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

func TestSchedulerSpreadsAReplicaSet(t *testing.T) {
	objs := []runtime.Object{
		makeNode("master", "2", "4Gi", tainted(controlPlaneTaint)),
		makeNode("node1", "2", "4Gi"),
		makeNode("node2", "2", "4Gi"),
	}
	for i := 1; i <= 3; i++ {
		objs = append(objs, makePod(fmt.Sprintf("web-%d", i), "100m", "64Mi", ownedBy("rs-web")))
	}
	other := makePod("other", "", "")
	other.Spec.SchedulerName = "someone-else"
	objs = append(objs, other)
	cs := fakeclient.New(objs...)
	start(t, cs, Options{})

	testutil.Poll(t, 10*time.Second, "3 pods bound", func() bool {
		return nodeOf(t, cs, "web-1") != "" && nodeOf(t, cs, "web-2") != "" && nodeOf(t, cs, "web-3") != ""
	})
	perNode := map[string]int{}
	for i := 1; i <= 3; i++ {
		perNode[nodeOf(t, cs, fmt.Sprintf("web-%d", i))]++
	}
	if perNode["master"] != 0 || perNode["node1"]+perNode["node2"] != 3 || perNode["node1"] == 0 || perNode["node2"] == 0 {
		t.Errorf("placement %v: want the 3 pods over node1 and node2, none on master", perNode)
	}
	if n := nodeOf(t, cs, "other"); n != "" {
		t.Errorf("a pod of another scheduler was bound to %s", n)
	}
	testutil.Poll(t, 10*time.Second, "3 Scheduled events", func() bool { return len(events(t, cs, "Scheduled")) == 3 })
	for _, e := range events(t, cs, "Scheduled") {
		want := fmt.Sprintf("Successfully assigned default/%s to %s", e.InvolvedObject.Name, nodeOf(t, cs, e.InvolvedObject.Name))
		if e.Message != want || e.Type != v1.EventTypeNormal || e.Source.Component != DefaultSchedulerName {
			t.Errorf("event %q (%s, %s), want %q", e.Message, e.Type, e.Source.Component, want)
		}
	}
}

func TestSchedulerRetriesWhenANodeArrives(t *testing.T) {
	cs := fakeclient.New(
		makeNode("master", "2", "4Gi", tainted(controlPlaneTaint)),
		makeNode("node1", "2", "4Gi"),
		makeNode("node2", "2", "4Gi"),
		makePod("big", "4", "1Gi"),
	)
	// A long backoff: only the node's arrival can bring the pod back soon.
	start(t, cs, Options{InitialBackoff: time.Minute, MaxBackoff: time.Minute})

	want := "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."
	testutil.Poll(t, 10*time.Second, "a FailedScheduling event", func() bool { return len(events(t, cs, "FailedScheduling")) > 0 })
	if e := events(t, cs, "FailedScheduling")[0]; e.Message != want || e.Type != v1.EventTypeWarning {
		t.Errorf("FailedScheduling %q (%s)\nwant %q", e.Message, e.Type, want)
	}
	testutil.Poll(t, 10*time.Second, "PodScheduled=False", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(context.Background(), "big", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable && c.Message == want {
				return true
			}
		}
		return false
	})

	if _, err := cs.CoreV1().Nodes().Create(context.Background(), makeNode("node3", "8", "16Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "big bound once node3 exists", func() bool { return nodeOf(t, cs, "big") == "node3" })
}

func TestSchedulerCountsPodsItJustBound(t *testing.T) {
	// Each node has room for exactly one of these pods: without counting
	// in-flight bindings the second decision would pick the same node.
	objs := []runtime.Object{makeNode("node1", "1", "4Gi"), makeNode("node2", "1", "4Gi"), makeNode("node3", "1", "4Gi")}
	for i := range 3 {
		objs = append(objs, makePod(fmt.Sprintf("p%d", i), "1", ""))
	}
	cs := fakeclient.New(objs...)
	start(t, cs, Options{})
	testutil.Poll(t, 10*time.Second, "3 pods on 3 nodes", func() bool {
		seen := map[string]bool{}
		for i := range 3 {
			seen[nodeOf(t, cs, fmt.Sprintf("p%d", i))] = true
		}
		return len(seen) == 3 && !seen[""]
	})
}
