package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/bgp"
	"github.com/klab-dev/klab/netmodes/ipip"
)

// agentEnv carries an agent's configuration to the test binary re-run as
// a node's network agent (a speaker and a reconciler) in its namespace.
const agentEnv = "KT_NM_AGENT"

type agentConfig struct {
	Node           netmodes.Node   `json:"node"`
	Mode           netmodes.Config `json:"mode"`
	Peers          []bgp.Peer      `json:"peers"`
	HoldTime       time.Duration   `json:"holdTime"`
	RouteReflector bool            `json:"routeReflector"`
}

func TestMain(m *testing.M) {
	if c := os.Getenv(agentEnv); c != "" {
		os.Exit(runAgent(c))
	}
	os.Exit(m.Run())
}

// runAgent is a node's network agent in miniature: BGP learns the routes,
// the reconciler installs them in the mode configured. It runs until
// SIGTERM.
func runAgent(c string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var cfg agentConfig
	if err := json.Unmarshal([]byte(c), &cfg); err != nil {
		log.Error("config", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ns, err := netmodes.OpenNetns("")
	if err != nil {
		log.Error("namespace", "err", err)
		return 1
	}
	rec := netmodes.NewReconciler(ctx, ns, map[netmodes.Kind]netmodes.Factory{netmodes.BGP: bgp.NewMode, netmodes.IPIP: ipip.New})
	apply := func(peers []netmodes.Node) {
		res, err := rec.Apply(ctx, cfg.Mode, cfg.Node, peers)
		log.Info("applied", "mode", res.Mode, "implementation", res.Implementation, "changes", res.Changes.String(), "err", err)
	}
	apply(nil)
	sp, err := bgp.Start(ctx, bgp.Config{
		Name: cfg.Node.Name, Address: cfg.Node.IP(), Block: cfg.Node.Block,
		HoldTime: cfg.HoldTime, ConnectRetry: time.Second, RouteReflector: cfg.RouteReflector,
		OnRoutes: func(rs []bgp.Route) { apply(bgp.Nodes(rs)) },
		Logger:   log,
	})
	if err != nil {
		log.Error("speaker", "err", err)
		return 1
	}
	if err := sp.SetPeers(ctx, cfg.Peers); err != nil {
		log.Error("peers", "err", err)
		return 1
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sp.Stop(sctx); err != nil {
		log.Error("stop", "err", err)
		return 1
	}
	return 0
}

// agent is a running agent process.
type agent struct {
	cmd *exec.Cmd
	log string
}

// startAgent runs an agent in node n's namespace; it is killed when the
// test ends, and its log is shown if the test failed.
func startAgent(t *testing.T, n *testnet.Node, cfg agentConfig) *agent {
	t.Helper()
	cfg.Node = n.Node
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(t.TempDir(), n.Name+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := testnet.Start(n.NS, cmd); err != nil {
		t.Fatalf("start agent in %s: %v", n.NS.Name, err)
	}
	a := &agent{cmd: cmd, log: logf.Name()}
	t.Cleanup(func() {
		a.kill()
		if t.Failed() {
			out, _ := os.ReadFile(a.log)
			t.Logf("agent %s log:\n%s", n.Name, out)
		}
	})
	return a
}

func (a *agent) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := a.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

func (a *agent) kill() {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGCONT)
	a.cmd.Process.Kill()
	a.cmd.Wait()
}

func (a *agent) stop(t *testing.T) {
	t.Helper()
	a.signal(t, syscall.SIGTERM)
	if err := a.cmd.Wait(); err != nil {
		t.Fatalf("agent exited: %v", err)
	}
}

func meshPeers(l *testnet.Lab) []bgp.Peer {
	var ps []bgp.Peer
	for _, n := range l.Nodes {
		ps = append(ps, bgp.Peer{Name: n.Name, Address: n.IP()})
	}
	return ps
}

// routes lists node n's klab routes.
func routes(t *testing.T, n *testnet.Node) []string {
	t.Helper()
	rs, err := netmodes.ListRoutes(n.NS.Netlink())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

func hasRoute(t *testing.T, n *testnet.Node, block netip.Prefix) bool {
	for _, r := range routes(t, n) {
		if strings.HasPrefix(r, block.String()+" ") {
			return true
		}
	}
	return false
}

// waitMesh waits until every node routes to every other node's block.
func waitMesh(t *testing.T, l *testnet.Lab, timeout time.Duration) {
	t.Helper()
	testutil.Poll(t, timeout, "routes to every block on every node", func() bool {
		for _, n := range l.Nodes {
			for _, p := range l.Nodes {
				if p != n && !hasRoute(t, n, p.Block) {
					return false
				}
			}
		}
		return true
	})
}

const holdTime = 3 * time.Second

// TestIntegrationMesh runs a speaker per node namespace in a full mesh over
// the underlay: routes get installed, a frozen node's block is withdrawn
// within the hold time, and a restarted node's comes back.
func TestIntegrationMesh(t *testing.T) {
	testutil.RequireRoot(t)
	l := testnet.New(t, 3, 1)
	cfg := agentConfig{Mode: netmodes.Config{Mode: netmodes.BGP}, Peers: meshPeers(l), HoldTime: holdTime}
	var agents []*agent
	for _, n := range l.Nodes {
		agents = append(agents, startAgent(t, n, cfg))
	}
	start := time.Now()
	waitMesh(t, l, 20*time.Second)
	t.Logf("mesh converged in %s; n1 routes: %q", time.Since(start).Round(time.Millisecond), routes(t, l.Nodes[0]))
	n1, n2, n3 := l.Nodes[0], l.Nodes[1], l.Nodes[2]
	if got, err := testnet.Ping(n1.Pod, n1.PodIP, n3.PodIP, 3, 20*time.Millisecond, 1400); err != nil || got != 3 {
		t.Fatalf("ping pod n1 > pod n3: %d of 3 (%v)", got, err)
	}

	// n3's agent freezes: no keepalives; its peers' hold timers expire.
	agents[2].signal(t, syscall.SIGSTOP)
	start = time.Now()
	testutil.Poll(t, holdTime+2*time.Second, "n1 and n2 withdraw n3's block", func() bool {
		return !hasRoute(t, n1, n3.Block) && !hasRoute(t, n2, n3.Block)
	})
	gone := time.Since(start)
	t.Logf("n3 frozen: its block withdrawn after %s (hold time %s)", gone.Round(time.Millisecond), holdTime)
	if gone > holdTime+time.Second {
		t.Errorf("withdrawn after %s, want within the hold time %s", gone, holdTime)
	}
	if !hasRoute(t, n1, n2.Block) {
		t.Fatal("n1 lost n2's block too")
	}
	agents[2].signal(t, syscall.SIGCONT)
	start = time.Now()
	waitMesh(t, l, 30*time.Second)
	t.Logf("n3 thawed: back in %s", time.Since(start).Round(time.Millisecond))

	// n2's agent dies and restarts.
	agents[1].kill()
	start = time.Now()
	testutil.Poll(t, holdTime+2*time.Second, "n1 withdraws the dead n2's block", func() bool { return !hasRoute(t, n1, n2.Block) })
	t.Logf("n2 killed: its block withdrawn after %s", time.Since(start).Round(time.Millisecond))
	startAgent(t, n2, cfg)
	start = time.Now()
	waitMesh(t, l, 30*time.Second)
	t.Logf("n2 restarted: back in %s", time.Since(start).Round(time.Millisecond))
}

// TestIntegrationRouteReflector runs ipip over BGP through a route
// reflector: n2 and n3 peer only with n1, which reflects their blocks with
// the next hops unchanged.
func TestIntegrationRouteReflector(t *testing.T) {
	testutil.RequireRoot(t)
	l := testnet.New(t, 3, 1)
	n1, n2, n3 := l.Nodes[0], l.Nodes[1], l.Nodes[2]
	mode := netmodes.Config{Mode: netmodes.IPIP}
	startAgent(t, n1, agentConfig{Mode: mode, HoldTime: holdTime, RouteReflector: true,
		Peers: []bgp.Peer{{Name: "n2", Address: n2.IP()}, {Name: "n3", Address: n3.IP()}}})
	for _, n := range []*testnet.Node{n2, n3} {
		startAgent(t, n, agentConfig{Mode: mode, HoldTime: holdTime, Peers: []bgp.Peer{{Name: "n1", Address: n1.IP()}}})
	}
	waitMesh(t, l, 20*time.Second)
	want := fmt.Sprintf("%s via %s dev tunl0 onlink", n3.Block, n3.IP())
	if rs := routes(t, n2); !strings.Contains(strings.Join(rs, "\n"), want) {
		t.Fatalf("n2 routes %q, want %q", rs, want)
	}
	if got, err := testnet.Ping(n2.Pod, n2.PodIP, n3.PodIP, 3, 20*time.Millisecond, 1400); err != nil || got != 3 {
		t.Fatalf("ping pod n2 > pod n3 over ipip: %d of 3 (%v)", got, err)
	}
}

// TestIntegrationBIRD peers the nodes with a real BIRD 2 in its own
// namespace: BIRD learns every node's block, and withdraws a node's when
// its agent stops (cleanly) or freezes (hold time).
func TestIntegrationBIRD(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "bird", "birdc")
	l := testnet.New(t, 3, 1)
	birdIP := netip.MustParseAddr("172.31.0.100")
	birdNS := l.AddHost("bird", 0, birdIP)
	var conf strings.Builder
	fmt.Fprintf(&conf, `router id %s;
protocol device { scan time 1; }
template bgp klab {
	local %s as 65000;
	hold time %d; keepalive time 1; connect retry time 1;
	ipv4 { import all; export none; };
}
`, birdIP, birdIP, int(holdTime/time.Second))
	for _, n := range l.Nodes {
		fmt.Fprintf(&conf, "protocol bgp %s from klab { neighbor %s as %d; }\n", n.Name, n.IP(), bgp.DefaultAS)
	}
	sock := startBIRD(t, birdNS, conf.String())
	birdRoutes := func() string {
		out, err := exec.Command("birdc", "-s", sock, "show", "route").CombinedOutput()
		if err != nil {
			return ""
		}
		return string(out)
	}
	peers := append(meshPeers(l), bgp.Peer{Name: "bird", Address: birdIP, AS: 65000})
	var agents []*agent
	for _, n := range l.Nodes {
		agents = append(agents, startAgent(t, n, agentConfig{Mode: netmodes.Config{Mode: netmodes.BGP}, Peers: peers, HoldTime: holdTime}))
	}
	// Each node's block, learned from that node (show route shows all
	// paths, the best one marked).
	testutil.Poll(t, 30*time.Second, "BIRD learns every node's block from the node", func() bool {
		for _, n := range l.Nodes {
			out, err := exec.Command("birdc", "-s", sock, "show", "route", "protocol", n.Name).CombinedOutput()
			if err != nil || !strings.Contains(string(out), n.Block.String()) {
				return false
			}
		}
		return true
	})
	routes := birdRoutes()
	t.Logf("BIRD's routes:\n%s", routes)
	// Only each block's own node announces it to the router.
	if n := strings.Count(routes, "unicast ["); n != len(l.Nodes) {
		t.Errorf("BIRD has %d paths, want one per block", n)
	}
	out, _ := exec.Command("birdc", "-s", sock, "show", "protocols").CombinedOutput()
	t.Logf("BIRD's sessions:\n%s", out)

	// n2's agent stops cleanly: it says goodbye, BIRD withdraws at once.
	start := time.Now()
	agents[1].stop(t)
	testutil.Poll(t, holdTime, "BIRD withdraws the stopped n2's block", func() bool {
		return !strings.Contains(birdRoutes(), l.Nodes[1].Block.String())
	})
	t.Logf("n2 stopped: BIRD withdrew its block after %s", time.Since(start).Round(time.Millisecond))

	// n3's agent freezes: BIRD's hold timer (and n1's) expire.
	start = time.Now()
	agents[2].signal(t, syscall.SIGSTOP)
	testutil.Poll(t, holdTime+2*time.Second, "BIRD withdraws the frozen n3's block", func() bool {
		return !strings.Contains(birdRoutes(), l.Nodes[2].Block.String())
	})
	t.Logf("n3 frozen: BIRD withdrew its block after %s (hold time %s)", time.Since(start).Round(time.Millisecond), holdTime)
	if !strings.Contains(birdRoutes(), l.Nodes[0].Block.String()) {
		t.Fatal("BIRD lost n1's block too")
	}
}

// startBIRD runs BIRD with conf in ns until the test ends and returns its
// control socket.
func startBIRD(t *testing.T, ns *testnet.NS, conf string) string {
	t.Helper()
	dir := t.TempDir()
	confPath, sock := filepath.Join(dir, "bird.conf"), filepath.Join(dir, "bird.ctl")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bird := exec.Command("bird", "-c", confPath, "-s", sock, "-f")
	birdLog, err := os.Create(filepath.Join(dir, "bird.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer birdLog.Close()
	bird.Stdout, bird.Stderr = birdLog, birdLog
	if err := testnet.Start(ns, bird); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bird.Process.Kill()
		bird.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(birdLog.Name())
			t.Logf("bird log:\n%s", out)
		}
	})
	return sock
}

// TestIntegrationRouterPeering fixes pure BGP across subnets the way a
// real network does: the nodes peer with the router (BIRD, a route
// reflector that puts itself as next hop and installs the routes in its
// kernel), so every next hop is on-link and the router forwards.
func TestIntegrationRouterPeering(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "bird", "birdc")
	l := testnet.New(t, 3, 2)
	var conf strings.Builder
	fmt.Fprintf(&conf, `router id 172.31.0.1;
protocol device { scan time 1; }
protocol kernel { ipv4 { import none; export all; }; }
template bgp nodes {
	local as %d;
	rr client;
	direct;
	hold time %d; keepalive time 1; connect retry time 1;
	ipv4 { import all; export all; next hop self; };
}
`, bgp.DefaultAS, int(holdTime/time.Second))
	for _, n := range l.Nodes {
		gw := l.Subnets[n.Subnet].Addr().Next()
		fmt.Fprintf(&conf, "protocol bgp %s from nodes { neighbor %s as %d; local %s; }\n", n.Name, n.IP(), bgp.DefaultAS, gw)
	}
	startBIRD(t, l.Router, conf.String())
	for _, n := range l.Nodes {
		gw := l.Subnets[n.Subnet].Addr().Next()
		startAgent(t, n, agentConfig{Mode: netmodes.Config{Mode: netmodes.BGP}, HoldTime: holdTime,
			Peers: []bgp.Peer{{Name: "router", Address: gw}}})
	}
	waitMesh(t, l, 30*time.Second)
	n1, n3 := l.Nodes[0], l.Nodes[2]
	want := fmt.Sprintf("%s via 172.31.0.1 dev eth0", n3.Block)
	if rs := routes(t, n1); !strings.Contains(strings.Join(rs, "\n"), want) {
		t.Fatalf("n1 routes %q, want %q", rs, want)
	}
	if got, err := testnet.Ping(n1.Pod, n1.PodIP, n3.PodIP, 3, 20*time.Millisecond, 1400); err != nil || got != 3 {
		t.Fatalf("ping pod n1 > pod n3 through the router: %d of 3 (%v)", got, err)
	}
}
