package trace

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	podA   = net.IP{10, 42, 1, 2}
	podB   = net.IP{10, 42, 2, 2}
	node1  = net.IP{192, 168, 34, 11}
	node2  = net.IP{192, 168, 34, 12}
	macA   = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB   = net.HardwareAddr{2, 0, 0, 0, 0, 2}
	vtep1  = net.HardwareAddr{0x66, 0x6b, 192, 168, 34, 11}
	vtep2  = net.HardwareAddr{0x66, 0x6b, 192, 168, 34, 12}
	marker = []byte("KLAB\x80abcdefghijk")
)

func serial(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ipv4(src, dst net.IP, ttl uint8, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: proto, SrcIP: src, DstIP: dst, Flags: layers.IPv4DontFragment, Id: 7}
}

func echo(typ uint8, id, seq uint16) []gopacket.SerializableLayer {
	return []gopacket.SerializableLayer{&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}, gopacket.Payload(append(slices.Clone(marker), make([]byte, 40)...))}
}

func eth(src, dst net.HardwareAddr) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
}

// frames of one ICMP echo request from pod a to pod b at several places.
func frames(t *testing.T) map[string][]byte {
	inner := append([]gopacket.SerializableLayer{ipv4(podA, podB, 63, layers.IPProtocolICMPv4)}, echo(layers.ICMPv4TypeEchoRequest, 9, 1)...)
	outerUDP := ipv4(node1, node2, 64, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 51000, DstPort: 4789}
	udp.SetNetworkLayerForChecksum(outerUDP)
	tcpIP := ipv4(podA, podB, 64, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 0xdeadbeef, SYN: true, Window: 64240}
	tcp.SetNetworkLayerForChecksum(tcpIP)
	udpIP := ipv4(podA, podB, 64, layers.IPProtocolUDP)
	udp2 := &layers.UDP{SrcPort: 40001, DstPort: 53}
	udp2.SetNetworkLayerForChecksum(udpIP)
	return map[string][]byte{
		"veth":  serial(t, append([]gopacket.SerializableLayer{eth(macA, macB), ipv4(podA, podB, 64, layers.IPProtocolICMPv4)}, echo(layers.ICMPv4TypeEchoRequest, 9, 1)...)...),
		"vtep":  serial(t, append([]gopacket.SerializableLayer{eth(vtep1, vtep2)}, inner...)...),
		"vxlan": serial(t, append([]gopacket.SerializableLayer{eth(macA, macB), outerUDP, udp, &layers.VXLAN{ValidIDFlag: true, VNI: 4096}, eth(vtep1, vtep2)}, inner...)...),
		"tunl0": serial(t, inner...),
		"ipip":  serial(t, append([]gopacket.SerializableLayer{eth(macA, macB), ipv4(node1, node2, 64, layers.IPProtocolIPv4)}, inner...)...),
		"reply": serial(t, append([]gopacket.SerializableLayer{eth(macB, macA), ipv4(podB, podA, 64, layers.IPProtocolICMPv4)}, echo(layers.ICMPv4TypeEchoReply, 9, 1)...)...),
		"tcp":   serial(t, eth(macA, macB), tcpIP, tcp),
		"udp":   serial(t, eth(macA, macB), udpIP, udp2, gopacket.Payload(marker)),
	}
}

