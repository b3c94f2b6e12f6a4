package testnet

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/capture"
)

// Frame is a captured frame decoded down to the pod packet inside.
type Frame struct {
	// Outer is the outer IPv4 header of an encapsulated packet; nil when
	// the pod packet travels bare.
	Outer    *layers.IPv4
	UDP      *layers.UDP
	VXLAN    *layers.VXLAN
	InnerEth *layers.Ethernet
	// Inner is the pod packet's IPv4 header.
	Inner *layers.IPv4
	// Summary is the layers in a line.
	Summary string
}

// Encapsulation names what Frame carries: "none", "vxlan" or "ipip".
func (f Frame) Encapsulation() string {
	switch {
	case f.VXLAN != nil:
		return string(netmodes.VXLAN)
	case f.Outer != nil && f.Outer.Protocol == layers.IPProtocolIPv4:
		return string(netmodes.IPIP)
	case f.Outer != nil:
		return "unknown"
	}
	return "none"
}

// Decode decodes a frame; ok is false when it carries no IPv4 packet.
func Decode(data []byte, lt layers.LinkType) (Frame, bool) {
	p := gopacket.NewPacket(data, lt, gopacket.Default)
	var f Frame
	var ips []*layers.IPv4
	var names []string
	for _, l := range p.Layers() {
		switch v := l.(type) {
		case *layers.Ethernet:
			names = append(names, fmt.Sprintf("Ethernet %s > %s", v.SrcMAC, v.DstMAC))
			if len(ips) > 0 {
				f.InnerEth = v
			}
		case *layers.IPv4:
			names = append(names, fmt.Sprintf("IPv4 %s > %s proto %d", v.SrcIP, v.DstIP, v.Protocol))
			ips = append(ips, v)
		case *layers.UDP:
			names = append(names, fmt.Sprintf("UDP %d > %d", v.SrcPort, v.DstPort))
			if len(ips) == 1 && v.DstPort == 4789 {
				f.UDP = v
			}
		case *layers.VXLAN:
			names = append(names, fmt.Sprintf("VXLAN vni %d", v.VNI))
			f.VXLAN = v
		default:
			names = append(names, l.LayerType().String())
		}
	}
	if len(ips) == 0 {
		return f, false
	}
	f.Inner = ips[len(ips)-1]
	if len(ips) > 1 {
		f.Outer = ips[0]
	}
	f.Summary = strings.Join(names, " / ")
	return f, true
}

// CaptureWhile captures on iface in ns while send runs and returns the
// first frame whose pod packet goes from src to dst.
func CaptureWhile(ns *NS, iface string, src, dst netip.Addr, send func() error) (Frame, error) {
	var c *capture.Capture
	if err := ns.Do(func() error {
		var err error
		c, err = capture.Open(iface, capture.Options{SnapLen: 512})
		return err
	}); err != nil {
		return Frame{}, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		f   Frame
		err error
	}
	found := make(chan result, 1)
	go func() {
		var f Frame
		_, err := c.Collect(ctx, 1, func(p capture.Packet) bool {
			d, ok := Decode(p.Data, c.LinkType())
			if ok && d.Inner.SrcIP.Equal(src.AsSlice()) && d.Inner.DstIP.Equal(dst.AsSlice()) {
				f = d
				return true
			}
			return false
		})
		found <- result{f, err}
	}()
	serr := send()
	r := <-found
	if r.err != nil {
		return Frame{}, fmt.Errorf("no frame %s > %s on %s in %s (send: %v): %w", src, dst, iface, ns.Name, serr, r.err)
	}
	return r.f, serr
}
