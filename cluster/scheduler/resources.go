package scheduler

import (
	v1 "k8s.io/api/core/v1"
)

// Default requests that scoring (never filtering) assumes for a container
// that requests nothing, as upstream does, so that pods without requests
// still spread by "least allocated".
const (
	defaultMilliCPURequest = 100               // 0.1 core
	defaultMemoryRequest   = 200 * 1024 * 1024 // 200 MiB
)

// resources is the amount of cpu (millicores) and memory (bytes) a pod
// asks for or a node has.
type resources struct {
	MilliCPU int64
	Memory   int64
}

func (r *resources) add(o resources) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
}

func (r *resources) sub(o resources) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
}

// podRequests is what a pod asks for: the sum over its containers, at
// least the largest init container (they run one at a time, before the
// others), plus the pod's overhead. nonZero applies the scoring defaults to
// containers that request nothing.
func podRequests(pod *v1.Pod, nonZero bool) resources {
	var sum resources
	for i := range pod.Spec.Containers {
		sum.add(containerRequests(&pod.Spec.Containers[i], nonZero))
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := containerRequests(c, nonZero)
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			// A sidecar keeps running beside the main containers.
			sum.add(r)
			continue
		}
		sum.MilliCPU = max(sum.MilliCPU, r.MilliCPU)
		sum.Memory = max(sum.Memory, r.Memory)
	}
	if pod.Spec.Overhead != nil {
		sum.MilliCPU += pod.Spec.Overhead.Cpu().MilliValue()
		sum.Memory += pod.Spec.Overhead.Memory().Value()
	}
	return sum
}

func containerRequests(c *v1.Container, nonZero bool) resources {
	r := resources{
		MilliCPU: c.Resources.Requests.Cpu().MilliValue(),
		Memory:   c.Resources.Requests.Memory().Value(),
	}
	// A container that sets only limits requests its limits (apiserver
	// defaulting does this too; doing it here keeps us right without it).
	if _, ok := c.Resources.Requests[v1.ResourceCPU]; !ok {
		r.MilliCPU = c.Resources.Limits.Cpu().MilliValue()
	}
	if _, ok := c.Resources.Requests[v1.ResourceMemory]; !ok {
		r.Memory = c.Resources.Limits.Memory().Value()
	}
	if nonZero {
		if r.MilliCPU == 0 {
			r.MilliCPU = defaultMilliCPURequest
		}
		if r.Memory == 0 {
			r.Memory = defaultMemoryRequest
		}
	}
	return r
}

// allocatable is what a node offers to pods: status.allocatable, or its
// capacity when an agent reported only that.
func allocatable(node *v1.Node) (res resources, pods int64) {
	list := node.Status.Allocatable
	if len(list) == 0 {
		list = node.Status.Capacity
	}
	return resources{MilliCPU: list.Cpu().MilliValue(), Memory: list.Memory().Value()}, list.Pods().Value()
}
