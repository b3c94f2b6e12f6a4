package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

const podsByNode = "spec.nodeName"

// nodeLifecycle watches node heartbeats. A node whose Lease (in
// kube-node-lease) and Ready heartbeat have not moved for the grace period
// has its conditions set to Unknown and gets the node.kubernetes.io/
// unreachable taint; a node that reports Ready=False gets
// node.kubernetes.io/not-ready. Both taints come as NoSchedule (the
// scheduler avoids the node) and NoExecute: once a pod's toleration period
// has passed since the taint was added (the pod's tolerationSeconds for it,
// or the eviction timeout when it has none) the pod is deleted, so its
// ReplicaSet makes a new one elsewhere. Pods bound to nodes that no longer
// exist are deleted at once.
type nodeLifecycle struct {
	cs       kubernetes.Interface
	nodes    corelisters.NodeLister
	leases   coordlisters.LeaseLister
	pods     cache.Indexer
	recorder record.EventRecorder
	log      *slog.Logger

	grace, evictAfter, period time.Duration
	now                       func() time.Time

	mu   sync.Mutex
	seen map[string]*heartbeat
}

// heartbeat is what was last seen of a node's liveness, and when (by this
// controller's clock, so the nodes' clocks do not matter).
type heartbeat struct {
	lease, ready time.Time
	probe        time.Time
}

func newNodeLifecycle(m *manager, f, leases informers.SharedInformerFactory) (*nodeLifecycle, error) {
	podInformer := f.Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*v1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("index pods by node: %w", err)
	}
	f.Core().V1().Nodes().Informer()
	return &nodeLifecycle{
		cs:         m.cs,
		nodes:      f.Core().V1().Nodes().Lister(),
		leases:     leases.Coordination().V1().Leases().Lister(),
		pods:       podInformer.GetIndexer(),
		recorder:   m.recorder("node-controller"),
		log:        m.log.With("controller", "nodelifecycle"),
		grace:      m.o.NodeMonitorGracePeriod,
		evictAfter: m.o.PodEvictionTimeout,
		period:     m.o.NodeMonitorPeriod,
		now:        time.Now,
		seen:       map[string]*heartbeat{},
	}, nil
}

func (c *nodeLifecycle) run(ctx context.Context) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.monitor(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("monitor nodes", "err", err)
		}
	}, c.period)
}

