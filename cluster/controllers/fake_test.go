package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klab-dev/klab/cluster/client/fakeclient"
	"github.com/klab-dev/klab/internal/testutil"
)

// startManager runs the chosen controllers on a fake clientset until the
// test ends.
func startManager(t *testing.T, cs *fakeclient.Client, o Options, watched ...string) context.Context {
	t.Helper()
	o.Log = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := Run(ctx, cs, nil, o); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := cs.WaitWatching(10*time.Second, watched...); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// kubelet makes every pod Running and Ready shortly after it appears, and
// calls check with the pods it saw on each round.
func kubelet(ctx context.Context, t *testing.T, cs *fakeclient.Client, check func([]v1.Pod)) {
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
			if err != nil {
				continue
			}
			if check != nil {
				check(l.Items)
			}
			for i := range l.Items {
				p := &l.Items[i]
				if podReady(p) {
					continue
				}
				p.Status.Phase = v1.PodRunning
				p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()}}
				cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
	}()
}

func replicaSet(name string, replicas int32) *appsv1.ReplicaSet {
	l := map[string]string{"app": name}
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "img"}}}},
		},
	}
}

func podsOf(t *testing.T, cs *fakeclient.Client, selector string) []v1.Pod {
	t.Helper()
	l, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

func TestReplicaSetController(t *testing.T) {
	orphan := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Namespace: "default", UID: "uid-orphan", Labels: map[string]string{"app": "web"}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "img"}}}}
	cs := fakeclient.New(replicaSet("web", 3), orphan)
	ctx := startManager(t, cs, Options{Controllers: []string{ReplicaSet}}, "pods", "replicasets")

	testutil.Poll(t, 10*time.Second, "3 pods, the orphan adopted", func() bool {
		pods := podsOf(t, cs, "app=web")
		if len(pods) != 3 {
			return false
		}
		for _, p := range pods {
			ref := metav1.GetControllerOf(&p)
			if ref == nil || ref.UID != "uid-web" || ref.Kind != "ReplicaSet" {
				return false
			}
		}
		return true
	})
	kubelet(ctx, t, cs, nil)
	testutil.Poll(t, 10*time.Second, "status 3 replicas, 3 ready, 3 available", func() bool {
		rs, err := cs.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && rs.Status.Replicas == 3 && rs.Status.ReadyReplicas == 3 && rs.Status.AvailableReplicas == 3 && rs.Status.FullyLabeledReplicas == 3
	})

	// A pod relabelled out of the selector is released, and replaced.
	p, err := cs.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels = map[string]string{"app": "debug"}
	if _, err := cs.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "the relabelled pod released and replaced", func() bool {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "orphan", metav1.GetOptions{})
		return err == nil && metav1.GetControllerOf(p) == nil && len(podsOf(t, cs, "app=web")) == 3
	})

	// Scale down to 1.
	rs, _ := cs.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
	rs.Spec.Replicas = new(int32(1))
	if _, err := cs.AppsV1().ReplicaSets("default").Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "1 pod left", func() bool { return len(podsOf(t, cs, "app=web")) == 1 })

	// A deleted pod is replaced.
	if err := cs.CoreV1().Pods("default").Delete(ctx, podsOf(t, cs, "app=web")[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "the deleted pod replaced", func() bool { return len(podsOf(t, cs, "app=web")) == 1 })
	testutil.Poll(t, 10*time.Second, "SuccessfulCreate and SuccessfulDelete events", func() bool {
		l, _ := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		reasons := map[string]bool{}
		for _, e := range l.Items {
			reasons[e.Reason] = true
		}
		return reasons["SuccessfulCreate"] && reasons["SuccessfulDelete"]
	})
}

func deployment(replicas int32, strategy appsv1.DeploymentStrategy) *appsv1.Deployment {
	l := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-deploy", Generation: 1,
			Annotations: map[string]string{ChangeCauseAnnotation: "first"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: l},
			Strategy: strategy,
			Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec: v1.PodSpec{Containers: []v1.Container{{Name: "web", Image: "web:1"}}}},
			RevisionHistoryLimit:    new(int32(1)),
			ProgressDeadlineSeconds: new(int32(600)),
		},
	}
}

