package plugin_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/klab-dev/klab/cluster/cni/internal/cnitest"
	"github.com/klab-dev/klab/cluster/cni/plugin"
	"github.com/klab-dev/klab/internal/testutil"
)

// harness drives the klab binary as a runtime does.
type harness struct {
	t       *testing.T
	bin     string
	node    *cnitest.Node
	dataDir string
}

func newHarness(t *testing.T) *harness {
	testutil.RequireRoot(t)
	return &harness{t: t, bin: testutil.KlabBinary(t), node: cnitest.NewNode(t), dataDir: t.TempDir()}
}

// conf is a plugin configuration on the given block.
func (h *harness) conf(cniVersion, subnet string, extra map[string]any) []byte {
	c := map[string]any{
		"cniVersion": cniVersion, "name": "kt-net", "type": "klab", "mtu": 1400,
		"ipam": map[string]any{"type": "klab", "subnet": subnet, "dataDir": h.dataDir},
	}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) call(command, id, netns, ifName string, conf []byte) ([]byte, int) {
	h.t.Helper()
	env := map[string]string{"CNI_COMMAND": command, "CNI_CONTAINERID": id, "CNI_NETNS": netns, "CNI_IFNAME": ifName, "CNI_PATH": filepath.Dir(h.bin)}
	return cnitest.Run(h.t, h.node.Namespace, h.bin, env, conf)
}

func (h *harness) mustOK(command, id, netns string, conf []byte) []byte {
	h.t.Helper()
	out, code := h.call(command, id, netns, "eth0", conf)
	if code != 0 {
		h.t.Fatalf("%s %s: exit %d: %s", command, id, code, out)
	}
	return out
}

