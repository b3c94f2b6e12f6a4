package scheduler

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// placed is one pod counted on a node.
type placed struct {
	node    string
	req     resources
	nonZero resources
	owner   types.UID
	// assumed: bound by us, not yet seen bound through the informer.
	assumed bool
}

// nodeCache tracks, per node, the pods bound to it — including those this
// scheduler has just bound and the informer has not yet reported (assumed),
// so that the next decision already sees them.
type nodeCache struct {
	mu    sync.Mutex
	nodes map[string]*nodeInfo
	pods  map[string]placed // by namespace/name
}

func newCache() *nodeCache {
	return &nodeCache{nodes: map[string]*nodeInfo{}, pods: map[string]placed{}}
}

// setNode adds or updates a node; a node seen for the first time gets the
// pods already known to be bound to it.
func (c *nodeCache) setNode(n *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ni, ok := c.nodes[n.Name]; ok {
		ni.node = n
		return
	}
	ni := &nodeInfo{node: n, owners: map[types.UID]int{}}
	for _, p := range c.pods {
		if p.node == n.Name {
			ni.account(p, 1)
		}
	}
	c.nodes[n.Name] = ni
}

func (c *nodeCache) deleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, name)
}

func (ni *nodeInfo) account(p placed, sign int64) {
	ni.pods += sign
	if sign > 0 {
		ni.requested.add(p.req)
		ni.nonZero.add(p.nonZero)
	} else {
		ni.requested.sub(p.req)
		ni.nonZero.sub(p.nonZero)
	}
	if p.owner != "" {
		ni.owners[p.owner] += int(sign)
		if ni.owners[p.owner] <= 0 {
			delete(ni.owners, p.owner)
		}
	}
}

// occupies reports whether a pod takes resources on its node: bound, and
// neither finished nor gone.
func occupies(pod *v1.Pod) bool {
	return pod.Spec.NodeName != "" && pod.Status.Phase != v1.PodSucceeded && pod.Status.Phase != v1.PodFailed
}

// updatePod records what the informer reports about a pod.
func (c *nodeCache) updatePod(key string, pod *v1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.pods[key]
	if !occupies(pod) {
		if had && old.assumed && pod.Spec.NodeName == "" && pod.Status.Phase != v1.PodSucceeded && pod.Status.Phase != v1.PodFailed {
			return // an update from before our binding: keep the assumption
		}
		c.removeLocked(key)
		return
	}
	c.setLocked(key, placed{
		node:    pod.Spec.NodeName,
		req:     podRequests(pod, false),
		nonZero: podRequests(pod, true),
		owner:   controllerUID(pod),
	})
}

// assume counts a pod on node before the API confirms the binding.
func (c *nodeCache) assume(key string, pod *v1.Pod, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(key, placed{
		node:    node,
		req:     podRequests(pod, false),
		nonZero: podRequests(pod, true),
		owner:   controllerUID(pod),
		assumed: true,
	})
}

// isAssumed reports whether a binding of the pod is in flight or awaiting
// confirmation.
func (c *nodeCache) isAssumed(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pods[key].assumed
}

// forget drops an assumption whose binding failed.
func (c *nodeCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pods[key].assumed {
		c.removeLocked(key)
	}
}

// removePod forgets a deleted pod; it reports whether the pod held
// resources on a node (so waiting pods may fit now).
func (c *nodeCache) removePod(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, had := c.pods[key]
	c.removeLocked(key)
	return had
}

func (c *nodeCache) setLocked(key string, p placed) {
	c.removeLocked(key)
	c.pods[key] = p
	if ni, ok := c.nodes[p.node]; ok {
		ni.account(p, 1)
	}
}

func (c *nodeCache) removeLocked(key string) {
	old, ok := c.pods[key]
	if !ok {
		return
	}
	delete(c.pods, key)
	if ni, ok := c.nodes[old.node]; ok {
		ni.account(old, -1)
	}
}

// decide runs pick over the current nodes under the lock.
func (c *nodeCache) decide(pod *v1.Pod, maxPods int64) choice {
	c.mu.Lock()
	defer c.mu.Unlock()
	nodes := make([]*nodeInfo, 0, len(c.nodes))
	for _, ni := range c.nodes {
		nodes = append(nodes, ni)
	}
	return pick(pod, nodes, maxPods)
}
