package netctl_test

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/e2etest"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/capture"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/netns"
)

// lab is a test's netns cluster.
type lab struct{ *e2etest.Cluster }

// pod starts a busybox pod running cmd on node and waits until it is ready.
func (l lab) pod(name, node string, cmd ...string) *corev1.Pod {
	l.T.Helper()
	l.Create(e2etest.Busybox(name, node, nil, cmd...))
	return l.Ready(name)
}

// wire is how a packet crossed the underlay: "none", "vxlan" (with its
// VNI and port) or "ipip", and the length of the pod's IP packet in it.
type wire struct {
	how string
	len int
}

// encapsulation captures, on the underlay bridge's port of node from, one
// ICMP echo request from src to dst sent while fn runs, and says how it
// was carried.
func (l lab) encapsulation(from, src, dst string, fn func()) wire {
	l.T.Helper()
	ns, err := netmodes.OpenNetns("/run/netns/" + netns.NetNSName(l.C.Name, "underlay"))
	if err != nil {
		l.T.Fatal(err)
	}
	defer ns.Close()
	var c *capture.Capture
	if err := ns.Do(func() error {
		var err error
		c, err = capture.Open(from, capture.Options{})
		return err
	}); err != nil {
		l.T.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	found := make(chan wire, 1)
	go func() {
		for {
			p, err := c.Read(ctx)
			if err != nil {
				found <- wire{how: "nothing captured: " + err.Error()}
				return
			}
			if how, ok := carried(c.Decode(p), src, dst); ok {
				found <- how
				return
			}
		}
	}()
	fn()
	return <-found
}

// carried finds an ICMP echo request src → dst in a frame, and how it was
// carried.
func carried(pkt gopacket.Packet, src, dst string) (wire, bool) {
	var ips []*layers.IPv4
	var vx *layers.VXLAN
	var udp *layers.UDP
	for _, ly := range pkt.Layers() {
		switch v := ly.(type) {
		case *layers.IPv4:
			ips = append(ips, v)
		case *layers.VXLAN:
			vx = v
		case *layers.UDP:
			if udp == nil {
				udp = v
			}
		case *layers.ICMPv4:
			if v.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || len(ips) == 0 {
				return wire{}, false
			}
			in := ips[len(ips)-1]
			if in.SrcIP.String() != src || in.DstIP.String() != dst {
				return wire{}, false
			}
			w := wire{how: "unknown", len: int(in.Length)}
			switch {
			case len(ips) == 1:
				w.how = "none"
			case vx != nil:
				w.how = fmt.Sprintf("vxlan vni %d port %d", vx.VNI, udp.DstPort)
			case ips[0].Protocol == layers.IPProtocolIPv4:
				w.how = "ipip"
			}
			return w, true
		}
	}
	return wire{}, false
}

// TestIntegrationModes checks issue 5's acceptance on a cluster with two
// subnets: every mode and cross-subnet variant carries pod traffic with
// exactly its encapsulation on the wire, a 1400-byte ping and a 10 MB
// transfer go through, live switches lose little and leave nothing of
// the old mode, and a stopped agent's routes are withdrawn.
func TestIntegrationModes(t *testing.T) {
	testutil.RequireCommand(t, "bird")
	l := lab{e2etest.UpPlan(t, provision.PlanOptions{Name: "tm-modes", Masters: 1, Workers: 2, Subnets: 2})}
	c, nc, ctx := l.C, l.NC, context.Background()
	// Plain BGP across the router needs the router to learn the routes.
	router, err := l.P.Transport(c, "router")
	if err != nil {
		t.Fatal(err)
	}
	defer router.Close()
	if err := nc.PeerRouter(ctx, c, router, api.DefaultASN); err != nil {
		t.Fatal(err)
	}

	// a and m share subnet a; b is across the router.
	pa := l.pod("a", "node1", "sleep", "3600")
	pb := l.pod("b", "node2", "sh", "-c", "dd if=/dev/zero of=/tmp/big bs=1M count=10 && httpd -f -p 80 -h /tmp")
	pm := l.pod("m", "master", "sleep", "3600")

	cases := []struct {
		mode        api.NetworkMode
		crossSubnet bool
		across      string // a → b, between subnets
		within      string // m → a, in one subnet
	}{
		{api.ModeBGP, false, "none", "none"},
		{api.ModeVXLAN, false, "vxlan vni 4096 port 4789", "vxlan vni 4096 port 4789"},
		{api.ModeIPIP, false, "ipip", "ipip"},
		{api.ModeVXLAN, true, "vxlan vni 4096 port 4789", "none"},
		{api.ModeIPIP, true, "ipip", "none"},
	}
	for _, tc := range cases {
		name := string(tc.mode)
		if tc.crossSubnet {
			name += " cross-subnet"
		}
		t.Run(name, func(t *testing.T) {
			l.T = t
			if _, err := nc.Switch(ctx, tc.mode, tc.crossSubnet, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			got := l.encapsulation("node1", pa.Status.PodIP, pb.Status.PodIP, func() {
				l.MustExec("a", "ping", "-c1", "-W2", "-s", "1400", pb.Status.PodIP)
			})
			if got.how != tc.across || got.len != 20+8+1400 {
				t.Errorf("a → b (across the router) carried as %q, %d bytes inside; want %q, 1428", got.how, got.len, tc.across)
			}
			got = l.encapsulation("master", pm.Status.PodIP, pa.Status.PodIP, func() {
				l.MustExec("m", "ping", "-c1", "-W2", pa.Status.PodIP)
			})
			if got.how != tc.within {
				t.Errorf("m → a (one subnet) carried as %q, want %q", got.how, tc.within)
			}
			out := l.MustExec("a", "sh", "-c", "wget -qO- http://"+pb.Status.PodIP+"/big | wc -c")
			if out != strconv.Itoa(10<<20) {
				t.Errorf("10 MB transfer a → b got %s bytes", out)
			}
		})
	}
	l.T = t

	// Live switches with a ping every 10 ms running.
	if _, err := nc.Switch(ctx, api.ModeBGP, false, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		var out bytes.Buffer
		code, err := podio.Exec(ctx, l.Cfg, "default", "a", podio.ExecOptions{Command: []string{"ping", "-q", "-i", "0.01", "-c", "1000", "-W", "1", pb.Status.PodIP}, Stdout: &out, Stderr: &out})
		done <- fmt.Sprintf("%s(exit %d, %v)", out.String(), code, err)
	}()
	for _, m := range []api.NetworkMode{api.ModeVXLAN, api.ModeIPIP, api.ModeBGP} {
		start := time.Now()
		res, err := nc.Switch(ctx, m, false, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		t.Logf("switch %s → %s converged in %s", res.From, res.To, took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("switch to %s took %s (> 3 s)", m, took)
		}
		reps, err := nc.Reports(ctx, c, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reps {
			for _, d := range r.State.Devices {
				if (d.Name == "vxlan.calico" && m != api.ModeVXLAN) || (d.Name == "tunl0" && m != api.ModeIPIP && d.Up) {
					t.Errorf("%s: device %s of an old mode left in %s mode", r.Node, d.Name, m)
				}
			}
			if m != api.ModeVXLAN && len(r.State.FDB) > 0 {
				t.Errorf("%s: FDB entries left in %s mode: %v", r.Node, m, r.State.FDB)
			}
			for _, rt := range r.State.Routes {
				if rt.Proto == "klab" && ((m != api.ModeVXLAN && rt.Dev == "vxlan.calico") || (m != api.ModeIPIP && rt.Dev == "tunl0")) {
					t.Errorf("%s: route of an old mode left in %s mode: %s", r.Node, m, rt.Route)
				}
			}
		}
	}
	out := <-done
	mm := regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`).FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("ping output: %s", out)
	}
	sent, got := atoi(mm[1]), atoi(mm[2])
	t.Logf("10 ms ping across three switches: %d sent, %d received: loss window %d ms", sent, got, (sent-got)*10)
	if got < sent*9/10 {
		t.Errorf("lost %d of %d pings across three switches", sent-got, sent)
	}

	// A stopped agent's block is withdrawn from its peers; it returns
	// when the agent restarts.
	block := nodeBlock(t, nc, "node2")
	hasRoute := func() bool {
		reps, err := nc.Reports(ctx, c, "node1")
		if err != nil {
			return false
		}
		for _, r := range reps[0].State.Routes {
			if r.Dst.String() == block && r.Proto == "klab" {
				return true
			}
		}
		return false
	}
	if _, err := l.OnNode("node2", provision.NodeBinary, "supervise", "stop", "agent"); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "node1 to withdraw node2's block "+block, func() bool { return !hasRoute() })
	if _, err := l.OnNode("node2", provision.NodeBinary, "supervise", "start", "agent"); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 30*time.Second, "node2's block back on node1", hasRoute)
}

// TestIntegrationJumbo checks a jumbo-frame underlay (klab up --mtu 9000):
// pods get its MTU less VXLAN's 50 bytes, and a full-size pod packet
// crosses whole (no fragments) in every mode, as does a 10 MB transfer.
func TestIntegrationJumbo(t *testing.T) {
	l := lab{e2etest.UpPlan(t, provision.PlanOptions{Name: "tm-jumbo", Masters: 1, Workers: 2, Subnets: 1, MTU: 9000})}
	cn, err := l.NC.API.ClusterNetworks().Get(context.Background(), api.ClusterNetworkName, metav1.GetOptions{})
	if err != nil || cn.Spec.MTU != 8950 {
		t.Fatalf("ClusterNetwork MTU: %v %+v, want 8950", err, cn)
	}
	pa := l.pod("a", "node1", "sleep", "3600")
	pb := l.pod("b", "node2", "sh", "-c", "dd if=/dev/zero of=/tmp/big bs=1M count=10 && httpd -f -p 80 -h /tmp")
	if got := l.MustExec("a", "cat", "/sys/class/net/eth0/mtu"); got != "8950" {
		t.Fatalf("pod a's eth0 MTU %s, want 8950", got)
	}
	for _, tc := range []struct {
		mode api.NetworkMode
		how  string
	}{{api.ModeBGP, "none"}, {api.ModeVXLAN, "vxlan vni 4096 port 4789"}, {api.ModeIPIP, "ipip"}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			l.T = t
			if _, err := l.NC.Switch(context.Background(), tc.mode, false, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			// 8922 bytes of data: an 8950-byte packet, the pod's MTU.
			got := l.encapsulation("node1", pa.Status.PodIP, pb.Status.PodIP, func() {
				l.MustExec("a", "ping", "-c1", "-W2", "-s", "8922", pb.Status.PodIP)
			})
			if got.how != tc.how || got.len != 8950 {
				t.Errorf("a → b carried as %q, %d bytes inside; want %q, 8950", got.how, got.len, tc.how)
			}
			out := l.MustExec("a", "sh", "-c", "wget -qO- http://"+pb.Status.PodIP+"/big | wc -c")
			if out != strconv.Itoa(10<<20) {
				t.Errorf("10 MB transfer a → b got %s bytes", out)
			}
		})
	}
	l.T = t

	// A new MTU in the ClusterNetwork reaches pods created after it.
	ctx := context.Background()
	cn, err = l.NC.API.ClusterNetworks().Get(ctx, api.ClusterNetworkName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cn.Spec.MTU = 8000
	if _, err := l.NC.API.ClusterNetworks().Update(ctx, cn, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "node1's CNI configuration to say mtu 8000", func() bool {
		out, err := l.OnNode("node1", "cat", "/etc/cni/net.d/10-klab.conflist")
		return err == nil && strings.Contains(out, `"mtu": 8000`)
	})
	l.pod("c", "node1", "sleep", "3600")
	if got := l.MustExec("c", "cat", "/sys/class/net/eth0/mtu"); got != "8000" {
		t.Errorf("pod c, created after the change, has MTU %s, want 8000", got)
	}
	if got := l.MustExec("a", "cat", "/sys/class/net/eth0/mtu"); got != "8950" {
		t.Errorf("pod a, created before the change, has MTU %s, want 8950 still", got)
	}
}

func nodeBlock(t *testing.T, nc *netctl.Client, node string) string {
	n, err := nc.Kube.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Spec.PodCIDR
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
