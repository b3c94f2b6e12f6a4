package controllers

import (
	"context"
	"fmt"
	"slices"
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

var deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Condition reasons of a Deployment, as upstream words them.
const (
	reasonNewRSCreated       = "NewReplicaSetCreated"
	reasonFoundNewRS         = "FoundNewReplicaSet"
	reasonRSUpdated          = "ReplicaSetUpdated"
	reasonNewRSAvailable     = "NewReplicaSetAvailable"
	reasonDeadlineExceeded   = "ProgressDeadlineExceeded"
	reasonMinimumAvailable   = "MinimumReplicasAvailable"
	reasonMinimumUnavailable = "MinimumReplicasUnavailable"
	reasonPaused             = "DeploymentPaused"
)

// deployments rolls Deployments out through ReplicaSets: one per pod
// template, named <deployment>-<template hash>, numbered by the revision
// annotation. RollingUpdate grows the new ReplicaSet and shrinks the old
// ones within maxSurge and maxUnavailable, counting only available pods;
// Recreate scales the old ones to zero and waits for their pods to be gone
// before starting the new one. Old ReplicaSets beyond revisionHistoryLimit
// are deleted. Status carries the counts and the Available and
// Progressing conditions.
type deployments struct {
	cs       kubernetes.Interface
	dLister  appslisters.DeploymentLister
	rsLister appslisters.ReplicaSetLister
	pods     corelisters.PodLister
	recorder record.EventRecorder
	loop     *loop
}

func newDeployments(m *manager, f informers.SharedInformerFactory) (*deployments, error) {
	c := &deployments{
		cs:       m.cs,
		dLister:  f.Apps().V1().Deployments().Lister(),
		rsLister: f.Apps().V1().ReplicaSets().Lister(),
		pods:     f.Core().V1().Pods().Lister(),
		recorder: m.recorder("deployment-controller"),
	}
	c.loop = newLoop("deployment", m.log, c.sync)
	if _, err := f.Apps().V1().Deployments().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.enqueue,
		UpdateFunc: func(_, obj any) { c.loop.enqueue(obj) },
		DeleteFunc: c.loop.enqueue,
	}); err != nil {
		return nil, err
	}
	rsChanged := func(obj any) {
		rs, ok := deleted(obj).(*appsv1.ReplicaSet)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(rs); ref != nil {
			if ref.Kind == deploymentKind.Kind {
				c.loop.queue.Add(rs.Namespace + "/" + ref.Name)
			}
			return
		}
		c.enqueueMatching(rs)
	}
	if _, err := f.Apps().V1().ReplicaSets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: rsChanged,
		UpdateFunc: func(oldObj, obj any) {
			if old := oldObj.(*appsv1.ReplicaSet); metav1.GetControllerOf(old) != nil && metav1.GetControllerOf(obj.(*appsv1.ReplicaSet)) == nil {
				rsChanged(old) // released: the old owner must notice
			}
			rsChanged(obj)
		},
		DeleteFunc: rsChanged,
	}); err != nil {
		return nil, err
	}
	// Recreate waits for the old pods to be gone.
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			p, ok := deleted(obj).(*v1.Pod)
			if !ok {
				return
			}
			ref := metav1.GetControllerOf(p)
			if ref == nil || ref.Kind != replicaSetKind.Kind {
				return
			}
			rs, err := c.rsLister.ReplicaSets(p.Namespace).Get(ref.Name)
			if err != nil {
				return
			}
			if dref := metav1.GetControllerOf(rs); dref != nil && dref.Kind == deploymentKind.Kind {
				c.loop.queue.Add(p.Namespace + "/" + dref.Name)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *deployments) enqueueMatching(rs *appsv1.ReplicaSet) {
	list, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range list {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.loop.queue.Add(d.Namespace + "/" + d.Name)
		}
	}
}

func (c *deployments) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	d, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return nil // the garbage collector removes its ReplicaSets
	}
	d = d.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		c.recorder.Eventf(d, v1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		return nil
	}
	list, err := c.rsLister.ReplicaSets(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	cl := &claimer{
		owner: d, kind: deploymentKind, selector: sel,
		fresh: func(ctx context.Context) (metav1.Object, error) {
			return c.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		},
		patch: func(ctx context.Context, rsName string, patch []byte) error {
			_, err := c.cs.AppsV1().ReplicaSets(ns).Patch(ctx, rsName, mergePatch, patch, metav1.PatchOptions{})
			return err
		},
	}
	rsList, err := claim(ctx, cl, list)
	if err != nil {
		return err
	}
	r := &rollout{c: c, d: d, all: byAge(rsList)}
	for _, rs := range r.all {
		if equalIgnoreHash(&rs.Spec.Template, &d.Spec.Template) && r.newRS == nil {
			r.newRS = rs.DeepCopy()
		} else {
			r.old = append(r.old, rs.DeepCopy())
		}
	}
	if d.Spec.Paused {
		return r.syncStatus(ctx, false)
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return r.recreate(ctx)
	}
	return r.rolling(ctx)
}

