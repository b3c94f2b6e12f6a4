package cni_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/cluster/cni/internal/cnitest"
	"github.com/klab-dev/klab/cluster/cni/plugin"
	"github.com/klab-dev/klab/internal/testutil"
)

// debianCNI is where Debian's containernetworking-plugins installs them.
const debianCNI = "/usr/lib/cni"

// chainEnv is a node whose runtime finds klab in its own bin directory
// and the standard plugins in Debian's.
type chainEnv struct {
	t       *testing.T
	node    *cnitest.Node
	rt      *cni.Runtime
	confDir string
	dataDir string
	logPath string
}

func newChainEnv(t *testing.T, o cni.ConfListOptions) *chainEnv {
	testutil.RequireRoot(t)
	for _, p := range []string{"tuning", "portmap", "bandwidth"} {
		if _, err := os.Stat(filepath.Join(debianCNI, p)); err != nil {
			t.Skipf("needs %s/%s: apt-get install containernetworking-plugins", debianCNI, p)
		}
	}
	testutil.RequireCommand(t, "iptables")
	dir := t.TempDir()
	e := &chainEnv{t: t, node: cnitest.NewNode(t), confDir: filepath.Join(dir, "net.d"), dataDir: filepath.Join(dir, "networks"), logPath: filepath.Join(dir, "log", "cni.log")}
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	if err := os.Symlink(testutil.KlabBinary(t), filepath.Join(bin, "klab")); err != nil {
		t.Fatal(err)
	}
	o.DataDir = e.dataDir
	if _, err := cni.WriteConfList(e.confDir, o); err != nil {
		t.Fatal(err)
	}
	e.rt = cni.New(cni.Options{ConfDir: e.confDir, BinDirs: []string{bin, debianCNI}, CacheDir: filepath.Join(dir, "cache"), LogPath: e.logPath})
	return e
}

// inNode runs fn where the agent runs: in the node's network namespace.
func (e *chainEnv) inNode(fn func(ctx context.Context) error) {
	e.t.Helper()
	if err := e.node.Do(func() error { return fn(context.Background()) }); err != nil {
		e.t.Fatal(err)
	}
}

func (e *chainEnv) calls() []string {
	e.t.Helper()
	calls, err := cni.ReadCalls(e.logPath, -1)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, c := range calls {
		out = append(out, c.Command+" "+c.Plugin)
		if !c.OK() {
			out[len(out)-1] += " failed"
		}
	}
	return out
}

func (e *chainEnv) call(command, plugin string) cni.Call {
	e.t.Helper()
	calls, _ := cni.ReadCalls(e.logPath, -1)
	for _, c := range calls {
		if c.Command == command && c.Plugin == plugin {
			return c
		}
	}
	e.t.Fatalf("no %s of %s recorded", command, plugin)
	return cni.Call{}
}

