package scheduler

import (
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestFilter(t *testing.T) {
	full := make([]*v1.Pod, 110)
	for i := range full {
		full[i] = makePod("p"+strings.Repeat("x", i), "", "")
	}
	affinity := func(op v1.NodeSelectorOperator, vals ...string) podOpt {
		return func(p *v1.Pod) {
			p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
					MatchExpressions: []v1.NodeSelectorRequirement{{Key: "zone", Operator: op, Values: vals}},
				}}},
			}}
		}
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		ni   *nodeInfo
		want []string
	}{
		{"fits", makePod("a", "500m", "1Gi"), info(makeNode("n", "2", "4Gi")), nil},
		{"not ready", makePod("a", "", ""), info(makeNode("n", "2", "4Gi", notReady)), []string{reasonNotReady}},
		{"not ready, tolerated", makePod("a", "", "", tolerating(v1.TaintNodeNotReady)), info(makeNode("n", "2", "4Gi", notReady)), nil},
		{"cordoned", makePod("a", "", ""), info(makeNode("n", "2", "4Gi", cordoned)), []string{reasonUnschedulable}},
		{"selector mismatch", makePod("a", "", "", selecting("disk", "ssd")), info(makeNode("n", "2", "4Gi")), []string{reasonSelector}},
		{"selector match", makePod("a", "", "", selecting("disk", "ssd")), info(makeNode("n", "2", "4Gi", labelled("disk", "ssd"))), nil},
		{"affinity In match", makePod("a", "", "", affinity(v1.NodeSelectorOpIn, "a", "b")), info(makeNode("n", "2", "4Gi", labelled("zone", "b"))), nil},
		{"affinity In mismatch", makePod("a", "", "", affinity(v1.NodeSelectorOpIn, "a")), info(makeNode("n", "2", "4Gi", labelled("zone", "b"))), []string{reasonSelector}},
		{"affinity DoesNotExist", makePod("a", "", "", affinity(v1.NodeSelectorOpDoesNotExist)), info(makeNode("n", "2", "4Gi")), nil},
		{"control-plane taint", makePod("a", "", ""), info(makeNode("m", "2", "4Gi", tainted(controlPlaneTaint))),
			[]string{"node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"}},
		{"control-plane taint tolerated", makePod("a", "", "", tolerating(controlPlaneTaint.Key)), info(makeNode("m", "2", "4Gi", tainted(controlPlaneTaint))), nil},
		{"PreferNoSchedule is no filter", makePod("a", "", ""), info(makeNode("n", "2", "4Gi", tainted(v1.Taint{Key: "k", Value: "v", Effect: v1.TaintEffectPreferNoSchedule}))), nil},
		{"NoExecute with value", makePod("a", "", ""), info(makeNode("n", "2", "4Gi", tainted(v1.Taint{Key: "k", Value: "v", Effect: v1.TaintEffectNoExecute}))),
			[]string{"node(s) had untolerated taint {k: v}"}},
		{"110 pods", makePod("a", "", ""), info(makeNode("n", "64", "256Gi"), full...), []string{reasonTooManyPods}},
		{"insufficient cpu", makePod("a", "1500m", ""), info(makeNode("n", "2", "4Gi"), makePod("b", "1", "")), []string{reasonCPU}},
		{"insufficient cpu and memory", makePod("a", "3", "5Gi"), info(makeNode("n", "2", "4Gi")), []string{reasonCPU, reasonMemory}},
		{"exactly full fits", makePod("a", "1", "2Gi"), info(makeNode("n", "2", "4Gi"), makePod("b", "1", "2Gi")), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := filter(tt.pod, podRequests(tt.pod, false), tt.ni, 110)
			if !slices.Equal(got, tt.want) {
				t.Errorf("filter = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPodRequests(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	p := makePod("a", "200m", "100Mi")
	p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "limits-only", Resources: v1.ResourceRequirements{
		Limits: v1.ResourceList{v1.ResourceCPU: resource.MustParse("300m")}}})
	p.Spec.InitContainers = []v1.Container{
		{Name: "big-init", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Gi")}}},
		{Name: "sidecar", RestartPolicy: &always, Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("50m")}}},
	}
	p.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse("10m")}
	got := podRequests(p, false)
	want := resources{MilliCPU: 200 + 300 + 50 + 10, Memory: 1 << 30}
	if got != want {
		t.Errorf("podRequests = %+v, want %+v", got, want)
	}
	empty := makePod("b", "", "")
	if got := podRequests(empty, true); got != (resources{defaultMilliCPURequest, defaultMemoryRequest}) {
		t.Errorf("non-zero requests of an empty pod = %+v", got)
	}
}

