// Package e2etest brings up netns clusters for the acceptance tests of
// pods, Services, cluster DNS and NetworkPolicy, and runs things in their
// pods.
package e2etest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/netns"
	"github.com/klab-dev/klab/provision/transport"
)

// Cluster is a running netns cluster of a test.
type Cluster struct {
	T   testing.TB
	C   *provision.Cluster
	P   provision.Provider
	Cfg *rest.Config
	CS  kubernetes.Interface
	NC  *netctl.Client
}

// Up brings up the cluster name (1 master and 2 workers) with its state in
// a temporary directory, and deletes it when the test ends.
func Up(t testing.TB, name string) *Cluster {
	t.Helper()
	return UpPlan(t, provision.PlanOptions{Name: name, Masters: 1, Workers: 2, Subnets: 1})
}

// UpPlan is Up for any plan: more subnets, another MTU.
func UpPlan(t testing.TB, plan provision.PlanOptions) *Cluster {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "nsenter", "ip")
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	bin := testutil.KlabBinary(t)
	p := netns.New(bin)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := install.Up(ctx, install.Options{Plan: plan, Provider: p, Binary: bin})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() {
		if err := install.Down(context.Background(), c.Name, func(string) (provision.Provider, error) { return p, nil }, nil); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	cfg, err := client.Config(c.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := netctl.New(cfg, install.PKIDir(c.Name))
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{T: t, C: c, P: p, Cfg: cfg, CS: cs, NC: nc}
}

// OnNode runs a command on a node and returns its output.
func (k *Cluster) OnNode(node string, args ...string) (string, error) {
	tr, err := k.P.Transport(k.C, node)
	if err != nil {
		return "", err
	}
	defer tr.Close()
	out, err := transport.Output(context.Background(), tr, args...)
	return strings.TrimSpace(string(out)), err
}

// Exec runs a command in a pod (namespace default) and returns its
// output and exit code.
func (k *Cluster) Exec(pod string, cmd ...string) (string, int) {
	k.T.Helper()
	var out, errb bytes.Buffer
	code, err := podio.Exec(context.Background(), k.Cfg, "default", pod, podio.ExecOptions{Command: cmd, Stdout: &out, Stderr: &errb})
	if err != nil {
		k.T.Fatalf("exec in %s %v: %v: %s", pod, cmd, err, errb.String())
	}
	return strings.TrimSpace(out.String()), code
}

// MustExec runs a command in a pod and fails the test unless it succeeds.
func (k *Cluster) MustExec(pod string, cmd ...string) string {
	k.T.Helper()
	out, code := k.Exec(pod, cmd...)
	if code != 0 {
		k.T.Fatalf("exec in %s %v: exit code %d: %s", pod, cmd, code, out)
	}
	return out
}

// Create creates pods, deployments, services and policies in default.
func (k *Cluster) Create(objs ...any) {
	k.T.Helper()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			_, err = k.CS.CoreV1().Pods("default").Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = k.CS.CoreV1().Services("default").Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = k.CS.AppsV1().Deployments("default").Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("e2etest cannot create a %T", o)
		}
		if err != nil {
			k.T.Fatal(err)
		}
	}
}

// Ready waits until a pod is ready and returns it.
func (k *Cluster) Ready(name string) *corev1.Pod {
	k.T.Helper()
	var p *corev1.Pod
	testutil.Poll(k.T, 2*time.Minute, "pod "+name+" ready", func() bool {
		var err error
		p, err = k.CS.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
		return err == nil && PodReady(p)
	})
	return p
}

// PodReady reports whether a pod's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Endpoints waits until the Service has n ready addresses and returns
// them.
func (k *Cluster) Endpoints(svc string, n int) []corev1.EndpointAddress {
	k.T.Helper()
	var addrs []corev1.EndpointAddress
	testutil.Poll(k.T, 2*time.Minute, fmt.Sprintf("%d ready endpoints of %s", n, svc), func() bool {
		ep, err := k.CS.CoreV1().Endpoints("default").Get(context.Background(), svc, metav1.GetOptions{})
		if err != nil {
			return false
		}
		addrs = nil
		for _, ss := range ep.Subsets {
			addrs = append(addrs, ss.Addresses...)
		}
		return len(addrs) == n
	})
	return addrs
}

// NodeIP is a member's underlay address.
func (k *Cluster) NodeIP(node string) string {
	k.T.Helper()
	n, ok := k.C.Node(node)
	if !ok {
		k.T.Fatalf("no node %s", node)
	}
	return n.IP.String()
}

// PodNetns opens a pod's network namespace from the host, through its
// pause process, so the test can open sockets in it.
func (k *Cluster) PodNetns(p *corev1.Pod) *netmodes.Netns {
	k.T.Helper()
	pid, err := k.OnNode(p.Spec.NodeName, "sed", "-n", `s/^  "pausePID": \([0-9]*\),/\1/p`, "/var/lib/klab/runtime/sandboxes/"+string(p.UID)+"/sandbox.json")
	if err != nil || pid == "" {
		k.T.Fatalf("pause process of %s: %q, %v", p.Name, pid, err)
	}
	ns, err := netmodes.OpenNetns("/proc/" + pid + "/ns/net")
	if err != nil {
		k.T.Fatal(err)
	}
	k.T.Cleanup(func() { ns.Close() })
	return ns
}

// Busybox is a pod of busybox running a command, on a node.
func Busybox(name, node string, labels map[string]string, cmd ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: cmd}}},
	}
}

// HTTPD is a busybox httpd container answering its pod's name on port
// 80 ("http"), ready once it answers.
func HTTPD() corev1.Container {
	return corev1.Container{
		Name: "httpd", Image: "busybox",
		Command: []string{"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"},
		Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
			PeriodSeconds: 1},
	}
}
