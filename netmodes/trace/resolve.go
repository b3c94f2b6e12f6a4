package trace

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Resolve finds the endpoint a user names: a pod (NAMESPACE/NAME, or NAME
// in the default namespace), a node, an IP address (a pod's, a node's,
// or a Service's ClusterIP), or a Service (svc/NAME, svc/NAMESPACE/NAME,
// or a bare name no pod or node has). Services are destinations only:
// dst allows them; port picks the Service's port (0: its first) and must
// match proto.
func (t *Topology) Resolve(s string, dst bool, proto string, port int) (Endpoint, error) {
	if s == "" {
		return Endpoint{}, fmt.Errorf("empty endpoint: name a pod (ns/name), a node or an IP")
	}
	if rest, ok := cutAny(s, "svc/", "service/", "services/"); ok {
		if !dst {
			return Endpoint{}, fmt.Errorf("%s: a trace starts at a pod or a node; a Service can only be its destination", s)
		}
		key := rest
		if !strings.Contains(key, "/") {
			key = "default/" + key
		}
		svc, ok := t.service(key)
		if !ok {
			return Endpoint{}, fmt.Errorf("no Service %s: see klab get services -A", key)
		}
		return svc.endpoint(proto, port)
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if p := t.podByAddr(ip); p != nil {
			return t.podEndpoint(*p), nil
		}
		if n := t.nodeByIP(ip); n != nil {
			return Endpoint{Kind: KindNode, Name: n.Name, IP: n.IP, Node: n.Name}, nil
		}
		for _, svc := range t.Services {
			if svc.ClusterIP == ip {
				if !dst {
					return Endpoint{}, fmt.Errorf("%s is Service %s's ClusterIP: a trace starts at a pod or a node", ip, svc.Key())
				}
				return svc.endpoint(proto, port)
			}
		}
		return Endpoint{}, fmt.Errorf("no pod, node or Service has the address %s: see klab get pods -o wide", ip)
	}
	key := s
	if !strings.Contains(key, "/") {
		key = "default/" + key
	}
	if p, ok := t.pod(key); ok {
		return t.podEndpoint(p), nil
	}
	if !strings.Contains(s, "/") {
		if n, ok := t.node(s); ok {
			return Endpoint{Kind: KindNode, Name: n.Name, IP: n.IP, Node: n.Name}, nil
		}
	}
	if svc, ok := t.service(key); ok && dst {
		return svc.endpoint(proto, port)
	}
	var nodes []string
	for _, n := range t.Nodes {
		nodes = append(nodes, n.Name)
	}
	slices.Sort(nodes)
	return Endpoint{}, fmt.Errorf("no running pod %s with an IP, and no node %q (the nodes are %s): see klab get pods -A -o wide", key, s, strings.Join(nodes, ", "))
}

func cutAny(s string, prefixes ...string) (string, bool) {
	for _, p := range prefixes {
		if rest, ok := strings.CutPrefix(s, p); ok {
			return rest, true
		}
	}
	return s, false
}

func (t *Topology) podEndpoint(p Pod) Endpoint {
	return Endpoint{Kind: KindPod, Name: p.Key(), IP: p.IP, Node: p.Node}
}

func (t *Topology) service(key string) (Service, bool) {
	for _, s := range t.Services {
		if s.Key() == key {
			return s, true
		}
	}
	return Service{}, false
}

// endpoint is the Service as a destination on port (0: the first port of
// proto).
func (s Service) endpoint(proto string, port int) (Endpoint, error) {
	if !s.ClusterIP.IsValid() {
		return Endpoint{}, fmt.Errorf("Service %s has no ClusterIP (headless): trace one of its pods instead", s.Key())
	}
	var ports []string
	for _, p := range s.Ports {
		ports = append(ports, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		if (port == 0 || p.Port == port) && (proto == ICMP || p.Protocol == proto) {
			return Endpoint{Kind: KindService, Name: s.Key(), IP: s.ClusterIP, Port: p.Port}, nil
		}
	}
	if len(ports) == 0 {
		return Endpoint{}, fmt.Errorf("Service %s has no ports", s.Key())
	}
	return Endpoint{}, fmt.Errorf("Service %s has no %s port %d: its ports are %s (use --proto and --port)", s.Key(), proto, port, strings.Join(ports, ", "))
}
