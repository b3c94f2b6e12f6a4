// Package dns is klab's cluster DNS, CoreDNS's job in the seed: "klab
// dns" watches Services, Endpoints and Pods through the API and answers
// for the cluster domain (cluster.local):
//
//   - web.default.svc.cluster.local       A: the Service's cluster IP, or
//     for a headless Service the addresses of its ready endpoints
//   - _http._tcp.web.default.svc.cluster.local
//     SRV: the named port, pointing at the Service (headless: at each
//     endpoint, 10-42-1-3.web.default.svc.cluster.local)
//   - 10-42-1-3.default.pod.cluster.local A: a pod's address, when a pod
//     of that namespace has it
//   - an ExternalName Service is a CNAME
//   - reverse (in-addr.arpa) names of cluster IPs and headless endpoints
//
// A name under the cluster domain that does not exist is NXDOMAIN, one
// that exists without records of the type asked is an empty answer. Every
// other name is NXDOMAIN too (not authoritative): there is no internet to
// forward to, and a stub resolver goes on through its search list after
// NXDOMAIN, where REFUSED would stop some (musl).
package dns

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// DefaultDomain is the cluster domain.
const DefaultDomain = "cluster.local"

// ttl is the records' time to live, as CoreDNS's kubernetes plugin.
const ttl = 5

// Zone is the cluster domain's records, built from the API's objects.
type Zone struct {
	domain string // "cluster.local."
	// rrs holds every record by owner name; names holds every name that
	// exists, records or not (default.svc.cluster.local).
	rrs   map[string][]dns.RR
	names map[string]bool
	// pods are the pods' "1-2-3-4.ns" names.
	pods map[string]netip.Addr
}

// Build makes the zone of domain ("cluster.local") from the objects.
func Build(domain string, svcs []*corev1.Service, eps []*corev1.Endpoints, pods []*corev1.Pod) *Zone {
	z := &Zone{domain: dns.Fqdn(strings.ToLower(domain)), rrs: map[string][]dns.RR{}, names: map[string]bool{}, pods: map[string]netip.Addr{}}
	z.exists(z.domain)
	z.exists("svc." + z.domain)
	z.exists("pod." + z.domain)
	byName := map[string]*corev1.Endpoints{}
	for _, e := range eps {
		byName[e.Namespace+"/"+e.Name] = e
	}
	sorted := slices.Clone(svcs)
	slices.SortFunc(sorted, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, s := range sorted {
		z.service(s, byName[s.Namespace+"/"+s.Name])
	}
	for _, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !ip.Is4() || p.Spec.HostNetwork {
			continue
		}
		z.pods[dashed(ip)+"."+strings.ToLower(p.Namespace)] = ip
		z.exists(strings.ToLower(p.Namespace) + ".pod." + z.domain)
	}
	return z
}

// exists records name and every name between it and the zone's apex.
func (z *Zone) exists(name string) {
	for n := name; ; {
		z.names[n] = true
		if n == z.domain || !dns.IsSubDomain(z.domain, n) {
			return
		}
		i, end := dns.NextLabel(n, 0)
		if end {
			return
		}
		n = n[i:]
	}
}

func (z *Zone) add(rr dns.RR) {
	name := rr.Header().Name
	z.rrs[name] = append(z.rrs[name], rr)
	z.exists(name)
}

func hdr(name string, typ uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: ttl}
}

// dashed is an address as a DNS label: 10-42-1-3.
func dashed(ip netip.Addr) string { return strings.ReplaceAll(ip.String(), ".", "-") }

