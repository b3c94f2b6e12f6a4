package apiserver_test

import (
	"net/netip"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

func deployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "busybox:1"}}},
			},
		},
	}
}

func TestPatchTypes(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	d, err := cs.AppsV1().Deployments("default").Create(ctx, deployment("web", 1), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Generation != 1 || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || *d.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("deployment defaults: generation %d, %+v", d.Generation, d.Spec.Strategy)
	}
	deps := cs.AppsV1().Deployments("default")
	// Strategic merge: containers merge by name.
	d, err = deps.Patch(ctx, "web", types.StrategicMergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:2"}]}}}}`), metav1.PatchOptions{})
	if err != nil || len(d.Spec.Template.Spec.Containers) != 2 || d.Generation != 2 {
		t.Fatalf("strategic merge: %v %v gen %d", err, d.Spec.Template.Spec.Containers, d.Generation)
	}
	// JSON merge: the list is replaced.
	d, err = deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:3"}]}}}}`), metav1.PatchOptions{})
	if err != nil || len(d.Spec.Template.Spec.Containers) != 1 || d.Spec.Template.Spec.Containers[0].Image != "busybox:3" {
		t.Fatalf("merge: %v %v", err, d.Spec.Template.Spec.Containers)
	}
	// JSON patch, with a test that fails.
	d, err = deps.Patch(ctx, "web", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/replicas","value":5}]`), metav1.PatchOptions{})
	if err != nil || *d.Spec.Replicas != 5 {
		t.Fatalf("json patch: %v", err)
	}
	if _, err := deps.Patch(ctx, "web", types.JSONPatchType, []byte(`[{"op":"test","path":"/spec/replicas","value":4}]`), metav1.PatchOptions{}); err == nil || apierrors.ReasonForError(err) != metav1.StatusReasonInvalid {
		t.Fatalf("failed json patch test: %v", err)
	}
	// A patch naming a stale resourceVersion conflicts.
	if _, err := deps.Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"resourceVersion":"1"},"spec":{"replicas":1}}`), metav1.PatchOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale patch: %v", err)
	}
	// Status writes leave the spec (and generation) alone; spec writes leave the status.
	d.Status.Replicas = 5
	d.Spec.Replicas = ptr.To[int32](9)
	s, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil || s.Status.Replicas != 5 || *s.Spec.Replicas != 5 || s.Generation != d.Generation {
		t.Fatalf("status update: %v %+v", err, s)
	}
	// The scale subresource.
	sc, err := deps.GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 5 || sc.Status.Selector != "app=web" {
		t.Fatalf("get scale: %v %+v", err, sc)
	}
	sc.Spec.Replicas = 2
	if _, err := deps.UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := deps.UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale scale: %v", err)
	}
	if d, _ = deps.Get(ctx, "web", metav1.GetOptions{}); *d.Spec.Replicas != 2 {
		t.Fatalf("after scale: %d", *d.Spec.Replicas)
	}
	// Validation with field paths.
	bad := deployment("bad", 1)
	bad.Spec.Template.Labels = map[string]string{"app": "other"}
	_, err = deps.Create(ctx, bad, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.template.metadata.labels") {
		t.Fatalf("selector mismatch: %v", err)
	}
}

func TestGracefulPodDelete(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	pods := cs.CoreV1().Pods("default")
	cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}, metav1.CreateOptions{})
	p := pod("bound")
	p.Spec.NodeName = "node1"
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "bound", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := pods.Get(ctx, "bound", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil || *got.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("a bound pod is marked, not deleted: %v %+v", err, got.ObjectMeta)
	}
	// The node's agent stops it and removes it with grace 0; another node may not.
	other := c.Clientset(t, pki.NodeSpec("node2", netip.MustParseAddr("192.168.34.12")))
	if err := other.CoreV1().Pods("default").Delete(ctx, "bound", *metav1.NewDeleteOptions(0)); !apierrors.IsForbidden(err) {
		t.Fatalf("another node deleting the pod: %v", err)
	}
	node1 := c.Clientset(t, pki.NodeSpec("node1", netip.MustParseAddr("192.168.34.11")))
	if err := node1.CoreV1().Pods("default").Delete(ctx, "bound", *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "bound", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after grace 0: %v", err)
	}

	// deletecollection with a selector.
	for _, n := range []string{"b1", "b2", "keep"} {
		p := pod(n)
		if n != "keep" {
			p.Labels["job"] = "batch"
		}
		pods.Create(ctx, p, metav1.CreateOptions{})
	}
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "job=batch"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := pods.List(ctx, metav1.ListOptions{}); len(l.Items) != 1 || l.Items[0].Name != "keep" {
		t.Fatalf("after deletecollection: %v", l.Items)
	}
}

func TestServices(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	svcs := cs.CoreV1().Services("default")
	svc := func(name string, typ corev1.ServiceType, ip string, nodePort int32) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{
			Type: typ, ClusterIP: ip, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: 80, NodePort: nodePort}},
		}}
	}
	a, err := svcs.Create(ctx, svc("a", "", "", 0), metav1.CreateOptions{})
	if err != nil || a.Spec.ClusterIP == "" || a.Spec.ClusterIP == "10.96.0.1" || a.Spec.Ports[0].TargetPort.IntValue() != 80 || a.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Fatalf("allocated: %v %+v", err, a.Spec)
	}
	dns, err := svcs.Create(ctx, svc("dns", "", "10.96.0.10", 0), metav1.CreateOptions{})
	if err != nil || dns.Spec.ClusterIP != "10.96.0.10" {
		t.Fatalf("asked-for IP: %v", err)
	}
	if _, err := svcs.Create(ctx, svc("dup", "", "10.96.0.10", 0), metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "already allocated") {
		t.Fatalf("taken IP: %v", err)
	}
	if _, err := svcs.Create(ctx, svc("out", "", "10.97.0.1", 0), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("IP out of range: %v", err)
	}
	np, err := svcs.Create(ctx, svc("np", corev1.ServiceTypeNodePort, "", 0), metav1.CreateOptions{})
	if err != nil || np.Spec.Ports[0].NodePort < 30000 || np.Spec.Ports[0].NodePort > 32767 {
		t.Fatalf("node port: %v %+v", err, np.Spec.Ports)
	}
	if _, err := svcs.Create(ctx, svc("np2", corev1.ServiceTypeNodePort, "", np.Spec.Ports[0].NodePort), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("taken node port: %v", err)
	}
	// An update that leaves the IP and port out keeps them (kubectl apply does).
	np.Spec.ClusterIP, np.Spec.ClusterIPs, np.Spec.Ports[0].NodePort = "", nil, 0
	up, err := svcs.Update(ctx, np, metav1.UpdateOptions{})
	if err != nil || up.Spec.ClusterIP == "" || up.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("update: %v %+v", err, up.Spec)
	}
	// Deleting gives the IP back.
	if err := svcs.Delete(ctx, "dns", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs.Create(ctx, svc("dns2", "", "10.96.0.10", 0), metav1.CreateOptions{}); err != nil {
		t.Fatalf("reuse of a released IP: %v", err)
	}
}

// TestFinalizers: an object with finalizers waits for them; a pod's final
// delete with grace 0 still waits for its finalizers, then goes.
func TestFinalizers(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	pods := cs.CoreV1().Pods("default")
	p := pod("held")
	p.Spec.NodeName = "node1"
	p.Finalizers = []string{"klab.dev/test"}
	if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "held", *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatal(err)
	}
	got, err := pods.Get(ctx, "held", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil || *got.DeletionGracePeriodSeconds != 0 {
		t.Fatalf("held by its finalizer: %v %+v", err, got.ObjectMeta)
	}
	if _, err := pods.Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Get(ctx, "held", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after the last finalizer: %v", err)
	}
	// Orphan propagation: the garbage collector's finalizer holds the owner.
	d, err := cs.AppsV1().Deployments("default").Create(ctx, deployment("owner", 1), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	orphan := metav1.DeletePropagationOrphan
	if err := cs.AppsV1().Deployments("default").Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
		t.Fatal(err)
	}
	if got, err := cs.AppsV1().Deployments("default").Get(ctx, d.Name, metav1.GetOptions{}); err != nil || got.Finalizers[0] != metav1.FinalizerOrphanDependents {
		t.Fatalf("orphan finalizer: %v %v", err, got.Finalizers)
	}
}

// TestNodePortRelease: a port dropped by an update, or given up with the
// service's type, is free again.
func TestNodePortRelease(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	svcs := cs.CoreV1().Services("default")
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "np"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		Ports: []corev1.ServicePort{{Name: "a", Port: 80, NodePort: 30080}, {Name: "b", Port: 81, NodePort: 30081}}}}
	s, err := svcs.Create(ctx, s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Ports = s.Spec.Ports[:1]
	if _, err := svcs.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
		Ports: []corev1.ServicePort{{Port: 80, NodePort: 30081}}}}
	if _, err := svcs.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatalf("port 30081 after the update dropped it: %v", err)
	}
	// A stale update allocates nothing that stays taken.
	stale := s.DeepCopy()
	stale.Spec.Ports = append(stale.Spec.Ports, corev1.ServicePort{Name: "c", Port: 82, NodePort: 30082})
	if _, err := svcs.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	third := other.DeepCopy()
	third.Name, third.ResourceVersion, third.Spec.Ports[0].NodePort = "third", "", 30082
	if _, err := svcs.Create(ctx, third, metav1.CreateOptions{}); err != nil {
		t.Fatalf("port 30082 after a failed update: %v", err)
	}
}
