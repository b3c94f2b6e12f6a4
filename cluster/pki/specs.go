package pki

import (
	"net/netip"
	"slices"
)

// The API server's in-cluster names: what pods use to reach it through the
// kubernetes service.
var apiServerNames = []string{
	"kubernetes", "kubernetes.default", "kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local", "localhost",
}

var loopback = netip.MustParseAddr("127.0.0.1")

// EtcdSpec is an etcd member's certificate: it serves clients and peers
// and is a client of its peers.
func EtcdSpec(member string, ip netip.Addr) Spec {
	return Spec{
		CommonName: "etcd-" + member,
		DNSNames:   []string{member, "localhost"},
		IPs:        uniqueAddrs(ip, loopback),
		Usage:      ServerAuth | ClientAuth,
	}
}

// EtcdClientSpec is the API server's certificate for etcd.
func EtcdClientSpec() Spec {
	return Spec{CommonName: UserAPIServer + "-etcd-client", Usage: ClientAuth}
}

// APIServerSpec is the API server's serving certificate, valid for every
// master's address, the host's address on the underlay, loopback, the
// kubernetes service's cluster IP and its DNS names.
func APIServerSpec(masterIPs []netip.Addr, hostIP, serviceIP netip.Addr) Spec {
	ips := append(slices.Clone(masterIPs), hostIP, loopback, serviceIP)
	return Spec{
		CommonName: "kube-apiserver",
		DNSNames:   apiServerNames,
		IPs:        uniqueAddrs(ips...),
		Usage:      ServerAuth,
	}
}

// KubeletClientSpec is the API server's client certificate for the node
// agents (logs, exec).
func KubeletClientSpec() Spec {
	return Spec{CommonName: UserAPIServer + "-kubelet-client", Organization: []string{GroupMasters}, Usage: ClientAuth}
}

// ComponentSpec is a control-plane component's client certificate; user
// is UserScheduler or UserControllers.
func ComponentSpec(user string) Spec {
	return Spec{CommonName: user, Usage: ClientAuth}
}

// NodeSpec is a node agent's certificate: a client of the API server as
// system:node:NAME in system:nodes, and the server the API server reaches
// for logs and exec at the node's address.
func NodeSpec(node string, ip netip.Addr) Spec {
	return Spec{
		CommonName:   NodeUserPrefix + node,
		Organization: []string{GroupNodes},
		DNSNames:     []string{node, "localhost"},
		IPs:          uniqueAddrs(ip, loopback),
		Usage:        ServerAuth | ClientAuth,
	}
}

// AdminSpec is the CLI's certificate: a member of system:masters.
func AdminSpec() Spec {
	return Spec{CommonName: UserAdmin, Organization: []string{GroupMasters}, Usage: ClientAuth}
}

// ViewSpec is a read-only user's certificate.
func ViewSpec(user string) Spec {
	return Spec{CommonName: user, Organization: []string{GroupView}, Usage: ClientAuth}
}

func uniqueAddrs(ips ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		if ip.IsValid() && !slices.Contains(out, ip.Unmap()) {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
