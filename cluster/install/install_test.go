package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/netns"
	"github.com/klab-dev/klab/provision/transport"
)

// upForTest brings up a netns cluster with its state in a temporary
// directory and deletes it when the test ends.
func upForTest(t *testing.T, plan provision.PlanOptions) (*provision.Cluster, provision.Provider) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "nsenter", "ip", "ping")
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	p := netns.New(testutil.KlabBinary(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Up(ctx, Options{Plan: plan, Provider: p, Binary: testutil.KlabBinary(t)})
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	t.Cleanup(func() {
		if _, err := provision.Load(c.Name); err == nil {
			Down(context.Background(), c.Name, func(string) (provision.Provider, error) { return p, nil }, nil)
		}
	})
	return c, p
}

func run(t *testing.T, p provision.Provider, c *provision.Cluster, node string, args ...string) string {
	t.Helper()
	tr, err := p.Transport(c, node)
	if err != nil {
		t.Fatal(err)
	}
	out, err := transport.Output(context.Background(), tr, args...)
	if err != nil {
		t.Fatalf("%s: %v", node, err)
	}
	return string(out)
}

func TestIntegrationUpDown(t *testing.T) {
	c, p := upForTest(t, provision.PlanOptions{Name: "t-updown", Masters: 1, Workers: 2, Subnets: 1})

	states, err := p.Nodes(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.State != "running" {
			t.Errorf("%s is %s, want running", s.Name, s.State)
		}
	}
	node2, _ := c.Node("node2")
	run(t, p, c, "node1", "ping", "-c1", "-W2", node2.IP.String())
	master, _ := c.Node("master")
	if out, err := exec.Command("ping", "-c1", "-W2", master.IP.String()).CombinedOutput(); err != nil {
		t.Errorf("the host does not reach the master through its link: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(run(t, p, c, "node1", "hostname")); got != "node1" {
		t.Errorf("hostname %q", got)
	}
	if got := run(t, p, c, "node1", "ls", "/sys/class/net"); !strings.Contains(got, "eth0") {
		t.Errorf("/sys/class/net shows the host's devices: %q", got)
	}
	if got := run(t, p, c, "node1", "cat", "/etc/klab/supervise.yaml"); !strings.Contains(got, "klab/t-updown/node1/system") {
		t.Errorf("supervise.yaml: %q", got)
	}
	// A file written on node1 is node1's alone.
	run(t, p, c, "node1", "sh", "-c", "echo mine > /etc/klab/probe")
	if out := run(t, p, c, "node2", "sh", "-c", "cat /etc/klab/probe 2>&1 || true"); strings.Contains(out, "mine") {
		t.Error("node2 sees node1's /etc/klab")
	}
	if _, err := os.Stat("/etc/klab/probe"); err == nil {
		t.Error("a node's /etc/klab reached the host")
	}

	// Kill one supervisor first: down must not depend on it.
	pid := strings.TrimSpace(run(t, p, c, "node1", "sh", "-c", "klab supervise status -o json | sed -n 's/.*\"pid\": \\([0-9]*\\),/\\1/p' | head -1"))
	if n, err := strconv.Atoi(pid); err != nil || n <= 1 {
		t.Fatalf("supervisor pid %q", pid)
	} else if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down(t, p, c)
	assertGone(t, c)
}

func TestIntegrationTwoSubnets(t *testing.T) {
	testutil.RequireCommand(t, "traceroute")
	c, p := upForTest(t, provision.PlanOptions{Name: "t-subnets", Masters: 1, Workers: 2, Subnets: 2})
	node1, _ := c.Node("node1")
	node2, _ := c.Node("node2")
	if node1.Subnet == node2.Subnet {
		t.Fatal("node1 and node2 share a subnet")
	}
	out := run(t, p, c, "node1", "traceroute", "-n", "-w1", "-q1", node2.IP.String())
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], " "+c.Subnets[0].Gateway.String()+" ") || !strings.Contains(lines[2], node2.IP.String()) {
		t.Errorf("want one routed hop through %s:\n%s", c.Subnets[0].Gateway, out)
	}
	down(t, p, c)
	assertGone(t, c)
}

// failingNodes makes the machines, then fails: up must remove them all.
type failingNodes struct{ *netns.Provider }

