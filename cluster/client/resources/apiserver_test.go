package resources_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/client/resources"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/internal/iox"
	"github.com/klab-dev/klab/internal/testutil"
)

const webV1 = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: klab/web:1
      - name: sidecar
        image: klab/log:1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
`

// webV2 changes the image, drops the tier label and the sidecar.
const webV2 = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: klab/web:2
`

func manifests(t *testing.T, text string) []resources.Manifest {
	t.Helper()
	ms, err := resources.ReadManifests([]string{"-"}, strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and an API server")
	}
	client.RouteKlog(slog.New(slog.DiscardHandler)) // before anything logs
	api := apiservertest.Start(t)
	cfg, err := client.Config("unused", api.Kubeconfig(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := resources.New(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin := api.Clientset(t, pki.AdminSpec())
	var out, errOut bytes.Buffer
	run := func(f func() error) string {
		t.Helper()
		out.Reset()
		errOut.Reset()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}

	t.Run("resource names", func(t *testing.T) {
		for arg, want := range map[string]string{
			"po": "pods", "pod": "pods", "Pods": "pods", "no": "nodes", "deploy": "deployments", "rs": "replicasets",
			"svc": "services", "ep": "endpoints", "ns": "namespaces", "cm": "configmaps", "netpol": "networkpolicies",
			"ev": "events", "cn": "clusternetworks", "deployments.apps": "deployments", "deployments.v1.apps": "deployments",
		} {
			m, err := c.Mapping(arg)
			if err != nil || m.Resource.Resource != want {
				t.Errorf("%s: %v %v, want %s", arg, m, err, want)
			}
		}
		_, err := c.Mapping("pdos")
		if err == nil || !strings.Contains(err.Error(), `unknown resource type "pdos": did you mean`) || !strings.Contains(err.Error(), "pods") {
			t.Errorf("unknown type: %v", err)
		}
	})

	t.Run("apply, then apply again, then apply a change", func(t *testing.T) {
		got := run(func() error { return c.Apply(ctx, &out, manifests(t, webV1), "") })
		if got != "deployment.apps/web created\nservice/web created\n" {
			t.Errorf("first apply printed %q", got)
		}
		got = run(func() error { return c.Apply(ctx, &out, manifests(t, webV1), "") })
		if got != "deployment.apps/web unchanged\nservice/web unchanged\n" {
			t.Errorf("second apply printed %q", got)
		}
		// Someone else annotates the Deployment: apply must keep that.
		d, err := admin.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Annotations["team"] = "blue"
		if _, err := admin.AppsV1().Deployments("default").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		got = run(func() error { return c.Apply(ctx, &out, manifests(t, webV2), "") })
		if got != "deployment.apps/web configured\n" {
			t.Errorf("third apply printed %q", got)
		}
		d, err = admin.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cs := d.Spec.Template.Spec.Containers
		if len(cs) != 1 || cs[0].Image != "klab/web:2" {
			t.Errorf("containers after apply: %+v (want only web, image klab/web:2)", cs)
		}
		if _, ok := d.Labels["tier"]; ok {
			t.Error("the label removed from the file is still there")
		}
		if d.Annotations["team"] != "blue" {
			t.Error("apply dropped an annotation someone else set")
		}
	})

	t.Run("create an existing object", func(t *testing.T) {
		err := c.Create(ctx, &out, manifests(t, webV2), "")
		if err == nil || !strings.Contains(err.Error(), `deployments.apps "web" already exists`) || !strings.Contains(err.Error(), "<stdin>:1") {
			t.Errorf("create of an existing object: %v", err)
		}
	})

	t.Run("get", func(t *testing.T) {
		ts, err := c.Targets([]string{"deploy,svc"})
		if err != nil {
			t.Fatal(err)
		}
		got := run(func() error { return c.Get(ctx, &out, &errOut, ts, resources.GetOptions{}) })
		if !strings.Contains(got, "deployment.apps/web") || !strings.Contains(got, "service/web") || !strings.Contains(got, "NAME") {
			t.Errorf("get deploy,svc:\n%s", got)
		}
		ts, _ = c.Targets([]string{"deploy/web"})
		got = run(func() error { return c.Get(ctx, &out, &errOut, ts, resources.GetOptions{Output: "name"}) })
		if got != "deployment.apps/web\n" {
			t.Errorf("-o name: %q", got)
		}
		got = run(func() error { return c.Get(ctx, &out, &errOut, ts, resources.GetOptions{Output: "yaml"}) })
		if !strings.HasPrefix(got, "apiVersion: apps/v1\nkind: Deployment\n") || strings.Contains(got, "managedFields") {
			t.Errorf("-o yaml:\n%s", got)
		}
		ts, _ = c.Targets([]string{"pods", "nope"})
		err = c.Get(ctx, &out, &errOut, ts, resources.GetOptions{})
		if err == nil || err.Error() != `pods "nope" not found in namespace default` {
			t.Errorf("get a missing pod: %v", err)
		}
		ts, _ = c.Targets([]string{"cm"})
		run(func() error {
			return c.Get(ctx, &out, &errOut, ts, resources.GetOptions{Namespace: "kube-system", Selector: "none=here"})
		})
		if errOut.String() != "No resources found in kube-system namespace.\n" {
			t.Errorf("empty get: %q", errOut.String())
		}
	})

	t.Run("scale", func(t *testing.T) {
		ts, _ := c.Targets([]string{"deploy/web"})
		if got := run(func() error { return c.Scale(ctx, &out, ts, "", 5) }); got != "deployment.apps/web scaled\n" {
			t.Errorf("scale printed %q", got)
		}
		d, _ := admin.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if *d.Spec.Replicas != 5 {
			t.Errorf("replicas %d after scale", *d.Spec.Replicas)
		}
	})

	t.Run("rollout history and undo", func(t *testing.T) {
		d, _ := admin.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		// Two ReplicaSets as the deployment controller would have made them.
		for i, img := range []string{"klab/web:1", "klab/web:2"} {
			rev := []string{"1", "2"}[i]
			tmpl := d.Spec.Template.DeepCopy()
			tmpl.Spec.Containers[0].Image = img
			tmpl.Labels = map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: "h" + rev}
			rs := &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{Name: "web-h" + rev, Namespace: "default", Labels: tmpl.Labels,
					Annotations:     map[string]string{"deployment.kubernetes.io/revision": rev, "kubernetes.io/change-cause": "image " + img},
					OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
				Spec: appsv1.ReplicaSetSpec{Replicas: new(int32(0)),
					Selector: &metav1.LabelSelector{MatchLabels: tmpl.Labels}, Template: *tmpl},
			}
			if _, err := admin.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		d.Annotations["deployment.kubernetes.io/revision"] = "2"
		if _, err := admin.AppsV1().Deployments("default").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		ts, _ := c.Targets([]string{"deploy/web"})
		got := run(func() error { return c.RolloutHistory(ctx, &out, ts, "", 0) })
		if want := "deployment.apps/web\nREVISION  CHANGE-CAUSE\n1         image klab/web:1\n2         image klab/web:2\n"; got != want {
			t.Errorf("history:\n%s\nwant\n%s", got, want)
		}
		if got := run(func() error { return c.RolloutUndo(ctx, &out, ts, "", 0) }); got != "deployment.apps/web rolled back\n" {
			t.Errorf("undo printed %q", got)
		}
		d, _ = admin.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "klab/web:1" {
			t.Errorf("after undo the image is %s, want klab/web:1", img)
		}
		if _, ok := d.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ok {
			t.Error("undo copied the pod-template-hash label into the deployment")
		}
		if err := c.RolloutUndo(ctx, &out, ts, "", 7); err == nil || !strings.Contains(err.Error(), "no revision 7") {
			t.Errorf("undo to a missing revision: %v", err)
		}
	})

	t.Run("describe", func(t *testing.T) {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"node-role.kubernetes.io/worker": ""}},
			Spec: v1.NodeSpec{PodCIDR: "10.42.1.0/24", Taints: []v1.Taint{{Key: "k", Value: "v", Effect: v1.TaintEffectNoSchedule}}}}
		if _, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ts, _ := c.Targets([]string{"node", "node1"})
		got := run(func() error { return c.Describe(ctx, &out, ts, "", "") })
		for _, want := range []string{"Name:", "node1", "Roles:", "worker", "Taints:", "k=v:NoSchedule", "PodCIDR:", "10.42.1.0/24", "Non-terminated Pods:"} {
			if !strings.Contains(got, want) {
				t.Errorf("describe node lacks %q:\n%s", want, got)
			}
		}
		ts, _ = c.Targets([]string{"deploy/web"})
		got = run(func() error { return c.Describe(ctx, &out, ts, "", "") })
		for _, want := range []string{"Replicas:", "5 desired", "StrategyType:", "Pod Template:", "klab/web:1", "Events:"} {
			if !strings.Contains(got, want) {
				t.Errorf("describe deploy lacks %q:\n%s", want, got)
			}
		}
	})

	t.Run("get --watch", func(t *testing.T) {
		ts, _ := c.Targets([]string{"cm"})
		first := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "listed", Namespace: "kube-system"}}
		if _, err := admin.CoreV1().ConfigMaps("kube-system").Create(ctx, first, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		var buf iox.Buffer
		done := make(chan error, 1)
		go func() {
			done <- c.Get(wctx, &buf, &buf, ts, resources.GetOptions{Namespace: "kube-system", Watch: true})
		}()
		testutil.Poll(t, 10*time.Second, "the first listing", func() bool { return strings.Contains(buf.String(), "\nlisted ") })
		cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched", Namespace: "kube-system"}}
		if _, err := admin.CoreV1().ConfigMaps("kube-system").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.Poll(t, 10*time.Second, "a row for the new configmap", func() bool { return strings.Contains(buf.String(), "\nwatched ") })
		stop()
		if err := <-done; err != nil {
			t.Errorf("watch ended with %v", err)
		}
		if strings.Count(buf.String(), "NAME") != 1 {
			t.Errorf("the header printed more than once:\n%s", buf.String())
		}
	})

	t.Run("rollout status", func(t *testing.T) {
		d, err := admin.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 5, UpdatedReplicas: 2, AvailableReplicas: 2}
		if d, err = admin.AppsV1().Deployments("default").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		ts, _ := c.Targets([]string{"deploy/web"})
		var buf iox.Buffer
		done := make(chan error, 1)
		go func() { done <- c.RolloutStatus(ctx, &buf, ts, "", true, 30*time.Second) }()
		testutil.Poll(t, 10*time.Second, "the waiting line", func() bool {
			return strings.Contains(buf.String(), `Waiting for deployment "web" rollout to finish: 2 out of 5 new replicas have been updated...`)
		})
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 5, UpdatedReplicas: 5, AvailableReplicas: 5, ReadyReplicas: 5}
		if _, err := admin.AppsV1().Deployments("default").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(buf.String(), "deployment \"web\" successfully rolled out\n") {
			t.Errorf("rollout status printed:\n%s", buf.String())
		}
	})

	t.Run("delete", func(t *testing.T) {
		got := run(func() error {
			return c.DeleteManifests(ctx, &out, manifests(t, webV1), "", resources.DeleteOptions{GracePeriod: -1})
		})
		if got != "deployment.apps \"web\" deleted\nservice \"web\" deleted\n" {
			t.Errorf("delete printed %q", got)
		}
		ts, _ := c.Targets([]string{"svc", "web"})
		err := c.Delete(ctx, &out, ts, "", resources.DeleteOptions{GracePeriod: -1})
		if err == nil || err.Error() != `services "web" not found in namespace default` {
			t.Errorf("delete a missing service: %v", err)
		}
	})
}