// monitor checks every node once.
func (c *nodeLifecycle) monitor(ctx context.Context) error {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	names := map[string]bool{}
	for _, n := range nodes {
		names[n.Name] = true
		if err := c.check(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	for name := range c.seen {
		if !names[name] {
			delete(c.seen, name)
		}
	}
	c.mu.Unlock()
	if err := c.deleteOrphanPods(ctx, names); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

// observe records the node's latest Lease renewal and Ready heartbeat and
// returns when either last moved.
func (c *nodeLifecycle) observe(n *v1.Node) time.Time {
	var lease, ready time.Time
	if l, err := c.leases.Leases(v1.NamespaceNodeLease).Get(n.Name); err == nil {
		lease = leaseRenew(l)
	}
	if rc := nodeCondition(n, v1.NodeReady); rc != nil {
		ready = rc.LastHeartbeatTime.Time
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	h, ok := c.seen[n.Name]
	if !ok {
		// First sight (or a restart of this controller): the node gets a
		// full grace period from now.
		c.seen[n.Name] = &heartbeat{lease: lease, ready: ready, probe: now}
		return now
	}
	if !lease.Equal(h.lease) || !ready.Equal(h.ready) {
		h.lease, h.ready, h.probe = lease, ready, now
	}
	return h.probe
}

func leaseRenew(l *coordinationv1.Lease) time.Time {
	if l.Spec.RenewTime != nil {
		return l.Spec.RenewTime.Time
	}
	return time.Time{}
}

func nodeCondition(n *v1.Node, t v1.NodeConditionType) *v1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func (c *nodeLifecycle) check(ctx context.Context, n *v1.Node) error {
	probe := c.observe(n)
	ready := nodeCondition(n, v1.NodeReady)
	var taint string
	switch {
	case c.now().Sub(probe) > c.grace:
		taint = v1.TaintNodeUnreachable
		if ready == nil || ready.Status != v1.ConditionUnknown {
			if err := c.markUnknown(ctx, n); err != nil {
				return err
			}
		}
	case ready != nil && ready.Status == v1.ConditionFalse:
		taint = v1.TaintNodeNotReady
	}
	if err := c.setTaint(ctx, n.Name, taint); err != nil {
		return err
	}
	if taint == "" {
		return nil
	}
	return c.evict(ctx, n.Name)
}

// markUnknown sets the node's conditions to Unknown: nobody knows.
func (c *nodeLifecycle) markUnknown(ctx context.Context, n *v1.Node) error {
	upd := n.DeepCopy()
	now := metav1.NewTime(c.now())
	if nodeCondition(upd, v1.NodeReady) == nil {
		upd.Status.Conditions = append(upd.Status.Conditions, v1.NodeCondition{Type: v1.NodeReady})
	}
	for i := range upd.Status.Conditions {
		cond := &upd.Status.Conditions[i]
		if cond.Status == v1.ConditionUnknown {
			continue
		}
		cond.Status = v1.ConditionUnknown
		cond.Reason = "NodeStatusUnknown"
		cond.Message = "Kubelet stopped posting node status."
		cond.LastTransitionTime = now
	}
	if _, err := c.cs.CoreV1().Nodes().UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("mark node %s unknown: %w", n.Name, err)
	}
	c.log.Info("node stopped heartbeating", "node", n.Name, "grace", c.grace)
	c.recorder.Eventf(&v1.ObjectReference{Kind: "Node", Name: n.Name, UID: n.UID}, v1.EventTypeNormal, "NodeNotReady",
		"Node %s status is now: NodeNotReady", n.Name)
	// Its pods are no longer known to serve: take them out of endpoints.
	objs, err := c.pods.ByIndex(podsByNode, n.Name)
	if err != nil {
		return err
	}
	for _, o := range objs {
		p := o.(*v1.Pod)
		rc := podCondition(p, v1.PodReady)
		if rc == nil || rc.Status != v1.ConditionTrue {
			continue
		}
		pu := p.DeepCopy()
		rc = podCondition(pu, v1.PodReady)
		rc.Status, rc.LastTransitionTime, rc.Reason = v1.ConditionFalse, now, "NodeNotReady"
		if _, err := c.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, pu, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			c.log.Warn("mark pod not ready", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
	}
	return nil
}

var lifecycleTaints = []string{v1.TaintNodeUnreachable, v1.TaintNodeNotReady}

// setTaint makes key (or none, when "") the only lifecycle taint on the
// node, with both NoSchedule and NoExecute effects.
func (c *nodeLifecycle) setTaint(ctx context.Context, node, key string) error {
	n, err := c.nodes.Get(node)
	if err != nil {
		return nil
	}
	var want []v1.Taint
	for _, t := range n.Spec.Taints {
		if !slices.Contains(lifecycleTaints, t.Key) || t.Key == key {
			want = append(want, t)
		}
	}
	if key != "" {
		now := metav1.NewTime(c.now())
		for _, eff := range []v1.TaintEffect{v1.TaintEffectNoSchedule, v1.TaintEffectNoExecute} {
			if !slices.ContainsFunc(want, func(t v1.Taint) bool { return t.Key == key && t.Effect == eff }) {
				t := v1.Taint{Key: key, Effect: eff}
				if eff == v1.TaintEffectNoExecute {
					t.TimeAdded = &now
				}
				want = append(want, t)
			}
		}
	}
	if slices.EqualFunc(want, n.Spec.Taints, func(a, b v1.Taint) bool { return a.MatchTaint(&b) }) {
		return nil
	}
	// A patch of the taints alone, guarded by the resourceVersion: the
	// cached node's status may be older than the agent's last report.
	if want == nil {
		want = []v1.Taint{}
	}
	meta := map[string]any{}
	if n.ResourceVersion != "" {
		meta["resourceVersion"] = n.ResourceVersion
	}
	patch, err := json.Marshal(map[string]any{"metadata": meta, "spec": map[string]any{"taints": want}})
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("set taints of node %s: %w", node, err)
	}
	if key != "" {
		c.log.Info("tainted node", "node", node, "taint", key)
	} else {
		c.log.Info("node healthy again: removed taints", "node", node)
		c.recorder.Eventf(&v1.ObjectReference{Kind: "Node", Name: node, UID: n.UID}, v1.EventTypeNormal, "NodeReady",
			"Node %s status is now: NodeReady", node)
	}
	return nil
}

// evict deletes the node's pods whose toleration of its NoExecute taint
// has run out.
func (c *nodeLifecycle) evict(ctx context.Context, node string) error {
	n, err := c.nodes.Get(node)
	if err != nil {
		return nil
	}
	objs, err := c.pods.ByIndex(podsByNode, node)
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range objs {
		p := o.(*v1.Pod)
		if p.DeletionTimestamp != nil || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		due, ok := evictionDue(p, n.Spec.Taints, c.evictAfter)
		if !ok || c.now().Before(due) {
			continue
		}
		err := c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("evict pod %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		c.log.Info("evicted pod", "pod", p.Namespace+"/"+p.Name, "node", node)
		c.recorder.Eventf(p, v1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", p.Namespace, p.Name)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

// evictionDue is when a pod must leave a node with these taints: the
// earliest, over the untolerated-forever NoExecute taints, of the time the
// taint was added plus how long the pod tolerates it (its smallest
// tolerationSeconds for the taint, or def when it has no toleration for
// it). ok is false when the pod tolerates every NoExecute taint forever.
func evictionDue(p *v1.Pod, taints []v1.Taint, def time.Duration) (due time.Time, ok bool) {
	for i := range taints {
		t := &taints[i]
		if t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		after, forever := def, false
		matched := false
		for j := range p.Spec.Tolerations {
			tol := &p.Spec.Tolerations[j]
			if !tol.ToleratesTaint(klog.Background(), t, true) {
				continue
			}
			if tol.TolerationSeconds == nil {
				forever = true
				break
			}
			s := time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second
			if !matched || s < after {
				after = s
			}
			matched = true
		}
		if forever {
			continue
		}
		added := time.Time{}
		if t.TimeAdded != nil {
			added = t.TimeAdded.Time
		}
		if d := added.Add(after); !ok || d.Before(due) {
			due, ok = d, true
		}
	}
	return due, ok
}

// deleteOrphanPods deletes, at once, pods bound to nodes that are gone:
// no agent is left to stop them gracefully.
func (c *nodeLifecycle) deleteOrphanPods(ctx context.Context, nodes map[string]bool) error {
	var errs []error
	for _, node := range c.pods.ListIndexFuncValues(podsByNode) {
		if nodes[node] {
			continue
		}
		objs, err := c.pods.ByIndex(podsByNode, node)
		if err != nil {
			return err
		}
		for _, o := range objs {
			p := o.(*v1.Pod)
			// The node informer may be behind a pod bound to a new node.
			if c.now().Sub(p.CreationTimestamp.Time) < c.grace {
				continue
			}
			if _, err := c.cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				continue
			}
			err := c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
				GracePeriodSeconds: new(int64(0)), Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete pod %s/%s of deleted node %s: %w", p.Namespace, p.Name, node, err))
				continue
			}
			c.log.Info("deleted pod of a deleted node", "pod", p.Namespace+"/"+p.Name, "node", node)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}
