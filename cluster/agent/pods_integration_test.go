package agent_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/cluster/cni/plugin"
	"github.com/klab-dev/klab/internal/e2etest"
	"github.com/klab-dev/klab/internal/testutil"
)

// cluster is a netns cluster for a test, deleted when it ends.
type cluster struct {
	*e2etest.Cluster
	t *testing.T
}

func upCluster(t *testing.T, name string) *cluster {
	return &cluster{Cluster: e2etest.Up(t, name), t: t}
}

// onNode runs a command on a node and returns its output.
func (k *cluster) onNode(node string, args ...string) string {
	k.t.Helper()
	out, err := k.OnNode(node, args...)
	if err != nil {
		k.t.Fatalf("%s: %v", node, err)
	}
	return out
}

// gone polls until script succeeds on node: what a deleted pod had is
// removed. The API forgets a pod that ended at once, and its node cleans
// up after (as the kubelet does), so this is not instant.
func (k *cluster) gone(node, what, script string) {
	k.t.Helper()
	var last error
	testutil.Poll(k.t, 30*time.Second, what+" removed from "+node, func() bool {
		_, last = k.OnNode(node, "sh", "-c", script)
		return last == nil
	})
}

// exec runs a command in a pod's container and returns its output.
func (k *cluster) exec(pod, container string, cmd ...string) string {
	k.t.Helper()
	var out, errb bytes.Buffer
	code, err := podio.Exec(context.Background(), k.Cfg, "default", pod, podio.ExecOptions{Container: container, Command: cmd, Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		k.t.Fatalf("exec %s/%s %v: code %d, %v: %s%s", pod, container, cmd, code, err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

func (k *cluster) pod(name string) *corev1.Pod {
	k.t.Helper()
	p, err := k.CS.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	return p
}

func busybox(name, node string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: containers},
	}
}

func ctr(name string, cmd ...string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", Command: cmd}
}

// TestIntegrationPods checks issue 4's acceptance on a real cluster:
// containers share the pause process's namespaces, pods reach each other
// and the nodes without NAT, orphans are reaped, crashed containers are
// restarted, and a deleted pod leaves nothing behind.
func TestIntegrationPods(t *testing.T) {
	k := upCluster(t, "tp-pods")

	// The seed's two-container pod: one serves, the other reaches it on
	// localhost.
	k.Create(busybox("web", "node1",
		ctr("httpd", "httpd", "-f", "-v", "-p", "80", "-h", "/etc"),
		ctr("client", "sleep", "3600")))
	web := k.Ready("web")
	if got := k.exec("web", "client", "wget", "-qO-", "127.0.0.1/hostname"); got != "web" {
		t.Errorf("the client got %q from the httpd container over localhost", got)
	}
	if a, b := k.exec("web", "httpd", "hostname"), k.exec("web", "client", "hostname"); a != "web" || b != "web" {
		t.Errorf("hostnames %q and %q, want the pod's name", a, b)
	}
	pausePID := k.onNode("node1", "sed", "-n", `s/^  "pausePID": \([0-9]*\),/\1/p`, "/var/lib/klab/runtime/sandboxes/"+string(web.UID)+"/sandbox.json")
	if pausePID == "" {
		t.Fatal("no pause process on node1")
	}
	pauseNet := k.onNode("node1", "readlink", "/proc/"+pausePID+"/ns/net")
	for _, c := range []string{"httpd", "client"} {
		if got := k.exec("web", c, "readlink", "/proc/1/ns/net"); got != pauseNet {
			t.Errorf("container %s: net namespace %s, pause's is %s", c, got, pauseNet)
		}
	}

	// The flat network: a pod on node2 reaches web by IP, and web sees its
	// pod IP as the source; nodes and pods reach each other both ways.
	k.Create(busybox("other", "node2", ctr("sh", "sleep", "3600")))
	other := k.Ready("other")
	k.exec("other", "sh", "wget", "-qO-", web.Status.PodIP+"/hostname")
	testutil.Poll(t, 10*time.Second, "web's log to show the client's pod IP", func() bool {
		var b bytes.Buffer
		podio.Logs(context.Background(), k.Cfg, "default", "web", podio.LogOptions{Container: "httpd", Tail: -1}, &b)
		return strings.Contains(b.String(), other.Status.PodIP)
	})
	k.onNode("node2", "ping", "-c1", "-W2", web.Status.PodIP)
	node2, _ := k.C.Node("node2")
	k.exec("web", "client", "ping", "-c1", "-W2", node2.IP.String())

	// Orphans: a shell starts a background child and exits; the child is
	// reaped when it ends.
	k.exec("web", "client", "sh", "-c", "sh -c 'sleep 0.2 & exit 0'")
	testutil.Poll(t, 10*time.Second, "no zombies in the container", func() bool {
		return !strings.Contains(k.exec("web", "client", "ps", "-o", "stat"), "Z")
	})

	// Killing the container's process: it is restarted and counted.
	pid := k.onNode("node1", "sh", "-c", `for f in /var/lib/klab/runtime/containers/`+string(web.UID)+`-*/container.json; do
		grep -q '^    "name": "client",' "$f" && sed -n 's/^  "pid": \([0-9]*\),/\1/p' "$f"; done; true`)
	if pid == "" {
		t.Fatal("no container process on node1")
	}
	k.onNode("node1", "kill", "-9", pid)
	testutil.Poll(t, 30*time.Second, "the client container restarted", func() bool {
		for _, s := range k.pod("web").Status.ContainerStatuses {
			if s.Name == "client" && s.RestartCount >= 1 && s.State.Running != nil {
				return true
			}
		}
		return false
	})

	// Deleting the pod removes its namespace, veth, address, cgroups and files.
	ip := web.Status.PodIP
	if err := k.CS.CoreV1().Pods("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, time.Minute, "web deleted", func() bool {
		_, err := k.CS.CoreV1().Pods("default").Get(context.Background(), "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	k.podGone("node1", web.UID)
	k.gone("node1", "pause process", "! kill -0 "+pausePID+" 2>/dev/null")
	k.gone("node1", "address file", "test ! -e /var/lib/klab/cni/networks/klab/"+ip)
}

// podGone waits until nothing of the pod with uid is left on node: its
// network namespace pin, host veth, IP allocation, runtime state and
// cgroups. (Other pods, such as cluster DNS, may run there.)
func (k *cluster) podGone(node string, uid types.UID) {
	k.t.Helper()
	checks := map[string]string{
		"network namespace pin": "test ! -e /run/netns/" + string(uid),
		"host veth":             "! ip link show " + plugin.HostVethName(string(uid)) + " 2>/dev/null",
		"IP allocation":         "! grep -rqs " + string(uid) + " /var/lib/klab/cni/networks",
		"runtime state":         "! ls /var/lib/klab/runtime/*/ 2>/dev/null | grep -q " + string(uid),
		"cgroups":               "! find /sys/fs/cgroup -type d -name 'pod-" + string(uid) + "*' | grep -q .",
	}
	for what, script := range checks {
		k.gone(node, what, script)
	}
}

// TestIntegrationBadPods checks that bad specs give a clear reason in the
// pod's status and leave nothing behind.
func TestIntegrationBadPods(t *testing.T) {
	k := upCluster(t, "tp-bad")
	dir := corev1.HostPathDirectory
	bad := []struct {
		pod    *corev1.Pod
		reason string
		msg    string
	}{
		{busybox("noimage", "node1", corev1.Container{Name: "c", Image: "nginx:1.25"}), "ErrImageNeverPull", "import it with klab image import"},
		{busybox("nocmd", "node1", ctr("c", "no-such-command")), "ContainerCannotRun", "no-such-command"},
		{&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "novol"},
			Spec: corev1.PodSpec{NodeName: "node1",
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/nonexistent/klab", Type: &dir}}}},
				Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"true"}, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}}},
		}, "CreateContainerConfigError", "host path /nonexistent/klab does not exist on node1"},
	}
	for _, b := range bad {
		k.Create(b.pod)
	}
	for _, b := range bad {
		testutil.Poll(t, time.Minute, b.pod.Name+" to report "+b.reason, func() bool {
			for _, s := range k.pod(b.pod.Name).Status.ContainerStatuses {
				w := s.State.Waiting
				if w != nil && w.Reason == b.reason && strings.Contains(w.Message, b.msg) {
					return true
				}
				if term := s.LastTerminationState.Terminated; term != nil && term.Reason == b.reason && strings.Contains(term.Message, b.msg) {
					return true
				}
			}
			return false
		})
	}
	var uids []types.UID
	for _, b := range bad {
		uids = append(uids, k.pod(b.pod.Name).UID)
		if err := k.CS.CoreV1().Pods("default").Delete(context.Background(), b.pod.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Poll(t, time.Minute, "the bad pods deleted", func() bool {
		l, err := k.CS.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		return err == nil && len(l.Items) == 0
	})
	for _, uid := range uids {
		k.podGone("node1", uid)
	}
}
