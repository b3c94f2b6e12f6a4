package trace

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Encapsulations a frame can carry.
const (
	EncapNone  = "none"
	EncapVXLAN = "vxlan"
	EncapIPIP  = "ipip"
)

// Decoded is a frame decoded layer by layer.
type Decoded struct {
	Layers []Layer
	// Encap is none, vxlan or ipip.
	Encap string
	// Length is the frame's length.
	Length int

	eths  []*layers.Ethernet
	ips   []*layers.IPv4 // outermost first
	outer *layers.UDP    // the VXLAN's UDP header
	vxlan *layers.VXLAN
	// The innermost transport header, after the last IPv4 header.
	icmp *layers.ICMPv4
	tcp  *layers.TCP
	udp  *layers.UDP
}

// Decode decodes a frame that starts with the given link type (Ethernet,
// or raw IP for TUN and tunnel devices). ok is false when it holds no
// IPv4 packet.
func Decode(data []byte, lt layers.LinkType) (*Decoded, bool) {
	p := gopacket.NewPacket(data, lt, gopacket.DecodeOptions{Lazy: false, NoCopy: true})
	d := &Decoded{Length: len(data), Encap: EncapNone}
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.Ethernet:
			d.eths = append(d.eths, v)
			d.Layers = append(d.Layers, Layer{Type: "Ethernet", Src: v.SrcMAC.String(), Dst: v.DstMAC.String()})
		case *layers.IPv4:
			d.ips = append(d.ips, v)
			d.icmp, d.tcp, d.udp = nil, nil, nil
			typ := "IPv4"
			if v.Protocol == layers.IPProtocolIPv4 {
				typ = "IPIP"
				d.Encap = EncapIPIP
			}
			d.Layers = append(d.Layers, Layer{Type: typ, Src: v.SrcIP.String(), Dst: v.DstIP.String(), TTL: int(v.TTL),
				Protocol: int(v.Protocol), Length: int(v.Length), ID: int(v.Id), DF: v.Flags&layers.IPv4DontFragment != 0})
		case *layers.UDP:
			d.udp = v
			d.Layers = append(d.Layers, Layer{Type: "UDP", SrcPort: int(v.SrcPort), DstPort: int(v.DstPort), Length: int(v.Length)})
		case *layers.VXLAN:
			d.vxlan, d.outer, d.udp = v, d.udp, nil
			d.Encap = EncapVXLAN
			d.Layers = append(d.Layers, Layer{Type: "VXLAN", VNI: int(v.VNI)})
		case *layers.TCP:
			d.tcp = v
			d.Layers = append(d.Layers, Layer{Type: "TCP", SrcPort: int(v.SrcPort), DstPort: int(v.DstPort), Seq: v.Seq, Flags: tcpFlags(v)})
		case *layers.ICMPv4:
			d.icmp = v
			d.Layers = append(d.Layers, Layer{Type: "ICMPv4", ICMP: icmpName(v.TypeCode), ID: int(v.Id), Seq: uint32(v.Seq)})
		case *gopacket.Payload:
			d.Layers = append(d.Layers, Layer{Type: "Payload", Length: len(v.Payload())})
		case *gopacket.DecodeFailure:
			d.Layers = append(d.Layers, Layer{Type: "Undecoded", Length: len(v.LayerContents())})
		}
	}
	return d, len(d.ips) > 0
}

// Inner is the packet's own IPv4 header: the innermost one.
func (d *Decoded) Inner() *layers.IPv4 { return d.ips[len(d.ips)-1] }

// Outer is the encapsulation's outer IPv4 header, nil for a bare packet.
func (d *Decoded) Outer() *layers.IPv4 {
	if len(d.ips) < 2 {
		return nil
	}
	return d.ips[0]
}

// InnerEthernet is the Ethernet header of the encapsulated frame (VXLAN);
// OuterEthernet the frame's own.
func (d *Decoded) InnerEthernet() *layers.Ethernet {
	if d.vxlan == nil || len(d.eths) < 2 {
		return nil
	}
	return d.eths[len(d.eths)-1]
}

// OuterEthernet is the frame's own Ethernet header; nil on raw-IP devices.
func (d *Decoded) OuterEthernet() *layers.Ethernet {
	if len(d.eths) == 0 || d.Layers[0].Type != "Ethernet" {
		return nil
	}
	return d.eths[0]
}

// Summary is the layers in brackets: "[Ethernet | IPv4 | UDP | VXLAN |
// Ethernet | IPv4 | ICMPv4]".
func (d *Decoded) Summary() string {
	var names []string
	for _, l := range d.Layers {
		if l.Type == "Payload" {
			continue
		}
		names = append(names, l.Type)
	}
	return "[" + strings.Join(names, " | ") + "]"
}

func tcpFlags(t *layers.TCP) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{t.SYN, "SYN"}, {t.ACK, "ACK"}, {t.RST, "RST"}, {t.FIN, "FIN"}, {t.PSH, "PSH"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return strings.Join(f, " ")
}