// rollout is one sync of one Deployment.
type rollout struct {
	c     *deployments
	d     *appsv1.Deployment
	all   []*appsv1.ReplicaSet // as claimed, oldest first
	newRS *appsv1.ReplicaSet   // matches the template; nil until created
	old   []*appsv1.ReplicaSet
	// created: the new ReplicaSet was created in this sync.
	created bool
}

func (r *rollout) allRS() []*appsv1.ReplicaSet {
	if r.newRS == nil {
		return r.old
	}
	return append(slices.Clone(r.old), r.newRS)
}

func (r *rollout) replicas() int32 { return ptrOr(r.d.Spec.Replicas, 1) }

// ensureNewRS makes the ReplicaSet for the current template exist (when
// create) and carry the highest revision, and gives the Deployment the
// same revision annotation.
func (r *rollout) ensureNewRS(ctx context.Context, create bool, replicas int32) error {
	rev := maxRevision(r.old) + 1
	d := r.d
	if r.newRS != nil {
		if revision(r.newRS) < rev || !annotationsCopied(d, r.newRS) {
			upd := r.newRS.DeepCopy()
			upd.Annotations = rsAnnotations(d, max(rev, revision(r.newRS)), upd.Annotations)
			got, err := r.c.cs.AppsV1().ReplicaSets(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
			if err != nil {
				return fmt.Errorf("set revision of replicaset %s/%s: %w", upd.Namespace, upd.Name, err)
			}
			r.newRS = got
		}
		return r.setDeploymentRevision(ctx)
	}
	if !create {
		return nil
	}
	hash := templateHash(&d.Spec.Template, d.Status.CollisionCount)
	tmpl := d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:            d.Name + "-" + hash,
			Namespace:       d.Namespace,
			Labels:          tmpl.Labels,
			Annotations:     rsAnnotations(d, rev, nil),
			OwnerReferences: []metav1.OwnerReference{*controllerRef(d, deploymentKind)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        &replicas,
			MinReadySeconds: d.Spec.MinReadySeconds,
			Selector:        sel,
			Template:        *tmpl,
		},
	}
	got, err := r.c.cs.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		existing, gerr := r.c.cs.AppsV1().ReplicaSets(d.Namespace).Get(ctx, rs.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("get replicaset %s/%s: %w", d.Namespace, rs.Name, gerr)
		}
		if ref := metav1.GetControllerOf(existing); ref != nil && ref.UID == d.UID && equalIgnoreHash(&existing.Spec.Template, &d.Spec.Template) {
			r.newRS = existing // our informer was behind
			return nil
		}
		// Another template holds the name: hash again with a new count.
		upd := d.DeepCopy()
		upd.Status.CollisionCount = new(ptrOr(d.Status.CollisionCount, 0) + 1)
		if _, uerr := r.c.cs.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); uerr != nil {
			return fmt.Errorf("record hash collision of deployment %s/%s: %w", d.Namespace, d.Name, uerr)
		}
		return fmt.Errorf("replicaset name %s is taken by another template: retrying with collision count %d", rs.Name, *upd.Status.CollisionCount)
	}
	if err != nil {
		r.setProgressing(v1.ConditionFalse, "ReplicaSetCreateError", fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err))
		if serr := r.updateStatus(ctx); serr != nil {
			return serr
		}
		return fmt.Errorf("create replicaset %s/%s: %w", d.Namespace, rs.Name, err)
	}
	r.newRS, r.created = got, true
	if replicas > 0 {
		r.c.recorder.Eventf(d, v1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", got.Name, replicas)
	}
	r.setProgressing(v1.ConditionTrue, reasonNewRSCreated, fmt.Sprintf("Created new replica set %q", got.Name))
	return r.setDeploymentRevision(ctx)
}

func annotationsCopied(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	for k, v := range d.Annotations {
		if k != RevisionAnnotation && k != lastAppliedAnnotation && rs.Annotations[k] != v {
			return false
		}
	}
	return true
}

