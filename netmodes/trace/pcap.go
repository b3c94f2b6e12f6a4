package trace

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// WritePcap writes every hop's frames into one pcapng file with one
// interface block per hop, named after the hop ("3 node1/vxlan.calico
// out"), so Wireshark and tshark show where each frame was captured and
// decode it (VXLAN on UDP 4789, IPIP). Frames are in time order.
func WritePcap(w io.Writer, res *Result) error {
	if len(res.Hops) == 0 {
		return fmt.Errorf("pcap: the trace has no hops")
	}
	var ng *pcapgo.NgWriter
	for i, h := range res.Hops {
		intf := pcapgo.NgInterface{
			Name:                fmt.Sprintf("%d %s/%s %s", h.Index, hopPlace(h), h.Interface, h.Direction),
			Description:         fmt.Sprintf("hop %d: %s %s (%s, netns %s)", h.Index, h.Node, strings.TrimPrefix(place(h), "↯ "), h.Kind, h.Netns),
			LinkType:            layers.LinkTypeEthernet,
			SnapLength:          snapLen,
			TimestampResolution: 9,
		}
		if i < len(res.frames) && len(res.frames[i]) > 0 {
			intf.LinkType = layers.LinkType(res.frames[i][0].LinkType)
		} else if h.Kind == HopTunnel {
			intf.LinkType = layers.LinkTypeRaw
		}
		if ng == nil {
			var err error
			if ng, err = pcapgo.NewNgWriterInterface(w, intf, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
				Application: "klab trace",
				Comment:     fmt.Sprintf("%s → %s, mode %s, %s", res.Src.Name, res.Dst.Name, res.Mode, res.Proto),
			}}); err != nil {
				return fmt.Errorf("pcap: %w", err)
			}
			continue
		}
		if _, err := ng.AddInterface(intf); err != nil {
			return fmt.Errorf("pcap: %w", err)
		}
	}
	type rec struct {
		hop int
		f   Frame
	}
	var recs []rec
	for i, fs := range res.frames {
		for _, f := range fs {
			recs = append(recs, rec{i, f})
		}
	}
	slices.SortStableFunc(recs, func(a, b rec) int { return a.f.Time.Compare(b.f.Time) })
	for _, r := range recs {
		ci := gopacket.CaptureInfo{Timestamp: r.f.Time, CaptureLength: len(r.f.Data), Length: max(r.f.Length, len(r.f.Data)), InterfaceIndex: r.hop}
		if err := ng.WritePacket(ci, r.f.Data); err != nil {
			return fmt.Errorf("pcap: %w", err)
		}
	}
	return ng.Flush()
}

// hopPlace is where a hop is for people: the pod, the bridge, or the
// machine.
func hopPlace(h Hop) string {
	switch {
	case h.Pod != "":
		return h.Pod
	case h.Kind == HopBridgePort:
		return h.Bridge
	}
	return h.Node
}
