package trace

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/klab-dev/klab/netmodes"
)

// fakeNet is a Backend that plays a network: when the probe is sent, it
// builds the frame every point of plan would see (with gopacket, as the
// kernel would: MACs, TTLs, VXLAN and IPIP headers) and reports it to the
// captures on those points — up to point seeUntil (exclusive; -1 for
// all). It also reports frames a trace must ignore: the echo reply, and
// the probe's frame in the other direction at the first point.
type fakeNet struct {
	plan     *Plan
	seeUntil int
	probe    *ProbeResult // what Probe returns (nil: sent)
	drops    map[string][]PolicyDrop
	after    map[string][]PolicyDrop // drop counters once the probe is sent
	states   map[string]*netmodes.State
	failOpen map[string]string // interface → error opening its capture

	mu      sync.Mutex
	streams []*fakeStream
	sent    bool
	probes  []ProbeRequest
}

type fakeStream struct {
	node string
	req  CaptureRequest
	ch   chan CaptureEvent
	done chan struct{}
	once sync.Once
}

func (s *fakeStream) Next() (CaptureEvent, error) {
	select {
	case ev := <-s.ch:
		return ev, nil
	case <-s.done:
		return CaptureEvent{}, io.EOF
	}
}

func (s *fakeStream) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (f *fakeNet) Capture(ctx context.Context, node string, req CaptureRequest) (Stream, error) {
	s := &fakeStream{node: node, req: req, ch: make(chan CaptureEvent, 256), done: make(chan struct{})}
	for i, t := range req.Targets {
		if e, ok := f.failOpen[t.Interface]; ok {
			s.ch <- CaptureEvent{Target: i, Error: e}
		}
	}
	s.ch <- CaptureEvent{Ready: true}
	f.mu.Lock()
	f.streams = append(f.streams, s)
	f.mu.Unlock()
	return s, nil
}

func (f *fakeNet) Probe(ctx context.Context, node string, req ProbeRequest) (*ProbeResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = true
	f.probes = append(f.probes, req)
	if f.probe != nil {
		return f.probe, nil
	}
	t0 := time.Unix(1700000000, 0).Add(time.Duration(len(f.probes)) * time.Millisecond)
	pts := f.plan.Points
	if f.plan.Loss == nil {
		pts = allPoints(f.plan)
	}
	frames := buildFrames(f.plan, pts, req)
	for i, pt := range pts {
		if f.seeUntil >= 0 && i >= f.seeUntil {
			break
		}
		fr := frames[i]
		fr.Time = t0.Add(time.Duration(i) * 7 * time.Microsecond)
		f.emit(pt, fr)
		if i == 0 {
			// The probe's frame the other way, and the echo reply: both
			// carry the marker, neither is the probe going forward.
			back := fr
			back.Outgoing = !back.Outgoing
			back.Time = back.Time.Add(time.Second)
			f.emit(pt, back)
			if req.Proto != ICMP {
				continue
			}
			reply := req
			reply.Proto = "reply"
			rf := buildFrames(f.plan, pts[:1], reply)[0]
			rf.Outgoing = fr.Outgoing
			rf.Time = fr.Time.Add(-time.Microsecond)
			f.emit(pt, rf)
		}
	}
	return &ProbeResult{Src: f.plan.Src.IP, Sent: t0, Length: req.Length()}, nil
}

func (f *fakeNet) emit(pt Point, fr Frame) {
	for _, s := range f.streams {
		if s.node != pt.Capturer {
			continue
		}
		for j, t := range s.req.Targets {
			if t == pt.Target {
				s.ch <- CaptureEvent{Target: j, Frame: &fr}
			}
		}
	}
}

func (f *fakeNet) PolicyDrops(ctx context.Context, node string) ([]PolicyDrop, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sent && f.after != nil {
		return f.after[node], nil
	}
	return f.drops[node], nil
}

func (f *fakeNet) NodeState(ctx context.Context, node string) (*netmodes.State, error) {
	return f.states[node], nil
}