func icmpName(tc layers.ICMPv4TypeCode) string {
	switch tc.Type() {
	case layers.ICMPv4TypeEchoRequest:
		return "echo request"
	case layers.ICMPv4TypeEchoReply:
		return "echo reply"
	case layers.ICMPv4TypeDestinationUnreachable:
		return "destination unreachable: " + strings.ToLower(tc.String())
	case layers.ICMPv4TypeTimeExceeded:
		return "time exceeded"
	}
	return strings.ToLower(tc.String())
}

// probeKey recognises the probe's own packet (not the reply, nor an ICMP
// error quoting it) among the frames that carry its marker.
type probeKey struct {
	proto   string
	id      int
	seq     uint32
	srcPort int
}

func keyOf(p ProbeRequest) probeKey {
	return probeKey{proto: p.Proto, id: p.ID, seq: p.Seq, srcPort: p.SrcPort}
}

// forward reports whether d is the probe going towards its destination.
func (k probeKey) forward(d *Decoded) bool {
	switch k.proto {
	case ICMP:
		return d.icmp != nil && d.icmp.TypeCode.Type() == layers.ICMPv4TypeEchoRequest &&
			int(d.icmp.Id) == k.id && d.icmp.Seq == uint16(k.seq)
	case UDP:
		return d.udp != nil && int(d.udp.SrcPort) == k.srcPort
	case TCP:
		return d.tcp != nil && int(d.tcp.SrcPort) == k.srcPort && d.tcp.Seq == k.seq && d.tcp.SYN && !d.tcp.ACK
	}
	return false
}

// overhead is what encapsulation adds: the bytes before the inner IPv4
// header beyond a plain frame's Ethernet header.
func (d *Decoded) overhead() int {
	switch d.Encap {
	case EncapVXLAN:
		return 50
	case EncapIPIP:
		return 20
	}
	return 0
}

// Change describes what differs between the previous hop's frame and
// this one's, in the given language.
func Change(l Lang, prev, cur *Decoded) string {
	if prev == nil {
		return l.f(chFirstSeen)
	}
	var out []string
	pi, ci := prev.Inner(), cur.Inner()
	switch {
	case prev.Encap == EncapNone && cur.Encap == EncapVXLAN:
		o := cur.Outer()
		port := 0
		if cur.outer != nil {
			port = int(cur.outer.DstPort)
		}
		out = append(out, l.f(chVXLAN, o.SrcIP, o.DstIP, port, cur.vxlan.VNI))
	case prev.Encap == EncapNone && cur.Encap == EncapIPIP:
		o := cur.Outer()
		out = append(out, l.f(chIPIP, o.SrcIP, o.DstIP))
	case prev.Encap != EncapNone && cur.Encap == EncapNone:
		out = append(out, l.f(chDecap))
	case prev.Encap != EncapNone && cur.Encap == prev.Encap:
		if po, co := prev.Outer(), cur.Outer(); po.TTL != co.TTL {
			out = append(out, l.f(chOuterTTL, po.TTL, co.TTL))
		}
	}
	if pi.TTL != ci.TTL {
		out = append(out, l.f(chTTL, pi.TTL, ci.TTL))
	}
	if !pi.DstIP.Equal(ci.DstIP) {
		out = append(out, l.f(chDNAT, pi.DstIP, ci.DstIP))
	}
	pe, ce := prev.OuterEthernet(), cur.OuterEthernet()
	switch {
	case ce == nil && pe != nil:
		out = append(out, l.f(chNoEth))
	case ce != nil && (pe == nil || pe.SrcMAC.String() != ce.SrcMAC.String() || pe.DstMAC.String() != ce.DstMAC.String()):
		out = append(out, l.f(chEth, ce.SrcMAC, ce.DstMAC))
	}
	if dl := int(cur.ips[0].Length) - int(prev.ips[0].Length); dl != 0 {
		out = append(out, l.f(chBytes, dl))
	}
	if len(out) == 0 {
		return l.f(chSame)
	}
	return strings.Join(out, "; ")
}

// innerAddrs is the packet's own source and destination.
func (d *Decoded) innerAddrs() (netip.Addr, netip.Addr) {
	in := d.Inner()
	s, _ := netip.AddrFromSlice(in.SrcIP.To4())
	t, _ := netip.AddrFromSlice(in.DstIP.To4())
	return s, t
}

// Headline is the packet in a line: "10.42.1.2 → 10.42.2.2 ttl 64 ICMP
// echo request".
func (d *Decoded) Headline() string {
	s, t := d.innerAddrs()
	line := fmt.Sprintf("%s → %s ttl %d", s, t, d.Inner().TTL)
	switch {
	case d.icmp != nil:
		line += " ICMP " + icmpName(d.icmp.TypeCode)
	case d.tcp != nil:
		line += fmt.Sprintf(" TCP %d → %d %s", d.tcp.SrcPort, d.tcp.DstPort, tcpFlags(d.tcp))
	case d.udp != nil:
		line += fmt.Sprintf(" UDP %d → %d", d.udp.SrcPort, d.udp.DstPort)
	}
	return line
}
