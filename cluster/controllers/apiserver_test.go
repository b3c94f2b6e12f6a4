package controllers_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/controllers"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/scheduler"
	"github.com/klab-dev/klab/internal/testutil"
)

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("KLAB_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// cluster is a real API server with a scheduler and a controller manager
// (both under leader election) and a stand-in for the nodes' agents.
type cluster struct {
	t     *testing.T
	ctx   context.Context
	admin kubernetes.Interface
	nodes *agents
}

func startCluster(t *testing.T, o controllers.Options) *cluster {
	t.Helper()
	// klog's logger is global: set it before anything logs through it.
	client.RouteKlog(testLog(t))
	api := apiservertest.Start(t)
	admin := api.Clientset(t, pki.AdminSpec())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	c := &cluster{t: t, ctx: ctx, admin: admin}

	c.nodes = &agents{cs: admin, alive: map[string]bool{}}
	for _, n := range []string{"master", "node1", "node2"} {
		c.addNode(n, n == "master")
	}
	wg.Go(func() { c.nodes.run(ctx) })

	log := testLog(t)
	le := client.DefaultLeaderElection("klab-scheduler")
	le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = 4*time.Second, 3*time.Second, 200*time.Millisecond
	schedCS := api.Clientset(t, pki.ComponentSpec(pki.UserScheduler))
	s, err := scheduler.New(schedCS, scheduler.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := client.RunLeader(ctx, schedCS, le, log, s.Run); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})

	cmCfg := api.Config(t, pki.ComponentSpec(pki.UserControllers))
	cmCS, err := kubernetes.NewForConfig(cmCfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cmCfg)
	if err != nil {
		t.Fatal(err)
	}
	o.Log = log
	cle := le
	cle.Name = "klab-controller-manager"
	wg.Go(func() {
		err := client.RunLeader(ctx, cmCS, cle, log, func(ctx context.Context) error { return controllers.Run(ctx, cmCS, dyn, o) })
		if err != nil {
			t.Errorf("controller manager: %v", err)
		}
	})
	return c
}

func (c *cluster) addNode(name string, master bool) {
	c.t.Helper()
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	if master {
		n.Labels["node-role.kubernetes.io/control-plane"] = ""
		n.Spec.Taints = []v1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: v1.TaintEffectNoSchedule}}
	}
	got, err := c.admin.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	got.Status = v1.NodeStatus{
		Capacity:    v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi"), v1.ResourcePods: resource.MustParse("110")},
		Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi"), v1.ResourcePods: resource.MustParse("110")},
		Conditions:  []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now()}},
	}
	if _, err := c.admin.CoreV1().Nodes().UpdateStatus(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	c.nodes.setAlive(name, true)
}

// agents stands in for the nodes' agents: it renews the Leases of live
// nodes and makes the pods bound to them run and be ready, with an IP.
type agents struct {
	cs    kubernetes.Interface
	mu    sync.Mutex
	alive map[string]bool
	ip    int
}

func (a *agents) setAlive(node string, alive bool) {
	a.mu.Lock()
	a.alive[node] = alive
	a.mu.Unlock()
}

func (a *agents) isAlive(node string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.alive[node]
}

func (a *agents) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.heartbeat(ctx) }) // apart, so slow pod work never delays it
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pods, err := a.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName == "" || !a.isAlive(p.Spec.NodeName) {
				continue
			}
			if p.DeletionTimestamp != nil {
				// The agent stops it and lets it go.
				a.cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
				continue
			}
			if p.Status.Phase == v1.PodRunning {
				continue
			}
			a.mu.Lock()
			a.ip++
			ip := fmt.Sprintf("10.42.9.%d", a.ip)
			a.mu.Unlock()
			p.Status.Phase = v1.PodRunning
			p.Status.PodIP = ip
			p.Status.PodIPs = []v1.PodIP{{IP: ip}}
			p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now()})
			a.cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		}
	}
}

// heartbeat renews the Leases of the live nodes every 200ms.
func (a *agents) heartbeat(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.mu.Lock()
		var live []string
		for n, ok := range a.alive {
			if ok {
				live = append(live, n)
			}
		}
		a.mu.Unlock()
		for _, n := range live {
			a.renew(ctx, n)
		}
	}
}