func TestPick(t *testing.T) {
	master := makeNode("master", "2", "4Gi", tainted(controlPlaneTaint))
	n1, n2 := makeNode("node1", "2", "4Gi"), makeNode("node2", "2", "4Gi")
	tests := []struct {
		name  string
		pod   *v1.Pod
		nodes []*nodeInfo
		want  string
		msg   string
	}{
		{"spread the owner's pods", makePod("web-3", "", "", ownedBy("rs1")),
			[]*nodeInfo{info(n1, makePod("web-1", "", "", ownedBy("rs1"))), info(n2)}, "node2", ""},
		{"spread beats a little less free", makePod("web-3", "", "", ownedBy("rs1")),
			[]*nodeInfo{info(n1), info(n2, makePod("other", "100m", "", ownedBy("rs2")), makePod("web-1", "", "", ownedBy("rs1")))}, "node1", ""},
		{"least allocated", makePod("a", "100m", ""),
			[]*nodeInfo{info(n1, makePod("b", "1", "1Gi")), info(n2, makePod("c", "500m", "1Gi"))}, "node2", ""},
		{"tie goes to the lowest name", makePod("a", "", ""), []*nodeInfo{info(n2), info(n1)}, "node1", ""},
		{"master is skipped", makePod("a", "", ""), []*nodeInfo{info(master), info(n2)}, "node2", ""},
		{"nothing fits", makePod("big", "3", ""), []*nodeInfo{info(master), info(n1), info(n2)}, "",
			"0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu."},
		{"no nodes", makePod("a", "", ""), nil, "", "0/0 nodes are available: no nodes available to schedule pods."},
		{"several reasons on one node", makePod("big", "3", "5Gi", selecting("disk", "ssd")),
			[]*nodeInfo{info(makeNode("node3", "2", "4Gi", labelled("disk", "ssd"))), info(n1)}, "",
			"0/2 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := pick(tt.pod, tt.nodes, 110)
			if c.node != tt.want {
				t.Errorf("node = %q, want %q (%s)", c.node, tt.want, c.message())
			}
			if tt.msg != "" && c.message() != tt.msg {
				t.Errorf("message = %q\nwant      %q", c.message(), tt.msg)
			}
		})
	}
}

func TestCacheAssume(t *testing.T) {
	c := newCache()
	c.setNode(makeNode("node1", "2", "4Gi"))
	p := makePod("a", "1", "")
	key := "default/a"
	c.assume(key, p, "node1")
	if got := c.nodes["node1"].requested.MilliCPU; got != 1000 {
		t.Fatalf("assumed cpu = %d, want 1000", got)
	}
	c.updatePod(key, p) // an update from before the binding: still unbound
	if !c.isAssumed(key) || c.nodes["node1"].pods != 1 {
		t.Fatal("a stale unbound update dropped the assumption")
	}
	bound := p.DeepCopy()
	bound.Spec.NodeName = "node1"
	c.updatePod(key, bound)
	if c.isAssumed(key) || c.nodes["node1"].pods != 1 {
		t.Fatalf("confirmed binding: assumed=%v pods=%d", c.isAssumed(key), c.nodes["node1"].pods)
	}
	done := bound.DeepCopy()
	done.Status.Phase = v1.PodSucceeded
	c.updatePod(key, done)
	if c.nodes["node1"].pods != 0 || c.nodes["node1"].requested.MilliCPU != 0 {
		t.Fatalf("a finished pod still counts: %+v", c.nodes["node1"])
	}
	// A node that appears after its pods gets them counted.
	c.updatePod("default/b", func() *v1.Pod { q := makePod("b", "500m", ""); q.Spec.NodeName = "node9"; return q }())
	c.setNode(makeNode("node9", "2", "4Gi"))
	if got := c.nodes["node9"].requested.MilliCPU; got != 500 {
		t.Fatalf("late node cpu = %d, want 500", got)
	}
	c.assume("default/c", makePod("c", "", ""), "node9")
	c.forget("default/c")
	if c.nodes["node9"].pods != 1 {
		t.Fatalf("forget left %d pods", c.nodes["node9"].pods)
	}
}
