package trace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes"
)

// Probe outcomes the network gave at the sender (ProbeResult.Code).
const (
	ProbeMTU     = "mtu"      // larger than the MTU of the way out (EMSGSIZE)
	ProbeNoRoute = "no-route" // the sender has no route (ENETUNREACH)
)

// Default sizes: ping's 56 bytes for ICMP, the marker alone for UDP, a
// bare SYN for TCP.
const (
	DefaultICMPSize = 56
	DefaultUDPSize  = MarkerLen
)

// header sizes of the probes.
const (
	ipv4Header = 20
	icmpHeader = 8
	udpHeader  = 8
	tcpHeader  = 20
	maxIPv4    = 65535
)

// DefaultSize is the payload size of a probe of proto when --size is not
// given.
func DefaultSize(proto string) int {
	switch proto {
	case ICMP:
		return DefaultICMPSize
	case UDP:
		return DefaultUDPSize
	}
	return 0
}

// NewProbe makes a probe with fresh random identifiers and marker: an
// ICMP echo request (id, seq) or UDP datagram (source port) with the
// marker at the start of its payload, or a TCP SYN whose marker is its
// initial sequence number and (unused, random) acknowledgment field.
func NewProbe(proto string, dst netip.Addr, port, size, seq int) (ProbeRequest, error) {
	p := ProbeRequest{Proto: proto, Dst: dst, Port: port, Size: size}
	if err := p.check(); err != nil {
		return p, err
	}
	var rnd [MarkerLen + 8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return p, err
	}
	// "KLAB" and 12 random bytes, the first with its high bit set so that
	// no text (JSON, base64) ever holds the marker.
	p.Marker = append([]byte("KLAB"), rnd[:MarkerLen-4]...)
	p.Marker[4] |= 0x80
	extra := rnd[MarkerLen-4:]
	switch proto {
	case ICMP:
		p.ID = int(binary.BigEndian.Uint16(extra))
		p.Seq = uint32(uint16(seq))
	case UDP:
		p.SrcPort = ephemeral(extra)
	case TCP:
		// The ports do not make the marker: a Service's DNAT changes the
		// destination port, a masquerade the source port; sequence and
		// acknowledgment numbers cross NAT unchanged.
		p.SrcPort = ephemeral(extra)
		p.Seq = binary.BigEndian.Uint32(extra[2:])
		p.Ack = binary.BigEndian.Uint32(extra[6:])
		p.Marker = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, p.Seq), p.Ack)
	}
	return p, nil
}

// ephemeral picks a source port in Linux's ephemeral range.
func ephemeral(b []byte) int {
	return 32768 + int(binary.BigEndian.Uint16(b))%(60999-32768+1)
}

// check validates what the user chose.
func (p ProbeRequest) check() error {
	if !p.Dst.Is4() {
		return fmt.Errorf("probe: destination %s is not an IPv4 address", p.Dst)
	}
	switch p.Proto {
	case ICMP:
		if p.Size < MarkerLen || p.Size > maxIPv4-ipv4Header-icmpHeader {
			return fmt.Errorf("--size %d: an ICMP probe carries %d to %d bytes (the marker takes %d)", p.Size, MarkerLen, maxIPv4-ipv4Header-icmpHeader, MarkerLen)
		}
	case UDP:
		if p.Size < MarkerLen || p.Size > maxIPv4-ipv4Header-udpHeader {
			return fmt.Errorf("--size %d: a UDP probe carries %d to %d bytes (the marker takes %d)", p.Size, MarkerLen, maxIPv4-ipv4Header-udpHeader, MarkerLen)
		}
	case TCP:
		if p.Size < 0 || p.Size > maxIPv4-ipv4Header-tcpHeader {
			return fmt.Errorf("--size %d: a TCP SYN carries 0 to %d bytes", p.Size, maxIPv4-ipv4Header-tcpHeader)
		}
	default:
		return fmt.Errorf("unknown protocol %q: use icmp, tcp or udp", p.Proto)
	}
	if p.Proto != ICMP && (p.Port < 1 || p.Port > 65535) {
		return fmt.Errorf("a %s probe needs a destination port (--port 1-65535)", p.Proto)
	}
	return nil
}