func (r *rollout) setDeploymentRevision(ctx context.Context) error {
	want := r.newRS.Annotations[RevisionAnnotation]
	if r.d.Annotations[RevisionAnnotation] == want {
		return nil
	}
	upd := r.d.DeepCopy()
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[RevisionAnnotation] = want
	got, err := r.c.cs.AppsV1().Deployments(upd.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("set revision of deployment %s/%s: %w", upd.Namespace, upd.Name, err)
	}
	got.Status = r.d.Status // keep the conditions this sync is building
	r.d = got
	return nil
}

// scale sets a ReplicaSet's replicas; it reports whether it changed.
func (r *rollout) scale(ctx context.Context, rs *appsv1.ReplicaSet, to int32) (bool, error) {
	from := ptrOr(rs.Spec.Replicas, 0)
	if from == to {
		return false, nil
	}
	upd := rs.DeepCopy()
	upd.Spec.Replicas = &to
	got, err := r.c.cs.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return false, fmt.Errorf("scale replicaset %s/%s to %d: %w", rs.Namespace, rs.Name, to, err)
	}
	*rs = *got
	dir := "up"
	if to < from {
		dir = "down"
	}
	r.c.recorder.Eventf(r.d, v1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, from, to)
	return true, nil
}

// rolling is one step of a RollingUpdate.
func (r *rollout) rolling(ctx context.Context) error {
	if err := r.ensureNewRS(ctx, true, r.initialReplicas()); err != nil {
		return err
	}
	replicas := r.replicas()
	// Grow (or shrink, after a scale down) the new ReplicaSet.
	if cur := ptrOr(r.newRS.Spec.Replicas, 0); cur != replicas && !r.created {
		to := replicas
		if cur < replicas {
			to = newReplicasRolling(r.d, r.allRS(), r.newRS)
		}
		changed, err := r.scale(ctx, r.newRS, to)
		if err != nil {
			return err
		}
		if changed {
			return r.syncStatus(ctx, false)
		}
	}
	changed, err := r.shrinkOld(ctx)
	if err != nil {
		return err
	}
	if changed {
		return r.syncStatus(ctx, false)
	}
	complete := r.complete()
	if complete {
		if err := r.cleanup(ctx); err != nil {
			return err
		}
	}
	return r.syncStatus(ctx, complete)
}

// initialReplicas is the size of a new ReplicaSet when it is created.
func (r *rollout) initialReplicas() int32 {
	probe := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: new(int32(0))}}
	return newReplicasRolling(r.d, append(slices.Clone(r.old), probe), probe)
}

// shrinkOld scales old ReplicaSets down as far as maxUnavailable allows:
// first their pods that are not available anyway, then available ones
// while enough of all pods stay available.
func (r *rollout) shrinkOld(ctx context.Context) (bool, error) {
	if specReplicas(r.old) == 0 {
		return false, nil
	}
	_, maxUnavailable := fenceposts(r.d)
	minAvailable := r.replicas() - maxUnavailable
	newUnavailable := ptrOr(r.newRS.Spec.Replicas, 0) - r.newRS.Status.AvailableReplicas
	budget := specReplicas(r.allRS()) - minAvailable - newUnavailable
	if budget <= 0 {
		return false, nil
	}
	changed := false
	old := byAge(r.old)
	// Unhealthy pods of old ReplicaSets cost no availability.
	for _, rs := range old {
		if budget <= 0 {
			break
		}
		spec := ptrOr(rs.Spec.Replicas, 0)
		unhealthy := spec - rs.Status.AvailableReplicas
		if spec == 0 || unhealthy <= 0 {
			continue
		}
		n := min(budget, unhealthy)
		ok, err := r.scale(ctx, rs, spec-n)
		if err != nil {
			return changed, err
		}
		changed = changed || ok
		budget -= n
	}
	// Then available ones, keeping minAvailable available in all.
	available := sumStatus(r.allRS(), func(s appsv1.ReplicaSetStatus) int32 { return s.AvailableReplicas })
	if available <= minAvailable {
		return changed, nil
	}
	budget = min(budget, available-minAvailable)
	for _, rs := range old {
		if budget <= 0 {
			break
		}
		spec := ptrOr(rs.Spec.Replicas, 0)
		if spec == 0 {
			continue
		}
		n := min(budget, spec)
		ok, err := r.scale(ctx, rs, spec-n)
		if err != nil {
			return changed, err
		}
		changed = changed || ok
		budget -= n
	}
	return changed, nil
}

