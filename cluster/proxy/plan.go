// Package proxy is kube-proxy's job in klab, run by every node's agent:
// it turns Services and their Endpoints into nftables rules in the node's
// network namespace (table "ip klab-proxy"), so that a connection to a
// Service's cluster IP — or to a NodePort on the node's address — is
// DNATed to one of its ready endpoints, each picked with the same
// probability (numgen random with a verdict map). ClientIP session
// affinity keeps a client on its endpoint through a timed set of client
// addresses per endpoint; a pod that reaches itself through its Service
// (hairpin) and NodePort traffic that leaves for another node are
// masqueraded, and nothing else is. A Service with no ready endpoint is
// rejected at once (ICMP port unreachable) instead of timing out.
//
// Rules are replaced in one atomic nftables transaction, and only the
// chains that changed, so counters and affinity survive unrelated changes.
package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Config is what the proxy knows about its node.
type Config struct {
	// Node is the node's name.
	Node string
	// NodeIP is the node's address: NodePorts answer on it.
	NodeIP netip.Addr
}

// ServicePort is one port of a Service with the endpoints its traffic goes
// to.
type ServicePort struct {
	// Service is namespace/name.
	Service string `json:"service"`
	// PortName is the port's name ("" for a Service's only, unnamed
	// port).
	PortName string `json:"portName,omitempty"`
	Protocol string `json:"protocol"` // TCP, UDP or SCTP
	// ClusterIP and Port are where clients connect.
	ClusterIP netip.Addr `json:"clusterIP"`
	Port      uint16     `json:"port"`
	// NodePort, when not 0, is the port on every node's address.
	NodePort uint16 `json:"nodePort,omitempty"`
	// Affinity is the ClientIP session affinity's timeout; 0 is none.
	Affinity time.Duration `json:"affinityNs,omitempty"`
	// Endpoints are the ready endpoints, by address.
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is where a connection to a Service port may go.
type Endpoint struct {
	IP   netip.Addr `json:"ip"`
	Port uint16     `json:"port"`
	// Pod (namespace/name) and Node say what serves there, when known.
	Pod  string `json:"pod,omitempty"`
	Node string `json:"node,omitempty"`
}

// String is "ip:port".
func (e Endpoint) String() string { return netip.AddrPortFrom(e.IP, e.Port).String() }

// Name is "namespace/name:port", or without a port name
// "namespace/name:number".
func (sp ServicePort) Name() string {
	if sp.PortName != "" {
		return sp.Service + ":" + sp.PortName
	}
	return sp.Service + ":" + strconv.Itoa(int(sp.Port))
}

// key names the port in chain and set names: namespace/name/tcp/port.
func (sp ServicePort) key() string {
	p := sp.PortName
	if p == "" {
		p = strconv.Itoa(int(sp.Port))
	}
	return sp.Service + "/" + strings.ToLower(sp.Protocol) + "/" + p
}

// defaultAffinity is Kubernetes' ClientIP affinity timeout (3 hours).
const defaultAffinity = 10800 * time.Second

// Build lists the Service ports the proxy serves, from the Services and
// their Endpoints (same namespace and name), sorted by Service and port.
// Services without a cluster IP (headless, ExternalName) are left out:
// DNS alone serves them.
func Build(svcs []*corev1.Service, eps []*corev1.Endpoints) []ServicePort {
	byName := map[string]*corev1.Endpoints{}
	for _, e := range eps {
		byName[e.Namespace+"/"+e.Name] = e
	}
	var out []ServicePort
	for _, s := range svcs {
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || !ip.Is4() {
			continue // headless ("None") or not yet allocated
		}
		name := s.Namespace + "/" + s.Name
		var affinity time.Duration
		if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			affinity = defaultAffinity
			if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
				affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
			}
		}
		nodePorts := s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
		for _, p := range s.Spec.Ports {
			proto := string(p.Protocol)
			if proto == "" {
				proto = string(corev1.ProtocolTCP)
			}
			sp := ServicePort{Service: name, PortName: p.Name, Protocol: proto, ClusterIP: ip, Port: uint16(p.Port), Affinity: affinity}
			if nodePorts && p.NodePort > 0 {
				sp.NodePort = uint16(p.NodePort)
			}
			sp.Endpoints = endpointsFor(byName[name], p.Name, corev1.Protocol(proto))
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, func(a, b ServicePort) int {
		return cmp.Or(strings.Compare(a.Service, b.Service), strings.Compare(a.PortName, b.PortName),
			cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol))
	})
	return out
}

// endpointsFor lists the ready addresses of ep for the Service port named
// port, by address, once each.
func endpointsFor(ep *corev1.Endpoints, port string, proto corev1.Protocol) []Endpoint {
	if ep == nil {
		return nil
	}
	seen := map[netip.AddrPort]bool{}
	var out []Endpoint
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if p.Name != port || pp != proto || p.Port <= 0 || p.Port > 65535 {
				continue
			}
			for _, a := range ss.Addresses {
				ip, err := netip.ParseAddr(a.IP)
				if err != nil || !ip.Is4() {
					continue
				}
				e := Endpoint{IP: ip, Port: uint16(p.Port)}
				if seen[netip.AddrPortFrom(ip, e.Port)] {
					continue
				}
				seen[netip.AddrPortFrom(ip, e.Port)] = true
				if r := a.TargetRef; r != nil && r.Kind == "Pod" {
					e.Pod = r.Namespace + "/" + r.Name
				}
				if a.NodeName != nil {
					e.Node = *a.NodeName
				}
				out = append(out, e)
			}
		}
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// describe says what serves at an endpoint, for comments.
func (e Endpoint) describe() string {
	switch {
	case e.Pod != "" && e.Node != "":
		return fmt.Sprintf("pod %s on %s", e.Pod, e.Node)
	case e.Pod != "":
		return "pod " + e.Pod
	case e.Node != "":
		return "on " + e.Node
	}
	return e.String()
}
