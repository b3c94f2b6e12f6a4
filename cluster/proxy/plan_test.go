package proxy

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(name, ip string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Type: typ, Ports: ports}}
}

func eps(name string, subsets ...corev1.EndpointSubset) *corev1.Endpoints {
	return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Subsets: subsets}
}

func addr(ip, pod, node string) corev1.EndpointAddress {
	return corev1.EndpointAddress{IP: ip, NodeName: &node, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod}}
}

func TestBuild(t *testing.T) {
	sticky := svc("sticky", "10.96.0.30", corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80})
	sticky.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	short := sticky.DeepCopy()
	short.Name = "short"
	short.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	svcs := []*corev1.Service{
		svc("web", "10.96.0.20", corev1.ServiceTypeNodePort,
			corev1.ServicePort{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		svc("headless", "None", corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80}),
		svc("ext", "", corev1.ServiceTypeExternalName),
		svc("empty", "10.96.0.21", corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80}),
		svc("internal", "10.96.0.22", corev1.ServiceTypeClusterIP, corev1.ServicePort{Port: 80, NodePort: 30099}),
		sticky, short,
	}
	endpoints := []*corev1.Endpoints{
		eps("web",
			corev1.EndpointSubset{
				Addresses:         []corev1.EndpointAddress{addr("10.42.2.3", "web-2", "node2"), addr("10.42.1.3", "web-1", "node1")},
				NotReadyAddresses: []corev1.EndpointAddress{addr("10.42.1.9", "web-9", "node1")},
				Ports:             []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 5353, Protocol: corev1.ProtocolUDP}},
			},
			corev1.EndpointSubset{
				Addresses: []corev1.EndpointAddress{addr("10.42.1.3", "web-1", "node1")},
				Ports:     []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}},
			}),
		eps("internal", corev1.EndpointSubset{Addresses: []corev1.EndpointAddress{{IP: "192.168.34.10"}}, Ports: []corev1.EndpointPort{{Port: 6443}}}),
	}
	got := Build(svcs, endpoints)
	var lines []string
	for _, sp := range got {
		var e []string
		for _, ep := range sp.Endpoints {
			e = append(e, ep.String()+" "+ep.describe())
		}
		lines = append(lines, strings.Join([]string{sp.Name(), sp.Protocol, netip.AddrPortFrom(sp.ClusterIP, sp.Port).String(),
			"np=" + strconv.Itoa(int(sp.NodePort)), "aff=" + sp.Affinity.String(), strings.Join(e, ", ")}, " "))
	}
	want := []string{
		"default/empty:80 TCP 10.96.0.21:80 np=0 aff=0s ",
		"default/internal:80 TCP 10.96.0.22:80 np=0 aff=0s 192.168.34.10:6443 192.168.34.10:6443",
		"default/short:80 TCP 10.96.0.30:80 np=0 aff=1m0s ",
		"default/sticky:80 TCP 10.96.0.30:80 np=0 aff=3h0m0s ",
		"default/web:dns UDP 10.96.0.20:53 np=0 aff=0s 10.42.1.3:5353 pod default/web-1 on node1, 10.42.2.3:5353 pod default/web-2 on node2",
		"default/web:http TCP 10.96.0.20:80 np=30080 aff=0s 10.42.1.3:8080 pod default/web-1 on node1, 10.42.2.3:8080 pod default/web-2 on node2",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func chainText(d *desired, name string) string {
	for _, c := range d.chains {
		if c.Name == name {
			return c.Text(d.sets)
		}
	}
	return "<no chain " + name + ">"
}

func TestPlan(t *testing.T) {
	ep := func(ip string) Endpoint { return Endpoint{IP: netip.MustParseAddr(ip), Port: 8080} }
	web := ServicePort{Service: "default/web", PortName: "http", Protocol: "TCP", ClusterIP: netip.MustParseAddr("10.96.0.20"), Port: 80,
		NodePort: 30080, Endpoints: []Endpoint{ep("10.42.1.3"), ep("10.42.2.3"), ep("10.42.3.3")}}
	one := ServicePort{Service: "default/one", Protocol: "UDP", ClusterIP: netip.MustParseAddr("10.96.0.21"), Port: 53,
		Affinity: time.Minute, Endpoints: []Endpoint{ep("10.42.1.4")}}
	none := ServicePort{Service: "default/none", Protocol: "TCP", ClusterIP: netip.MustParseAddr("10.96.0.22"), Port: 80, NodePort: 30081}
	d := plan(Config{Node: "node1", NodeIP: netip.MustParseAddr("192.168.34.11")}, []ServicePort{web, one, none})

	tests := []struct{ chain, want string }{
		{"services", `ip daddr 10.96.0.20 tcp dport 80 goto svc-default/web/tcp/http comment "default/web:http cluster IP"
ip daddr 10.96.0.21 udp dport 53 goto svc-default/one/udp/53 comment "default/one:53 cluster IP"
ip daddr 192.168.34.11 jump nodeports comment "node ports, on this node's address 192.168.34.11"
`},
		{"nodeports", `tcp dport 30080 meta mark set meta mark | 0x8000 goto svc-default/web/tcp/http comment "default/web:http node port"
`},
		{"no-endpoints", `ip daddr 10.96.0.22 tcp dport 80 counter packets 0 bytes 0 reject comment "default/none:80 has no ready endpoints"
ip daddr 192.168.34.11 tcp dport 30081 counter packets 0 bytes 0 reject comment "default/none:80 node port has no ready endpoints"
`},
		{"svc-default/web/tcp/http", `counter packets 0 bytes 0 comment "connections to the service"
meta mark & 0x8000 != 0x0 counter packets 0 bytes 0 comment "connections through the node port"
numgen random mod 3 vmap @lb-default/web/tcp/http comment "balance: each of the 3 endpoints with probability 1/3"
uses lb-default/web/tcp/http map ep-default/web/tcp/http@10.42.1.3:8080,ep-default/web/tcp/http@10.42.2.3:8080,ep-default/web/tcp/http@10.42.3.3:8080
`},
		{"svc-default/one/udp/53", `counter packets 0 bytes 0 comment "connections to the service"
ip saddr @aff-default/one/udp/53@10.42.1.4:8080 counter packets 0 bytes 0 goto ep-default/one/udp/53@10.42.1.4:8080 comment "ClientIP affinity: clients seen in the last 1m0s go back to 10.42.1.4:8080"
goto ep-default/one/udp/53@10.42.1.4:8080 comment "the only endpoint"
uses aff-default/one/udp/53@10.42.1.4:8080 timeout 1m0s
`},
		{"ep-default/one/udp/53@10.42.1.4:8080", `ip saddr 10.42.1.4 meta mark set meta mark | 0x4000 comment "hairpin: the endpoint itself is the client, masquerade"
update @aff-default/one/udp/53@10.42.1.4:8080 { ip saddr timeout 1m0s } comment "remember the client for ClientIP affinity"
counter packets 0 bytes 0 dnat to 10.42.1.4:8080 comment "default/one:53 → 10.42.1.4:8080"
uses aff-default/one/udp/53@10.42.1.4:8080 timeout 1m0s
`},
	}
	for _, tt := range tests {
		if got := chainText(d, tt.chain); got != tt.want {
			t.Errorf("chain %s:\n%s\nwant\n%s", tt.chain, got, tt.want)
		}
	}
	if len(d.chains) != 9+1+3+1+1 {
		var names []string
		for _, c := range d.chains {
			names = append(names, c.Name)
		}
		t.Errorf("chains %v", names)
	}
}
