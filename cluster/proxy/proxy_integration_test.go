package proxy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
)

var (
	svcIP   = netip.MustParseAddr("10.96.250.10")
	aloneIP = netip.MustParseAddr("10.96.250.11")
	emptyIP = netip.MustParseAddr("10.96.250.12")
	stickIP = netip.MustParseAddr("10.96.250.13")
)

// TestIntegrationProxy programs a node namespace and checks what the
// rules do to real connections: balancing, hairpin, node ports from
// outside, ClientIP affinity, rejection without endpoints, and endpoints
// leaving and coming back.
func TestIntegrationProxy(t *testing.T) {
	testutil.RequireRoot(t)
	lab := testnet.NewNodeLab(t)
	a := lab.Pod("a", netip.MustParseAddr("10.250.1.2"))
	b := lab.Pod("b", netip.MustParseAddr("10.250.1.3"))
	client := lab.Pod("client", netip.MustParseAddr("10.250.1.9"))
	outside, _ := lab.Host("out")
	testnet.Serve(t, a.NS, 8080, "a")
	testnet.Serve(t, b.NS, 8080, "b")

	p, err := New(Config{Node: "n1", NodeIP: lab.NodeIP}, lab.Node.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	epA := Endpoint{IP: a.IP, Port: 8080, Pod: "default/a", Node: "n1"}
	epB := Endpoint{IP: b.IP, Port: 8080, Pod: "default/b", Node: "n1"}
	ports := []ServicePort{
		{Service: "default/web", PortName: "http", Protocol: "TCP", ClusterIP: svcIP, Port: 80, NodePort: 30080, Endpoints: []Endpoint{epA, epB}},
		{Service: "default/web", PortName: "dns", Protocol: "UDP", ClusterIP: svcIP, Port: 53, Endpoints: []Endpoint{epA, epB}},
		{Service: "default/alone", Protocol: "TCP", ClusterIP: aloneIP, Port: 80, Endpoints: []Endpoint{epA}},
		{Service: "default/empty", Protocol: "TCP", ClusterIP: emptyIP, Port: 80, NodePort: 30081},
		{Service: "default/sticky", Protocol: "TCP", ClusterIP: stickIP, Port: 80, Affinity: time.Minute, Endpoints: []Endpoint{epA, epB}},
	}
	if _, err := p.Sync(ports); err != nil {
		t.Fatal(err)
	}

	count := func(ns *testnet.NS, to netip.AddrPort, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			who, err := testnet.Get(ns, to, 2*time.Second)
			if err != nil {
				t.Fatalf("connect to %s: %v", to, err)
			}
			got[who]++
		}
		return got
	}
	web := netip.AddrPortFrom(svcIP, 80)
	if got := count(client.NS, web, 200); got["a"] < 60 || got["b"] < 60 {
		t.Errorf("200 connections to the cluster IP went %v, want both endpoints near half", got)
	}
	// Hairpin: a reaches itself through a service whose only endpoint it is.
	if got := count(a.NS, netip.AddrPortFrom(aloneIP, 80), 3); got["a"] != 3 {
		t.Errorf("hairpin: a got %v through its own service", got)
	}
	// A node port from outside the pod network.
	if got := count(outside, netip.AddrPortFrom(lab.NodeIP, 30080), 20); got["a"]+got["b"] != 20 {
		t.Errorf("node port from outside: %v", got)
	}
	// UDP is balanced too.
	if who, err := testnet.Ask(client.NS, netip.AddrPortFrom(svcIP, 53), 2*time.Second); err != nil || (who != "a" && who != "b") {
		t.Errorf("UDP through the cluster IP: %q, %v", who, err)
	}
	// ClientIP affinity: one client, one endpoint.
	if got := count(client.NS, netip.AddrPortFrom(stickIP, 80), 30); len(got) != 1 {
		t.Errorf("ClientIP affinity: one client reached %v", got)
	}
	// No endpoint: refused at once, not a timeout.
	start := time.Now()
	if _, err := testnet.Get(client.NS, netip.AddrPortFrom(emptyIP, 80), 5*time.Second); !testnet.Refused(err) || time.Since(start) > time.Second {
		t.Errorf("a service without endpoints: %v after %s, want refused at once", err, time.Since(start))
	}
	if _, err := testnet.Get(outside, netip.AddrPortFrom(lab.NodeIP, 30081), 5*time.Second); !testnet.Refused(err) {
		t.Errorf("a node port without endpoints: %v, want refused", err)
	}

	rep, err := p.Report()
	if err != nil {
		t.Fatal(err)
	}
	var webRep *ServiceStatus
	for i := range rep.Services {
		if rep.Services[i].Name() == "default/web:http" {
			webRep = &rep.Services[i]
		}
	}
	if webRep == nil || webRep.Connections < 200 || webRep.NodeConnections != 20 || len(webRep.Endpoints) != 2 ||
		webRep.Endpoints[0].Connections+webRep.Endpoints[1].Connections != 220 {
		t.Errorf("report of default/web:http: %+v", webRep)
	}
	var text strings.Builder
	for _, c := range rep.Chains {
		text.WriteString(c.Name + "\n")
		for _, r := range c.Rules {
			text.WriteString("  " + r.Text + "\n")
		}
	}
	for _, want := range []string{
		"ip daddr 10.96.250.10 tcp dport 80 goto svc-default/web/tcp/http",
		"numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/http@10.250.1.2:8080, 1 : goto ep-default/web/tcp/http@10.250.1.3:8080 }",
		"dnat to 10.250.1.2:8080",
		"update @aff-default/sticky/tcp/80@10.250.1.2:8080 { ip saddr timeout 1m0s }",
		"meta mark & 0x8000 != 0x0 oifname != \"cali*\" counter packets",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the rules read back lack %q:\n%s", want, text.String())
		}
	}

	// b leaves: within one sync nothing goes to it any more, and only the
	// chains that changed are rewritten.
	ports[0].Endpoints = []Endpoint{epA}
	ch, err := p.Sync(ports)
	if err != nil {
		t.Fatal(err)
	}
	if got := count(client.NS, web, 30); got["a"] != 30 {
		t.Errorf("after b left: %v", got)
	}
	if strings.Contains(strings.Join(ch.Written, " "), "sticky") || len(ch.Removed) != 1 {
		t.Errorf("b leaving default/web:http wrote %v and removed %v", ch.Written, ch.Removed)
	}
	// A new proxier (an agent restart) takes the table over.
	p2, err := New(Config{Node: "n1", NodeIP: lab.NodeIP}, lab.Node.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	ports[0].Endpoints = []Endpoint{epA, epB}
	if _, err := p2.Sync(ports); err != nil {
		t.Fatal(err)
	}
	if got := count(client.NS, web, 60); got["a"] == 0 || got["b"] == 0 {
		t.Errorf("after b came back: %v", got)
	}
	if err := p2.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := testnet.Get(client.NS, web, 500*time.Millisecond); err == nil {
		t.Error("the cluster IP still answers after the table was deleted")
	}
}