func (h *harness) add(id string, pod *cnitest.Namespace, conf []byte) *current.Result {
	h.t.Helper()
	out := h.mustOK("ADD", id, pod.Path(), conf)
	var v struct{ CNIVersion string }
	json.Unmarshal(conf, &v)
	r, err := version.NewResult(v.CNIVersion, out)
	if err != nil {
		h.t.Fatalf("ADD %s printed %s: %v", id, out, err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// withPrev adds prevResult to a configuration, as a runtime does for CHECK
// and DEL.
func withPrev(t *testing.T, conf []byte, res *current.Result, cniVersion string) []byte {
	t.Helper()
	r, err := res.GetAsVersion(cniVersion)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	json.Unmarshal(conf, &c)
	var prev map[string]any
	json.Unmarshal(rb, &prev)
	c["prevResult"] = prev
	b, _ := json.Marshal(c)
	return b
}

func cniError(t *testing.T, out []byte) types.Error {
	t.Helper()
	var e types.Error
	if err := json.Unmarshal(out, &e); err != nil || e.Code == 0 || e.Msg == "" {
		t.Fatalf("stdout is not CNI error JSON with a code and a message: %q (%v)", out, err)
	}
	return e
}

func podIP(t *testing.T, r *current.Result) netip.Addr {
	t.Helper()
	if len(r.IPs) != 1 {
		t.Fatalf("result has %d IPs, want 1: %+v", len(r.IPs), r)
	}
	a, _ := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	return a
}

// allocations lists the addresses held under the harness's data dir.
func (h *harness) allocations(network string) []string {
	ents, err := os.ReadDir(filepath.Join(h.dataDir, network))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// links lists the node's cali links.
func (h *harness) links() []string {
	var names []string
	if err := h.node.Do(func() error {
		ls, err := netlink.LinkList()
		for _, l := range ls {
			if strings.HasPrefix(l.Attrs().Name, "cali") {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	return names
}

func TestPluginVersion(t *testing.T) {
	bin := testutil.KlabBinary(t)
	for _, argv := range [][]string{{bin}, {bin, "cni"}} {
		out, code := run(t, argv, map[string]string{"CNI_COMMAND": "VERSION"}, "")
		if code != 0 {
			t.Fatalf("VERSION exit %d: %s", code, out)
		}
		var v struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("VERSION printed %q: %v", out, err)
		}
		want := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
		if !slices.Equal(v.SupportedVersions, want) {
			t.Errorf("%v: supported versions %v, want %v", argv[1:], v.SupportedVersions, want)
		}
	}
}

func TestPluginErrors(t *testing.T) {
	bin := testutil.KlabBinary(t)
	good := `{"cniVersion":"1.0.0","name":"kt-net","type":"klab","ipam":{"type":"klab","subnet":"10.244.1.0/24"}}`
	env := func(cmd string, drop ...string) map[string]string {
		m := map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": "kt1", "CNI_NETNS": "/nonexistent/kt-cni-netns", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
		for _, k := range drop {
			delete(m, k)
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		stdin string
		code  uint
	}{
		{"missing CNI_NETNS", env("ADD", "CNI_NETNS"), good, types.ErrInvalidEnvironmentVariables},
		{"unknown command", env("FROB"), good, types.ErrInvalidEnvironmentVariables},
		{"stdin not JSON", env("ADD"), `{"cniVersion":`, types.ErrDecodingFailure},
		{"unsupported version", env("ADD"), strings.Replace(good, "1.0.0", "9.9.9", 1), types.ErrIncompatibleCNIVersion},
		{"CHECK before 0.4.0", env("CHECK"), strings.Replace(good, "1.0.0", "0.3.1", 1), types.ErrIncompatibleCNIVersion},
		{"other ipam", env("ADD"), strings.Replace(good, `"type":"klab","subnet"`, `"type":"host-local","subnet"`, 1), types.ErrInvalidNetworkConfig},
		{"no such netns", env("ADD"), good, types.ErrInvalidNetNS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, []string{bin}, tc.env, tc.stdin)
			if code == 0 {
				t.Fatalf("exit 0, want failure; stdout %s", out)
			}
			if e := cniError(t, out); e.Code != tc.code {
				t.Errorf("code %d (%s), want %d", e.Code, e.Msg, tc.code)
			}
		})
	}
}

func TestIntegrationAddCheckDel(t *testing.T) {
	h := newHarness(t)
	pod := cnitest.NewNS(t, "pod")
	subnet := netip.MustParsePrefix("10.244.1.0/24")
	for _, v := range plugin.SupportedVersions.SupportedVersions() {
		t.Run(v, func(t *testing.T) {
			h.t = t
			id := "kt-" + strings.ReplaceAll(v, ".", "")
			conf := h.conf(v, subnet.String(), nil)
			res := h.add(id, pod, conf)
			ip := podIP(t, res)
			host := plugin.HostVethName(id)
			if !subnet.Contains(ip) || res.IPs[0].Address.String() != ip.String()+"/32" {
				t.Errorf("pod address %s, want a /32 in %s", res.IPs[0].Address.String(), subnet)
			}
			if len(res.Interfaces) != 2 || res.Interfaces[0].Name != host || res.Interfaces[0].Mac == "" ||
				res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != pod.Path() || res.Interfaces[1].Mac == "" {
				t.Errorf("interfaces %v, want %s and eth0 in %s, with MACs", res.Interfaces, host, pod.Path())
			}
			if gw := res.IPs[0].Gateway.String(); gw != "169.254.1.1" {
				t.Errorf("gateway %s, want 169.254.1.1", gw)
			}
			if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" || res.Routes[0].GW.String() != "169.254.1.1" {
				t.Errorf("routes %v, want default via 169.254.1.1", res.Routes)
			}
			nodeRoutes := cnitest.IP(t, "-n", h.node.Name, "route", "show", ip.String()+"/32")
			if !strings.Contains(nodeRoutes, "dev "+host) || !strings.Contains(nodeRoutes, "scope link") {
				t.Errorf("node route to %s: %q, want dev %s scope link", ip, nodeRoutes, host)
			}
			if got := cnitest.IP(t, "-n", h.node.Name, "addr", "show", "dev", host); strings.Contains(got, "inet ") {
				t.Errorf("the node side has an address: %s", got)
			}
			podRoutes := cnitest.IP(t, "-n", pod.Name, "route")
			for _, want := range []string{"default via 169.254.1.1 dev eth0", "169.254.1.1 dev eth0 scope link"} {
				if !strings.Contains(podRoutes, want) {
					t.Errorf("pod routes %q lack %q", podRoutes, want)
				}
			}
			if got := cnitest.IP(t, "-n", pod.Name, "link", "show", "eth0"); !strings.Contains(got, "mtu 1400") {
				t.Errorf("pod eth0 %q, want mtu 1400", got)
			}

			// ADD again: the same address, a new veth.
			res = h.add(id, pod, conf)
			if again := podIP(t, res); again != ip {
				t.Errorf("a repeated ADD gave %s, the first %s", again, ip)
			}
			if v != "0.3.0" && v != "0.3.1" {
				h.mustOK("CHECK", id, pod.Path(), withPrev(t, conf, res, v))
				h.mustOK("CHECK", id, pod.Path(), withPrev(t, conf, res, v))
			}
			h.mustOK("DEL", id, pod.Path(), withPrev(t, conf, res, v))
			h.mustOK("DEL", id, pod.Path(), withPrev(t, conf, res, v))
			if l := h.links(); len(l) != 0 {
				t.Errorf("after DEL the node still has %v", l)
			}
			if a := h.allocations("kt-net"); len(a) != 0 {
				t.Errorf("after DEL the IPAM still holds %v", a)
			}
			if v != "0.3.0" && v != "0.3.1" {
				out, code := h.call("CHECK", id, pod.Path(), "eth0", withPrev(t, conf, res, v))
				if e := cniError(t, out); code == 0 || e.Code != plugin.ErrCheckFailed {
					t.Errorf("CHECK after DEL: exit %d, code %d (%s); want code %d", code, e.Code, e.Msg, plugin.ErrCheckFailed)
				}
			}
		})
	}
}

func TestIntegrationCheckFindsDamage(t *testing.T) {
	h := newHarness(t)
	pod := cnitest.NewNS(t, "pod")
	conf := h.conf("1.0.0", "10.244.1.0/24", nil)
	res := h.add("kt-dmg", pod, conf)
	cnitest.IP(t, "-n", pod.Name, "route", "del", "default")
	out, code := h.call("CHECK", "kt-dmg", pod.Path(), "eth0", withPrev(t, conf, res, "1.0.0"))
	e := cniError(t, out)
	if code == 0 || e.Code != plugin.ErrCheckFailed || !strings.Contains(e.Msg, "default route") {
		t.Errorf("CHECK of a pod without its default route: exit %d, %d %q", code, e.Code, e.Msg)
	}
	h.mustOK("DEL", "kt-dmg", pod.Path(), conf)
}

func TestIntegrationRefusesTheNodesNamespace(t *testing.T) {
	h := newHarness(t)
	out, code := h.call("ADD", "kt-self", h.node.Path(), "eth0", h.conf("1.0.0", "10.244.1.0/24", nil))
	if e := cniError(t, out); code == 0 || e.Code != types.ErrInvalidNetNS {
		t.Errorf("ADD into the node's own namespace: exit %d, %d %q", code, e.Code, e.Msg)
	}
	if l := h.links(); len(l) != 0 {
		t.Errorf("a refused ADD left %v", l)
	}
}

func TestIntegrationDelUnknownContainer(t *testing.T) {
	h := newHarness(t)
	conf := h.conf("1.0.0", "10.244.1.0/24", nil)
	h.mustOK("DEL", "kt-never-added", "", conf)
	h.mustOK("DEL", "kt-never-added", "/run/netns/kt-cni-gone", conf)
}

func TestIntegrationPodsReachEachOther(t *testing.T) {
	h := newHarness(t)
	a, b := cnitest.NewNS(t, "pod-a"), cnitest.NewNS(t, "pod-b")
	conf := h.conf("1.0.0", "10.244.1.0/24", nil)
	ipA := podIP(t, h.add("kt-a", a, conf))
	ipB := podIP(t, h.add("kt-b", b, conf))
	t.Cleanup(func() {
		h.call("DEL", "kt-a", a.Path(), "eth0", conf)
		h.call("DEL", "kt-b", b.Path(), "eth0", conf)
	})

	lnB := cnitest.Listen(t, b, ":8080")
	if src := cnitest.Source(t, a, lnB, netip.AddrPortFrom(ipB, 8080)); src != ipA {
		t.Errorf("pod b saw pod a's connection from %s, want %s (no NAT)", src, ipA)
	}
	lnNode := cnitest.Listen(t, h.node.Namespace, ":8081")
	if src := cnitest.Source(t, a, lnNode, netip.AddrPortFrom(h.node.IP, 8081)); src != ipA {
		t.Errorf("the node saw pod a's connection from %s, want %s", src, ipA)
	}
	lnA := cnitest.Listen(t, a, ":8082")
	if src := cnitest.Source(t, h.node.Namespace, lnA, netip.AddrPortFrom(ipA, 8082)); src != h.node.IP {
		t.Errorf("pod a saw the node's connection from %s, want %s", src, h.node.IP)
	}
	// The gateway was resolved by proxy ARP to the node side's MAC.
	var hostMAC string
	h.node.Do(func() error {
		l, err := netlink.LinkByName(plugin.HostVethName("kt-a"))
		if err == nil {
			hostMAC = l.Attrs().HardwareAddr.String()
		}
		return err
	})
	if neigh := cnitest.IP(t, "-n", a.Name, "neigh", "show", "169.254.1.1"); !strings.Contains(neigh, hostMAC) {
		t.Errorf("pod a's neighbour 169.254.1.1 is %q, want the node side's MAC %s", neigh, hostMAC)
	}
}

func TestIntegrationConcurrentAdds(t *testing.T) {
	h := newHarness(t)
	const n = 12
	pods := make([]*cnitest.Namespace, n)
	for i := range pods {
		pods[i] = cnitest.NewNS(t, fmt.Sprint("pod", i))
	}
	conf := h.conf("1.0.0", "10.244.2.0/24", nil)
	ips := make([]netip.Addr, n)
	outs := make([][]byte, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": fmt.Sprint("kt-c", i), "CNI_NETNS": pods[i].Path(), "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
			outs[i], codes[i] = cnitest.Run(t, h.node.Namespace, h.bin, env, conf)
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if codes[i] != 0 {
			t.Fatalf("ADD kt-c%d: exit %d: %s", i, codes[i], outs[i])
		}
		r, err := current.NewResult(outs[i])
		if err != nil {
			t.Fatal(err)
		}
		ips[i] = podIP(t, r.(*current.Result))
		if j, dup := seen[ips[i]]; dup {
			t.Errorf("kt-c%d and kt-c%d both got %s", j, i, ips[i])
		}
		seen[ips[i]] = i
	}
	if a := h.allocations("kt-net"); len(a) != n {
		t.Errorf("the IPAM holds %d addresses, want %d", len(a), n)
	}
	if l := h.links(); len(l) != n {
		t.Errorf("the node has %d cali links, want %d", len(l), n)
	}
	for i := range n {
		wg.Go(func() {
			env := map[string]string{"CNI_COMMAND": "DEL", "CNI_CONTAINERID": fmt.Sprint("kt-c", i), "CNI_NETNS": pods[i].Path(), "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
			outs[i], codes[i] = cnitest.Run(t, h.node.Namespace, h.bin, env, conf)
		})
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 0 {
			t.Errorf("DEL kt-c%d: exit %d: %s", i, codes[i], outs[i])
		}
	}
	if a := h.allocations("kt-net"); len(a) != 0 {
		t.Errorf("after DEL the IPAM holds %v", a)
	}
	if l := h.links(); len(l) != 0 {
		t.Errorf("after DEL the node has %v", l)
	}
}

func TestIntegrationExhaustionAndStatus(t *testing.T) {
	h := newHarness(t)
	conf := h.conf("1.1.0", "10.244.9.0/29", nil) // .2 to .6: five pods
	status := func() (types.Error, int) {
		out, code := h.call("STATUS", "", "", "", conf)
		if code == 0 {
			return types.Error{}, 0
		}
		return cniError(t, out), code
	}
	if e, code := status(); code != 0 {
		t.Fatalf("STATUS of an empty block: exit %d, %v", code, e)
	}
	pods := make([]*cnitest.Namespace, 6)
	for i := range pods {
		pods[i] = cnitest.NewNS(t, fmt.Sprint("pod", i))
	}
	for i := range 5 {
		h.add(fmt.Sprint("kt-x", i), pods[i], conf)
	}
	out, code := h.call("ADD", "kt-x5", pods[5].Path(), "eth0", conf)
	e := cniError(t, out)
	if code == 0 || e.Code != plugin.ErrNoFreeAddress || !strings.Contains(e.Msg, "no free address") {
		t.Errorf("ADD to a full block: exit %d, %d %q; want code %d", code, e.Code, e.Msg, plugin.ErrNoFreeAddress)
	}
	if l := h.links(); slices.Contains(l, plugin.HostVethName("kt-x5")) || len(l) != 5 {
		t.Errorf("after a failed ADD the node has %v", l)
	}
	if e, code := status(); code == 0 || e.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS of a full block: exit %d, %d %q; want code %d", code, e.Code, e.Msg, types.ErrPluginNotAvailable)
	}
	h.mustOK("DEL", "kt-x1", pods[1].Path(), conf)
	if e, code := status(); code != 0 {
		t.Errorf("STATUS after a DEL: exit %d, %v", code, e)
	}
	if ip := podIP(t, h.add("kt-x5", pods[5], conf)); ip.String() != "10.244.9.3" {
		t.Errorf("ADD after a DEL got %s, want the freed 10.244.9.3", ip)
	}
	for _, i := range []int{0, 2, 3, 4, 5} {
		h.mustOK("DEL", fmt.Sprint("kt-x", i), pods[i].Path(), conf)
	}
}

func TestIntegrationGC(t *testing.T) {
	h := newHarness(t)
	a, b := cnitest.NewNS(t, "pod-a"), cnitest.NewNS(t, "pod-b")
	conf := h.conf("1.1.0", "10.244.3.0/24", nil)
	resA := h.add("kt-keep", a, conf)
	h.add("kt-stale", b, conf)
	gc := h.conf("1.1.0", "10.244.3.0/24", map[string]any{
		"cni.dev/valid-attachments": []types.GCAttachment{{ContainerID: "kt-keep", IfName: "eth0"}},
	})
	h.mustOK("GC", "", "", gc)
	if got := h.allocations("kt-net"); len(got) != 1 || got[0] != podIP(t, resA).String() {
		t.Errorf("after GC the IPAM holds %v, want only kt-keep's %s", got, podIP(t, resA))
	}
	if l := h.links(); !slices.Equal(l, []string{plugin.HostVethName("kt-keep")}) {
		t.Errorf("after GC the node has %v, want kt-keep's veth only", l)
	}
	h.mustOK("CHECK", "kt-keep", a.Path(), withPrev(t, conf, resA, "1.1.0"))
	h.mustOK("DEL", "kt-keep", a.Path(), conf)
}

func TestIntegrationNeedsGatewayRoute(t *testing.T) {
	testutil.RequireRoot(t)
	h := &harness{t: t, bin: testutil.KlabBinary(t), dataDir: t.TempDir()}
	h.node = &cnitest.Node{Namespace: cnitest.NewNS(t, "bare")} // no uplink, no default route
	pod := cnitest.NewNS(t, "pod")
	out, code := h.call("ADD", "kt-nr", pod.Path(), "eth0", h.conf("1.0.0", "10.244.1.0/24", nil))
	if e := cniError(t, out); code == 0 || e.Code != plugin.ErrNoGatewayRoute || !strings.Contains(e.Details, "default route") {
		t.Errorf("ADD on a node without a default route: exit %d, %d %q %q", code, e.Code, e.Msg, e.Details)
	}
	if l := h.links(); len(l) != 0 {
		t.Errorf("a failed ADD left %v", l)
	}
	if _, err := os.Stat(filepath.Join(h.dataDir, "kt-net")); err == nil {
		if a := h.allocations("kt-net"); len(a) != 0 {
			t.Errorf("a failed ADD left allocations %v", a)
		}
	}
}
