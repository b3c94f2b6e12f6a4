package policy

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
)

// TestIntegrationEnforce runs policies against real connections between
// pods of a node namespace.
func TestIntegrationEnforce(t *testing.T) {
	testutil.RequireRoot(t)
	lab := testnet.NewNodeLab(t)
	a := lab.Pod("a", netip.MustParseAddr("10.250.1.2"))
	b := lab.Pod("b", netip.MustParseAddr("10.250.1.3"))
	c := lab.Pod("c", netip.MustParseAddr("10.250.1.4"))
	outside, outIP := lab.Host("out")
	for _, p := range []*testnet.Pod{a, b, c} {
		testnet.Serve(t, p.NS, 8080, p.PodName)
	}
	testnet.Serve(t, outside, 8080, "out")
	pods := []Pod{
		{Namespace: "default", Name: "a", Labels: map[string]string{"app": "web"}, IP: a.IP, Veth: a.Veth, Ports: []NamedPort{{Name: "http", Protocol: "TCP", Port: 8080}}},
		{Namespace: "default", Name: "b", Labels: map[string]string{"app": "client"}, IP: b.IP, Veth: b.Veth},
		{Namespace: "default", Name: "c", Labels: map[string]string{"app": "other"}, IP: c.IP, Veth: c.Veth, Ports: []NamedPort{{Name: "http", Protocol: "TCP", Port: 8080}}},
	}
	e, err := New("n1", lab.Node.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	apply := func(nps ...*networkingv1.NetworkPolicy) {
		t.Helper()
		if _, err := e.Sync(Compile(Input{Pods: pods, Namespaces: []Namespace{{Name: "default"}}, Policies: nps})); err != nil {
			t.Fatal(err)
		}
	}
	// A dropped SYN is never answered: a blocked connection is one that
	// does not get through in 300ms; an allowed one has 3s.
	reach := func(from *testnet.NS, to netip.Addr, timeout time.Duration) bool {
		who, err := testnet.Get(from, netip.AddrPortFrom(to, 8080), timeout)
		return err == nil && who != ""
	}
	check := func(what string, from *testnet.NS, to netip.Addr, want bool) {
		t.Helper()
		timeout := 300 * time.Millisecond
		if want {
			timeout = 3 * time.Second
		}
		if got := reach(from, to, timeout); got != want {
			t.Errorf("%s: reached %v, want %v", what, got, want)
		}
	}
	web := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	client := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}

	apply()
	check("no policy: b → a", b.NS, a.IP, true)
	check("no policy: c → a", c.NS, a.IP, true)

	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "deny-web"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *web, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	apply(deny)
	before, err := e.Report()
	if err != nil {
		t.Fatal(err)
	}
	check("default deny: b → a", b.NS, a.IP, false)
	check("default deny: c → a", c.NS, a.IP, false)
	check("default deny: the node itself → a (probes)", lab.Node, a.IP, true)
	check("default deny: a → b (egress is not isolated)", a.NS, b.IP, true)
	after, err := e.Report()
	if err != nil {
		t.Fatal(err)
	}
	drops := Drops(before, after)
	if len(drops) != 1 || drops[0].Pod != "default/a" || drops[0].Direction != Ingress ||
		strings.Join(drops[0].Policies, ",") != "default/deny-web" || drops[0].Packets == 0 {
		t.Errorf("drops after two blocked connections: %v", drops)
	}

	port := intstr.FromString("http")
	allow := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "allow-client"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *web, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: client}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
		}}}}
	apply(deny, allow)
	check("allow app=client on the named port: b → a", b.NS, a.IP, true)
	check("allow app=client: c → a", c.NS, a.IP, false)

	block := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "block"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *web, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.250.1.0/24", Except: []string{"10.250.1.3/32"}}}},
		}}}}
	apply(block)
	check("ipBlock with except: c → a", c.NS, a.IP, true)
	check("ipBlock with except: b (excepted) → a", b.NS, a.IP, false)

	tcp := corev1.ProtocolTCP
	egress := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "client-out"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *client, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: web}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}}}}
	apply(egress)
	check("egress to app=web on its named port: b → a", b.NS, a.IP, true)
	check("egress: b → c (not app=web)", b.NS, c.IP, false)
	check("egress: b → outside", b.NS, outIP, false)
	check("egress: b → the node itself", b.NS, lab.NodeIP, false)
	check("egress: c → outside (not isolated)", c.NS, outIP, true)

	rep, err := e.Report()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Policies) != 1 || rep.Policies[0].Policy != "default/client-out" || rep.Policies[0].Allowed == 0 || rep.Policies[0].Dropped < 3 {
		t.Errorf("policies in the report: %+v", rep.Policies)
	}
	if len(rep.Endpoints) != 1 || rep.Endpoints[0].Egress == nil || len(rep.Endpoints[0].Egress.Rules) != 1 ||
		!strings.HasPrefix(rep.Endpoints[0].Egress.Rules[0].Text, "ip daddr 10.250.1.2 tcp dport 8080 counter packets 1 bytes ") {
		t.Errorf("endpoints in the report: %+v", rep.Endpoints)
	}

	apply()
	check("policies gone: b → c", b.NS, c.IP, true)
	if err := e.Delete(); err != nil {
		t.Fatal(err)
	}
}