func (f failingNodes) CreateNodes(ctx context.Context, c *provision.Cluster) error {
	if err := f.Provider.CreateNodes(ctx, c); err != nil {
		return err
	}
	return errors.New("injected failure")
}

func TestIntegrationFailedUpLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	bin := testutil.KlabBinary(t)
	plan := provision.PlanOptions{Name: "t-fail", Masters: 1, Workers: 2, Subnets: 2}
	_, err := Up(context.Background(), Options{Plan: plan, Provider: failingNodes{netns.New(bin)}, Binary: bin})
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("up: %v", err)
	}
	c, _ := provision.Plan(plan)
	assertGone(t, c)
}

func TestIntegrationDownUnknown(t *testing.T) {
	testutil.RequireRoot(t)
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	err := Down(context.Background(), "t-nothing", func(string) (provision.Provider, error) { return nil, errors.New("unused") }, nil)
	if err == nil || !strings.Contains(err.Error(), `no cluster "t-nothing"`) {
		t.Errorf("down of an unknown cluster: %v", err)
	}
}

func down(t *testing.T, p provision.Provider, c *provision.Cluster) {
	t.Helper()
	if err := Down(context.Background(), c.Name, func(string) (provision.Provider, error) { return p, nil }, nil); err != nil {
		t.Fatalf("down: %v", err)
	}
}

// assertGone checks that nothing of cluster c is left on this machine.
func assertGone(t *testing.T, c *provision.Cluster) {
	t.Helper()
	prefix := "klab-" + c.Name + "-"
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left:\n%s", out)
	}
	out, _ = exec.Command("ip", "-o", "link").Output()
	if strings.Contains(string(out), c.HostLink+"@") || strings.Contains(string(out), c.HostLink+":") {
		t.Errorf("host link %s left", c.HostLink)
	}
	out, _ = exec.Command("ip", "-all", "netns", "exec", "ip", "-o", "link").Output()
	if strings.Contains(string(out), c.HostLink) {
		t.Errorf("host link %s left in some namespace", c.HostLink)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, prefix) || strings.Contains(l, "/run/klab/"+c.Name+"/") || strings.Contains(l, filepath.Join(provision.Dir(c.Name), "")) {
			t.Errorf("mount left: %s", l)
		}
	}
	for _, p := range []string{provision.Dir(c.Name), "/run/klab/" + c.Name} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left", p)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, f := range procs {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), fmt.Sprintf("/klab/%s/", c.Name)) && !zombie(filepath.Dir(f)) {
			cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
			t.Errorf("process left: %s %q", filepath.Dir(f), strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/*/klab/" + c.Name); len(m) > 0 {
		t.Errorf("cgroups left: %v", m)
	}
	if m, _ := filepath.Glob("/sys/fs/cgroup/klab/" + c.Name); len(m) > 0 {
		t.Errorf("cgroups left: %v", m)
	}
}

// TestIntegrationDownWithBrokenState deletes a cluster whose state file
// was lost, from the names klab gives to what it makes.
func TestIntegrationDownWithBrokenState(t *testing.T) {
	c, p := upForTest(t, provision.PlanOptions{Name: "t-broken", Masters: 1, Workers: 1, Subnets: 1})
	if err := os.WriteFile(filepath.Join(provision.Dir(c.Name), "cluster.yaml"), []byte("name: [half-writ"), 0o600); err != nil {
		t.Fatal(err)
	}
	down(t, p, c)
	assertGone(t, c)
}

// TestIntegrationTwoClusters runs two clusters side by side on distinct
// underlay ranges; deleting one leaves the other working.
func TestIntegrationTwoClusters(t *testing.T) {
	a, p := upForTest(t, provision.PlanOptions{Name: "t-one", Masters: 1, Workers: 1, Subnets: 1})
	ctx := context.Background()
	b, err := Up(ctx, Options{Plan: provision.PlanOptions{Name: "t-two", Masters: 1, Workers: 1, Subnets: 1}, Provider: p, Binary: testutil.KlabBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	if a.Subnets[0].CIDR == b.Subnets[0].CIDR {
		t.Fatalf("both clusters on %s", a.Subnets[0].CIDR)
	}
	down(t, p, a)
	assertGone(t, a)
	bn, _ := b.Node("node1")
	bm, _ := b.Node("master")
	run(t, p, b, bn.Name, "ping", "-c1", "-W2", bm.IP.String())
	down(t, p, b)
	assertGone(t, b)
}