// buildFrames makes the frame each point sees.
func buildFrames(p *Plan, pts []Point, req ProbeRequest) []Frame {
	src, dst := p.Src.IP, p.To
	if p.Src.Kind == KindNode {
		src = netip.MustParseAddr("10.42.1.0")
	}
	ttl := uint8(64)
	var out []Frame
	prevNode, prevDir := "", ""
	for _, pt := range pts {
		h := pt.Hop
		if h.Direction == "out" && (h.Kind == HopVeth || h.Kind == HopVXLAN || h.Kind == HopTunnel || h.Kind == HopNIC && h.Encap == EncapNone) &&
			(prevNode == h.Node && prevDir == "in") {
			ttl--
		}
		if h.Kind != HopBridgePort {
			prevNode, prevDir = h.Node, h.Direction
		}
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: layers.IPProtocolICMPv4, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Flags: layers.IPv4DontFragment}
		var inner []gopacket.SerializableLayer
		switch req.Proto {
		case TCP:
			ip.Protocol = layers.IPProtocolTCP
			tcp := &layers.TCP{SrcPort: layers.TCPPort(req.SrcPort), DstPort: layers.TCPPort(req.Port), Seq: req.Seq, SYN: true, Window: 64240}
			tcp.SetNetworkLayerForChecksum(ip)
			inner = []gopacket.SerializableLayer{ip, tcp, gopacket.Payload(make([]byte, req.Size))}
		case UDP:
			ip.Protocol = layers.IPProtocolUDP
			udp := &layers.UDP{SrcPort: layers.UDPPort(req.SrcPort), DstPort: layers.UDPPort(req.Port)}
			udp.SetNetworkLayerForChecksum(ip)
			inner = []gopacket.SerializableLayer{ip, udp, gopacket.Payload(append(append([]byte{}, req.Marker...), make([]byte, req.Size-len(req.Marker))...))}
		default:
			typ := uint8(layers.ICMPv4TypeEchoRequest)
			if req.Proto == "reply" {
				ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
				typ = layers.ICMPv4TypeEchoReply
			}
			icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: uint16(req.ID), Seq: uint16(req.Seq)}
			inner = []gopacket.SerializableLayer{ip, icmp, gopacket.Payload(append(append([]byte{}, req.Marker...), make([]byte, req.Size-len(req.Marker))...))}
		}
		// Routing rewrites the MACs: they follow the TTL.
		mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, ttl, b} }
		eth := &layers.Ethernet{SrcMAC: mac(1), DstMAC: mac(2), EthernetType: layers.EthernetTypeIPv4}
		outer := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, SrcIP: net.IP{192, 168, 34, 11}, DstIP: net.IP{192, 168, 34, 12}}
		var ls []gopacket.SerializableLayer
		lt := layers.LinkTypeEthernet
		switch {
		case h.Kind == HopTunnel:
			ls, lt = inner, layers.LinkTypeRaw
		case h.Encap == EncapVXLAN:
			outer.Protocol = layers.IPProtocolUDP
			udp := &layers.UDP{SrcPort: 40000, DstPort: 4789}
			udp.SetNetworkLayerForChecksum(outer)
			ieth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0x66, 0x6b, 192, 168, 34, 11}, DstMAC: net.HardwareAddr{0x66, 0x6b, 192, 168, 34, 12}, EthernetType: layers.EthernetTypeIPv4}
			ls = append([]gopacket.SerializableLayer{eth, outer, udp, &layers.VXLAN{ValidIDFlag: true, VNI: 4096}, ieth}, inner...)
		case h.Encap == EncapIPIP:
			outer.Protocol = layers.IPProtocolIPv4
			ls = append([]gopacket.SerializableLayer{eth, outer}, inner...)
		default:
			ls = append([]gopacket.SerializableLayer{eth}, inner...)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			panic(err)
		}
		data := buf.Bytes()
		out = append(out, Frame{Outgoing: h.Direction == "out", Length: len(data), LinkType: int(lt), Data: data})
	}
	return out
}
