package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/klab-dev/klab/internal/testutil"
)

func objects() ([]*corev1.Service, []*corev1.Endpoints, []*corev1.Pod) {
	meta := func(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }
	svcs := []*corev1.Service{
		{ObjectMeta: meta("default", "web"), Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}},
		{ObjectMeta: meta("kube-system", "kube-dns"), Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}},
		{ObjectMeta: meta("default", "db"), Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}},
		{ObjectMeta: meta("default", "out"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
	}
	eps := []*corev1.Endpoints{{ObjectMeta: meta("default", "db"), Subsets: []corev1.EndpointSubset{{
		Addresses:         []corev1.EndpointAddress{{IP: "10.42.1.3"}, {IP: "10.42.2.4", Hostname: "db-0"}},
		NotReadyAddresses: []corev1.EndpointAddress{{IP: "10.42.2.9"}},
		Ports:             []corev1.EndpointPort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}},
	}}}}
	pods := []*corev1.Pod{
		{ObjectMeta: meta("default", "client"), Status: corev1.PodStatus{PodIP: "10.42.1.7"}},
		{ObjectMeta: meta("default", "host"), Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{PodIP: "192.168.34.11"}},
	}
	return svcs, eps, pods
}

// answer prints a zone's answer as "RCODE rr; rr".
func answer(z *Zone, name string, qtype uint16) string {
	rcode, ans, auth := z.Answer(dns.Question{Name: name, Qtype: qtype, Qclass: dns.ClassINET})
	var parts []string
	for _, rr := range ans {
		f := strings.Fields(rr.String())
		parts = append(parts, strings.Join(append([]string{f[3]}, f[4:]...), " "))
	}
	slices.Sort(parts)
	s := dns.RcodeToString[rcode]
	if len(parts) > 0 {
		s += " " + strings.Join(parts, "; ")
	}
	if len(auth) > 0 {
		s += " (soa)"
	}
	return s
}

func TestZone(t *testing.T) {
	svcs, eps, pods := objects()
	z := Build("cluster.local", svcs, eps, pods)
	tests := []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"web.default.svc.cluster.local.", dns.TypeA, "NOERROR A 10.96.0.20"},
		{"WEB.Default.svc.cluster.local", dns.TypeA, "NOERROR A 10.96.0.20"},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, "NOERROR (soa)"},
		{"web.default.svc.cluster.local.", dns.TypeSRV, "NOERROR SRV 0 100 53 web.default.svc.cluster.local.; SRV 0 100 80 web.default.svc.cluster.local."},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, "NOERROR SRV 0 100 80 web.default.svc.cluster.local."},
		{"_dns._udp.web.default.svc.cluster.local.", dns.TypeSRV, "NOERROR SRV 0 100 53 web.default.svc.cluster.local."},
		{"_http._udp.web.default.svc.cluster.local.", dns.TypeSRV, "NXDOMAIN (soa)"},
		{"nope.default.svc.cluster.local.", dns.TypeA, "NXDOMAIN (soa)"},
		{"web.nope.svc.cluster.local.", dns.TypeA, "NXDOMAIN (soa)"},
		{"default.svc.cluster.local.", dns.TypeA, "NOERROR (soa)"},
		{"db.default.svc.cluster.local.", dns.TypeA, "NOERROR A 10.42.1.3; A 10.42.2.4"},
		{"db-0.db.default.svc.cluster.local.", dns.TypeA, "NOERROR A 10.42.2.4"},
		{"10-42-1-3.db.default.svc.cluster.local.", dns.TypeA, "NOERROR A 10.42.1.3"},
		{"10-42-2-9.db.default.svc.cluster.local.", dns.TypeA, "NXDOMAIN (soa)"},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, "NOERROR SRV 0 100 5432 10-42-1-3.db.default.svc.cluster.local.; SRV 0 100 5432 db-0.db.default.svc.cluster.local."},
		{"out.default.svc.cluster.local.", dns.TypeA, "NOERROR CNAME example.com."},
		{"10-42-1-7.default.pod.cluster.local.", dns.TypeA, "NOERROR A 10.42.1.7"},
		{"10-42-1-7.other.pod.cluster.local.", dns.TypeA, "NXDOMAIN (soa)"},
		{"10-42-1-8.default.pod.cluster.local.", dns.TypeA, "NXDOMAIN (soa)"},
		{"192-168-34-11.default.pod.cluster.local.", dns.TypeA, "NXDOMAIN (soa)"},
		{"10.0.96.10.in-addr.arpa.", dns.TypePTR, "NOERROR PTR kube-dns.kube-system.svc.cluster.local."},
		{"4.2.42.10.in-addr.arpa.", dns.TypePTR, "NOERROR PTR db-0.db.default.svc.cluster.local."},
		{"9.9.9.9.in-addr.arpa.", dns.TypePTR, "NXDOMAIN"},
		{"cluster.local.", dns.TypeSOA, "NOERROR SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"},
		{"example.com.", dns.TypeA, "NXDOMAIN"},
	}
	for _, tt := range tests {
		if got := answer(z, tt.name, tt.qtype); got != tt.want {
			t.Errorf("%s %s: got %q, want %q", tt.name, dns.TypeToString[tt.qtype], got, tt.want)
		}
	}
}

