package controllers

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/record"

	"github.com/klab-dev/klab/cluster/client/fakeclient"
	"github.com/klab-dev/klab/internal/testutil"
)

func readyNode(name string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}}}
}

func lease(node string, at time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(at)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: v1.NamespaceNodeLease},
		Spec: coordinationv1.LeaseSpec{RenewTime: &t}}
}

func TestNodeLifecycle(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tolerant := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "tolerant", Namespace: "default", UID: "u1"},
		Spec: v1.PodSpec{NodeName: "node2", Tolerations: []v1.Toleration{{Key: v1.TaintNodeUnreachable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute}}}}
	plain := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "default", UID: "u2"}, Spec: v1.PodSpec{NodeName: "node2"},
		Status: v1.PodStatus{Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}}}
	healthy := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "healthy", Namespace: "default", UID: "u3"}, Spec: v1.PodSpec{NodeName: "node1"}}
	cs := fakeclient.New(readyNode("node1"), readyNode("node2"), lease("node1", t0), lease("node2", t0), tolerant, plain, healthy)

	o := Options{}
	o.defaults()
	m := &manager{cs: cs, o: o, log: slog.New(slog.DiscardHandler), broadcaster: record.NewBroadcaster()}
	defer m.broadcaster.Shutdown()
	f := informers.NewSharedInformerFactory(cs, 0)
	leases := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(v1.NamespaceNodeLease))
	c, err := newNodeLifecycle(m, f, leases)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	leases.Start(ctx.Done())
	defer func() { cancel(); f.Shutdown(); leases.Shutdown() }()
	f.WaitForCacheSync(ctx.Done())
	leases.WaitForCacheSync(ctx.Done())
	if err := cs.WaitWatching(10*time.Second, "nodes", "leases", "pods"); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	now := t0
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	node := func(name string) *v1.Node {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	taints := func(name string) map[string]bool {
		out := map[string]bool{}
		for _, tn := range node(name).Spec.Taints {
			out[tn.Key+":"+string(tn.Effect)] = true
		}
		return out
	}
	monitor := func() {
		t.Helper()
		if err := c.monitor(ctx); err != nil {
			t.Fatal(err)
		}
	}

	monitor() // first sight: a full grace period from now
	advance(15 * time.Second)
	// node1 renews its lease; node2 does not.
	if _, err := cs.CoordinationV1().Leases(v1.NamespaceNodeLease).Update(ctx, lease("node1", t0.Add(15*time.Second)), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "the renewal seen", func() bool {
		l, err := c.leases.Leases(v1.NamespaceNodeLease).Get("node1")
		return err == nil && l.Spec.RenewTime.Time.Equal(t0.Add(15*time.Second))
	})
	monitor()
	advance(10 * time.Second) // node2: 25s without a heartbeat > 20s grace; node1: 10s
	monitor()

	if got := taints("node2"); !got[v1.TaintNodeUnreachable+":NoSchedule"] || !got[v1.TaintNodeUnreachable+":NoExecute"] {
		t.Fatalf("node2 taints %v: want unreachable NoSchedule and NoExecute", got)
	}
	if got := taints("node1"); len(got) != 0 {
		t.Fatalf("node1 (heartbeating) got taints %v", got)
	}
	for _, cond := range node("node2").Status.Conditions {
		if cond.Type == v1.NodeReady && (cond.Status != v1.ConditionUnknown || cond.Reason != "NodeStatusUnknown") {
			t.Errorf("node2 Ready = %s/%s, want Unknown/NodeStatusUnknown", cond.Status, cond.Reason)
		}
	}
	p, _ := cs.CoreV1().Pods("default").Get(ctx, "plain", metav1.GetOptions{})
	if podReady(p) {
		t.Error("a pod on the unreachable node is still Ready")
	}

	// Before the eviction timeout nothing is evicted; after it, plain goes.
	testutil.Poll(t, 5*time.Second, "the taint seen", func() bool {
		n, err := c.nodes.Get("node2")
		return err == nil && len(n.Spec.Taints) == 2
	})
	advance(20 * time.Second)
	monitor()
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "plain", metav1.GetOptions{}); err != nil {
		t.Fatalf("plain evicted 20s after the taint, before the 30s timeout: %v", err)
	}
	advance(11 * time.Second)
	monitor()
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "plain", metav1.GetOptions{}); err == nil {
		t.Fatal("plain not evicted 31s after the taint")
	}
	for _, name := range []string{"tolerant", "healthy"} {
		if _, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s was evicted: %v", name, err)
		}
	}

	// node2 comes back: the taints go.
	if _, err := cs.CoordinationV1().Leases(v1.NamespaceNodeLease).Update(ctx, lease("node2", now), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n2 := node("node2")
	for i := range n2.Status.Conditions {
		n2.Status.Conditions[i].Status = v1.ConditionTrue
		n2.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(now)
	}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "node2's heartbeat seen", func() bool {
		n, err := c.nodes.Get("node2")
		return err == nil && nodeReady(n)
	})
	monitor()
	if got := taints("node2"); len(got) != 0 {
		t.Errorf("node2 is back but keeps taints %v", got)
	}
}