func TestDecode(t *testing.T) {
	fs := frames(t)
	for _, tc := range []struct {
		frame  string
		lt     layers.LinkType
		layers []string
		encap  string
		inner  string // src>dst ttl of the innermost IPv4
		check  func(t *testing.T, d *Decoded)
	}{
		{"veth", layers.LinkTypeEthernet, []string{"Ethernet", "IPv4", "ICMPv4", "Payload"}, EncapNone, "10.42.1.2>10.42.2.2 64", func(t *testing.T, d *Decoded) {
			if l := d.Layers[2]; l.ICMP != "echo request" || l.ID != 9 || l.Seq != 1 {
				t.Errorf("ICMP %+v", l)
			}
			if l := d.Layers[1]; !l.DF || l.ID != 7 || l.Protocol != 1 || l.Length != 84 {
				t.Errorf("IPv4 %+v", l)
			}
			if d.Outer() != nil || d.InnerEthernet() != nil || d.OuterEthernet() == nil {
				t.Error("a bare frame has no outer header")
			}
		}},
		{"vxlan", layers.LinkTypeEthernet, []string{"Ethernet", "IPv4", "UDP", "VXLAN", "Ethernet", "IPv4", "ICMPv4", "Payload"}, EncapVXLAN, "10.42.1.2>10.42.2.2 63", func(t *testing.T, d *Decoded) {
			if l := d.Layers[2]; l.DstPort != 4789 || l.SrcPort != 51000 {
				t.Errorf("UDP %+v", l)
			}
			if l := d.Layers[3]; l.VNI != 4096 {
				t.Errorf("VXLAN %+v", l)
			}
			if l := d.Layers[4]; l.Src != vtep1.String() || l.Dst != vtep2.String() {
				t.Errorf("inner Ethernet %+v", l)
			}
			if o := d.Outer(); o.SrcIP.String() != "192.168.34.11" || d.InnerEthernet() == nil || d.overhead() != 50 {
				t.Errorf("outer %v, overhead %d", o.SrcIP, d.overhead())
			}
			if d.udp != nil || d.icmp == nil {
				t.Error("the innermost transport is the ICMP, not the VXLAN's UDP")
			}
		}},
		{"ipip", layers.LinkTypeEthernet, []string{"Ethernet", "IPIP", "IPv4", "ICMPv4", "Payload"}, EncapIPIP, "10.42.1.2>10.42.2.2 63", func(t *testing.T, d *Decoded) {
			if l := d.Layers[1]; l.Protocol != 4 || l.Src != "192.168.34.11" || l.Dst != "192.168.34.12" {
				t.Errorf("IPIP %+v", l)
			}
		}},
		{"tunl0", layers.LinkTypeRaw, []string{"IPv4", "ICMPv4", "Payload"}, EncapNone, "10.42.1.2>10.42.2.2 63", func(t *testing.T, d *Decoded) {
			if d.OuterEthernet() != nil {
				t.Error("a tun frame has no Ethernet header")
			}
		}},
		{"tcp", layers.LinkTypeEthernet, []string{"Ethernet", "IPv4", "TCP"}, EncapNone, "10.42.1.2>10.42.2.2 64", func(t *testing.T, d *Decoded) {
			if l := d.Layers[2]; l.Flags != "SYN" || l.Seq != 0xdeadbeef || l.SrcPort != 40000 || l.DstPort != 80 {
				t.Errorf("TCP %+v", l)
			}
		}},
	} {
		d, ok := Decode(fs[tc.frame], tc.lt)
		if !ok {
			t.Fatalf("%s: not decoded", tc.frame)
		}
		if got := layerNames(d); !slices.Equal(got, tc.layers) {
			t.Errorf("%s: layers %v, want %v", tc.frame, got, tc.layers)
		}
		in := d.Inner()
		if got := in.SrcIP.String() + ">" + in.DstIP.String() + " " + strconv.Itoa(int(in.TTL)); d.Encap != tc.encap || got != tc.inner {
			t.Errorf("%s: encap %s inner %s, want %s %s", tc.frame, d.Encap, got, tc.encap, tc.inner)
		}
		tc.check(t, d)
	}
	arp := serial(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: macA, SourceProtAddress: podA, DstHwAddress: make([]byte, 6), DstProtAddress: podB})
	if _, ok := Decode(arp, layers.LinkTypeEthernet); ok {
		t.Error("an ARP frame decoded as an IPv4 packet")
	}
}

func layerNames(d *Decoded) []string {
	var out []string
	for _, l := range d.Layers {
		out = append(out, l.Type)
	}
	return out
}

func TestForward(t *testing.T) {
	fs := frames(t)
	dec := func(name string) *Decoded {
		lt := layers.LinkTypeEthernet
		if name == "tunl0" {
			lt = layers.LinkTypeRaw
		}
		d, _ := Decode(fs[name], lt)
		return d
	}
	icmp := probeKey{proto: ICMP, id: 9, seq: 1}
	for _, tc := range []struct {
		key   probeKey
		frame string
		want  bool
	}{
		{icmp, "veth", true},
		{icmp, "vxlan", true},
		{icmp, "ipip", true},
		{icmp, "tunl0", true},
		{icmp, "reply", false},
		{probeKey{proto: ICMP, id: 10, seq: 1}, "veth", false},
		{probeKey{proto: ICMP, id: 9, seq: 2}, "veth", false},
		{probeKey{proto: TCP, srcPort: 40000, seq: 0xdeadbeef}, "tcp", true},
		{probeKey{proto: TCP, srcPort: 40000, seq: 1}, "tcp", false},
		{probeKey{proto: UDP, srcPort: 40001}, "udp", true},
		{probeKey{proto: UDP, srcPort: 40001}, "vxlan", false}, // the VXLAN's own UDP is not the probe
	} {
		if got := tc.key.forward(dec(tc.frame)); got != tc.want {
			t.Errorf("%+v on %s: %v, want %v", tc.key, tc.frame, got, tc.want)
		}
	}
}

