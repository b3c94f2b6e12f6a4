// Package scheduler is klab's scheduler: it binds pods that have no node
// to one, through the pods/binding subresource of any Kubernetes-compatible
// API server.
//
// Each pending pod is filtered against every node (Ready, unschedulable,
// nodeSelector and required node affinity, NoSchedule/NoExecute taints and
// tolerations, cpu/memory requests against allocatable, at most 110 pods),
// the nodes that pass are scored (least allocated, plus twice the spread of
// the pod's ReplicaSet over nodes) and the best one wins. A pod that fits
// nowhere gets a FailedScheduling event counting the reasons like upstream
// ("0/3 nodes are available: 1 node(s) had untolerated taint {…}, 2
// Insufficient cpu.") and waits with an exponential backoff (1s to 10s), or
// until a node changes or a pod goes away.
//
// Decisions are made one at a time; bindings run in parallel, the pod being
// counted on its node ("assumed") from the decision on, so the next
// decision already sees it.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// DefaultSchedulerName is the schedulerName of pods that name none.
const DefaultSchedulerName = "default-scheduler"

// Options configures a Scheduler. Zero values take the defaults.
type Options struct {
	// SchedulerNames are the spec.schedulerName values this scheduler
	// serves (default: default-scheduler and klab; an empty name counts as
	// default-scheduler).
	SchedulerNames []string
	// MaxPodsPerNode caps pods per node (default 110), below the node's own
	// allocatable pods when that is lower.
	MaxPodsPerNode int64
	// InitialBackoff and MaxBackoff bound the wait before an unschedulable
	// pod is tried again (default 1s and 10s).
	InitialBackoff, MaxBackoff time.Duration
	// BindWorkers is how many bindings may be in flight (default 16).
	BindWorkers int
	// Log receives what the scheduler does (default: discard).
	Log *slog.Logger
}

func (o *Options) defaults() {
	if len(o.SchedulerNames) == 0 {
		o.SchedulerNames = []string{DefaultSchedulerName, "klab"}
	}
	if o.MaxPodsPerNode <= 0 {
		o.MaxPodsPerNode = 110
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.BindWorkers <= 0 {
		o.BindWorkers = 16
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Scheduler binds pending pods to nodes. Create it with New, run it with Run.
type Scheduler struct {
	cs      kubernetes.Interface
	o       Options
	factory informers.SharedInformerFactory
	pods    corelisters.PodLister
	cache   *nodeCache
	queue   workqueue.TypedRateLimitingInterface[string]

	// waiting holds the pods that fit nowhere; a change in the cluster
	// (a node added or changed, a bound pod gone) sends them back to the
	// queue at once instead of after their backoff.
	mu      sync.Mutex
	waiting map[string]struct{}

	synced      []cache.InformerSynced
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	binds       sync.WaitGroup
	bindSlots   chan struct{}
}

// New builds a scheduler on cs; it watches pods and nodes once Run starts.
func New(cs kubernetes.Interface, o Options) (*Scheduler, error) {
	o.defaults()
	s := &Scheduler{
		cs:      cs,
		o:       o,
		factory: informers.NewSharedInformerFactory(cs, 0),
		cache:   newCache(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](o.InitialBackoff, o.MaxBackoff),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"}),
		waiting:   map[string]struct{}{},
		bindSlots: make(chan struct{}, o.BindWorkers),
	}
	podInformer := s.factory.Core().V1().Pods()
	s.pods = podInformer.Lister()
	podReg, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onPod(obj) },
		UpdateFunc: func(_, obj any) { s.onPod(obj) },
		DeleteFunc: s.onPodDelete,
	})
	if err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	nodeReg, err := s.factory.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*v1.Node); ok {
				s.cache.setNode(n)
				s.retryWaiting("node added")
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*v1.Node)
			n, ok2 := obj.(*v1.Node)
			if !ok1 || !ok2 {
				return
			}
			s.cache.setNode(n)
			if schedulingChanged(old, n) {
				s.retryWaiting("node changed")
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*v1.Node); ok {
				s.cache.deleteNode(n.Name)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	s.synced = []cache.InformerSynced{podReg.HasSynced, nodeReg.HasSynced}
	return s, nil
}

// Run schedules until ctx ends. It starts the informers, waits for their
// first listing, then takes pods from the queue one at a time.
func (s *Scheduler) Run(ctx context.Context) error {
	// Not tied to ctx: bindings in flight when ctx ends still report.
	s.broadcaster = record.NewBroadcaster()
	s.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.cs.CoreV1().Events("")})
	s.recorder = s.broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: DefaultSchedulerName})
	defer s.broadcaster.Shutdown()

	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	// Wait until our handlers, not just the informers, have seen the
	// first listing: every node must be in the cache before a decision.
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("scheduler: the pod and node informers did not sync")
	}
	s.o.Log.Info("scheduler started", "names", s.o.SchedulerNames, "maxPodsPerNode", s.o.MaxPodsPerNode)

	go func() {
		<-ctx.Done()
		s.queue.ShutDown()
	}()
	for s.scheduleNext(ctx) {
	}
	s.binds.Wait()
	return nil
}

