package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/internal/testutil"
)

// klab runs one klab command in-process and returns its output.
func klab(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := newApp()
	a.stdout, a.stderr = &out, &errOut
	err := a.run(ctx, args)
	return out.String() + errOut.String(), err
}

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: klab/web:1
`

// TestWorkloadCommands runs klab scheduler and klab controller-manager
// against a real API server and drives them with klab apply, get, scale
// and delete, as a user would.
func TestWorkloadCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and an API server")
	}
	// klog's logger is global: set it before anything logs through it.
	client.RouteKlog(slog.New(slog.DiscardHandler))
	api := apiservertest.Start(t)
	kc := api.Kubeconfig(t)
	admin := api.Clientset(t, pki.AdminSpec())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	for _, name := range []string{"master", "node1", "node2"} {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if name == "master" {
			n.Spec.Taints = []v1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: v1.TaintEffectNoSchedule}}
		}
		n, err := admin.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		list := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("4Gi"), v1.ResourcePods: resource.MustParse("110")}
		n.Status = v1.NodeStatus{Allocatable: list, Capacity: list, Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}}
		if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"scheduler", "--kubeconfig", kc, "--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s"},
		{"controller-manager", "--kubeconfig", kc, "--controllers", "replicaset,deployment,garbagecollector", "--leader-elect=false"},
	} {
		wg.Go(func() {
			if out, err := klab(t, ctx, args...); err != nil && ctx.Err() == nil {
				t.Errorf("klab %s: %v\n%s", args[0], err, out)
			}
		})
	}

	dir := t.TempDir()
	manifest := filepath.Join(dir, "web.yaml")
	if err := os.WriteFile(manifest, []byte(webManifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := klab(t, ctx, "apply", "-f", manifest, "--kubeconfig", kc); err != nil || out != "deployment.apps/web created\n" {
		t.Fatalf("apply: %v %q", err, out)
	}
	testutil.Poll(t, 30*time.Second, "3 pods bound over node1 and node2", func() bool {
		out, err := klab(t, ctx, "get", "pods", "-o", "wide", "--kubeconfig", kc)
		if err != nil {
			return false
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		perNode := map[string]int{}
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) > 6 {
				perNode[f[6]]++ // NAME READY STATUS RESTARTS AGE IP NODE
			}
		}
		return len(lines) == 4 && perNode["node1"] > 0 && perNode["node2"] > 0 && perNode["node1"]+perNode["node2"] == 3
	})
	if out, err := klab(t, ctx, "get", "deploy,rs", "--kubeconfig", kc, "-o", "name"); err != nil || !strings.HasPrefix(out, "deployment.apps/web\nreplicaset.apps/web-") {
		t.Errorf("get deploy,rs -o name: %v %q", err, out)
	}
	if out, err := klab(t, ctx, "scale", "deploy/web", "--replicas", "1", "--kubeconfig", kc); err != nil || out != "deployment.apps/web scaled\n" {
		t.Errorf("scale: %v %q", err, out)
	}
	// Pods bound to a node stay Terminating until its agent stops them;
	// there is no agent here, so count the others.
	live := func() int {
		l, err := admin.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return -1
		}
		n := 0
		for _, p := range l.Items {
			if p.DeletionTimestamp == nil {
				n++
			}
		}
		return n
	}
	testutil.Poll(t, 30*time.Second, "1 pod left", func() bool { return live() == 1 })
	if out, err := klab(t, ctx, "get", "pdos", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "did you mean pods") {
		t.Errorf("a typo: %v %q", err, out)
	}
	if out, err := klab(t, ctx, "delete", "-f", manifest, "--kubeconfig", kc); err != nil || out != "deployment.apps \"web\" deleted\n" {
		t.Errorf("delete: %v %q", err, out)
	}
	testutil.Poll(t, 30*time.Second, "the ReplicaSet and its pods garbage-collected", func() bool {
		out, _ := klab(t, ctx, "get", "rs", "--kubeconfig", kc)
		return out == "No resources found in default namespace.\n" && live() == 0
	})
}