// Run serves over UDP and TCP from a fake API, follows changes, and says
// when it is ready.
func TestRun(t *testing.T) {
	svcs, eps, pods := objects()
	cs := fake.NewSimpleClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, s := range svcs {
		cs.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
	}
	for _, e := range eps {
		cs.CoreV1().Endpoints(e.Namespace).Create(ctx, e, metav1.CreateOptions{})
	}
	for _, p := range pods {
		cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	}
	port := freePort(t)
	health := freePort(t)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: fmt.Sprintf("127.0.0.1:%d", port), Health: fmt.Sprintf("127.0.0.1:%d", health)}, cs, slog.New(slog.DiscardHandler))
	}()
	testutil.Poll(t, 10*time.Second, "dns ready", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", health))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	server := fmt.Sprintf("127.0.0.1:%d", port)
	query := func(net, name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := (&dns.Client{Net: net, Timeout: 2 * time.Second}).Exchange(m, server)
		if err != nil {
			t.Fatalf("%s query %s: %v", net, name, err)
		}
		return r
	}
	for _, n := range []string{"udp", "tcp"} {
		r := query(n, "web.default.svc.cluster.local.", dns.TypeA)
		if len(r.Answer) != 1 || !r.Authoritative || r.Answer[0].(*dns.A).A.String() != "10.96.0.20" {
			t.Errorf("%s: %v", n, r)
		}
	}
	if r := query("udp", "example.com.", dns.TypeA); r.Rcode != dns.RcodeNameError || r.Authoritative {
		t.Errorf("outside the domain: %s, authoritative %v", dns.RcodeToString[r.Rcode], r.Authoritative)
	}
	// A new service is answered as soon as the watch brings it.
	cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "new"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.99"}}, metav1.CreateOptions{})
	testutil.Poll(t, 5*time.Second, "the new service in DNS", func() bool {
		return len(query("udp", "new.default.svc.cluster.local.", dns.TypeA).Answer) == 1
	})
	// Many records: UDP is truncated, TCP carries them all.
	big := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "big"}}
	ss := corev1.EndpointSubset{}
	for i := range 60 {
		ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: fmt.Sprintf("10.42.3.%d", i+1)})
	}
	big.Subsets = []corev1.EndpointSubset{ss}
	cs.CoreV1().Endpoints("default").Create(ctx, big, metav1.CreateOptions{})
	cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "big"},
		Spec: corev1.ServiceSpec{ClusterIP: "None"}}, metav1.CreateOptions{})
	testutil.Poll(t, 5*time.Second, "the big headless service in DNS", func() bool {
		return len(query("tcp", "big.default.svc.cluster.local.", dns.TypeA).Answer) == 60
	})
	if r := query("udp", "big.default.svc.cluster.local.", dns.TypeA); !r.Truncated {
		t.Errorf("60 answers over UDP without EDNS were not truncated (%d answers)", len(r.Answer))
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