// ours reports whether this scheduler should place the pod now.
func (s *Scheduler) ours(pod *v1.Pod) bool {
	name := pod.Spec.SchedulerName
	if name == "" {
		name = DefaultSchedulerName
	}
	return pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil &&
		pod.Status.Phase != v1.PodSucceeded && pod.Status.Phase != v1.PodFailed &&
		slices.Contains(s.o.SchedulerNames, name)
}

func (s *Scheduler) onPod(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	key := pod.Namespace + "/" + pod.Name
	s.cache.updatePod(key, pod)
	if !s.ours(pod) || s.cache.isAssumed(key) {
		return
	}
	// A pod waiting for room (its own status update, say) stays with its
	// backoff; a change in the cluster brings it back sooner.
	s.mu.Lock()
	_, waiting := s.waiting[key]
	s.mu.Unlock()
	if !waiting {
		s.queue.Add(key)
	}
}

func (s *Scheduler) onPodDelete(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	key := pod.Namespace + "/" + pod.Name
	s.mu.Lock()
	delete(s.waiting, key)
	s.mu.Unlock()
	if s.cache.removePod(key) {
		s.retryWaiting("pod deleted")
	}
}

// schedulingChanged reports whether a node update can make a waiting pod
// fit: readiness, schedulability, labels, taints or allocatable changed.
// Heartbeats alone do not count.
func schedulingChanged(old, n *v1.Node) bool {
	return nodeReady(old) != nodeReady(n) ||
		old.Spec.Unschedulable != n.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(old.Labels, n.Labels) ||
		!equality.Semantic.DeepEqual(old.Spec.Taints, n.Spec.Taints) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, n.Status.Allocatable)
}

// retryWaiting moves every waiting pod back to the queue.
func (s *Scheduler) retryWaiting(why string) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.waiting))
	for k := range s.waiting {
		keys = append(keys, k)
	}
	clear(s.waiting)
	s.mu.Unlock()
	if len(keys) > 0 {
		s.o.Log.Debug("retrying unschedulable pods", "pods", len(keys), "because", why)
	}
	for _, k := range keys {
		s.queue.Add(k)
	}
}

// scheduleNext decides where one pod goes and starts its binding. It
// returns false when the queue is shut down.
func (s *Scheduler) scheduleNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)

	s.mu.Lock()
	delete(s.waiting, key) // back in play; a failure puts it back
	s.mu.Unlock()
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		s.queue.Forget(key)
		return true
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if err != nil || !s.ours(pod) || s.cache.isAssumed(key) {
		s.queue.Forget(key) // gone, bound, or being bound
		return true
	}
	c := s.cache.decide(pod, s.o.MaxPodsPerNode)
	if c.node == "" {
		s.unschedulable(ctx, key, pod, c.message())
		return true
	}
	s.cache.assume(key, pod, c.node)
	select {
	case s.bindSlots <- struct{}{}:
	case <-ctx.Done():
		s.cache.forget(key)
		return false
	}
	s.binds.Add(1)
	go func() {
		defer s.binds.Done()
		defer func() { <-s.bindSlots }()
		s.bind(ctx, key, pod, c.node)
	}()
	return true
}

// bind posts the binding; on failure the assumption is dropped and the
// pod tried again after a backoff.
func (s *Scheduler) bind(ctx context.Context, key string, pod *v1.Pod, node string) {
	err := s.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err == nil {
		s.queue.Forget(key)
		s.recorder.Eventf(pod, v1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
		s.o.Log.Info("bound pod", "pod", key, "node", node)
		return
	}
	s.cache.forget(key)
	switch {
	case ctx.Err() != nil:
	case apierrors.IsNotFound(err):
		s.queue.Forget(key) // deleted meanwhile
	default:
		s.o.Log.Warn("binding failed", "pod", key, "node", node, "err", err)
		s.recorder.Eventf(pod, v1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
		s.queue.AddRateLimited(key)
	}
}

// unschedulable reports a pod that fits nowhere: an event, the pod's
// PodScheduled condition, and a retry after backoff or a cluster change.
func (s *Scheduler) unschedulable(ctx context.Context, key string, pod *v1.Pod, msg string) {
	s.o.Log.Info("pod unschedulable", "pod", key, "reason", msg)
	s.recorder.Event(pod, v1.EventTypeWarning, "FailedScheduling", msg)
	s.mu.Lock()
	s.waiting[key] = struct{}{}
	s.mu.Unlock()
	s.queue.AddRateLimited(key)

	cond := v1.PodCondition{
		Type:               v1.PodScheduled,
		Status:             v1.ConditionFalse,
		Reason:             v1.PodReasonUnschedulable,
		Message:            msg,
		LastTransitionTime: metav1.Now(),
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == cond.Type && c.Status == cond.Status && c.Reason == cond.Reason && c.Message == cond.Message {
			return
		}
	}
	upd := pod.DeepCopy()
	upd.Status.Conditions = slices.DeleteFunc(upd.Status.Conditions, func(c v1.PodCondition) bool { return c.Type == v1.PodScheduled })
	upd.Status.Conditions = append(upd.Status.Conditions, cond)
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		s.o.Log.Debug("update PodScheduled condition", "pod", key, "err", err)
	}
}
