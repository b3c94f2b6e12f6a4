package scheduler

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Weights of the scores, as upstream weighs NodeResourcesFit and
// PodTopologySpread: spreading a ReplicaSet counts twice.
const (
	weightLeastAllocated = 1
	weightSpread         = 2
	maxNodeScore         = 100
)

// leastAllocated scores 0..100 how much cpu and memory stays free on the
// node once the pod is placed there: the emptier the better.
func leastAllocated(nonZeroReq resources, ni *nodeInfo) int64 {
	alloc, _ := allocatable(ni.node)
	free := func(requested, capacity int64) int64 {
		if capacity <= 0 || requested > capacity {
			return 0
		}
		return (capacity - requested) * maxNodeScore / capacity
	}
	cpu := free(ni.nonZero.MilliCPU+nonZeroReq.MilliCPU, alloc.MilliCPU)
	mem := free(ni.nonZero.Memory+nonZeroReq.Memory, alloc.Memory)
	return (cpu + mem) / 2
}

// spread scores 0..100 how few pods of the same owner already run on the
// node, relative to the most crowded feasible node.
func spread(owner types.UID, ni *nodeInfo, maxCount int) int64 {
	if owner == "" || maxCount == 0 {
		return maxNodeScore
	}
	return int64(maxNodeScore * (maxCount - ni.owners[owner]) / maxCount)
}

// controllerUID is the UID of the pod's controlling owner, "" if none.
func controllerUID(pod *v1.Pod) types.UID {
	if ref := metav1.GetControllerOf(pod); ref != nil {
		return ref.UID
	}
	return ""
}

// choice is the outcome of one scheduling attempt.
type choice struct {
	node string
	// feasible is how many nodes passed the filters; reasons counts, for
	// the others, why not.
	feasible int
	total    int
	reasons  map[string]int
	score    int64
}

// pick filters the nodes, scores the feasible ones and returns the best,
// the lowest name winning a tie so that placement is reproducible.
func pick(pod *v1.Pod, nodes []*nodeInfo, maxPods int64) choice {
	req := podRequests(pod, false)
	nonZero := podRequests(pod, true)
	owner := controllerUID(pod)
	c := choice{total: len(nodes), reasons: map[string]int{}}
	var feasible []*nodeInfo
	for _, ni := range nodes {
		if reasons := filter(pod, req, ni, maxPods); len(reasons) > 0 {
			for _, r := range reasons {
				c.reasons[r]++
			}
			continue
		}
		feasible = append(feasible, ni)
	}
	c.feasible = len(feasible)
	maxCount := 0
	if owner != "" {
		for _, ni := range feasible {
			maxCount = max(maxCount, ni.owners[owner])
		}
	}
	for _, ni := range feasible {
		s := weightLeastAllocated*leastAllocated(nonZero, ni) + weightSpread*spread(owner, ni, maxCount)
		if c.node == "" || s > c.score || s == c.score && ni.node.Name < c.node {
			c.node, c.score = ni.node.Name, s
		}
	}
	return c
}

// message words a failed attempt like upstream's FitError:
// "0/3 nodes are available: 1 node(s) had untolerated taint {…}, 2 Insufficient cpu."
func (c choice) message() string {
	if c.total == 0 {
		return "0/0 nodes are available: no nodes available to schedule pods."
	}
	parts := make([]string, 0, len(c.reasons))
	for r, n := range c.reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", c.total, strings.Join(parts, ", "))
}