func (a *agents) renew(ctx context.Context, node string) {
	leases := a.cs.CoordinationV1().Leases(v1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: v1.NamespaceNodeLease},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: new(node), LeaseDurationSeconds: new(int32(10)), RenewTime: &now},
		}, metav1.CreateOptions{})
		return
	}
	if err != nil {
		return
	}
	l.Spec.RenewTime = &now
	leases.Update(ctx, l, metav1.UpdateOptions{})
}

func (c *cluster) pods(selector string) []v1.Pod {
	c.t.Helper()
	l, err := c.admin.CoreV1().Pods("default").List(c.ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		c.t.Fatal(err)
	}
	return l.Items
}

func (c *cluster) deployment(name string) *appsv1.Deployment {
	c.t.Helper()
	d, err := c.admin.AppsV1().Deployments("default").Get(c.ctx, name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

func webDeployment(replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: v1.PodSpec{Containers: []v1.Container{{
					Name: "web", Image: "klab/web:1",
					Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
					Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
						v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("64Mi")}},
				}}},
			},
		},
	}
}

// TestAgainstAPIServer drives the scheduler and the controller manager
// through a real klab API server (etcd, TLS, authz): a Deployment of 3
// replicas becomes a ReplicaSet and 3 pods spread over the two workers,
// endpoints follow, a rolling update and an undo make new revisions, pod
// CIDRs are handed out, a node that stops heartbeating is tainted and its
// pods move, and deleting the Deployment cascades.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and an API server")
	}
	c := startCluster(t, controllers.Options{
		NodeMonitorPeriod:      200 * time.Millisecond,
		NodeMonitorGracePeriod: 5 * time.Second, // long enough for a loaded CI machine
		PodEvictionTimeout:     2 * time.Second,
	})
	ctx := c.ctx

	// Pod CIDRs: one distinct /24 of 10.42.0.0/16 per node.
	testutil.Poll(t, 20*time.Second, "pod CIDRs on every node", func() bool {
		l, err := c.admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		seen := map[string]bool{}
		for _, n := range l.Items {
			p, err := netip.ParsePrefix(n.Spec.PodCIDR)
			if err != nil || p.Bits() != 24 || !netip.MustParsePrefix("10.42.0.0/16").Contains(p.Addr()) || seen[n.Spec.PodCIDR] ||
				len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != n.Spec.PodCIDR {
				return false
			}
			seen[n.Spec.PodCIDR] = true
		}
		return len(seen) == 3
	})

	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: v1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := c.admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.AppsV1().Deployments("default").Create(ctx, webDeployment(3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A ReplicaSet of revision 1 and 3 pods, bound over node1 and node2.
	var rs1 string
	testutil.Poll(t, 30*time.Second, "a ReplicaSet with 3 pods bound over node1 and node2", func() bool {
		rss, err := c.admin.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
		if err != nil || len(rss.Items) != 1 {
			return false
		}
		rs := rss.Items[0]
		if rs.Annotations[controllers.RevisionAnnotation] != "1" || metav1.GetControllerOf(&rs) == nil {
			return false
		}
		rs1 = rs.Name
		perNode := map[string]int{}
		for _, p := range c.pods("app=web") {
			perNode[p.Spec.NodeName]++
		}
		return perNode["node1"]+perNode["node2"] == 3 && perNode["node1"] > 0 && perNode["node2"] > 0 && perNode["master"] == 0
	})
	if !strings.HasPrefix(rs1, "web-") {
		t.Errorf("ReplicaSet %q: want web-<hash>", rs1)
	}
	testutil.Poll(t, 30*time.Second, "the Deployment available with 3 replicas", func() bool {
		d := c.deployment("web")
		return d.Status.AvailableReplicas == 3 && d.Status.UpdatedReplicas == 3 && condition(d, appsv1.DeploymentAvailable) == "True/MinimumReplicasAvailable" &&
			condition(d, appsv1.DeploymentProgressing) == "True/NewReplicaSetAvailable"
	})
	testutil.Poll(t, 20*time.Second, "endpoints with 3 ready addresses on port 8080", func() bool {
		ep, err := c.admin.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		return err == nil && len(ep.Subsets) == 1 && len(ep.Subsets[0].Addresses) == 3 &&
			len(ep.Subsets[0].Ports) == 1 && ep.Subsets[0].Ports[0].Port == 8080 && ep.Subsets[0].Ports[0].Name == "http"
	})

	// Rolling update to a new image: revision 2, the old ReplicaSet empty.
	c.updateDeployment(func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "klab/web:2" })
	waitRolledOut(t, c, "klab/web:2", "2")
	old, err := c.admin.AppsV1().ReplicaSets("default").Get(ctx, rs1, metav1.GetOptions{})
	if err != nil || *old.Spec.Replicas != 0 {
		t.Fatalf("old ReplicaSet after the rollout: %v %v", err, old.Spec.Replicas)
	}

	// Self-healing: node2 stops heartbeating.
	c.nodes.setAlive("node2", false)
	testutil.Poll(t, 30*time.Second, "node2 Unknown and tainted unreachable", func() bool {
		n, err := c.admin.CoreV1().Nodes().Get(ctx, "node2", metav1.GetOptions{})
		if err != nil {
			return false
		}
		tainted := false
		for _, tn := range n.Spec.Taints {
			tainted = tainted || tn.Key == v1.TaintNodeUnreachable && tn.Effect == v1.TaintEffectNoExecute
		}
		for _, cnd := range n.Status.Conditions {
			if cnd.Type == v1.NodeReady {
				return tainted && cnd.Status == v1.ConditionUnknown
			}
		}
		return false
	})
	testutil.Poll(t, 3*time.Minute, "3 running pods, all on node1", func() bool {
		n := 0
		for _, p := range c.pods("app=web") {
			if p.DeletionTimestamp != nil {
				continue
			}
			if p.Spec.NodeName != "node1" || p.Status.Phase != v1.PodRunning {
				return false
			}
			n++
		}
		return n == 3
	})

	// Undo: back to revision 1's template, as revision 3.
	c.nodes.setAlive("node2", true)
	rs, err := c.admin.AppsV1().ReplicaSets("default").Get(ctx, rs1, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.updateDeployment(func(d *appsv1.Deployment) {
		d.Spec.Template = rs.Spec.Template
		delete(d.Spec.Template.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	})
	waitRolledOut(t, c, "klab/web:1", "3")
	if rs, _ := c.admin.AppsV1().ReplicaSets("default").Get(ctx, rs1, metav1.GetOptions{}); rs.Annotations[controllers.RevisionAnnotation] != "3" {
		t.Errorf("undo made revision %q of %s, want it to become 3", rs.Annotations[controllers.RevisionAnnotation], rs1)
	}

	// Cascading delete: the ReplicaSets and pods go with the Deployment.
	if err := c.admin.AppsV1().Deployments("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 30*time.Second, "ReplicaSets and pods garbage-collected", func() bool {
		rss, err := c.admin.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{})
		return err == nil && len(rss.Items) == 0 && len(c.pods("app=web")) == 0
	})
}

// updateDeployment changes the Deployment, retrying when the controller
// updated it in between.
func (c *cluster) updateDeployment(change func(*appsv1.Deployment)) {
	c.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := c.deployment("web")
		change(d)
		_, err := c.admin.AppsV1().Deployments("default").Update(c.ctx, d, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

func waitRolledOut(t *testing.T, c *cluster, image, revision string) {
	t.Helper()
	testutil.Poll(t, 3*time.Minute, "rolled out "+image+" as revision "+revision, func() bool {
		d := c.deployment("web")
		if d.Annotations[controllers.RevisionAnnotation] != revision || d.Status.ObservedGeneration < d.Generation ||
			d.Status.UpdatedReplicas != 3 || d.Status.Replicas != 3 || d.Status.AvailableReplicas != 3 {
			return false
		}
		n := 0
		for _, p := range c.pods("app=web") {
			if p.DeletionTimestamp == nil && p.Spec.Containers[0].Image == image {
				n++
			}
		}
		return n == 3
	})
}

func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) string {
	for _, c := range d.Status.Conditions {
		if c.Type == t {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return ""
}