// Validate checks a probe request as an agent receives it.
func (p ProbeRequest) Validate() error {
	if err := p.check(); err != nil {
		return err
	}
	if len(p.Marker) < 4 {
		return errors.New("probe: no marker")
	}
	if p.Proto != ICMP && (p.SrcPort < 1 || p.SrcPort > 65535) {
		return errors.New("probe: no source port")
	}
	return nil
}

// Length is the probe's IPv4 packet length.
func (p ProbeRequest) Length() int {
	switch p.Proto {
	case TCP:
		return ipv4Header + tcpHeader + p.Size
	case UDP:
		return ipv4Header + udpHeader + p.Size
	}
	return ipv4Header + icmpHeader + p.Size
}

// SendProbe sends the probe from the network namespace at netnsPath (""
// is the current one), with Don't Fragment set. The result says which
// source address the kernel chose; a send the kernel refuses for the MTU
// or for want of a route is a result with Code and Error, not an error.
func SendProbe(ctx context.Context, netnsPath string, p ProbeRequest) (*ProbeResult, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := netmodes.OpenNetns(netnsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	res := &ProbeResult{Length: p.Length()}
	routes, err := ns.Netlink().RouteGet(net.IP(p.Dst.AsSlice()))
	if err != nil || len(routes) == 0 {
		res.Code, res.Error = ProbeNoRoute, fmt.Sprintf("no route to %s from %s", p.Dst, ns)
		if err != nil {
			res.Error += ": " + err.Error()
		}
		return res, nil
	}
	if a, ok := netip.AddrFromSlice(routes[0].Src); ok {
		res.Src = a.Unmap()
	}
	payload := make([]byte, p.Size)
	if p.Proto != TCP {
		copy(payload, p.Marker)
	}
	var pkt []byte
	switch p.Proto {
	case ICMP:
		pkt, err = serialize(&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: uint16(p.ID), Seq: uint16(p.Seq)}, payload)
	case TCP:
		if !res.Src.IsValid() {
			return nil, fmt.Errorf("probe: the kernel chose no source address towards %s", p.Dst)
		}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.SrcPort), DstPort: layers.TCPPort(p.Port), Seq: p.Seq, Ack: p.Ack, SYN: true, Window: 64240}
		if err := tcp.SetNetworkLayerForChecksum(&layers.IPv4{Version: 4, SrcIP: res.Src.AsSlice(), DstIP: p.Dst.AsSlice(), Protocol: layers.IPProtocolTCP}); err != nil {
			return nil, err
		}
		pkt, err = serialize(tcp, payload)
	case UDP:
		pkt = payload
	}
	if err != nil {
		return nil, fmt.Errorf("build the %s probe: %w", p.Proto, err)
	}
	var sendErr error
	err = ns.Do(func() error {
		fd, err := probeSocket(p)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		res.Sent = time.Now()
		sendErr = unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: p.Dst.As4(), Port: p.Port})
		return nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case errors.Is(sendErr, unix.EMSGSIZE):
		res.Code, res.Error = ProbeMTU, fmt.Sprintf("%d bytes: %v", res.Length, sendErr)
	case errors.Is(sendErr, unix.ENETUNREACH), errors.Is(sendErr, unix.EHOSTUNREACH):
		res.Code, res.Error = ProbeNoRoute, sendErr.Error()
	case sendErr != nil:
		return nil, fmt.Errorf("send the %s probe to %s: %w", p.Proto, p.Dst, sendErr)
	}
	return res, nil
}

// probeSocket opens the socket a probe goes out of, in the calling
// thread's namespace: raw ICMP or TCP (the kernel writes the IPv4
// header), or UDP bound to the probe's source port; Don't Fragment set.
func probeSocket(p ProbeRequest) (int, error) {
	typ, proto := unix.SOCK_RAW, unix.IPPROTO_ICMP
	switch p.Proto {
	case TCP:
		proto = unix.IPPROTO_TCP
	case UDP:
		typ, proto = unix.SOCK_DGRAM, unix.IPPROTO_UDP
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, fmt.Errorf("probe socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("probe socket: don't fragment: %w", err)
	}
	if p.Proto == UDP {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: p.SrcPort}); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("probe socket: bind UDP port %d: %w", p.SrcPort, err)
		}
	}
	return fd, nil
}

func serialize(l gopacket.SerializableLayer, payload []byte) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, l, gopacket.Payload(payload))
	return buf.Bytes(), err
}
