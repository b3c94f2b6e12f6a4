package install

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/provision"
)

func TestPrepareControlPlane(t *testing.T) {
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	c, err := provision.Plan(provision.PlanOptions{Name: "cp", Masters: 3, Workers: 2, Subnets: 1})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := prepareControlPlane(c)
	if err != nil {
		t.Fatal(err)
	}
	// Per node: node; shared: etcd-client, kubelet-client, scheduler, controller-manager; admin.
	if want := len(c.Members()) + 5; cp.clients != want {
		t.Errorf("client certificates: %d, want %d", cp.clients, want)
	}
	if fi, err := os.Stat(filepath.Join(PKIDir("cp"), "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key: %v %v", err, fi)
	}
	for _, n := range c.Members() {
		b := cp.bundle(n.Name)
		files := map[string]File{}
		for _, f := range b.Files {
			files[f.Path] = f
			if strings.HasSuffix(f.Path, ".key") && f.Mode != 0o600 {
				t.Errorf("%s: %s has mode %o", n.Name, f.Path, f.Mode)
			}
		}
		for _, p := range []string{"/etc/klab/pki/ca.crt", "/etc/klab/pki/node.crt", "/etc/klab/pki/node.key", AgentKubeconfig} {
			if _, ok := files[p]; !ok {
				t.Errorf("%s lacks %s", n.Name, p)
			}
		}
		_, hasKey := files["/etc/klab/pki/encryption.key"]
		_, hasSAKey := files["/etc/klab/pki/sa.key"]
		if master := n.Role == provision.RoleMaster; hasKey != master || hasSAKey != master || (len(b.Components) == 2) != master {
			t.Errorf("%s (%s): encryption key %v, components %d", n.Name, n.Role, hasKey, len(b.Components))
		}
		if n.Role != provision.RoleMaster {
			continue
		}
		etcdArgs := strings.Join(b.Components[0].Args, " ")
		for _, want := range []string{"--member " + n.Name, "master1=https://192.168.34.10:2380,master2=https://192.168.34.11:2380,master3=https://192.168.34.12:2380",
			"--listen-client-urls https://" + n.IP.String() + ":2379,https://127.0.0.1:2379"} {
			if !strings.Contains(etcdArgs, want) {
				t.Errorf("%s: etcd args %q lack %q", n.Name, etcdArgs, want)
			}
		}
	}
	// Every master has the same encryption key: any API server reads any secret.
	key := func(node string) string {
		for _, f := range cp.bundle(node).Files {
			if strings.HasSuffix(f.Path, "encryption.key") {
				return string(f.Data)
			}
		}
		return ""
	}
	if key("master1") == "" || key("master1") != key("master3") {
		t.Error("masters have different encryption keys")
	}
}

