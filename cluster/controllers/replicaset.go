package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

var replicaSetKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// burstReplicas caps the pods one sync creates or deletes.
const burstReplicas = 500

// replicaSets keeps each ReplicaSet's pod count at spec.replicas: it
// creates pods from the template (owned by the ReplicaSet), deletes the
// cheapest extra ones, adopts matching orphans, releases pods that stopped
// matching, and reports replicas, ready and available counts in status.
type replicaSets struct {
	cs       kubernetes.Interface
	rsLister appslisters.ReplicaSetLister
	pods     corelisters.PodLister
	recorder record.EventRecorder
	exp      *expectations
	loop     *loop
}

func newReplicaSets(m *manager, f informers.SharedInformerFactory) (*replicaSets, error) {
	c := &replicaSets{
		cs:       m.cs,
		rsLister: f.Apps().V1().ReplicaSets().Lister(),
		pods:     f.Core().V1().Pods().Lister(),
		recorder: m.recorder("replicaset-controller"),
		exp:      newExpectations(),
	}
	c.loop = newLoop("replicaset", m.log, c.sync)
	if _, err := f.Apps().V1().ReplicaSets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.enqueue,
		UpdateFunc: func(_, obj any) { c.loop.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.exp.forget(key)
				c.loop.queue.Add(key)
			}
		},
	}); err != nil {
		return nil, err
	}
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			p := obj.(*v1.Pod)
			if key := c.ownerKey(p); key != "" {
				c.exp.observed(key, p.DeletionTimestamp == nil)
				c.loop.queue.Add(key)
				return
			}
			c.enqueueMatching(p)
		},
		UpdateFunc: func(oldObj, obj any) {
			old, p := oldObj.(*v1.Pod), obj.(*v1.Pod)
			if old.ResourceVersion == p.ResourceVersion && old.ResourceVersion != "" {
				return // a resync
			}
			oldKey, key := c.ownerKey(old), c.ownerKey(p)
			if p.DeletionTimestamp != nil && old.DeletionTimestamp == nil && key != "" {
				c.exp.observed(key, false)
			}
			if oldKey != "" && oldKey != key {
				c.loop.queue.Add(oldKey)
			}
			if key != "" {
				c.loop.queue.Add(key)
				if rs, err := c.lister(key); err == nil && rs.Spec.MinReadySeconds > 0 && !podReady(old) && podReady(p) {
					c.loop.enqueueAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
				}
				return
			}
			if !labels.Equals(old.Labels, p.Labels) || oldKey != "" {
				c.enqueueMatching(p)
			}
		},
		DeleteFunc: func(obj any) {
			p, ok := deleted(obj).(*v1.Pod)
			if !ok {
				return
			}
			if key := c.ownerKey(p); key != "" {
				if p.DeletionTimestamp == nil {
					c.exp.observed(key, false)
				}
				c.loop.queue.Add(key)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *replicaSets) lister(key string) (*appsv1.ReplicaSet, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, err
	}
	return c.rsLister.ReplicaSets(ns).Get(name)
}

// ownerKey is the key of the ReplicaSet controlling p, if any.
func (c *replicaSets) ownerKey(p *v1.Pod) string {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != replicaSetKind.Kind || ref.APIVersion != replicaSetKind.GroupVersion().String() {
		return ""
	}
	rs, err := c.rsLister.ReplicaSets(p.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return ""
	}
	return p.Namespace + "/" + ref.Name
}

// enqueueMatching queues the ReplicaSets whose selector matches an orphan.
func (c *replicaSets) enqueueMatching(p *v1.Pod) {
	list, err := c.rsLister.ReplicaSets(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, rs := range list {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		c.loop.queue.Add(rs.Namespace + "/" + rs.Name)
	}
}

func (c *replicaSets) sync(ctx context.Context, key string) error {
	rs, err := c.lister(key)
	if apierrors.IsNotFound(err) {
		c.exp.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		c.recorder.Eventf(rs, v1.EventTypeWarning, "InvalidSelector", "selector %v selects nothing or everything", rs.Spec.Selector)
		return nil
	}
	all, err := c.pods.Pods(rs.Namespace).List(labels.Everything())
	if err != nil {
		return err
	}
	var candidates []*v1.Pod
	for _, p := range all {
		if activePod(p) {
			candidates = append(candidates, p)
		}
	}
	cl := &claimer{
		owner: rs, kind: replicaSetKind, selector: sel,
		fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.cs.AppsV1().ReplicaSets(rs.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
		},
		patch: func(ctx context.Context, name string, patch []byte) error {
			_, err := c.cs.CoreV1().Pods(rs.Namespace).Patch(ctx, name, mergePatch, patch, metav1.PatchOptions{})
			return err
		},
	}
	pods, claimErr := claim(ctx, cl, candidates)

	var manageErr error
	if c.exp.satisfied(key) && rs.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, rs, pods)
	}
	if err := c.updateStatus(ctx, rs, pods, sel, manageErr); err != nil {
		return err
	}
	if manageErr != nil {
		return manageErr
	}
	return claimErr
}

