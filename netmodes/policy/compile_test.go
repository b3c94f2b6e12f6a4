package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

var testPods = []Pod{
	{Namespace: "default", Name: "web", Labels: map[string]string{"app": "web"}, IP: netip.MustParseAddr("10.42.1.2"), Veth: "caliweb",
		Ports: []NamedPort{{Name: "http", Protocol: "TCP", Port: 8080}}},
	{Namespace: "default", Name: "client", Labels: map[string]string{"app": "client"}, IP: netip.MustParseAddr("10.42.1.3"), Veth: "caliclient"},
	{Namespace: "default", Name: "web2", Labels: map[string]string{"app": "web"}, IP: netip.MustParseAddr("10.42.2.2"),
		Ports: []NamedPort{{Name: "http", Protocol: "TCP", Port: 9090}}},
	{Namespace: "prod", Name: "api", Labels: map[string]string{"app": "api"}, IP: netip.MustParseAddr("10.42.2.5"),
		Ports: []NamedPort{{Name: "http", Protocol: "TCP", Port: 8080}}},
	{Namespace: "prod", Name: "pending", Labels: map[string]string{"app": "api"}},
}

var testNamespaces = []Namespace{{Name: "default"}, {Name: "prod", Labels: map[string]string{"env": "prod"}}}

func np(name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: spec}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

// describe prints what Compile decided, one line per side.
func describe(eps []Endpoint) string {
	var lines []string
	side := func(pod string, d Direction, s *Side) {
		if s == nil {
			return
		}
		var allows []string
		for _, a := range s.Allows {
			var ms []string
			for _, m := range a.Matches {
				ms = append(ms, m.String())
			}
			allows = append(allows, fmt.Sprintf("%s#%d[%s]", a.Policy, a.Rule, strings.Join(ms, "; ")))
		}
		lines = append(lines, fmt.Sprintf("%s %s by %s: %s", pod, d, strings.Join(s.Policies, ","), strings.Join(allows, " ")))
	}
	for _, ep := range eps {
		side(ep.Pod, Ingress, ep.Ingress)
		side(ep.Pod, Egress, ep.Egress)
	}
	return strings.Join(lines, "\n")
}

func TestCompile(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	http := intstr.FromString("http")
	p80 := intstr.FromInt32(80)
	tests := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		want     string
	}{
		{"no policy isolates nothing", nil, ""},
		{"default deny ingress for every pod of the namespace",
			[]*networkingv1.NetworkPolicy{np("deny", networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Ingress"}})},
			"default/client ingress by default/deny: \ndefault/web ingress by default/deny: "},
		{"types default to Ingress, and Egress with egress rules",
			[]*networkingv1.NetworkPolicy{np("p", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "client"),
				Egress: []networkingv1.NetworkPolicyEgressRule{{}}})},
			"default/client ingress by default/p: \ndefault/client egress by default/p: default/p#0[any]"},
		{"pod selector with a named port resolved on the pod",
			[]*networkingv1.NetworkPolicy{np("allow", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}, {Protocol: &udp, Port: &http}}}}})},
			"default/web ingress by default/allow: default/allow#0[10.42.1.3 tcp 8080]"},
		{"namespace selector, alone and with a pod selector; a pod without an IP is left out",
			[]*networkingv1.NetworkPolicy{np("ns", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("env", "prod")}}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(), PodSelector: sel("app", "web")}}},
					{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("kubernetes.io/metadata.name", "default"), PodSelector: sel("app", "nothing")}}},
				}})},
			"default/web ingress by default/ns: default/ns#0[10.42.2.5] default/ns#1[{ 10.42.1.2, 10.42.2.2 }] default/ns#2[]"},
		{"ipBlock with except, a port range",
			[]*networkingv1.NetworkPolicy{np("block", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"),
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.42.0.0/16", Except: []string{"10.42.1.0/24"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80, EndPort: ptr.To[int32](90)}}}}})},
			"default/web ingress by default/block: default/block#0[{ 10.42.0.0/24, 10.42.2.0-10.42.255.255 } tcp 80-90]"},
		{"egress named ports resolve on each destination",
			[]*networkingv1.NetworkPolicy{np("out", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "client"), PolicyTypes: []networkingv1.PolicyType{"Egress"},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &http}}},
				}})},
			"default/client egress by default/out: default/out#0[{ 10.42.1.2, 10.42.2.5 } tcp 8080; 10.42.2.2 tcp 9090] default/out#1[]"},
		{"two policies: the union of their rules",
			[]*networkingv1.NetworkPolicy{
				np("b", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p80}}}}}),
				np("a", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"), Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel()}}}}}),
			},
			"default/web ingress by default/a,default/b: default/a#0[{ 10.42.1.2/31, 10.42.2.2 }] default/b#0[any tcp 80]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describe(Compile(Input{Pods: testPods, Namespaces: testNamespaces, Policies: tt.policies}))
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestSideRules(t *testing.T) {
	eps := Compile(Input{Pods: testPods, Namespaces: testNamespaces, Policies: []*networkingv1.NetworkPolicy{
		np("allow", networkingv1.NetworkPolicySpec{PodSelector: *sel("app", "web"),
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "client")}}}}}),
	}})
	var got []string
	for _, c := range chains(eps) {
		got = append(got, "chain "+c.Name+"\n"+c.Text(nil))
	}
	want := `chain forward
ct state established,related accept comment "replies and the rest of allowed connections"
oifname vmap { "caliweb" : jump to-caliweb } comment "ingress: traffic to pods that policies isolate"

chain input
ct state established,related accept comment "replies and the rest of allowed connections"

chain to-caliweb
ip saddr 10.42.1.3 counter packets 0 bytes 0 return comment "default/allow ingress rule 0"
counter packets 0 bytes 0 drop comment "default/web ingress: denied by default/allow"
`
	if s := strings.Join(got, "\n"); s != want {
		t.Errorf("got\n%s\nwant\n%s", s, want)
	}
}
