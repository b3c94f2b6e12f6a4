package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes/trace"
)

// traceCluster is a cluster made by the klab binary for trace tests, with
// pods a and c on node1 and b on node2.
type traceCluster struct {
	t     testing.TB
	bin   string
	name  string
	state string
}

// upTraceCluster starts cluster name with the given workers and the
// pods, and deletes it when the test ends.
func upTraceCluster(t testing.TB, name string, workers int) *traceCluster {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "nsenter", "ip")
	c := &traceCluster{t: t, bin: testutil.KlabBinary(t), name: name, state: t.TempDir()}
	t.Cleanup(func() { c.run("down") })
	if out, code := c.run("up", "--provider", "netns", "--nodes", fmt.Sprint(workers)); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	manifest := filepath.Join(c.state, "pods.yaml")
	var b strings.Builder
	for _, p := range [][2]string{{"a", "node1"}, {"b", "node2"}, {"c", "node1"}} {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, labels: {trace: %[1]s}}\nspec:\n  nodeName: %s\n  containers: [{name: c, image: busybox, command: [sleep, \"100000\"]}]\n---\n", p[0], p[1])
	}
	if err := os.WriteFile(manifest, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := c.run("apply", "-f", manifest); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	testutil.Poll(t, 2*time.Minute, "pods a, b and c running with an IP", func() bool {
		out, code := c.run("get", "pods", "-o", "json")
		if code != 0 {
			return false
		}
		var list struct {
			Items []struct {
				Status struct {
					Phase string `json:"phase"`
					PodIP string `json:"podIP"`
				} `json:"status"`
			} `json:"items"`
		}
		if json.Unmarshal(out, &list) != nil || len(list.Items) != 3 {
			return false
		}
		for _, p := range list.Items {
			if p.Status.Phase != "Running" || p.Status.PodIP == "" {
				return false
			}
		}
		return true
	})
	return c
}

// run runs klab against the cluster and returns its standard output
// (with standard error when it fails) and exit code.
func (c *traceCluster) run(args ...string) ([]byte, int) {
	cmd := exec.Command(c.bin, append([]string{"--name", c.name}, args...)...)
	cmd.Env = append(os.Environ(), "KLAB_STATE_DIR="+c.state, "LANG=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return append(stdout.Bytes(), stderr.Bytes()...), ee.ExitCode()
	case err != nil:
		c.t.Fatalf("klab %s: %v", strings.Join(args, " "), err)
	}
	return stdout.Bytes(), 0
}

// trace runs klab trace -o json and decodes the result.
func (c *traceCluster) trace(t *testing.T, wantCode int, args ...string) *trace.Result {
	t.Helper()
	out, code := c.run(append([]string{"trace", "-o", "json"}, args...)...)
	if code != wantCode {
		t.Fatalf("klab trace %s: exit %d, want %d\n%s", strings.Join(args, " "), code, wantCode, out)
	}
	var res trace.Result
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("klab trace %s printed no result: %v\n%s", strings.Join(args, " "), err, out)
	}
	return &res
}

// hopSeq is a trace's hops as "node kind direction".
func hopSeq(res *trace.Result) []string {
	var out []string
	for _, h := range res.Hops {
		out = append(out, h.Node+" "+h.Kind+" "+h.Direction)
	}
	return out
}

func types(h trace.Hop) []string {
	var out []string
	for _, l := range h.Layers {
		out = append(out, l.Type)
	}
	return out
}

