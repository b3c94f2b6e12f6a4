package controllers

import (
	"net/netip"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestFenceposts(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(n int) *intstr.IntOrString { v := intstr.FromInt32(int32(n)); return &v }
	tests := []struct {
		name           string
		replicas       int32
		surge, unavail *intstr.IntOrString
		recreate       bool
		wantS, wantU   int32
	}{
		{"defaults 25%", 4, nil, nil, false, 1, 1},
		{"25% of 3: surge rounds up, unavailable down", 3, nil, nil, false, 1, 0},
		{"both zero: unavailable 1", 3, num(0), num(0), false, 0, 1},
		{"numbers", 10, num(3), num(2), false, 3, 2},
		{"percentages", 10, pct("50%"), pct("10%"), false, 5, 1},
		{"unavailable capped at replicas", 2, num(1), num(5), false, 1, 2},
		{"recreate", 3, nil, nil, true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: &tt.replicas}}
			if tt.recreate {
				d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
			} else {
				d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: tt.surge, MaxUnavailable: tt.unavail}
			}
			s, u := fenceposts(d)
			if s != tt.wantS || u != tt.wantU {
				t.Errorf("fenceposts = %d, %d; want %d, %d", s, u, tt.wantS, tt.wantU)
			}
		})
	}
}

func rsWith(spec int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: &spec}}
}

func TestNewReplicasRolling(t *testing.T) {
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: new(int32(3)),
		Strategy: appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero}}}}
	tests := []struct {
		name      string
		old, newR int32
		want      int32
	}{
		{"start: one surge pod", 3, 0, 1},
		{"at the surge limit: wait", 3, 1, 1},
		{"old shrank: grow again", 2, 1, 2},
		{"never beyond replicas", 0, 3, 3},
		{"scale up without rollout", 0, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newRS := rsWith(tt.newR)
			if got := newReplicasRolling(d, []*appsv1.ReplicaSet{rsWith(tt.old), newRS}, newRS); got != tt.want {
				t.Errorf("newReplicasRolling = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTemplateHash(t *testing.T) {
	a := &v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "web", Image: "web:1"}}}}
	b := a.DeepCopy()
	b.Spec.Containers[0].Image = "web:2"
	if templateHash(a, nil) != templateHash(a.DeepCopy(), nil) {
		t.Error("the hash of equal templates differs")
	}
	if templateHash(a, nil) == templateHash(b, nil) {
		t.Error("different templates hash the same")
	}
	if templateHash(a, nil) == templateHash(a, new(int32(1))) {
		t.Error("the collision count does not change the hash")
	}
	withHash := a.DeepCopy()
	withHash.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "abc"
	if !equalIgnoreHash(a, withHash) || equalIgnoreHash(a, b) {
		t.Error("equalIgnoreHash is wrong")
	}
}

func TestDeleteFirst(t *testing.T) {
	now := time.Now()
	ready := func(since time.Duration) []v1.PodCondition {
		return []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-since))}}
	}
	pod := func(name, node string, phase v1.PodPhase, conds []v1.PodCondition) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.PodSpec{NodeName: node}, Status: v1.PodStatus{Phase: phase, Conditions: conds}}
	}
	tests := []struct {
		name string
		a, b *v1.Pod
	}{
		{"unscheduled first", pod("a", "", v1.PodPending, nil), pod("b", "n", v1.PodPending, nil)},
		{"pending before running", pod("a", "n", v1.PodPending, nil), pod("b", "n", v1.PodRunning, ready(time.Hour))},
		{"not ready before ready", pod("a", "n", v1.PodRunning, nil), pod("b", "n", v1.PodRunning, ready(time.Hour))},
		{"ready for less time first", pod("a", "n", v1.PodRunning, ready(time.Minute)), pod("b", "n", v1.PodRunning, ready(time.Hour))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !deleteFirst(tt.a, tt.b) || deleteFirst(tt.b, tt.a) {
				t.Errorf("want %s deleted before %s", tt.a.Name, tt.b.Name)
			}
		})
	}
}

func TestEvictionDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	unreachable := []v1.Taint{
		{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoSchedule},
		{Key: v1.TaintNodeUnreachable, Effect: v1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: t0}},
	}
	tol := func(key string, secs *int64) v1.Toleration {
		return v1.Toleration{Key: key, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute, TolerationSeconds: secs}
	}
	tests := []struct {
		name   string
		tols   []v1.Toleration
		taints []v1.Taint
		want   time.Duration
		ok     bool
	}{
		{"no toleration: the default", nil, unreachable, 30 * time.Second, true},
		{"own toleration seconds", []v1.Toleration{tol(v1.TaintNodeUnreachable, new(int64(5)))}, unreachable, 5 * time.Second, true},
		{"smallest of several", []v1.Toleration{tol(v1.TaintNodeUnreachable, new(int64(50))), tol("", new(int64(7)))}, unreachable, 7 * time.Second, true},
		{"tolerates forever", []v1.Toleration{tol(v1.TaintNodeUnreachable, nil)}, unreachable, 0, false},
		{"toleration of another taint", []v1.Toleration{tol(v1.TaintNodeNotReady, nil)}, unreachable, 30 * time.Second, true},
		{"NoSchedule only: never", nil, unreachable[:1], 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &v1.Pod{Spec: v1.PodSpec{Tolerations: tt.tols}}
			due, ok := evictionDue(p, tt.taints, 30*time.Second)
			if ok != tt.ok || ok && due.Sub(t0) != tt.want {
				t.Errorf("evictionDue = %v after, %v; want %v, %v", due.Sub(t0), ok, tt.want, tt.ok)
			}
		})
	}
}

