package apiserver_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
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
        image: busybox
        command: ["httpd", "-f"]
`

const podYAML = `apiVersion: v1
kind: Pod
metadata:
  name: solo
  labels: {app: solo}
spec:
  containers:
  - name: main
    image: busybox
`

// TestKubectl drives a real kubectl against the server with a klab
// kubeconfig: the commands a lab uses.
func TestKubectl(t *testing.T) {
	kubectl := apiservertest.Kubectl(t)
	c := apiservertest.Start(t)
	kubeconfig := c.Kubeconfig(t)
	home := t.TempDir()
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "KUBECACHEDIR="+filepath.Join(home, "cache"))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		if errb.Len() > 0 {
			t.Logf("kubectl %s (stderr): %s", strings.Join(args, " "), errb.String())
		}
		return out.String()
	}
	want := func(out string, subs ...string) {
		t.Helper()
		for _, s := range subs {
			if !strings.Contains(out, s) {
				t.Errorf("output lacks %q:\n%s", s, out)
			}
		}
	}
	// Two nodes, as their agents register them.
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	for i, name := range []string{"node1", "node2"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"node-role.kubernetes.io/worker": ""}}}
		n, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Status = corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.34." + string(rune('1'+i)) + "1"}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-klab"},
		}
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want(run("get", "nodes"), "NAME", "STATUS", "ROLES", "node1", "Ready", "worker", "v1.37.2-klab")
	want(run("get", "nodes", "-o", "wide"), "INTERNAL-IP", "192.168.34.11")

	os.WriteFile(filepath.Join(dir, "deploy.yaml"), []byte(deploymentYAML), 0o644)
	os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(podYAML), 0o644)
	want(run("create", "-f", filepath.Join(dir, "pod.yaml")), "pod/solo created")
	want(run("apply", "-f", filepath.Join(dir, "deploy.yaml")), "deployment.apps/web created")
	// Change the file and apply again: a client-side three-way patch.
	os.WriteFile(filepath.Join(dir, "deploy.yaml"), []byte(strings.Replace(deploymentYAML, "replicas: 3", "replicas: 2", 1)), 0o644)
	want(run("apply", "-f", filepath.Join(dir, "deploy.yaml")), "deployment.apps/web configured")
	if d, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 2 {
		t.Fatalf("after apply: %v %v", err, d)
	}
	want(run("get", "pods", "-A", "-o", "wide"), "NAMESPACE", "solo", "Pending", "NODE", "<none>")
	want(run("get", "deploy,rs"), "deployment.apps/web", "0/2")
	want(run("scale", "deploy", "web", "--replicas=4"), "deployment.apps/web scaled")
	if d, _ := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{}); *d.Spec.Replicas != 4 {
		t.Errorf("after scale: %d replicas", *d.Spec.Replicas)
	}
	want(run("describe", "pod", "solo"), "Name:", "solo", "Namespace:", "default", "busybox", "Status:", "Pending")

	// get --watch prints the list, then the changes as they come.
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	wcmd := exec.CommandContext(wctx, kubectl, "--kubeconfig", kubeconfig, "get", "pods", "--watch")
	wcmd.Env = append(os.Environ(), "HOME="+home)
	stdout, _ := wcmd.StdoutPipe()
	var werr bytes.Buffer
	wcmd.Stderr = &werr
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("kubectl get --watch ended: %s", werr.String())
		}
		return lines.Text()
	}
	if h := next(); !strings.Contains(h, "NAME") || !strings.Contains(h, "STATUS") {
		t.Fatalf("watch header %q", h)
	}
	if l := next(); !strings.Contains(l, "solo") {
		t.Fatalf("watch first row %q", l)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := next(); !strings.Contains(l, "late") {
		t.Fatalf("watch event %q", l)
	}
	wcancel()
	wcmd.Wait()

	want(run("delete", "pod", "solo"), `pod "solo" deleted`)
	want(run("delete", "-f", filepath.Join(dir, "deploy.yaml")), `deployment.apps "web" deleted`)
	out := run("get", "pods")
	if strings.Contains(out, "solo") {
		t.Errorf("solo still listed:\n%s", out)
	}
}
