package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klab-dev/klab/internal/e2etest"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes/policy"
)

// TestIntegrationPolicy is issue 10's acceptance for NetworkPolicy on a
// cluster: default deny blocks, an allow rule for a label lets only that
// pod in (on a named port), egress rules work (DNS included), and the
// node's report counts the drops against the policy.
func TestIntegrationPolicy(t *testing.T) {
	k := e2etest.Up(t, "ts-pol")
	ctx := context.Background()
	web := e2etest.Busybox("web", "node1", map[string]string{"app": "web"})
	web.Spec.Containers = []corev1.Container{e2etest.HTTPD()}
	other := e2etest.Busybox("other", "node2", map[string]string{"app": "other"})
	other.Spec.Containers = []corev1.Container{e2etest.HTTPD()}
	k.Create(web, other,
		e2etest.Busybox("friend", "node2", map[string]string{"access": "true"}, "sleep", "3600"),
		e2etest.Busybox("stranger", "node1", nil, "sleep", "3600"),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}}})
	webIP := k.Ready("web").Status.PodIP
	otherIP := k.Ready("other").Status.PodIP
	k.Ready("friend")
	k.Ready("stranger")

	// reaches reports whether from gets an answer from url within 2s.
	reaches := func(from, url string) bool {
		_, code := k.Exec(from, "timeout", "2", "wget", "-qO-", url)
		return code == 0
	}
	// expect waits (policies apply asynchronously, in milliseconds) until
	// from reaches url or not, as wanted.
	expect := func(what, from, url string, want bool) {
		t.Helper()
		testutil.Poll(t, 15*time.Second, what, func() bool { return reaches(from, url) == want })
	}
	policies := k.CS.NetworkingV1().NetworkPolicies("default")
	create := func(np *networkingv1.NetworkPolicy) {
		t.Helper()
		if _, err := policies.Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	webSel := metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}

	expect("no policy: friend → web", "friend", "http://"+webIP+"/", true)
	expect("no policy: stranger → web", "stranger", "http://"+webIP+"/", true)

	create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-web"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: webSel, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}})
	expect("default deny: friend → web blocked", "friend", "http://"+webIP+"/", false)
	expect("default deny: stranger → web blocked (same node)", "stranger", "http://"+webIP+"/", false)
	expect("default deny: stranger → web's service blocked", "stranger", "http://web/", false)
	expect("default deny leaves other open", "stranger", "http://"+otherIP+"/", true)
	rep, err := k.NC.Agents.Policy(ctx, k.NodeIP("node1"))
	if err != nil {
		t.Fatal(err)
	}
	var webSide *policy.SideStatus
	for _, ep := range rep.Endpoints {
		if ep.Pod == "default/web" {
			webSide = ep.Ingress
		}
	}
	if webSide == nil || webSide.Dropped == 0 || strings.Join(webSide.Policies, ",") != "default/deny-web" {
		t.Fatalf("node1's policy report for web: %+v", rep.Endpoints)
	}

	http := intstr.FromString("http")
	create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-friends"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: webSel, Ingress: []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"access": "true"}}}},
			Ports: []networkingv1.NetworkPolicyPort{{Port: &http}},
		}}}})
	expect("allow access=true: friend → web", "friend", "http://"+webIP+"/", true)
	expect("allow access=true: friend → web by name", "friend", "http://web/", true)
	if reaches("stranger", "http://"+webIP+"/") {
		t.Error("allow access=true: stranger (no label) still reaches web")
	}

	// Egress: friends may only talk to web on its port, and to DNS.
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	create(&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "friends-out"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"access": "true"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &webSel}}, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}}},
				{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
			}}})
	expect("egress: friend → other blocked", "friend", "http://"+otherIP+"/", false)
	expect("egress: friend → web by name (DNS allowed)", "friend", "http://web/", true)
	expect("egress is the friend's only: stranger → other", "stranger", "http://"+otherIP+"/", true)
	rep2, err := k.NC.Agents.Policy(ctx, k.NodeIP("node2"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep2.Policies) != 1 || rep2.Policies[0].Policy != "default/friends-out" || rep2.Policies[0].Dropped == 0 || rep2.Policies[0].Allowed == 0 {
		t.Errorf("node2's policies: %+v", rep2.Policies)
	}

	for _, name := range []string{"deny-web", "allow-friends", "friends-out"} {
		if err := policies.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	expect("policies gone: stranger → web", "stranger", "http://"+webIP+"/", true)
	expect("policies gone: friend → other", "friend", "http://"+otherIP+"/", true)
}