func TestChange(t *testing.T) {
	fs := frames(t)
	dec := func(name string) *Decoded {
		lt := layers.LinkTypeEthernet
		if name == "tunl0" {
			lt = layers.LinkTypeRaw
		}
		d, _ := Decode(fs[name], lt)
		return d
	}
	for _, tc := range []struct {
		lang       Lang
		prev, cur  string
		want       string
		prevIsNone bool
	}{
		{English, "veth", "veth", "same frame", false},
		{English, "", "veth", "first seen here", true},
		{English, "veth", "vtep", "ttl 64→63; eth 66:6b:c0:a8:22:0b → 66:6b:c0:a8:22:0c", false},
		{English, "vtep", "vxlan", "+ outer 192.168.34.11 → 192.168.34.12 UDP 4789 VNI 4096; eth 02:00:00:00:00:01 → 02:00:00:00:00:02; +50 bytes", false},
		{English, "vxlan", "vtep", "− outer headers removed (decapsulated); eth 66:6b:c0:a8:22:0b → 66:6b:c0:a8:22:0c; -50 bytes", false},
		{English, "veth", "tunl0", "ttl 64→63; no Ethernet header (tunnel device)", false},
		{English, "tunl0", "ipip", "+ outer 192.168.34.11 → 192.168.34.12 IPIP (protocol 4); eth 02:00:00:00:00:01 → 02:00:00:00:00:02; +20 bytes", false},
		{Chinese, "ipip", "tunl0", "− 去掉外层头（解封装）; 无以太网头（隧道设备）; -20 字节", false},
		{Chinese, "veth", "veth", "帧不变", false},
	} {
		var prev *Decoded
		if !tc.prevIsNone {
			prev = dec(tc.prev)
		}
		if got := Change(tc.lang, prev, dec(tc.cur)); got != tc.want {
			t.Errorf("%s → %s: %q\n want %q", tc.prev, tc.cur, got, tc.want)
		}
	}
}

func TestNewProbe(t *testing.T) {
	dst := netip.MustParseAddr("10.42.2.2")
	p, err := NewProbe(ICMP, dst, 0, 56, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Marker) != MarkerLen || !bytes.HasPrefix(p.Marker, []byte("KLAB")) || p.Marker[4]&0x80 == 0 || p.Seq != 3 || p.Length() != 84 {
		t.Errorf("ICMP probe %+v", p)
	}
	q, _ := NewProbe(ICMP, dst, 0, 56, 3)
	if bytes.Equal(p.Marker, q.Marker) {
		t.Error("two probes share a marker")
	}
	tp, err := NewProbe(TCP, dst, 443, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tp.SrcPort < 32768 || tp.SrcPort > 60999 || len(tp.Marker) != 8 || binary.BigEndian.Uint32(tp.Marker) != tp.Seq ||
		binary.BigEndian.Uint32(tp.Marker[4:]) != tp.Ack || tp.Length() != 40 {
		t.Errorf("TCP probe %+v", tp)
	}
	if err := tp.Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		proto string
		port  int
		size  int
		want  string
	}{
		{ICMP, 0, 8, "--size 8: an ICMP probe carries 16 to 65507 bytes"},
		{UDP, 0, 16, "a udp probe needs a destination port"},
		{UDP, 53, 70000, "--size 70000: a UDP probe carries 16 to 65507 bytes"},
		{TCP, 80, -1, "--size -1: a TCP SYN carries 0 to 65495 bytes"},
		{"sctp", 1, 16, `unknown protocol "sctp"`},
	} {
		if _, err := NewProbe(tc.proto, dst, tc.port, tc.size, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s port %d size %d: %v, want %q", tc.proto, tc.port, tc.size, err, tc.want)
		}
	}
	if err := (ProbeRequest{Proto: ICMP, Dst: dst, Size: 56}).Validate(); err == nil {
		t.Error("a probe without a marker is valid")
	}
}