func (e *chainEnv) caliLinks() []string {
	var names []string
	e.node.Do(func() error {
		ls, err := netlink.LinkList()
		for _, l := range ls {
			if strings.HasPrefix(l.Attrs().Name, "cali") {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	})
	return names
}

func TestIntegrationChainTuningBandwidth(t *testing.T) {
	e := newChainEnv(t, cni.ConfListOptions{PodCIDR: netip.MustParsePrefix("10.244.4.0/24"), MTU: 1400, Bandwidth: true, Sysctls: map[string]string{"net.core.somaxconn": "1234"}})
	pod := cnitest.NewNS(t, "pod")
	args := cni.PodArgs{Namespace: "default", Name: "tuned", UID: "kt-uid", Bandwidth: &cni.Bandwidth{IngressRate: 100_000_000}}
	var att *cni.Attachment
	e.inNode(func(ctx context.Context) (err error) {
		att, err = e.rt.Add(ctx, "kt-tun", pod.Path(), "eth0", args)
		return err
	})
	if att.IP.String() != "10.244.4.2" {
		t.Errorf("pod IP %s, want the block's first, 10.244.4.2", att.IP)
	}
	if len(att.Result.Interfaces) != 2 || att.Result.Interfaces[0].Name != plugin.HostVethName("kt-tun") {
		t.Errorf("the chain's result lost klab's interfaces: %+v", att.Result.Interfaces)
	}
	// tuning: the sysctl in the pod's namespace.
	var somaxconn []byte
	pod.Do(func() (err error) {
		somaxconn, err = os.ReadFile("/proc/sys/net/core/somaxconn")
		return err
	})
	if strings.TrimSpace(string(somaxconn)) != "1234" {
		t.Errorf("tuning set somaxconn to %q in the pod, want 1234", somaxconn)
	}
	// bandwidth: a token bucket on the node side shapes what the pod gets.
	var qdiscs []string
	e.node.Do(func() error {
		l, err := netlink.LinkByName(plugin.HostVethName("kt-tun"))
		if err != nil {
			return err
		}
		qs, err := netlink.QdiscList(l)
		for _, q := range qs {
			qdiscs = append(qdiscs, q.Type())
		}
		return err
	})
	if !slices.Contains(qdiscs, "tbf") {
		t.Errorf("qdiscs on the node side %v, want a tbf", qdiscs)
	}
	// prevResult passes klab's result down the chain.
	var req struct {
		PrevResult struct {
			IPs []struct{ Address string } `json:"ips"`
		} `json:"prevResult"`
		RuntimeConfig map[string]any `json:"runtimeConfig"`
	}
	bw := e.call("ADD", "bandwidth")
	if err := json.Unmarshal(bw.Request, &req); err != nil || len(req.PrevResult.IPs) != 1 || req.PrevResult.IPs[0].Address != att.IP.String()+"/32" || req.RuntimeConfig["bandwidth"] == nil {
		t.Errorf("bandwidth's request %s: want prevResult with %s/32 and the bandwidth runtimeConfig", bw.Request, att.IP)
	}
	if k := e.call("ADD", "klab"); strings.Contains(string(k.Request), "runtimeConfig") {
		t.Errorf("klab declares no capability but got runtimeConfig: %s", k.Request)
	}
	e.inNode(func(ctx context.Context) error { return e.rt.Check(ctx, "kt-tun", pod.Path(), "eth0", args) })
	e.inNode(func(ctx context.Context) error { return e.rt.Del(ctx, "kt-tun", pod.Path(), "eth0", args) })
	e.inNode(func(ctx context.Context) error { return e.rt.Del(ctx, "kt-tun", pod.Path(), "eth0", args) })
	want := []string{
		"ADD klab", "ADD tuning", "ADD bandwidth",
		"CHECK klab", "CHECK tuning", "CHECK bandwidth",
		"DEL bandwidth", "DEL tuning", "DEL klab",
		"DEL bandwidth", "DEL tuning", "DEL klab",
	}
	if got := e.calls(); !slices.Equal(got, want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
	if l := e.caliLinks(); len(l) != 0 {
		t.Errorf("after DEL the node has %v", l)
	}
}

func TestIntegrationChainPortmap(t *testing.T) {
	e := newChainEnv(t, cni.ConfListOptions{PodCIDR: netip.MustParsePrefix("10.244.5.0/24"), PortMap: true})
	pod := cnitest.NewNS(t, "pod")
	args := cni.PodArgs{Namespace: "default", Name: "web", PortMappings: []cni.PortMapping{{HostPort: 18080, ContainerPort: 8080, Protocol: "TCP"}}}
	var att *cni.Attachment
	e.inNode(func(ctx context.Context) (err error) {
		att, err = e.rt.Add(ctx, "kt-pm", pod.Path(), "eth0", args)
		return err
	})
	t.Cleanup(func() {
		e.node.Do(func() error { return e.rt.Del(context.Background(), "kt-pm", pod.Path(), "eth0", args) })
	})

	// hostPort: a client beyond the node reaches the pod through the
	// node's address, and the pod sees the client's address.
	ln := cnitest.Listen(t, pod, ":8080")
	if src := cnitest.Source(t, e.node.Upstream, ln, netip.AddrPortFrom(e.node.IP, 18080)); src != e.node.Gateway {
		t.Errorf("through the hostPort the pod saw %s, want the client %s", src, e.node.Gateway)
	}
	if pm := e.call("ADD", "portmap"); !strings.Contains(string(pm.Request), `"portMappings":[{"hostPort":18080,"containerPort":8080,"protocol":"tcp"}]`) {
		t.Errorf("portmap's request %s lacks the port mapping", pm.Request)
	}
	dnat := "--to-destination " + att.IP.String() + ":8080"
	if !strings.Contains(nat(t, e), dnat) {
		t.Errorf("no DNAT rule to %s:8080 in the node:\n%s", att.IP, nat(t, e))
	}
	// The list turns CHECK off for portmap's sake: nothing is executed.
	e.inNode(func(ctx context.Context) error { return e.rt.Check(ctx, "kt-pm", pod.Path(), "eth0", args) })
	e.inNode(func(ctx context.Context) error { return e.rt.Del(ctx, "kt-pm", pod.Path(), "eth0", args) })
	if strings.Contains(nat(t, e), dnat) {
		t.Errorf("DEL left the DNAT rule:\n%s", nat(t, e))
	}
	want := []string{"ADD klab", "ADD portmap", "DEL portmap", "DEL klab"}
	if got := e.calls(); !slices.Equal(got, want) {
		t.Errorf("recorded %v, want %v", got, want)
	}
}

func nat(t *testing.T, e *chainEnv) string {
	t.Helper()
	out, err := cnitestRun(e.node, "iptables", "-t", "nat", "-S")
	if err != nil {
		t.Fatalf("iptables -t nat -S in the node: %v: %s", err, out)
	}
	return out
}