func setImage(t *testing.T, cs *fakeclient.Client, image string) {
	t.Helper()
	d, err := cs.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Image = image
	d.Generation++
	d.Annotations[ChangeCauseAnnotation] = "set image " + image
	if _, err := cs.AppsV1().Deployments("default").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// rolledOut: every pod runs image and the status says so.
func rolledOut(t *testing.T, cs *fakeclient.Client, image string, replicas int) bool {
	d, err := cs.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil || d.Status.ObservedGeneration != d.Generation || int(d.Status.AvailableReplicas) != replicas || int(d.Status.UpdatedReplicas) != replicas {
		return false
	}
	pods := podsOf(t, cs, "app=web")
	for _, p := range pods {
		if p.Spec.Containers[0].Image != image {
			return false
		}
	}
	return len(pods) == replicas
}

func TestDeploymentRollingUpdate(t *testing.T) {
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	cs := fakeclient.New(deployment(3, appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero}}))
	ctx := startManager(t, cs, Options{Controllers: []string{ReplicaSet, Deployment}}, "pods", "replicasets", "deployments")

	var mu sync.Mutex
	var maxPods, minReady int
	started := false
	kubelet(ctx, t, cs, func(pods []v1.Pod) {
		mu.Lock()
		defer mu.Unlock()
		ready := 0
		for i := range pods {
			if podReady(&pods[i]) {
				ready++
			}
		}
		maxPods = max(maxPods, len(pods))
		if started {
			minReady = min(minReady, ready)
		}
	})
	testutil.Poll(t, 10*time.Second, "web:1 rolled out", func() bool { return rolledOut(t, cs, "web:1", 3) })
	mu.Lock()
	started, minReady = true, 3
	mu.Unlock()

	for _, img := range []string{"web:2", "web:3"} {
		setImage(t, cs, img)
		testutil.Poll(t, 20*time.Second, img+" rolled out", func() bool { return rolledOut(t, cs, img, 3) })
	}
	mu.Lock()
	if maxPods > 4 {
		t.Errorf("saw %d pods at once: maxSurge 1 allows 4", maxPods)
	}
	if minReady < 3 {
		t.Errorf("saw only %d ready pods during the rollout: maxUnavailable 0 keeps 3", minReady)
	}
	mu.Unlock()

	// Revisions 2 and 3 stay (history limit 1 + the current), 1 is deleted.
	testutil.Poll(t, 10*time.Second, "2 ReplicaSets: revisions 2 and 3", func() bool {
		l, err := cs.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 2 {
			return false
		}
		revs := map[string]string{}
		for _, rs := range l.Items {
			revs[rs.Annotations[RevisionAnnotation]] = rs.Annotations[ChangeCauseAnnotation]
		}
		return revs["2"] == "set image web:2" && revs["3"] == "set image web:3"
	})
	d, _ := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if d.Annotations[RevisionAnnotation] != "3" {
		t.Errorf("deployment revision %q, want 3", d.Annotations[RevisionAnnotation])
	}
	conds := map[appsv1.DeploymentConditionType]string{}
	for _, c := range d.Status.Conditions {
		conds[c.Type] = string(c.Status) + " " + c.Reason
	}
	if conds[appsv1.DeploymentAvailable] != "True MinimumReplicasAvailable" || conds[appsv1.DeploymentProgressing] != "True NewReplicaSetAvailable" {
		t.Errorf("conditions %v", conds)
	}
}

func TestDeploymentRecreate(t *testing.T) {
	cs := fakeclient.New(deployment(2, appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}))
	ctx := startManager(t, cs, Options{Controllers: []string{ReplicaSet, Deployment}}, "pods", "replicasets", "deployments")
	var mu sync.Mutex
	mixed := false
	kubelet(ctx, t, cs, func(pods []v1.Pod) {
		images := map[string]bool{}
		for _, p := range pods {
			images[p.Spec.Containers[0].Image] = true
		}
		mu.Lock()
		mixed = mixed || len(images) > 1
		mu.Unlock()
	})
	testutil.Poll(t, 10*time.Second, "web:1 rolled out", func() bool { return rolledOut(t, cs, "web:1", 2) })
	setImage(t, cs, "web:2")
	testutil.Poll(t, 20*time.Second, "web:2 rolled out", func() bool { return rolledOut(t, cs, "web:2", 2) })
	mu.Lock()
	defer mu.Unlock()
	if mixed {
		t.Error("old and new pods ran at the same time: Recreate must stop the old ones first")
	}
}

func TestPodCIDRController(t *testing.T) {
	existing := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "master"}, Spec: v1.NodeSpec{PodCIDR: "10.42.0.0/24"}}
	cs := fakeclient.New(existing, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}})
	ctx := startManager(t, cs, Options{Controllers: []string{PodCIDR}}, "nodes")
	cidrOf := func(name string) string {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return n.Spec.PodCIDR
	}
	testutil.Poll(t, 10*time.Second, "node1 gets 10.42.1.0/24", func() bool { return cidrOf("node1") == "10.42.1.0/24" })
	for i := 2; i <= 3; i++ {
		name := fmt.Sprintf("node%d", i)
		if _, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("10.42.%d.0/24", i)
		testutil.Poll(t, 10*time.Second, name+" gets "+want, func() bool { return cidrOf(name) == want })
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, "node1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The freed block goes to the next node (once the deletion is seen).
	testutil.Poll(t, 10*time.Second, "node4 reuses 10.42.1.0/24", func() bool {
		if _, err := cs.CoreV1().Nodes().Get(ctx, "node4", metav1.GetOptions{}); err != nil {
			if _, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node4"}}, metav1.CreateOptions{}); err != nil {
				return false
			}
		}
		got := cidrOf("node4")
		if got != "" && got != "10.42.1.0/24" {
			t.Fatalf("node4 got %s, want the freed 10.42.1.0/24", got)
		}
		return got == "10.42.1.0/24"
	})
}

func TestEndpointsController(t *testing.T) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"tier": "front"}},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []v1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec:   v1.PodSpec{Containers: []v1.Container{{Name: "c"}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.42.1.5"}}
	cs := fakeclient.New(svc, pod)
	ctx := startManager(t, cs, Options{Controllers: []string{Endpoints}}, "pods", "services", "endpoints")
	ep := func() *v1.Endpoints {
		e, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return e
	}
	testutil.Poll(t, 10*time.Second, "p1 not ready", func() bool {
		e := ep()
		return e != nil && e.Labels["tier"] == "front" && len(e.Subsets) == 1 && len(e.Subsets[0].NotReadyAddresses) == 1 && len(e.Subsets[0].Addresses) == 0
	})
	pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "p1 ready on 8080", func() bool {
		e := ep()
		return e != nil && len(e.Subsets) == 1 && len(e.Subsets[0].Addresses) == 1 && e.Subsets[0].Ports[0].Port == 8080
	})
	if err := cs.CoreV1().Pods("default").Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "no subsets once p1 is gone", func() bool { e := ep(); return e != nil && len(e.Subsets) == 0 })
	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "endpoints deleted with the service", func() bool { return ep() == nil })
}