// recreate is one step of a Recreate rollout.
func (r *rollout) recreate(ctx context.Context) error {
	if err := r.ensureNewRS(ctx, false, 0); err != nil {
		return err
	}
	changed := false
	for _, rs := range r.old {
		ok, err := r.scale(ctx, rs, 0)
		if err != nil {
			return err
		}
		changed = changed || ok
	}
	if changed {
		return r.syncStatus(ctx, false)
	}
	running, err := r.oldPodsRunning()
	if err != nil {
		return err
	}
	if running {
		return r.syncStatus(ctx, false)
	}
	if r.newRS == nil {
		if err := r.ensureNewRS(ctx, true, r.replicas()); err != nil {
			return err
		}
	} else if _, err := r.scale(ctx, r.newRS, r.replicas()); err != nil {
		return err
	}
	complete := r.complete()
	if complete {
		if err := r.cleanup(ctx); err != nil {
			return err
		}
	}
	return r.syncStatus(ctx, complete)
}

// oldPodsRunning reports whether any pod of an old ReplicaSet is still
// there and not finished (terminating pods count: they may still run).
func (r *rollout) oldPodsRunning() (bool, error) {
	if sumStatus(r.old, func(s appsv1.ReplicaSetStatus) int32 { return s.Replicas }) > 0 {
		return true, nil
	}
	pods, err := r.c.pods.Pods(r.d.Namespace).List(labels.Everything())
	if err != nil {
		return false, err
	}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		for _, rs := range r.old {
			if ref.UID == rs.UID {
				return true, nil
			}
		}
	}
	return false, nil
}

// complete: every replica is updated and available, and no old pod is left.
func (r *rollout) complete() bool {
	n := r.replicas()
	return r.newRS != nil && ptrOr(r.newRS.Spec.Replicas, 0) == n &&
		r.newRS.Status.Replicas == n && r.newRS.Status.AvailableReplicas == n &&
		specReplicas(r.old) == 0 && sumStatus(r.old, func(s appsv1.ReplicaSetStatus) int32 { return s.Replicas }) == 0
}

// cleanup deletes the oldest empty ReplicaSets beyond revisionHistoryLimit.
func (r *rollout) cleanup(ctx context.Context) error {
	limit := int(ptrOr(r.d.Spec.RevisionHistoryLimit, 10))
	var empty []*appsv1.ReplicaSet
	for _, rs := range r.old {
		if ptrOr(rs.Spec.Replicas, 0) == 0 && rs.Status.Replicas == 0 && rs.DeletionTimestamp == nil {
			empty = append(empty, rs)
		}
	}
	if len(empty) <= limit {
		return nil
	}
	slices.SortFunc(empty, func(a, b *appsv1.ReplicaSet) int {
		return int(revision(a) - revision(b))
	})
	for _, rs := range empty[:len(empty)-limit] {
		err := r.c.cs.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
		}
	}
	return nil
}

// syncStatus computes the Deployment's status from its ReplicaSets and
// writes it when it changed.
func (r *rollout) syncStatus(ctx context.Context, complete bool) error {
	d := r.d
	all := r.allRS()
	prev := d.Status
	st := appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           sumStatus(all, func(s appsv1.ReplicaSetStatus) int32 { return s.Replicas }),
		ReadyReplicas:      sumStatus(all, func(s appsv1.ReplicaSetStatus) int32 { return s.ReadyReplicas }),
		AvailableReplicas:  sumStatus(all, func(s appsv1.ReplicaSetStatus) int32 { return s.AvailableReplicas }),
		CollisionCount:     prev.CollisionCount,
		Conditions:         slices.Clone(d.Status.Conditions),
	}
	if r.newRS != nil {
		st.UpdatedReplicas = r.newRS.Status.Replicas
	}
	st.UnavailableReplicas = max(0, specReplicas(all)-st.AvailableReplicas)
	d.Status = st

	_, maxUnavailable := fenceposts(d)
	if st.AvailableReplicas >= r.replicas()-maxUnavailable {
		r.setCondition(appsv1.DeploymentAvailable, v1.ConditionTrue, reasonMinimumAvailable, "Deployment has minimum availability.")
	} else {
		r.setCondition(appsv1.DeploymentAvailable, v1.ConditionFalse, reasonMinimumUnavailable, "Deployment does not have minimum availability.")
	}
	deadline := d.Spec.ProgressDeadlineSeconds
	switch {
	case d.Spec.Paused:
		r.setProgressing(v1.ConditionUnknown, reasonPaused, "Deployment is paused")
	case complete:
		r.setProgressing(v1.ConditionTrue, reasonNewRSAvailable, fmt.Sprintf("ReplicaSet %q has successfully progressed.", r.newRS.Name))
	case r.newRS != nil && progressed(prev, st, r.old):
		if c := r.condition(appsv1.DeploymentProgressing); c == nil || c.Reason != reasonNewRSCreated || !r.created {
			r.setProgressing(v1.ConditionTrue, reasonRSUpdated, fmt.Sprintf("ReplicaSet %q is progressing.", r.newRS.Name))
		}
	case r.newRS != nil && r.condition(appsv1.DeploymentProgressing) == nil:
		r.setProgressing(v1.ConditionTrue, reasonFoundNewRS, fmt.Sprintf("Found new replica set %q", r.newRS.Name))
	}
	if c := r.condition(appsv1.DeploymentProgressing); deadline != nil && c != nil && !complete && !d.Spec.Paused && r.newRS != nil {
		due := c.LastUpdateTime.Add(time.Duration(*deadline) * time.Second)
		if c.Reason != reasonDeadlineExceeded && time.Now().After(due) {
			r.setProgressing(v1.ConditionFalse, reasonDeadlineExceeded, fmt.Sprintf("ReplicaSet %q has timed out progressing.", r.newRS.Name))
		} else if c.Reason != reasonDeadlineExceeded {
			r.c.loop.enqueueAfter(d.Namespace+"/"+d.Name, time.Until(due)+time.Second)
		}
	}
	return r.updateStatus(ctx)
}

