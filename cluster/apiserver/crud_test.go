package apiserver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func pod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func TestCRUD(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	ns, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Items) != 4 {
		t.Errorf("namespaces at start: %d", len(ns.Items))
	}
	p, err := cs.CoreV1().Pods("default").Create(ctx, pod("web-1"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.UID == "" || p.ResourceVersion == "" || p.CreationTimestamp.IsZero() || p.Generation != 1 {
		t.Errorf("system fields: %+v", p.ObjectMeta)
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyAlways || p.Spec.DNSPolicy != corev1.DNSClusterFirst ||
		*p.Spec.TerminationGracePeriodSeconds != 30 || p.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent ||
		p.Spec.SchedulerName != "default-scheduler" || p.Status.Phase != corev1.PodPending {
		t.Errorf("defaults: %+v %+v", p.Spec, p.Status)
	}
	got, err := cs.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil || got.UID != p.UID {
		t.Fatalf("get: %v", err)
	}
	got.Labels["tier"] = "front"
	upd, err := cs.CoreV1().Pods("default").Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if upd.ResourceVersion == got.ResourceVersion {
		t.Error("update kept the resourceVersion")
	}
	// The stale copy conflicts.
	got.Labels["tier"] = "back"
	if _, err := cs.CoreV1().Pods("default").Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("web-1"), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := cs.CoreV1().Pods("nope").Create(ctx, pod("x"), metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in a missing namespace: %v", err)
	}
	gen := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "cfg-"}}
	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, gen, metav1.CreateOptions{})
	if err != nil || len(cm.Name) != len("cfg-")+5 {
		t.Fatalf("generateName: %v %q", err, cm.Name)
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("an unbound pod is deleted at once: %v", err)
	}
	svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP != "10.96.0.1" {
		t.Fatalf("kubernetes service: %v %v", err, svc)
	}
}

// TestPagination: limit and continue, as kubectl's chunked lists use them.
func TestPagination(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	for i := range 5 {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	opts := metav1.ListOptions{Limit: 2}
	var rv string
	for {
		l, err := cs.CoreV1().ConfigMaps("default").List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rv == "" {
			rv = l.ResourceVersion
		} else if l.ResourceVersion != rv {
			t.Errorf("pages at revisions %s and %s", rv, l.ResourceVersion)
		}
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		// A write between pages does not show: the pages are one snapshot.
		cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "z"}}, metav1.CreateOptions{})
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if strings.Join(names, ",") != "c0,c1,c2,c3,c4" {
		t.Errorf("paged names %v", names)
	}
}