func TestBuildSubsets(t *testing.T) {
	svc := &v1.Service{Spec: v1.ServiceSpec{Ports: []v1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromString("web")},
		{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9100), Protocol: v1.ProtocolTCP},
	}}}
	pod := func(name, ip string, ready bool, webPort int32) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
			Spec:   v1.PodSpec{NodeName: "node1"},
			Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: ip}}
		c := v1.Container{Name: "c"}
		if webPort != 0 {
			c.Ports = []v1.ContainerPort{{Name: "web", ContainerPort: webPort}}
		}
		p.Spec.Containers = []v1.Container{c}
		if ready {
			p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
		}
		return p
	}
	terminating := pod("gone", "10.42.1.9", true, 8080)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	pods := []*v1.Pod{
		pod("b", "10.42.1.3", true, 8080),
		pod("a", "10.42.1.2", true, 8080),
		pod("slow", "10.42.2.2", false, 8080),
		pod("other-port", "10.42.2.3", true, 8081),
		pod("no-name", "10.42.2.4", true, 0),
		pod("no-ip", "", true, 8080),
		terminating,
	}
	got := buildSubsets(svc, pods)
	if len(got) != 3 {
		t.Fatalf("%d subsets, want 3 (8080+9100, 8081+9100, 9100 alone): %+v", len(got), got)
	}
	ips := func(as []v1.EndpointAddress) []string {
		var out []string
		for _, a := range as {
			out = append(out, a.IP)
		}
		return out
	}
	find := func(port int32) *v1.EndpointSubset {
		for i := range got {
			if got[i].Ports[0].Port == port {
				return &got[i]
			}
		}
		t.Fatalf("no subset with first port %d in %+v", port, got)
		return nil
	}
	s := find(8080)
	if want := []string{"10.42.1.2", "10.42.1.3"}; !equalStrings(ips(s.Addresses), want) {
		t.Errorf("ready addresses %v, want %v (sorted)", ips(s.Addresses), want)
	}
	if want := []string{"10.42.2.2"}; !equalStrings(ips(s.NotReadyAddresses), want) {
		t.Errorf("not ready addresses %v, want %v", ips(s.NotReadyAddresses), want)
	}
	if len(s.Ports) != 2 || s.Ports[0].Name != "http" || s.Ports[1].Port != 9100 || s.Ports[1].Protocol != v1.ProtocolTCP {
		t.Errorf("ports %+v", s.Ports)
	}
	if a := s.Addresses[0]; a.TargetRef == nil || a.TargetRef.Name != "a" || a.NodeName == nil || *a.NodeName != "node1" {
		t.Errorf("address %+v lacks its pod and node", a)
	}
	if s := find(9100); len(s.Ports) != 1 || !equalStrings(ips(s.Addresses), []string{"10.42.2.4"}) {
		t.Errorf("pod without the named port: %+v", s)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCIDRSet(t *testing.T) {
	s, err := newCIDRSet("10.42.0.0/16", 24)
	if err != nil {
		t.Fatal(err)
	}
	if !s.occupy(netip.MustParsePrefix("10.42.1.0/24"), "node1") {
		t.Fatal("occupy a free block failed")
	}
	if s.occupy(netip.MustParsePrefix("10.42.1.0/24"), "node2") {
		t.Error("a block was given to two nodes")
	}
	for _, bad := range []string{"10.43.0.0/24", "10.42.1.0/25", "10.42.1.1/24"} {
		if s.occupy(netip.MustParsePrefix(bad), "nodeX") {
			t.Errorf("occupied %s, not a block of the set", bad)
		}
	}
	for _, want := range []struct{ node, cidr string }{{"master", "10.42.0.0/24"}, {"node2", "10.42.2.0/24"}, {"master", "10.42.0.0/24"}} {
		got, err := s.allocate(want.node)
		if err != nil || got.String() != want.cidr {
			t.Errorf("allocate(%s) = %v, %v; want %s", want.node, got, err, want.cidr)
		}
	}
	s.release("node1")
	if got, _ := s.allocate("node3"); got.String() != "10.42.1.0/24" {
		t.Errorf("after release: %s, want the freed 10.42.1.0/24", got)
	}

	small, err := newCIDRSet("10.42.0.0/23", 24)
	if err != nil {
		t.Fatal(err)
	}
	small.allocate("a")
	small.allocate("b")
	if _, err := small.allocate("c"); err == nil {
		t.Error("a full set gave out a block")
	}
	for _, bad := range []struct {
		cidr string
		bits int
	}{{"10.42.0.0/16", 8}, {"10.42.0.0/16", 31}, {"fd00::/64", 80}, {"nonsense", 24}, {"10.0.0.0/8", 26}} {
		if _, err := newCIDRSet(bad.cidr, bad.bits); err == nil {
			t.Errorf("newCIDRSet(%s, %d) accepted", bad.cidr, bad.bits)
		}
	}
}