func (z *Zone) service(s *corev1.Service, ep *corev1.Endpoints) {
	name := strings.ToLower(s.Name) + "." + strings.ToLower(s.Namespace) + ".svc." + z.domain
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		if s.Spec.ExternalName != "" {
			z.add(&dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(s.Spec.ExternalName)})
		}
		return
	}
	z.exists(name)
	if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil && ip.Is4() {
		z.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()})
		z.ptr(ip, name)
		for _, p := range s.Spec.Ports {
			if p.Name == "" {
				continue
			}
			srv := "_" + strings.ToLower(p.Name) + "._" + strings.ToLower(string(protocolOf(p.Protocol))) + "." + name
			rr := &dns.SRV{Hdr: hdr(srv, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: name}
			z.add(rr)
			z.rrs[name] = append(z.rrs[name], &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: name})
		}
		return
	}
	// Headless: the ready endpoints themselves.
	if ep == nil {
		return
	}
	seen := map[string]bool{}
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			ip, err := netip.ParseAddr(a.IP)
			if err != nil || !ip.Is4() {
				continue
			}
			host := a.Hostname
			if host == "" {
				host = dashed(ip)
			}
			target := strings.ToLower(host) + "." + name
			if !seen[target] {
				seen[target] = true
				z.add(&dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()})
				z.add(&dns.A{Hdr: hdr(target, dns.TypeA), A: ip.AsSlice()})
				z.ptr(ip, target)
			}
			for _, p := range ss.Ports {
				if p.Name == "" {
					continue
				}
				srv := "_" + strings.ToLower(p.Name) + "._" + strings.ToLower(string(protocolOf(p.Protocol))) + "." + name
				z.add(&dns.SRV{Hdr: hdr(srv, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: target})
				z.rrs[name] = append(z.rrs[name], &dns.SRV{Hdr: hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: target})
			}
		}
	}
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// ptr adds the reverse record of ip.
func (z *Zone) ptr(ip netip.Addr, target string) {
	rev, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return
	}
	z.rrs[rev] = append(z.rrs[rev], &dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: target})
}

// soa is the zone's SOA record, the authority of negative answers.
func (z *Zone) soa() *dns.SOA {
	return &dns.SOA{Hdr: hdr(z.domain, dns.TypeSOA), Ns: "ns.dns." + z.domain, Mbox: "hostmaster." + z.domain,
		Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl}
}

// Answer answers one question: the response code, the answers, and the
// authority section (the SOA, for negative answers in the zone). A name
// outside the zone gets NXDOMAIN and no authority.
func (z *Zone) Answer(q dns.Question) (rcode int, answer, authority []dns.RR) {
	name := strings.ToLower(dns.Fqdn(q.Name))
	if strings.HasSuffix(name, ".in-addr.arpa.") {
		rrs := z.rrs[name]
		if len(rrs) == 0 {
			return dns.RcodeNameError, nil, nil
		}
		if q.Qtype != dns.TypePTR && q.Qtype != dns.TypeANY {
			return dns.RcodeSuccess, nil, nil
		}
		return dns.RcodeSuccess, rrs, nil
	}
	if !dns.IsSubDomain(z.domain, name) {
		return dns.RcodeNameError, nil, nil
	}
	negative := []dns.RR{z.soa()}
	switch {
	case name == z.domain && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY):
		return dns.RcodeSuccess, []dns.RR{z.soa()}, nil
	case name == z.domain && q.Qtype == dns.TypeNS:
		return dns.RcodeSuccess, []dns.RR{&dns.NS{Hdr: hdr(z.domain, dns.TypeNS), Ns: "ns.dns." + z.domain}}, nil
	}
	if rrs, ok := z.podRecord(name); ok {
		if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
			return dns.RcodeSuccess, rrs, nil
		}
		return dns.RcodeSuccess, nil, negative
	}
	rrs := z.rrs[name]
	if len(rrs) == 0 && !z.names[name] {
		return dns.RcodeNameError, nil, negative
	}
	var out []dns.RR
	for _, rr := range rrs {
		t := rr.Header().Rrtype
		if t == q.Qtype || q.Qtype == dns.TypeANY || t == dns.TypeCNAME {
			out = append(out, rr)
		}
	}
	if len(out) == 0 {
		return dns.RcodeSuccess, nil, negative
	}
	return dns.RcodeSuccess, out, nil
}

// Serves reports whether name is in the zone: the cluster domain or a
// reverse name of one of its addresses.
func (z *Zone) Serves(name string) bool {
	name = strings.ToLower(dns.Fqdn(name))
	return dns.IsSubDomain(z.domain, name) || len(z.rrs[name]) > 0 && strings.HasSuffix(name, ".in-addr.arpa.")
}

// podRecord answers 1-2-3-4.ns.pod.<domain> when a pod of ns has the
// address 1.2.3.4.
func (z *Zone) podRecord(name string) ([]dns.RR, bool) {
	rest, ok := strings.CutSuffix(name, ".pod."+z.domain)
	if !ok {
		return nil, false
	}
	ip, ok := z.pods[rest]
	if !ok {
		return nil, false
	}
	return []dns.RR{&dns.A{Hdr: hdr(name, dns.TypeA), A: ip.AsSlice()}}, true
}

// Len is how many names the zone has records for, for logs.
func (z *Zone) Len() int { return len(z.rrs) + len(z.pods) }