// manage creates or deletes pods to reach spec.replicas.
func (c *replicaSets) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, pods []*v1.Pod) error {
	want := int(ptrOr(rs.Spec.Replicas, 1))
	diff := len(pods) - want
	switch {
	case diff < 0:
		n := min(-diff, burstReplicas)
		c.exp.expect(key, n, 0)
		ref := controllerRef(rs, replicaSetKind)
		created, err := slowStart(n, func() error {
			pod := podFromTemplate(&rs.Spec.Template, rs.Namespace, rs.Name+"-", ref)
			p, err := c.cs.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
			if err != nil {
				c.exp.observed(key, true)
				if apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
					return nil
				}
				c.recorder.Eventf(rs, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
				return err
			}
			c.recorder.Eventf(rs, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", p.Name)
			return nil
		})
		for range n - created {
			c.exp.observed(key, true) // never attempted
		}
		if err != nil {
			return fmt.Errorf("create pods for replicaset %s: %w", key, err)
		}
	case diff > 0:
		n := min(diff, burstReplicas)
		victims := slices.Clone(pods)
		slices.SortFunc(victims, func(a, b *v1.Pod) int {
			if deleteFirst(a, b) {
				return -1
			}
			return 1
		})
		victims = victims[:n]
		c.exp.expect(key, 0, n)
		var mu sync.Mutex
		var errs []error
		var wg sync.WaitGroup
		for _, p := range victims {
			wg.Go(func() {
				err := c.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
				if err != nil {
					c.exp.observed(key, false)
					if apierrors.IsNotFound(err) {
						return
					}
					c.recorder.Eventf(rs, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				c.recorder.Eventf(rs, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			return fmt.Errorf("delete pods of replicaset %s: %v", key, errs)
		}
	}
	return nil
}

// slowStart calls fn count times in batches of 1, 2, 4 … running each
// batch in parallel and stopping after a batch with a failure, so a
// template the API rejects costs one call, not hundreds. It returns how
// many calls were made.
func slowStart(count int, fn func() error) (int, error) {
	done := 0
	for batch := 1; done < count; batch *= 2 {
		batch = min(batch, count-done)
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Go(func() { errs <- fn() })
		}
		wg.Wait()
		close(errs)
		done += batch
		for err := range errs {
			if err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

func (c *replicaSets) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, pods []*v1.Pod, sel labels.Selector, manageErr error) error {
	now := time.Now()
	st := appsv1.ReplicaSetStatus{ObservedGeneration: rs.Generation, Conditions: rs.Status.Conditions}
	templateLabels := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	nextAvailable := time.Duration(0)
	for _, p := range pods {
		st.Replicas++
		if templateLabels.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if podReady(p) {
			st.ReadyReplicas++
			if podAvailable(p, rs.Spec.MinReadySeconds, now) {
				st.AvailableReplicas++
			} else if c := podCondition(p, v1.PodReady); c != nil {
				wait := c.LastTransitionTime.Add(time.Duration(rs.Spec.MinReadySeconds) * time.Second).Sub(now)
				if nextAvailable == 0 || wait < nextAvailable {
					nextAvailable = wait
				}
			}
		}
	}
	st.Conditions = setReplicaFailure(st.Conditions, manageErr)
	if nextAvailable > 0 {
		c.loop.enqueueAfter(rs.Namespace+"/"+rs.Name, nextAvailable+100*time.Millisecond)
	}
	if replicaSetStatusEqual(rs.Status, st) {
		return nil
	}
	upd := rs.DeepCopy()
	upd.Status = st
	if _, err := c.cs.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update status of replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	return nil
}

func replicaSetStatusEqual(a, b appsv1.ReplicaSetStatus) bool {
	return a.Replicas == b.Replicas && a.FullyLabeledReplicas == b.FullyLabeledReplicas &&
		a.ReadyReplicas == b.ReadyReplicas && a.AvailableReplicas == b.AvailableReplicas &&
		a.ObservedGeneration == b.ObservedGeneration && slices.EqualFunc(a.Conditions, b.Conditions, func(x, y appsv1.ReplicaSetCondition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message
	})
}

// setReplicaFailure sets or clears the ReplicaFailure condition.
func setReplicaFailure(conds []appsv1.ReplicaSetCondition, err error) []appsv1.ReplicaSetCondition {
	conds = slices.DeleteFunc(slices.Clone(conds), func(c appsv1.ReplicaSetCondition) bool {
		return c.Type == appsv1.ReplicaSetReplicaFailure && err == nil
	})
	if err == nil {
		return conds
	}
	msg := err.Error()
	for i := range conds {
		if conds[i].Type == appsv1.ReplicaSetReplicaFailure {
			if conds[i].Message != msg {
				conds[i].Message = msg
				conds[i].LastTransitionTime = metav1.Now()
			}
			return conds
		}
	}
	return append(conds, appsv1.ReplicaSetCondition{
		Type: appsv1.ReplicaSetReplicaFailure, Status: v1.ConditionTrue, Reason: "FailedCreate",
		Message: msg, LastTransitionTime: metav1.Now(),
	})
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