func TestIntegrationTrace(t *testing.T) {
	c := upTraceCluster(t, "ttrace", 2)
	src := []string{"node1 pod out", "node1 veth in"}
	underlay := []string{"node1 nic out", "underlay bridge-port in", "underlay bridge-port out", "node2 nic in"}
	dst := []string{"node2 veth out", "node2 pod in"}
	for _, tc := range []struct {
		mode   string
		hops   []string
		layers []string // on the underlay hops
		encap  string
	}{
		{"bgp", slices.Concat(src, underlay, dst), []string{"Ethernet", "IPv4", "ICMPv4", "Payload"}, "none"},
		{"vxlan", slices.Concat(src, []string{"node1 vxlan out"}, underlay, []string{"node2 vxlan in"}, dst),
			[]string{"Ethernet", "IPv4", "UDP", "VXLAN", "Ethernet", "IPv4", "ICMPv4", "Payload"}, "vxlan"},
		{"ipip", slices.Concat(src, []string{"node1 tunnel out"}, underlay, []string{"node2 tunnel in"}, dst),
			[]string{"Ethernet", "IPIP", "IPv4", "ICMPv4", "Payload"}, "ipip"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			if out, code := c.run("net", "mode", tc.mode); code != 0 {
				t.Fatalf("net mode %s: exit %d\n%s", tc.mode, code, out)
			}
			res := c.trace(t, 0, "a", "b")
			if !res.Delivered || res.LostAt != nil || res.Mode != tc.mode {
				t.Fatalf("delivered %v lost at %+v mode %s: %s", res.Delivered, res.LostAt, res.Mode, res.Reason)
			}
			if got := hopSeq(res); !slices.Equal(got, tc.hops) {
				t.Errorf("hops\n got %q\nwant %q", got, tc.hops)
			}
			for _, h := range res.Hops {
				if !h.Seen {
					t.Errorf("hop %d (%s %s) did not see the packet", h.Index, h.Node, h.Interface)
				}
				if h.Kind != trace.HopNIC && h.Kind != trace.HopBridgePort {
					continue
				}
				if got := types(h); !slices.Equal(got, tc.layers) || h.Encap != tc.encap {
					t.Errorf("hop %d (%s %s): %s %v, want %s %v", h.Index, h.Node, h.Interface, h.Encap, got, tc.encap, tc.layers)
					continue
				}
				var inner trace.Layer
				for _, l := range h.Layers {
					if l.Type == "IPv4" {
						inner = l
					}
				}
				if inner.Src != res.Src.IP.String() || inner.Dst != res.Dst.IP.String() {
					t.Errorf("hop %d: inner IPv4 %s → %s, want pod a → pod b", h.Index, inner.Src, inner.Dst)
				}
				switch tc.mode {
				case "vxlan":
					if udp, vx := h.Layers[2], h.Layers[3]; udp.DstPort != 4789 || vx.VNI != 4096 {
						t.Errorf("hop %d: UDP %d VNI %d", h.Index, udp.DstPort, vx.VNI)
					}
				case "ipip":
					if h.Layers[1].Protocol != 4 {
						t.Errorf("hop %d: outer protocol %d", h.Index, h.Layers[1].Protocol)
					}
				}
			}
			if tc.mode == "ipip" && res.Implementation == "userspace" && !strings.Contains(strings.Join(res.Notes, " "), "userspace encapsulator") {
				t.Errorf("the userspace encapsulator is not named: %q", res.Notes)
			}
		})
	}

	t.Run("pcap", func(t *testing.T) {
		testutil.RequireCommand(t, "tshark")
		if out, code := c.run("net", "mode", "vxlan"); code != 0 {
			t.Fatalf("net mode vxlan: %s", out)
		}
		file := filepath.Join(t.TempDir(), "a-b.pcapng")
		res := c.trace(t, 0, "a", "b", "--pcap", file)
		out, err := exec.Command("tshark", "-r", file, "-Y", "vxlan", "-T", "fields", "-e", "frame.interface_name", "-e", "vxlan.vni").Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 4 {
			t.Errorf("tshark shows %d VXLAN frames, want 4 (node1 eth0, 2 bridge ports, node2 eth0):\n%s", len(lines), out)
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, "\t4096") {
				t.Errorf("tshark: %q", l)
			}
		}
		all, _ := exec.Command("tshark", "-r", file, "-T", "fields", "-e", "frame.interface_id").Output()
		if n := len(strings.Fields(string(all))); n != len(res.Hops) {
			t.Errorf("%d frames in the pcap for %d hops", n, len(res.Hops))
		}
	})

	t.Run("other paths", func(t *testing.T) {
		for _, tc := range []struct {
			args  []string
			first string
			last  string
			hops  int
		}{
			{[]string{"a", "c"}, "node1 pod out", "node1 pod in", 4},
			{[]string{"a", "node2"}, "node1 pod out", "node2 nic in", 6},
			{[]string{"node1", "b"}, "node1 vxlan out", "node2 pod in", 8},
			{[]string{"a", "b", "--proto", "tcp", "--port", "8080"}, "node1 pod out", "node2 pod in", 10},
			{[]string{"default/a", "b", "--proto", "udp", "--port", "5353", "--count", "3"}, "node1 pod out", "node2 pod in", 10},
		} {
			res := c.trace(t, 0, tc.args...)
			seq := hopSeq(res)
			if !res.Delivered || len(seq) != tc.hops || seq[0] != tc.first || seq[len(seq)-1] != tc.last {
				t.Errorf("trace %v: delivered %v, hops %q", tc.args, res.Delivered, seq)
			}
		}
	})

	t.Run("service and policy", func(t *testing.T) {
		manifest := filepath.Join(t.TempDir(), "svc.yaml")
		svc := "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {trace: b}\n  ports: [{port: 80, targetPort: 8080}]\n"
		if err := os.WriteFile(manifest, []byte(svc), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := c.run("apply", "-f", manifest); code != 0 {
			t.Fatalf("apply: %s", out)
		}
		// The proxy's DNAT sends the SYN to pod b, the Service's only
		// endpoint; the hop where it happens says so.
		var res *trace.Result
		testutil.Poll(t, 30*time.Second, "a trace to svc/web through its endpoint b", func() bool {
			out, code := c.run("trace", "-o", "json", "a", "svc/web", "--proto", "tcp", "--port", "80")
			res = &trace.Result{}
			return code == 0 && json.Unmarshal(out, res) == nil && res.Dst.Endpoint == "default/b"
		})
		dnat := false
		for _, h := range res.Hops {
			dnat = dnat || strings.Contains(h.Change, "DNAT")
		}
		if res.Dst.Kind != trace.KindService || !dnat || hopSeq(res)[len(res.Hops)-1] != "node2 pod in" {
			t.Errorf("dst %+v, DNAT shown %v, hops %q", res.Dst, dnat, hopSeq(res))
		}

		// A default-deny policy for b: the trace ends at b's veth and
		// names the policy whose drop counter went up.
		deny := "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-b}\nspec:\n  podSelector: {matchLabels: {trace: b}}\n  policyTypes: [Ingress]\n"
		if err := os.WriteFile(manifest, []byte(deny), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := c.run("apply", "-f", manifest); code != 0 {
			t.Fatalf("apply: %s", out)
		}
		t.Cleanup(func() { c.run("delete", "networkpolicy", "deny-b") })
		var out []byte
		testutil.Poll(t, 30*time.Second, "a trace to b dropped by the policy", func() bool {
			var code int
			out, code = c.run("trace", "-o", "json", "a", "b")
			return code == 1
		})
		res = &trace.Result{}
		if err := json.Unmarshal(out, res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if res.Delivered || res.Cause != trace.CausePolicy || !strings.Contains(res.Reason, "default/deny-b") || res.LostAt == nil || res.LostAt.Node != "node2" {
			t.Errorf("delivered %v, cause %s, lost at %+v: %s", res.Delivered, res.Cause, res.LostAt, res.Reason)
		}
	})

	t.Run("route deleted", func(t *testing.T) {
		if out, code := c.run("net", "mode", "vxlan"); code != 0 {
			t.Fatalf("net mode vxlan: %s", out)
		}
		// node2's block: blocks are given out in the order the nodes
		// register.
		out, code := c.run("get", "node", "node2", "-o", "json")
		var node2 struct {
			Spec struct {
				PodCIDR string `json:"podCIDR"`
			} `json:"spec"`
		}
		if code != 0 || json.Unmarshal(out, &node2) != nil || node2.Spec.PodCIDR == "" {
			t.Fatalf("node2's pod CIDR: exit %d\n%s", code, out)
		}
		block := node2.Spec.PodCIDR
		vtep := strings.TrimSuffix(block, "/24")
		t.Cleanup(func() {
			c.run("node", "exec", "node1", "--", "ip", "route", "replace", block, "via", vtep, "dev", "vxlan.calico", "onlink", "proto", "75")
		})
		// node1's agent puts the route back at its next reconcile (any
		// change of a Node object starts one): delete it again until a
		// trace runs before that.
		testutil.Poll(t, time.Minute, "a trace while node1 lacks the route", func() bool {
			c.run("node", "exec", "node1", "--", "ip", "route", "del", block)
			out, code = c.run("trace", "-o", "json", "a", "b")
			return code == 1
		})
		var res trace.Result
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if res.Delivered || res.LostAt == nil || res.LostAt.Node != "node1" || res.Cause != trace.CauseNoRoute {
			t.Fatalf("delivered %v, lost at %+v, cause %s: %s", res.Delivered, res.LostAt, res.Cause, res.Reason)
		}
		want := block + " via " + vtep + " dev vxlan.calico onlink"
		if res.MissingRoute != want || !strings.Contains(res.Reason, want) {
			t.Errorf("missing route %q, reason %q: want %q named", res.MissingRoute, res.Reason, want)
		}
		c.run("node", "exec", "node1", "--", "ip", "route", "del", block)
		if table, code := c.run("trace", "a", "b"); code == 1 && !strings.Contains(string(table), "✗ lost after hop 2 (node1 · cali") {
			t.Errorf("table: exit %d\n%s", code, table)
		}
	})
}

// BenchmarkTrace measures klab trace from the command's start to its
// complete result, on a cluster of 4 nodes (a master and 3 workers), in
// vxlan mode.
func BenchmarkTrace(b *testing.B) {
	c := upTraceCluster(b, "ttbench", 3)
	if out, code := c.run("net", "mode", "vxlan"); code != 0 {
		b.Fatalf("net mode vxlan: %s", out)
	}
	b.ResetTimer()
	for b.Loop() {
		out, code := c.run("trace", "a", "b", "-o", "json")
		if code != 0 {
			b.Fatalf("trace: exit %d\n%s", code, out)
		}
	}
}
