package trace

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/klab-dev/klab/internal/testutil"
)

// pair makes two network namespaces joined by a veth pair (ttra0 in the
// first, ttrb0 in the second, 10.255.77.1/30 and .2/30, MTU 1400) and
// removes them when the test ends.
func pair(t *testing.T) (pathA, pathB string) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "ip")
	a, b := "tt-trace-a", "tt-trace-b"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	del := func() {
		exec.Command("ip", "netns", "del", a).Run()
		exec.Command("ip", "netns", "del", b).Run()
	}
	del()
	t.Cleanup(del)
	run("netns", "add", a)
	run("netns", "add", b)
	run("-n", a, "link", "add", "ttra0", "mtu", "1400", "type", "veth", "peer", "name", "ttrb0", "netns", b)
	run("-n", a, "addr", "add", "10.255.77.1/30", "dev", "ttra0")
	run("-n", b, "addr", "add", "10.255.77.2/30", "dev", "ttrb0")
	run("-n", b, "link", "set", "ttrb0", "mtu", "1400")
	for _, ns := range []string{a, b} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", a, "link", "set", "ttra0", "up")
	run("-n", b, "link", "set", "ttrb0", "up")
	return "/run/netns/" + a, "/run/netns/" + b
}

func TestIntegrationCaptureAndProbe(t *testing.T) {
	a, b := pair(t)
	dst := netip.MustParseAddr("10.255.77.2")
	for _, tc := range []struct {
		proto string
		port  int
		size  int
	}{{ICMP, 0, DefaultICMPSize}, {UDP, 9999, 100}, {TCP, 8080, 0}} {
		t.Run(tc.proto, func(t *testing.T) {
			probe, err := NewProbe(tc.proto, dst, tc.port, tc.size, 1)
			if err != nil {
				t.Fatal(err)
			}
			req := CaptureRequest{Marker: probe.Marker, Timeout: 5 * time.Second,
				Targets: []CaptureTarget{{Interface: "ttra0", Netns: a}, {Interface: "ttrb0", Netns: b}, {Interface: "nope0", Netns: b}}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st := LocalCapture(ctx, req)
			defer st.Close()
			var failed []string
			for {
				ev, err := st.Next()
				if err != nil {
					t.Fatalf("before ready: %v", err)
				}
				if ev.Error != "" {
					failed = append(failed, req.Targets[ev.Target].Interface)
				}
				if ev.Ready {
					break
				}
			}
			if len(failed) != 1 || failed[0] != "nope0" {
				t.Errorf("targets that failed to open: %v, want nope0", failed)
			}
			res, err := SendProbe(ctx, a, probe)
			if err != nil {
				t.Fatal(err)
			}
			if res.Code != "" || res.Src != netip.MustParseAddr("10.255.77.1") || res.Length != probe.Length() {
				t.Fatalf("probe result %+v", res)
			}
			key := keyOf(probe)
			seen := map[int]bool{}
			for !seen[0] || !seen[1] {
				ev, err := st.Next()
				if err != nil {
					t.Fatalf("frames so far on targets %v: %v", seen, err)
				}
				if ev.Frame == nil {
					continue
				}
				d, ok := Decode(ev.Frame.Data, layers.LinkType(ev.Frame.LinkType))
				if !ok || !key.forward(d) {
					continue // the reply, or the SYN-ACK
				}
				if want := ev.Target == 0; ev.Frame.Outgoing != want {
					t.Errorf("target %d: outgoing %v", ev.Target, ev.Frame.Outgoing)
				}
				if ev.Frame.Time.Before(res.Sent.Add(-time.Second)) || ev.Frame.Length != 14+probe.Length() {
					t.Errorf("target %d: frame at %s (sent %s), %d bytes", ev.Target, ev.Frame.Time, res.Sent, ev.Frame.Length)
				}
				if src, dst := d.innerAddrs(); src.String() != "10.255.77.1" || dst.String() != "10.255.77.2" {
					t.Errorf("frame %s → %s", src, dst)
				}
				seen[ev.Target] = true
			}
		})
	}
}

func TestIntegrationProbeRefused(t *testing.T) {
	a, _ := pair(t)
	ctx := context.Background()
	big, err := NewProbe(ICMP, netip.MustParseAddr("10.255.77.2"), 0, 1400, 1)
	if err != nil {
		t.Fatal(err)
	}
	res, err := SendProbe(ctx, a, big)
	if err != nil || res.Code != ProbeMTU || res.Length != 1428 {
		t.Errorf("1428 bytes through MTU 1400 with DF: %+v %v", res, err)
	}
	far, _ := NewProbe(UDP, netip.MustParseAddr("10.99.0.1"), 53, 16, 1)
	res, err = SendProbe(ctx, a, far)
	if err != nil || res.Code != ProbeNoRoute {
		t.Errorf("no route: %+v %v", res, err)
	}
}
