package libvirt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/trace"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/image"
	"github.com/klab-dev/klab/provision/transport"
)

var _ install.Slow = (*Provider)(nil)

// requireLibvirt skips unless root, a running libvirtd and a kernel for
// the node image are at hand. Cluster state goes to a temporary directory.
func requireLibvirt(t testing.TB) *Provider {
	t.Helper()
	testutil.RequireRoot(t)
	p := New("", Options{URI: DefaultURI})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Check(ctx); err != nil {
		t.Skipf("needs libvirt (.ci/start-libvirt starts it): %v", err)
	}
	if _, err := image.KernelAvailable(p.Opts.Image); err != nil {
		t.Skipf("needs a kernel for the node image (.ci/libvirt-deps downloads one): %v", err)
	}
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	return p
}

// testName is a cluster name for a test: "kv" and random hex.
func testName(t testing.TB) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "kv" + hex.EncodeToString(b)
}

// hostUses reports whether the host has an address in one of c's subnets.
func hostUses(c *provision.Cluster) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			for _, s := range c.Subnets {
				if ipn.Contains(s.CIDR.Addr().AsSlice()) {
					return true
				}
			}
		}
	}
	return false
}

// reserve plans and records a cluster, as "up" does.
func reserve(t testing.TB, o provision.PlanOptions) *provision.Cluster {
	t.Helper()
	c, err := provision.Reserve(o.Name, func(slot int) (*provision.Cluster, error) {
		o.Slot = slot
		return provision.Plan(o)
	}, hostUses)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leftovers lists what libvirt still has of a cluster.
func leftovers(t testing.TB, cluster string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := connect(ctx, DefaultURI)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out []string
	prefix := "klab-" + cluster
	doms, _, _ := l.ConnectListAllDomains(1, 0)
	for _, d := range doms {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, "domain "+d.Name)
		}
	}
	nets, _, _ := l.ConnectListAllNetworks(1, 0)
	for _, n := range nets {
		if strings.HasPrefix(n.Name, prefix) {
			out = append(out, "network "+n.Name)
		}
	}
	pools, _, _ := l.ConnectListAllStoragePools(1, 0)
	for _, p := range pools {
		if strings.HasPrefix(p.Name, prefix) {
			out = append(out, "pool "+p.Name)
		}
	}
	for _, f := range []string{PoolDir(cluster), provision.Dir(cluster)} {
		if _, err := os.Stat(f); !errors.Is(err, fs.ErrNotExist) {
			out = append(out, "file "+f)
		}
	}
	return out
}

