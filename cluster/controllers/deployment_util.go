package controllers

import (
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
)

// Annotations the deployment controller reads and writes.
const (
	// RevisionAnnotation numbers a Deployment's ReplicaSets 1, 2, 3 … in the
	// order they became the Deployment's current one; `klab rollout
	// history` lists them and `klab rollout undo` goes back to one.
	RevisionAnnotation = "deployment.kubernetes.io/revision"
	// ChangeCauseAnnotation, set on a Deployment, is copied to its new
	// ReplicaSet and shown by `klab rollout history`.
	ChangeCauseAnnotation = "kubernetes.io/change-cause"
	lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"
)

// templateHash names a pod template: the new ReplicaSet is
// <deployment>-<hash> and its pods carry pod-template-hash=<hash>. The
// collision count changes the hash when a name is taken by a ReplicaSet
// with another template.
func templateHash(t *v1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	b, _ := json.Marshal(t) // a struct of plain fields: cannot fail
	h.Write(b)
	if collisionCount != nil {
		var c [4]byte
		binary.LittleEndian.PutUint32(c[:], uint32(*collisionCount))
		h.Write(c[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// equalIgnoreHash compares two templates ignoring the pod-template-hash
// label the controller adds.
func equalIgnoreHash(a, b *v1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if len(a.Labels) == 0 {
		a.Labels = nil
	}
	if len(b.Labels) == 0 {
		b.Labels = nil
	}
	return equality.Semantic.DeepEqual(a, b)
}

// revision of a ReplicaSet, 0 when it has none.
func revision(rs *appsv1.ReplicaSet) int64 {
	n, _ := strconv.ParseInt(rs.Annotations[RevisionAnnotation], 10, 64)
	return n
}

func maxRevision(list []*appsv1.ReplicaSet) int64 {
	var m int64
	for _, rs := range list {
		m = max(m, revision(rs))
	}
	return m
}

// rsAnnotations are the annotations a Deployment passes on to its
// ReplicaSets: all of its own but the controller's and kubectl's.
func rsAnnotations(d *appsv1.Deployment, rev int64, existing map[string]string) map[string]string {
	out := maps.Clone(existing)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range d.Annotations {
		if k == RevisionAnnotation || k == lastAppliedAnnotation {
			continue
		}
		out[k] = v
	}
	out[RevisionAnnotation] = strconv.FormatInt(rev, 10)
	return out
}

// fenceposts resolves maxSurge and maxUnavailable against the replica
// count (percentages: surge rounds up, unavailable down; both zero would
// deadlock, so unavailable becomes 1). Recreate has neither.
func fenceposts(d *appsv1.Deployment) (surge, unavailable int32) {
	replicas := ptrOr(d.Spec.Replicas, 1)
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return 0, 0
	}
	quarter := intstr.FromString("25%")
	var ms, mu *intstr.IntOrString
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		ms, mu = ru.MaxSurge, ru.MaxUnavailable
	}
	s, _ := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(ms, quarter), int(replicas), true)
	u, _ := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(mu, quarter), int(replicas), false)
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), min(int32(u), replicas)
}

func specReplicas(list []*appsv1.ReplicaSet) int32 {
	var n int32
	for _, rs := range list {
		if rs != nil {
			n += ptrOr(rs.Spec.Replicas, 0)
		}
	}
	return n
}

func sumStatus(list []*appsv1.ReplicaSet, f func(appsv1.ReplicaSetStatus) int32) int32 {
	var n int32
	for _, rs := range list {
		if rs != nil {
			n += f(rs.Status)
		}
	}
	return n
}

// byAge sorts ReplicaSets oldest first (name breaks ties).
func byAge(list []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	list = slices.Clone(list)
	slices.SortFunc(list, func(a, b *appsv1.ReplicaSet) int {
		if c := a.CreationTimestamp.Time.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	return list
}

// newReplicasRolling is how far the new ReplicaSet may grow now: up to
// replicas+maxSurge pods in all, and no further than replicas.
func newReplicasRolling(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	replicas := ptrOr(d.Spec.Replicas, 1)
	surge, _ := fenceposts(d)
	cur := ptrOr(newRS.Spec.Replicas, 0)
	total := specReplicas(all)
	if total >= replicas+surge {
		return cur
	}
	return cur + min(replicas+surge-total, replicas-cur)
}
