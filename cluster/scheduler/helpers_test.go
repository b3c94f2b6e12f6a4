package scheduler

import (
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var controlPlaneTaint = v1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: v1.TaintEffectNoSchedule}

type nodeOpt func(*v1.Node)

func makeNode(name, cpu, mem string, opts ...nodeOpt) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{
				v1.ResourceCPU:    resource.MustParse(cpu),
				v1.ResourceMemory: resource.MustParse(mem),
				v1.ResourcePods:   resource.MustParse("110"),
			},
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func tainted(t v1.Taint) nodeOpt {
	return func(n *v1.Node) { n.Spec.Taints = append(n.Spec.Taints, t) }
}

func notReady(n *v1.Node) { n.Status.Conditions[0].Status = v1.ConditionFalse }

func cordoned(n *v1.Node) { n.Spec.Unschedulable = true }

func labelled(k, v string) nodeOpt { return func(n *v1.Node) { n.Labels[k] = v } }

type podOpt func(*v1.Pod)

func makePod(name, cpu, mem string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
	}
	if cpu != "" || mem != "" {
		p.Spec.Containers[0].Resources.Requests = v1.ResourceList{}
	}
	if cpu != "" {
		p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		p.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse(mem)
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func ownedBy(uid string) podOpt {
	return func(p *v1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID(uid), Controller: &yes}}
	}
}

func tolerating(key string) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: key, Operator: v1.TolerationOpExists})
	}
}

func selecting(k, v string) podOpt {
	return func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{k: v} }
}

func info(n *v1.Node, pods ...*v1.Pod) *nodeInfo {
	c := newCache()
	c.setNode(n)
	for _, p := range pods {
		p = p.DeepCopy()
		p.Spec.NodeName = n.Name
		c.updatePod(p.Namespace+"/"+p.Name, p)
	}
	return c.nodes[n.Name]
}