func run(t testing.TB, tr transport.Transport, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := transport.Output(ctx, tr, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// TestIntegrationUpDown is issue 9's acceptance on one cluster of VMs (a
// master and two nodes, under emulation in CI), reused for every check:
// up through the install pipeline; each VM (hostname, modules, disk,
// supervisor, underlay); busybox pods on node1 and node2 that reach each
// other in bgp, vxlan and ipip mode, ipip through the kernel's tunl0;
// klab trace across the VMs in vxlan mode; and down, which leaves nothing
// of the cluster in libvirt or on disk.
func TestIntegrationUpDown(t *testing.T) {
	p := requireLibvirt(t)
	p.Binary = testutil.KlabBinary(t)
	name := testName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	down := func() error {
		return install.Down(ctx, name, func(string) (provision.Provider, error) { return p, nil }, nil)
	}
	defer func() {
		if len(leftovers(t, name)) > 0 {
			down()
		}
	}()
	start := time.Now()
	c, err := install.Up(ctx, install.Options{
		Plan:     provision.PlanOptions{Name: name, Masters: 1, Workers: 2, Subnets: 1},
		Provider: p, Binary: p.Binary,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster %s up in %s", name, time.Since(start).Round(time.Millisecond))

	t.Run("machines", func(t *testing.T) { checkMachines(t, p, c) })
	t.Run("pods", func(t *testing.T) { checkPods(t, p, c) })

	if err := down(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, name); len(left) > 0 {
		t.Errorf("after down: %v", left)
	}
	// Deleting again finds nothing to do.
	if err := p.Delete(ctx, c); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

// checkMachines checks every VM of a cluster that is up: running, its
// hostname, the modules, disk and supervisor, the underlay, the serial log.
func checkMachines(t *testing.T, p *Provider, c *provision.Cluster) {
	states, err := p.Nodes(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.State != "running" || !strings.Contains(s.Detail, DomainName(c.Name, s.Name)) {
			t.Errorf("node %s: %s (%s)", s.Name, s.State, s.Detail)
		}
	}
	for _, n := range c.Nodes {
		tr, err := p.Transport(c, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, tr, "hostname"); got != n.Name {
			t.Errorf("hostname on %s: %q", n.Name, got)
		}
		// The kernel modules the pod network needs are loaded, and
		// the supervisor's directories and cgroup2 are there.
		run(t, tr, "sh", "-c", "test -d /sys/module/ipip && test -d /sys/module/vxlan && test -d /sys/module/nf_tables && test -d /sys/module/veth && test -d /sys/module/bridge")
		run(t, tr, "sh", "-c", "grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts && grep -q ' /var/lib/klab ext4 ' /proc/mounts && test -S /run/klab/supervise.sock")
		run(t, tr, provision.NodeBinary, "supervise", "status")
		for _, o := range c.Nodes {
			if o.Name != n.Name {
				run(t, tr, "ping", "-c1", "-W5", o.IP.String())
			}
		}
		tr.Close()
	}
	log, local, err := p.SerialLog(c, "node1")
	if err != nil || !local {
		t.Fatalf("serial log %s local %v: %v", log, local, err)
	}
	if b, err := os.ReadFile(log); err != nil || !strings.Contains(string(b), "klab: node1 is up") {
		t.Errorf("serial log %s: %v", log, err)
	}
}

// checkPods runs pod a on node1 and pod b on node2 and, in each mode, has
// a ping b; in ipip the packets go through the kernel's tunl0, and in
// vxlan klab trace follows one across the VMs.
func checkPods(t *testing.T, p *Provider, c *provision.Cluster) {
	ctx := context.Background()
	slow := time.Duration(p.Slowdown(c))
	cfg, err := client.Config(c.Name, "")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := netctl.New(cfg, install.PKIDir(c.Name))
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]string{}
	for pod, node := range map[string]string{"a": "node1", "b": "node2"} {
		spec := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod}, Spec: corev1.PodSpec{NodeName: node,
			Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "100000"}}}}}
		if _, err := nc.Kube.CoreV1().Pods("default").Create(ctx, spec, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, pod := range []string{"a", "b"} {
		testutil.Poll(t, slow*time.Minute, "pod "+pod+" running with an IP", func() bool {
			got, err := nc.Kube.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
			if err != nil || got.Status.Phase != corev1.PodRunning || got.Status.PodIP == "" {
				return false
			}
			ips[pod] = got.Status.PodIP
			return true
		})
	}
	ping := func(t *testing.T) {
		t.Helper()
		ectx, cancel := context.WithTimeout(ctx, slow*time.Minute)
		defer cancel()
		var out bytes.Buffer
		code, err := podio.Exec(ectx, cfg, "default", "a", podio.ExecOptions{Command: []string{"ping", "-c3", "-W5", ips["b"]}, Stdout: &out, Stderr: &out})
		if err != nil || code != 0 {
			t.Fatalf("ping from a (node1) to b %s (node2): exit %d, %v\n%s", ips["b"], code, err, out.String())
		}
	}
	node1, err := p.Transport(c, "node1")
	if err != nil {
		t.Fatal(err)
	}
	defer node1.Close()
	for _, mode := range []api.NetworkMode{api.ModeBGP, api.ModeVXLAN, api.ModeIPIP} {
		t.Run(string(mode), func(t *testing.T) {
			start := time.Now()
			if _, err := nc.Switch(ctx, mode, false, slow*30*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s mode on every node in %s", mode, time.Since(start).Round(time.Millisecond))
			switch mode {
			case api.ModeIPIP:
				checkKernelIPIP(t, ctx, nc, c)
				packets := func() int {
					n, _ := strconv.Atoi(run(t, node1, "cat", "/sys/class/net/tunl0/statistics/tx_packets"))
					return n
				}
				before := packets()
				ping(t)
				if after := packets(); after < before+3 {
					t.Errorf("node1's tunl0 sent %d packets during 3 pings to node2, want 3 or more", after-before)
				}
			case api.ModeVXLAN:
				ping(t)
				checkTrace(t, p, c, ips)
			default:
				ping(t)
			}
		})
	}
}

// checkKernelIPIP checks that every node carries ipip with the kernel's
// tunl0, not klab's userspace encapsulator.
func checkKernelIPIP(t *testing.T, ctx context.Context, nc *netctl.Client, c *provision.Cluster) {
	t.Helper()
	reps, err := nc.Reports(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != len(c.Members()) {
		t.Errorf("%d network reports for %d nodes", len(reps), len(c.Members()))
	}
	for _, r := range reps {
		if r.Mode != "ipip" || r.Implementation != netmodes.Kernel {
			t.Errorf("%s: mode %q implementation %q, want ipip in the kernel", r.Node, r.Mode, r.Implementation)
		}
		found := false
		for _, d := range r.State.Devices {
			if d.Name == "tunl0" {
				found = true
				if d.Kind != "ipip" || !d.Up {
					t.Errorf("%s: tunl0 is a %s device (up %v), want the kernel's ipip", r.Node, d.Kind, d.Up)
				}
			}
		}
		if !found {
			t.Errorf("%s: no tunl0 in ipip mode", r.Node)
		}
	}
}

// checkTrace runs klab trace a b -o json in vxlan mode: the probe is
// delivered, and on the VMs' NICs and the host's taps it is inside
// UDP 4789 with VNI 4096.
func checkTrace(t *testing.T, p *Provider, c *provision.Cluster, ips map[string]string) {
	t.Helper()
	cmd := exec.Command(p.Binary, "--name", c.Name, "trace", "a", "b", "-o", "json")
	cmd.Env = append(os.Environ(), "LANG=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("klab trace a b: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var res trace.Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("klab trace printed no result: %v\n%s", err, stdout.String())
	}
	if !res.Delivered || res.Mode != "vxlan" || res.Src.IP.String() != ips["a"] || res.Dst.IP.String() != ips["b"] {
		t.Fatalf("trace %s → %s mode %s: delivered %v (%s)", res.Src.IP, res.Dst.IP, res.Mode, res.Delivered, res.Reason)
	}
	underlay := map[string]bool{}
	for _, h := range res.Hops {
		if !h.Seen {
			t.Errorf("hop %d (%s %s) did not see the probe", h.Index, h.Node, h.Interface)
		}
		if h.Kind != trace.HopNIC && h.Kind != trace.HopBridgePort {
			continue
		}
		underlay[h.Node+" "+h.Kind+" "+h.Direction] = true
		var typ []string
		for _, l := range h.Layers {
			typ = append(typ, l.Type)
		}
		want := []string{"Ethernet", "IPv4", "UDP", "VXLAN", "Ethernet", "IPv4", "ICMPv4", "Payload"}
		if h.Encap != "vxlan" || !slices.Equal(typ, want) {
			t.Errorf("hop %d (%s %s): %s %v, want vxlan %v", h.Index, h.Node, h.Interface, h.Encap, typ, want)
			continue
		}
		outer, udp, vx, inner := h.Layers[1], h.Layers[2], h.Layers[3], h.Layers[5]
		n1, _ := c.Node("node1")
		n2, _ := c.Node("node2")
		if outer.Src != n1.IP.String() || outer.Dst != n2.IP.String() || udp.DstPort != 4789 || vx.VNI != 4096 ||
			inner.Src != ips["a"] || inner.Dst != ips["b"] {
			t.Errorf("hop %d (%s %s): outer %s → %s UDP %d VNI %d inner %s → %s", h.Index, h.Node, h.Interface,
				outer.Src, outer.Dst, udp.DstPort, vx.VNI, inner.Src, inner.Dst)
		}
	}
	for _, want := range []string{"node1 nic out", "node2 nic in"} {
		if !underlay[want] {
			t.Errorf("no hop %q in the trace: %v", want, underlay)
		}
	}
	t.Logf("trace a → b: %d hops, %d µs", len(res.Hops), res.TUS)
}

// TestIntegrationHostKeyReplaced replaces a VM by one with another host
// key at the same address: klab refuses to talk to it.
func TestIntegrationHostKeyReplaced(t *testing.T) {
	p := requireLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c := reserve(t, provision.PlanOptions{Name: testName(t), Provider: "libvirt", Masters: 1, Subnets: 1})
	defer func() {
		if err := p.Delete(context.Background(), c); err != nil {
			t.Error(err)
		}
		provision.Remove(c.Name)
	}()
	if err := p.CreateNetwork(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateNodes(ctx, c); err != nil {
		t.Fatal(err)
	}
	tr, err := p.Transport(c, "master")
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()

	// The impostor: same domain, same address, a host key klab never pinned.
	l, err := connect(ctx, p.Opts.URI)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	priv, pub, err := transport.NewKey("impostor")
	if err != nil {
		t.Fatal(err)
	}
	userPub, _ := ensureUserKey(c.Name)
	archive, err := image.NodeArchive(image.NodeConfig{HostKey: priv, HostKeyPub: pub, AuthorizedKeys: []string{userPub}})
	if err != nil {
		t.Fatal(err)
	}
	dom, err := l.DomainLookupByName(DomainName(c.Name, "master"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault); err != nil {
		t.Fatal(err)
	}
	if _, err := uploadBytes(l, c.Name, "master.initrd", "raw", image.Concat(p.boots[c.Name].base, archive)...); err != nil {
		t.Fatal(err)
	}
	if err := l.DomainCreate(dom); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(c.Name)
	if err != nil {
		t.Fatal(err)
	}
	master, _ := c.Node("master")
	err = p.waitBoot(ctx, l, c, st, master)
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") || !strings.Contains(err.Error(), "refusing to connect") {
		t.Fatalf("replaced VM: %v, want a host key mismatch", err)
	}
	t.Logf("refused: %v", err)
	if _, err := p.Transport(c, "master"); err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("Transport to the replaced VM: %v", err)
	}
}

// TestIntegrationBootFailure starts a VM that powers off while booting:
// the error says so and shows the end of its serial console.
func TestIntegrationBootFailure(t *testing.T) {
	p := requireLibvirt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := reserve(t, provision.PlanOptions{Name: testName(t), Provider: "libvirt", Masters: 1, Subnets: 1})
	defer func() {
		if err := p.Delete(context.Background(), c); err != nil {
			t.Error(err)
		}
		provision.Remove(c.Name)
	}()
	if err := p.CreateNetwork(ctx, c); err != nil {
		t.Fatal(err)
	}
	l, err := connect(ctx, p.Opts.URI)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	st, err := loadState(c.Name)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Describe(c); st.Accel == "" || d != st.Accel+": "+st.AccelWhy {
		t.Errorf("Describe = %q, want the accelerator the network's creation chose and why (%q, %q)", d, st.Accel, st.AccelWhy)
	}
	b := p.boots[c.Name]
	initrd, err := uploadBytes(l, c.Name, "master.initrd", "raw", b.base)
	if err != nil {
		t.Fatal(err)
	}
	master, _ := c.Node("master")
	os.MkdirAll(nodeDir(c.Name, "master"), 0o755)
	// "klab.probe" makes the image's init power off at once.
	x, err := domainXML(domainData{Type: "qemu", Name: DomainName(c.Name, "master"), Title: "boot failure test", Emulator: b.emulator,
		MemoryMiB: 256, CPUs: 1, Kernel: b.kernel, Initrd: initrd, Cmdline: "console=ttyS0 klab.probe",
		NICs: machineNICs(c, master), SerialLog: serialLog(st.URI, c.Name, "master")})
	if err != nil {
		t.Fatal(err)
	}
	dom, err := l.DomainDefineXML(string(x))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DomainCreate(dom); err != nil {
		t.Fatal(err)
	}
	err = p.waitBoot(ctx, l, c, st, master)
	if err == nil || !strings.Contains(err.Error(), "stopped while booting") || !strings.Contains(err.Error(), "last lines of its serial console") || !strings.Contains(err.Error(), "klab-probe: booted") {
		t.Fatalf("boot failure: %v", err)
	}
	t.Logf("%v", err)
}

// BenchmarkIntegrationBootToSSH measures how long klab's image takes from
// the domain's definition to an SSH session (one VM, master only).
func BenchmarkIntegrationBootToSSH(b *testing.B) {
	p := requireLibvirt(b)
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c := reserve(b, provision.PlanOptions{Name: testName(b), Provider: "libvirt", Masters: 1, Subnets: 1})
		if err := p.CreateNetwork(ctx, c); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		err := p.CreateNodes(ctx, c)
		total += time.Since(start)
		b.StopTimer()
		derr := p.Delete(ctx, c)
		provision.Remove(c.Name)
		if err != nil || derr != nil {
			b.Fatal(errors.Join(err, derr))
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/boot")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIntegrationReadyCluster measures "up" of a 3-VM cluster
// (master and two nodes) until it is ready.
func BenchmarkIntegrationReadyCluster(b *testing.B) {
	p := requireLibvirt(b)
	p.Binary = testutil.KlabBinary(b)
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		name := testName(b)
		start := time.Now()
		_, err := install.Up(ctx, install.Options{Plan: provision.PlanOptions{Name: name, Masters: 1, Workers: 2, Subnets: 1}, Provider: p, Binary: p.Binary})
		total += time.Since(start)
		b.StopTimer()
		derr := install.Down(ctx, name, func(string) (provision.Provider, error) { return p, nil }, nil)
		if err != nil || derr != nil {
			b.Fatal(fmt.Errorf("up: %v; down: %v", err, derr))
		}
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/cluster")
	b.ReportMetric(0, "ns/op")
}