func nodeReady(n *v1.Node) bool {
	c := nodeCondition(n, v1.NodeReady)
	return c != nil && c.Status == v1.ConditionTrue
}

func TestGarbageCollector(t *testing.T) {
	podsR := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	rsR := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	ref := func(name string) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name, UID: types.UID("uid-" + name), Controller: new(true)}
	}
	pod := func(name string, owners ...metav1.OwnerReference) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), OwnerReferences: owners}}
	}
	deleting := func(rs runtime.Object, finalizer string) runtime.Object {
		r := rs.(interface{ SetDeletionTimestamp(*metav1.Time) })
		r.SetDeletionTimestamp(&metav1.Time{Time: time.Now()})
		rs.(interface{ SetFinalizers([]string) }).SetFinalizers([]string{finalizer})
		return rs
	}
	objs := []runtime.Object{
		replicaSet("alive", 1),
		deleting(replicaSet("orphaning", 1), metav1.FinalizerOrphanDependents),
		deleting(replicaSet("foreground", 1), metav1.FinalizerDeleteDependents),
		pod("of-alive", ref("alive")),
		pod("of-gone", ref("gone")),
		pod("of-both", ref("alive"), ref("gone")),
		pod("of-orphaning", ref("orphaning")),
		pod("of-foreground", ref("foreground")),
		pod("unowned"),
	}
	// The dynamic fake's watches pass objects on as stored: store them
	// unstructured, as a real server's would arrive.
	for i, o := range objs {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		if _, ok := o.(*v1.Pod); ok {
			u.SetAPIVersion("v1")
			u.SetKind("Pod")
		} else {
			u.SetAPIVersion("apps/v1")
			u.SetKind("ReplicaSet")
		}
		objs[i] = u
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{podsR: "PodList", rsR: "ReplicaSetList"}, objs...)
	o := Options{}
	o.defaults()
	m := &manager{dyn: dyn, o: o, log: slog.New(slog.DiscardHandler)}
	gc, err := newGarbageCollector(m, []GCResource{{Resource: podsR, Kind: "Pod", Namespaced: true}, {Resource: rsR, Kind: "ReplicaSet", Namespaced: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	gc.start(ctx)
	if !gc.synced(ctx) {
		t.Fatal("not synced")
	}
	wg.Go(func() { gc.loop.run(ctx, 2) })

	get := func(r schema.GroupVersionResource, name string) (metav1.Object, bool) {
		u, err := dyn.Resource(r).Namespace("default").Get(ctx, name, metav1.GetOptions{})
		return u, err == nil
	}
	testutil.Poll(t, 10*time.Second, "the pod of a gone owner deleted", func() bool { _, ok := get(podsR, "of-gone"); return !ok })
	testutil.Poll(t, 10*time.Second, "the dangling owner dropped from of-both", func() bool {
		p, ok := get(podsR, "of-both")
		return ok && len(p.GetOwnerReferences()) == 1 && p.GetOwnerReferences()[0].Name == "alive"
	})
	testutil.Poll(t, 10*time.Second, "of-orphaning orphaned and the finalizer removed", func() bool {
		p, ok := get(podsR, "of-orphaning")
		rs, _ := get(rsR, "orphaning")
		return ok && len(p.GetOwnerReferences()) == 0 && rs != nil && len(rs.GetFinalizers()) == 0
	})
	testutil.Poll(t, 10*time.Second, "of-foreground deleted, then the finalizer removed", func() bool {
		_, ok := get(podsR, "of-foreground")
		rs, _ := get(rsR, "foreground")
		return !ok && rs != nil && len(rs.GetFinalizers()) == 0
	})
	for _, name := range []string{"of-alive", "unowned"} {
		if _, ok := get(podsR, name); !ok {
			t.Errorf("%s was deleted", name)
		}
	}
}