// clientFor is an admin client of the API server at ip.
func clientFor(t *testing.T, cluster, server string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(cluster))
	if err != nil {
		t.Fatal(err)
	}
	if server != "" {
		cfg.Host = server
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func componentStatus(t *testing.T, c *provision.Cluster, p provision.Provider, node, name string) supervisor.ComponentStatus {
	t.Helper()
	var st supervisor.Status
	if err := json.Unmarshal([]byte(run(t, p, c, node, provision.NodeBinary, "supervise", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, cs := range st.Components {
		if cs.Name == name {
			return cs
		}
	}
	t.Fatalf("%s runs no %s", node, name)
	return supervisor.ComponentStatus{}
}

func uniqueName(prefix string) string {
	return prefix + strconv.Itoa(os.Getpid()%100000)
}

// TestIntegrationControlPlane brings up a cluster, kills the API server
// and etcd, and checks that the supervisor brings them back with nothing
// lost; then that down leaves nothing behind.
func TestIntegrationControlPlane(t *testing.T) {
	name := uniqueName("tcp")
	start := time.Now()
	c, p := upForTest(t, provision.PlanOptions{Name: name, Masters: 1, Workers: 1, Subnets: 1})
	t.Logf("up in %s", time.Since(start))
	cs := clientFor(t, name, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nodes, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 4 {
		t.Fatalf("namespaces: %v %v", err, nodes)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, comp := range []string{"apiserver", "etcd"} {
		before := componentStatus(t, c, p, "master", comp)
		run(t, p, c, "master", "kill", "-9", strconv.Itoa(before.PID))
		killed := time.Now()
		testutil.Poll(t, time.Minute, comp+" restarted and the object read back", func() bool {
			st := componentStatus(t, c, p, "master", comp)
			if st.Restarts <= before.Restarts || st.State != supervisor.StateRunning {
				return false
			}
			got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "survivor", metav1.GetOptions{})
			return err == nil && got.Data["k"] == "v"
		})
		t.Logf("%s killed: API answering again after %s", comp, time.Since(killed))
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("write after the restarts: %v", err)
	}

	downAndCheck(t, c, p)
}

// downAndCheck runs down and checks that nothing of the cluster is left:
// state, namespaces, the host's link, processes.
func downAndCheck(t *testing.T, c *provision.Cluster, p provision.Provider) {
	t.Helper()
	if err := Down(context.Background(), c.Name, func(string) (provision.Provider, error) { return p, nil }, nil); err != nil {
		t.Fatalf("down: %v", err)
	}
	if _, err := os.Stat(provision.Dir(c.Name)); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
	if left, _ := filepath.Glob("/run/netns/klab-" + c.Name + "-*"); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if _, err := net.InterfaceByName(c.HostLink); err == nil {
		t.Errorf("host link %s left", c.HostLink)
	}
	token := "klab-" + c.Name
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, _ := os.ReadFile(f)
		args := strings.Split(string(b), "\x00")
		for i, a := range args {
			if a == "--initial-cluster-token" && i+1 < len(args) && args[i+1] == token {
				t.Errorf("process left: %s %v", f, args)
			}
		}
	}
}

// TestIntegrationControlPlaneHA: with three masters, the API stays
// writable when one master's etcd and API server stop.
func TestIntegrationControlPlaneHA(t *testing.T) {
	name := uniqueName("tha")
	start := time.Now()
	c, p := upForTest(t, provision.PlanOptions{Name: name, Masters: 3, Workers: 0, Subnets: 1})
	t.Logf("up with 3 masters in %s", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, comp := range []string{"apiserver", "etcd"} {
		run(t, p, c, "master1", provision.NodeBinary, "supervise", "stop", comp)
	}
	m2, _ := c.Node("master2")
	cs := clientFor(t, name, fmt.Sprintf("https://%s:6443", m2.IP))
	var err error
	testutil.Poll(t, time.Minute, "a write through master2", func() bool {
		_, err = cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ha"}}, metav1.CreateOptions{})
		return err == nil
	})
	m3, _ := c.Node("master3")
	got, err := clientFor(t, name, fmt.Sprintf("https://%s:6443", m3.IP)).CoreV1().ConfigMaps("default").Get(ctx, "ha", metav1.GetOptions{})
	if err != nil || got.Name != "ha" {
		t.Fatalf("read through master3: %v", err)
	}
	downAndCheck(t, c, p)
}

func TestUserKubeconfig(t *testing.T) {
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	c, _ := provision.Plan(provision.PlanOptions{Name: "uk", Masters: 1, Workers: 1, Subnets: 1})
	if _, err := UserKubeconfig(c, "student", []string{pki.GroupView}); err == nil {
		t.Fatal("a kubeconfig without a CA")
	}
	if _, err := prepareControlPlane(c); err != nil {
		t.Fatal(err)
	}
	b, err := UserKubeconfig(c, "student", []string{pki.GroupView})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://192.168.34.10:6443" {
		t.Errorf("server %s", cfg.Host)
	}
	block, _ := pem.Decode(cfg.CertData)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "student" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != pki.GroupView {
		t.Errorf("subject %v", cert.Subject)
	}
}
