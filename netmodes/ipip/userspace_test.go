package ipip_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/ipip"
)

// encapsulators counts the running userspace encapsulator goroutines.
func encapsulators() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "ipip.(*encapsulator).encapsulate(") + strings.Count(string(buf), "ipip.(*encapsulator).decapsulate(")
}

func ping(t *testing.T, a, b *testnet.Node) int {
	t.Helper()
	got, err := testnet.Ping(a.Pod, a.PodIP, b.PodIP, 3, 20*time.Millisecond, 56)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestIntegrationUserspace runs the userspace encapsulator between two
// nodes: it counts what it carries, drops packets from unknown peers,
// comes back when its device is deleted under it, and leaves no goroutine
// behind on Remove or when its context ends.
func TestIntegrationUserspace(t *testing.T) {
	testutil.RequireRoot(t)
	l := testnet.New(t, 2, 1)
	n1, n2 := l.Nodes[0], l.Nodes[1]
	cfg := netmodes.Config{Mode: netmodes.IPIP, Implementation: netmodes.Userspace}
	before := encapsulators()
	ctx1, cancel1 := context.WithCancel(t.Context())
	defer cancel1()
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	m1 := ipip.New(ctx1, n1.NS.Netns).(*ipip.Mode)
	m2 := ipip.New(ctx2, n2.NS.Netns).(*ipip.Mode)
	for _, x := range []struct {
		m *ipip.Mode
		n *testnet.Node
	}{{m1, n1}, {m2, n2}} {
		if _, err := x.m.Apply(t.Context(), cfg, x.n.Node, l.Peers()); err != nil {
			t.Fatal(err)
		}
		if impl := x.m.Implementation(); impl != netmodes.Userspace {
			t.Fatalf("implementation %s", impl)
		}
	}
	// Two goroutines a node, each visible by name once it has run.
	testutil.Poll(t, 5*time.Second, "4 encapsulator goroutines", func() bool { return encapsulators() == before+4 })
	if got := ping(t, n1, n2); got != 3 {
		t.Fatalf("ping: %d of 3", got)
	}
	if s := m1.Stats(); s.Encapsulated < 3 || s.Decapsulated < 3 {
		t.Fatalf("n1 stats %+v", s)
	}

	// n1 forgets n2: what n2 sends is dropped as from an unknown peer.
	if _, err := m1.Apply(t.Context(), cfg, n1.Node, nil); err != nil {
		t.Fatal(err)
	}
	if got := ping(t, n2, n1); got != 0 {
		t.Fatalf("n1 answered an unknown peer %d times", got)
	}
	if s := m1.Stats(); s.UnknownPeer < 3 {
		t.Fatalf("n1 stats %+v", s)
	}

	// The device deleted under the encapsulator: it stops, and the next
	// Apply brings it back.
	l1, err := n1.NS.Netlink().LinkByName(ipip.Device)
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.NS.Netlink().LinkDel(l1); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "n1's encapsulator stops", func() bool { return encapsulators() == before+2 })
	ch, err := m1.Apply(t.Context(), cfg, n1.Node, l.Peers())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ch.String(), "- device tunl0 (its encapsulator stopped)") || !strings.Contains(ch.String(), "+ device tunl0") {
		t.Fatalf("changes:\n%s", ch)
	}
	if got := ping(t, n1, n2); got != 3 {
		t.Fatalf("ping after the restart: %d of 3", got)
	}

	// Remove stops n1's goroutines; the end of n2's context stops n2's and
	// takes its device.
	if _, err := m1.Remove(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := encapsulators(); got != before+2 {
		t.Fatalf("after Remove: %d encapsulator goroutines, want %d", got, before+2)
	}
	cancel2()
	testutil.Poll(t, 5*time.Second, "n2's encapsulator stops with its context", func() bool { return encapsulators() == before })
	testutil.Poll(t, 5*time.Second, "n2's tunl0 goes", func() bool {
		_, err := n2.NS.Netlink().LinkByName(ipip.Device)
		_, gone := err.(netlink.LinkNotFoundError)
		return gone
	})
}

// TestIntegrationKernelMissing asks for the kernel implementation where
// the kernel may have no ipip: it works, or fails saying so.
func TestIntegrationKernelMissing(t *testing.T) {
	testutil.RequireRoot(t)
	l := testnet.New(t, 2, 1)
	n1 := l.Nodes[0]
	m := ipip.New(t.Context(), n1.NS.Netns)
	_, err := m.Apply(t.Context(), netmodes.Config{Mode: netmodes.IPIP, Implementation: netmodes.Kernel}, n1.Node, l.Peers())
	if err == nil {
		t.Logf("this kernel has ipip")
		if _, err := m.Remove(t.Context()); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !strings.Contains(err.Error(), "create tunl0 (ipip, local any, remote any)") {
		t.Fatalf("error %v", err)
	}
	t.Logf("no ipip in this kernel: %v", err)
	if rs, _ := netmodes.ListRoutes(n1.NS.Netlink()); len(rs) != 0 {
		t.Fatalf("routes left after the failure: %v", rs)
	}
}