// progressed: more pods updated, ready or available, or fewer old ones.
func progressed(prev, cur appsv1.DeploymentStatus, old []*appsv1.ReplicaSet) bool {
	oldNow := sumStatus(old, func(s appsv1.ReplicaSetStatus) int32 { return s.Replicas })
	oldBefore := prev.Replicas - prev.UpdatedReplicas
	return cur.UpdatedReplicas > prev.UpdatedReplicas || cur.ReadyReplicas > prev.ReadyReplicas ||
		cur.AvailableReplicas > prev.AvailableReplicas || oldNow < oldBefore
}

func (r *rollout) condition(t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range r.d.Status.Conditions {
		if r.d.Status.Conditions[i].Type == t {
			return &r.d.Status.Conditions[i]
		}
	}
	return nil
}

func (r *rollout) setProgressing(status v1.ConditionStatus, reason, msg string) {
	r.setCondition(appsv1.DeploymentProgressing, status, reason, msg)
}

// setCondition sets a condition; the transition time moves only when the
// status flips, the update time whenever anything changes.
func (r *rollout) setCondition(t appsv1.DeploymentConditionType, status v1.ConditionStatus, reason, msg string) {
	now := metav1.Now()
	if c := r.condition(t); c != nil {
		if c.Status == status && c.Reason == reason && c.Message == msg {
			if reason == reasonRSUpdated {
				c.LastUpdateTime = now // still progressing: the deadline restarts
			}
			return
		}
		if c.Status != status {
			c.LastTransitionTime = now
		}
		c.Status, c.Reason, c.Message, c.LastUpdateTime = status, reason, msg, now
		return
	}
	r.d.Status.Conditions = append(r.d.Status.Conditions, appsv1.DeploymentCondition{
		Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now,
	})
}

func (r *rollout) updateStatus(ctx context.Context) error {
	cur, err := r.c.dLister.Deployments(r.d.Namespace).Get(r.d.Name)
	if err == nil && deploymentStatusEqual(cur.Status, r.d.Status) {
		return nil
	}
	_, err = r.c.cs.AppsV1().Deployments(r.d.Namespace).UpdateStatus(ctx, r.d, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update status of deployment %s/%s: %w", r.d.Namespace, r.d.Name, err)
	}
	return nil
}

func deploymentStatusEqual(a, b appsv1.DeploymentStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Replicas != b.Replicas || a.UpdatedReplicas != b.UpdatedReplicas ||
		a.ReadyReplicas != b.ReadyReplicas || a.AvailableReplicas != b.AvailableReplicas ||
		a.UnavailableReplicas != b.UnavailableReplicas || ptrOr(a.CollisionCount, 0) != ptrOr(b.CollisionCount, 0) {
		return false
	}
	return slices.EqualFunc(a.Conditions, b.Conditions, func(x, y appsv1.DeploymentCondition) bool {
		return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
			x.LastUpdateTime.Equal(&y.LastUpdateTime)
	})
}
