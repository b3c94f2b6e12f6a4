package scheduler

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// Reasons a node is filtered out, worded as upstream's so that events read
// the same as on any Kubernetes cluster.
const (
	reasonUnschedulable = "node(s) were unschedulable"
	reasonNotReady      = "node(s) were not ready"
	reasonSelector      = "node(s) didn't match Pod's node affinity/selector"
	reasonTooManyPods   = "Too many pods"
	reasonCPU           = "Insufficient cpu"
	reasonMemory        = "Insufficient memory"
)

// nodeInfo is what the scheduler knows of one node: the node and the sums
// over the pods bound (or assumed bound) to it.
type nodeInfo struct {
	node *v1.Node
	pods int64
	// requested is the pods' requests; nonZero the same with scoring
	// defaults for containers that request nothing.
	requested, nonZero resources
	// owners counts the pods of each controlling owner (ReplicaSet …).
	owners map[types.UID]int
}

// filter returns why pod (asking for req) cannot run on the node, or nil
// when it can. Checks stop at the first failing kind, except that every
// insufficient resource is reported, as upstream does.
func filter(pod *v1.Pod, req resources, ni *nodeInfo, maxPods int64) []string {
	n := ni.node
	if n.Spec.Unschedulable && !tolerates(pod, &v1.Taint{Key: v1.TaintNodeUnschedulable, Effect: v1.TaintEffectNoSchedule}) {
		return []string{reasonUnschedulable}
	}
	if !nodeReady(n) &&
		!tolerates(pod, &v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule}) &&
		!tolerates(pod, &v1.Taint{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoSchedule}) {
		return []string{reasonNotReady}
	}
	if !matchesNode(pod, n) {
		return []string{reasonSelector}
	}
	if t := untoleratedTaint(pod, n.Spec.Taints); t != nil {
		return []string{fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value)}
	}
	alloc, podCap := allocatable(n)
	limit := maxPods
	if podCap > 0 && podCap < limit {
		limit = podCap
	}
	var reasons []string
	if ni.pods+1 > limit {
		reasons = append(reasons, reasonTooManyPods)
	}
	if req.MilliCPU > 0 && ni.requested.MilliCPU+req.MilliCPU > alloc.MilliCPU {
		reasons = append(reasons, reasonCPU)
	}
	if req.Memory > 0 && ni.requested.Memory+req.Memory > alloc.Memory {
		reasons = append(reasons, reasonMemory)
	}
	return reasons
}

// nodeReady reports whether the node's Ready condition is True.
func nodeReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// tolerates reports whether one of the pod's tolerations tolerates taint.
func tolerates(pod *v1.Pod, taint *v1.Taint) bool {
	for i := range pod.Spec.Tolerations {
		if pod.Spec.Tolerations[i].ToleratesTaint(klog.Background(), taint, true) {
			return true
		}
	}
	return false
}

// untoleratedTaint returns the first NoSchedule or NoExecute taint that the
// pod does not tolerate (PreferNoSchedule only affects preference).
func untoleratedTaint(pod *v1.Pod, taints []v1.Taint) *v1.Taint {
	for i := range taints {
		t := &taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(pod, t) {
			return t
		}
	}
	return nil
}

// matchesNode checks the pod's nodeSelector and its required node affinity.
func matchesNode(pod *v1.Pod, n *v1.Node) bool {
	if len(pod.Spec.NodeSelector) > 0 &&
		!labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(n.Labels)) {
		return false
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	// Terms are ORed; the expressions of one term are ANDed.
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if termMatches(term, n) {
			return true
		}
	}
	return false
}

func termMatches(term v1.NodeSelectorTerm, n *v1.Node) bool {
	if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
		return false // an empty term matches nothing
	}
	if !requirementsMatch(term.MatchExpressions, labels.Set(n.Labels)) {
		return false
	}
	return requirementsMatch(term.MatchFields, labels.Set{"metadata.name": n.Name})
}

var nodeSelectorOps = map[v1.NodeSelectorOperator]selection.Operator{
	v1.NodeSelectorOpIn:           selection.In,
	v1.NodeSelectorOpNotIn:        selection.NotIn,
	v1.NodeSelectorOpExists:       selection.Exists,
	v1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	v1.NodeSelectorOpGt:           selection.GreaterThan,
	v1.NodeSelectorOpLt:           selection.LessThan,
}

func requirementsMatch(reqs []v1.NodeSelectorRequirement, set labels.Set) bool {
	for _, r := range reqs {
		op, ok := nodeSelectorOps[r.Operator]
		if !ok {
			return false
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil || !req.Matches(set) {
			return false
		}
	}
	return true
}
