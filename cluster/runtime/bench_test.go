package runtime

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/klab-dev/klab/internal/testutil"
)

// BenchmarkPodStart measures a pod's start — sandbox (pause, namespaces,
// netns pin, cgroups), a veth in its network namespace as a CNI plugin
// would add, and a busybox container running "true" to its end — next to
// the floor measured in the same run: unshare of the same namespaces, the
// same veth, and exec of the same command by a minimal script. It reports
// both and their ratio. Needs root.
func BenchmarkPodStart(b *testing.B) {
	r := testRuntime(b)
	testutil.RequireCommand(b, "unshare")
	ctx := context.Background()
	if _, err := r.cfg.Images.Resolve(ctx, "busybox"); err != nil {
		b.Fatal(err)
	}
	var pod, floor time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: fmt.Sprintf("kt-rt-bench-%d", i), Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		if err := addVeth(sb.NetNS); err != nil {
			b.Fatal(err)
		}
		c, err := r.StartContainer(ctx, sb.ID, busybox("c", "true"))
		if err != nil {
			b.Fatal(err)
		}
		if st, err := r.Wait(ctx, c.ID); err != nil || st.Code != 0 {
			b.Fatalf("container: %+v, %v", st, err)
		}
		pod += time.Since(start)

		b.StopTimer()
		if err := r.RemoveSandbox(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		out, err := exec.Command("unshare", "--net", "--ipc", "--uts", "--mount", "--pid", "--fork",
			"/bin/busybox", "sh", "-c", "ip link add eth0 type veth peer name kt-rt-host && exec /bin/busybox true").CombinedOutput()
		if err != nil {
			b.Fatalf("floor: %v: %s", err, out)
		}
		floor += time.Since(start)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(pod.Microseconds())/1000/n, "ms/pod")
	b.ReportMetric(float64(floor.Microseconds())/1000/n, "ms/floor")
	b.ReportMetric(float64(pod)/float64(floor), "x-floor")
}

// addVeth adds a veth pair inside the network namespace pinned at path.
func addVeth(path string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "kt-rt-host"})
}
