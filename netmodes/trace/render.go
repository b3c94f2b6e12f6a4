package trace

import (
	"fmt"
	"io"
	"strings"

	"github.com/mattn/go-runewidth"
)

// Words of the table.
var (
	wTrace     = text{"trace", "追踪"}
	wOn        = text{"%[1]s on %[2]s", "%[1]s，在 %[2]s 上"}
	wVia       = text{"%[1]s via %[2]s", "%[1]s，经 %[2]s"}
	wMode      = text{"mode %[1]s", "模式 %[1]s"}
	wWhere     = text{"where", "位置"}
	wWhat      = text{"what the packet looks like", "包的样子"}
	wNotSeen   = text{"not seen here", "这里没有看到"}
	wStray     = text{"off the mode's path", "偏离了模式的路径"}
	wDelivered = text{"delivered in %[1]s · %[2]d hops", "送达，用时 %[1]s · %[2]d 跳"}
	wEncap     = text{"encapsulation +%[1]d bytes", "封装 +%[1]d 字节"}
	wNoEncap   = text{"no encapsulation", "不封装"}
	wLostAfter = text{"✗ lost after hop %[1]d (%[2]s): %[3]s", "✗ 在第 %[1]d 跳（%[2]s）之后丢失：%[3]s"}
	wLostFirst = text{"✗ lost before the first hop (%[1]s): %[2]s", "✗ 在第一跳之前丢失（%[1]s）：%[2]s"}
	wNote      = text{"note: %[1]s", "注：%[1]s"}
	wProbes    = text{"probes: %[1]d sent, %[2]d delivered", "探测包：发出 %[1]d 个，送达 %[2]d 个"}
	wCapture   = text{"capture failed: %[1]s", "抓包失败：%[1]s"}
	wBytes     = text{"%[1]d bytes", "%[1]d 字节"}
	wRawIP     = text{"raw IP, no Ethernet header", "裸 IP，无以太网头"}
	wProto     = text{"%[1]s, %[2]d bytes of payload", "%[1]s，载荷 %[2]d 字节"}
)

// width is the table's width for wrapped text.
const width = 110

// Render writes the trace as a table: one block per hop with the place,
// the time since the first hop, what the packet looks like there (the
// first hop) or what changed (the others), the layer stack where it
// changed, the explanation, and the route and FDB entry at routing hops;
// then the verdict. wide adds every hop's Ethernet addresses and layers.
func Render(w io.Writer, res *Result, wide bool) error {
	l := Lang(res.Lang)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s → %s  %s  %s\n", l.f(wTrace), endpoint(l, res.Src), endpoint(l, res.Dst), l.f(wMode, res.Mode), l.f(wProto, protoName(res), res.Size))
	places := make([]string, len(res.Hops))
	pw := runewidth.StringWidth(l.f(wWhere))
	for i, h := range res.Hops {
		places[i] = place(h)
		pw = max(pw, runewidth.StringWidth(places[i]))
	}
	const tw = 7
	indent := strings.Repeat(" ", 3+2+pw+2+tw+2)
	text := width - len(indent)
	fmt.Fprintf(&b, "%3s  %s  %*s  %s\n", "#", pad(l.f(wWhere), pw), tw, "Δt", l.f(wWhat))
	prevStack := ""
	for i, h := range res.Hops {
		dt, what := "", "— "+l.f(wNotSeen)
		var more []string
		if h.Seen {
			dt = fmt.Sprintf("%dµs", h.TUS)
			what = h.Change
			if prevStack == "" {
				what = headline(h)
			}
			if stack := stackOf(h); wide || stack != prevStack {
				more = append(more, layersLine(l, h, wide))
				prevStack = stack
			}
		} else if h.Error != "" {
			more = append(more, l.f(wCapture, h.Error))
		}
		if h.Stray {
			more = append(more, "↯ "+l.f(wStray))
		}
		more = append(more, h.Explain)
		lines := wrap(what, text)
		fmt.Fprintf(&b, "%3d  %s  %*s  %s\n", h.Index, pad(places[i], pw), tw, dt, lines[0])
		for _, line := range lines[1:] {
			fmt.Fprintf(&b, "%s%s\n", indent, line)
		}
		for _, m := range more {
			for _, line := range wrap(m, text) {
				fmt.Fprintf(&b, "%s%s\n", indent, line)
			}
		}
		if h.Route != "" {
			fmt.Fprintf(&b, "     route  %s   (%s)\n", h.Route, h.RouteOrigin)
		}
		if h.FDB != "" {
			fmt.Fprintf(&b, "     fdb    %s\n", strings.TrimPrefix(h.FDB, "fdb "))
		}
	}
	if res.Delivered {
		line := l.f(wDelivered, fmt.Sprintf("%dµs", res.TUS), seenCount(res))
		if res.Overhead > 0 {
			line += " · " + l.f(wEncap, res.Overhead)
		} else {
			line += " · " + l.f(wNoEncap)
		}
		fmt.Fprintln(&b, line)
	} else if res.LostAt != nil {
		line := l.f(wLostFirst, res.LostAt.Node, res.Reason)
		if res.LostAt.Hop > 0 {
			line = l.f(wLostAfter, res.LostAt.Hop, place(res.Hops[res.LostAt.Hop-1]), res.Reason)
		}
		for i, s := range wrap(line, width) {
			if i > 0 {
				s = "  " + s
			}
			fmt.Fprintln(&b, s)
		}
	}
	if len(res.Probes) > 1 {
		n := 0
		var ts []string
		for _, p := range res.Probes {
			if p.Delivered {
				n++
				ts = append(ts, fmt.Sprintf("%dµs", p.TUS))
			} else {
				ts = append(ts, "✗")
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", l.f(wProbes, len(res.Probes), n), strings.Join(ts, " "))
	}
	for _, n := range res.Notes {
		for i, line := range wrap(l.f(wNote, n), width) {
			if i > 0 {
				line = "  " + line
			}
			fmt.Fprintln(&b, line)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func endpoint(l Lang, e Endpoint) string {
	name := e.Name
	switch {
	case e.Kind == KindPod && e.Node != "":
		return fmt.Sprintf("%s (%s)", name, l.f(wOn, e.IP, e.Node))
	case e.Kind == KindService && e.Endpoint != "":
		return fmt.Sprintf("%s (%s)", name, l.f(wVia, fmt.Sprintf("%s:%d", e.IP, e.Port), e.Endpoint))
	case e.Kind == KindService:
		return fmt.Sprintf("%s (%s:%d)", name, e.IP, e.Port)
	}
	return fmt.Sprintf("%s (%s)", name, e.IP)
}

func protoName(res *Result) string {
	switch res.Proto {
	case ICMP:
		return "ICMP echo"
	case TCP:
		return fmt.Sprintf("TCP SYN :%d", res.Port)
	case UDP:
		return fmt.Sprintf("UDP :%d", res.Port)
	}
	return res.Proto
}

// place is where a hop is: "a · eth0 out", "node1 · vxlan.calico out",
// "br-a · node1 in".
func place(h Hop) string {
	who := hopPlace(h)
	if h.Pod != "" {
		who = h.Pod[strings.IndexByte(h.Pod, '/')+1:]
	}
	s := fmt.Sprintf("%s · %s %s", who, h.Interface, h.Direction)
	if h.Stray {
		s = "↯ " + s
	}
	return s
}

// headline is a hop's packet in a line: its addresses, TTL and protocol,
// with the outer header of an encapsulated frame.
func headline(h Hop) string {
	var ips []Layer
	var tr *Layer
	for j := range h.Layers {
		switch h.Layers[j].Type {
		case "IPv4", "IPIP":
			ips = append(ips, h.Layers[j])
		case "ICMPv4", "TCP", "UDP":
			tr = &h.Layers[j]
		}
	}
	if len(ips) == 0 {
		return ""
	}
	in := ips[len(ips)-1]
	s := fmt.Sprintf("%s → %s ttl %d", in.Src, in.Dst, in.TTL)
	if tr != nil {
		switch tr.Type {
		case "ICMPv4":
			s += " ICMP " + tr.ICMP
		case "TCP":
			s += fmt.Sprintf(" TCP %d → %d %s", tr.SrcPort, tr.DstPort, tr.Flags)
		case "UDP":
			s += fmt.Sprintf(" UDP %d → %d", tr.SrcPort, tr.DstPort)
		}
	}
	if len(ips) > 1 {
		o := ips[0]
		s = fmt.Sprintf("[%s → %s] %s", o.Src, o.Dst, s)
	}
	return s
}

// stackOf is the hop's layer types.
func stackOf(h Hop) string {
	var names []string
	for _, x := range h.Layers {
		if x.Type != "Payload" {
			names = append(names, x.Type)
		}
	}
	return strings.Join(names, " | ")
}

// layersLine is the hop's frame: its layer stack and length, the outer
// addresses of an encapsulated frame, and (wide) its Ethernet addresses.
func layersLine(l Lang, h Hop, wide bool) string {
	parts := []string{"[" + stackOf(h) + "]", l.f(wBytes, h.Length)}
	if o := outerLine(h); o != "" && wide {
		parts = append(parts, o)
	}
	if len(h.Layers) > 0 && h.Layers[0].Type != "Ethernet" {
		parts = append(parts, l.f(wRawIP))
	} else if wide && len(h.Layers) > 0 {
		parts = append(parts, fmt.Sprintf("eth %s → %s", h.Layers[0].Src, h.Layers[0].Dst))
	}
	return strings.Join(parts, "  ")
}

// outerLine is an encapsulated frame's outer header in words: "outer
// 192.168.34.11 → 192.168.34.12 UDP 4789 VNI 4096" or "… IPIP".
func outerLine(h Hop) string {
	var outer *Layer
	for i := range h.Layers {
		x := &h.Layers[i]
		switch x.Type {
		case "IPIP":
			return fmt.Sprintf("outer %s → %s IPIP", x.Src, x.Dst)
		case "IPv4":
			if outer == nil {
				outer = x
			}
		case "VXLAN":
			port := 0
			if i > 0 && h.Layers[i-1].Type == "UDP" {
				port = h.Layers[i-1].DstPort
			}
			return fmt.Sprintf("outer %s → %s UDP %d VNI %d", outer.Src, outer.Dst, port, x.VNI)
		}
	}
	return ""
}

func seenCount(res *Result) int {
	n := 0
	for _, h := range res.Hops {
		if h.Seen {
			n++
		}
	}
	return n
}

// pad pads s with spaces to display width w.
func pad(s string, w int) string {
	if d := w - runewidth.StringWidth(s); d > 0 {
		return s + strings.Repeat(" ", d)
	}
	return s
}

// wrap breaks s into lines of at most w display columns: at spaces, and
// between the characters of Chinese text (which has no spaces).
func wrap(s string, w int) []string {
	w = max(w, 20)
	var lines []string
	var cur strings.Builder
	cw := 0
	for _, tok := range tokens(s) {
		tw := runewidth.StringWidth(tok)
		if cw+tw > w && cw > 0 {
			lines = append(lines, strings.TrimRight(cur.String(), " "))
			cur.Reset()
			cw = 0
			tok = strings.TrimLeft(tok, " ")
			tw = runewidth.StringWidth(tok)
		}
		cur.WriteString(tok)
		cw += tw
	}
	if cur.Len() > 0 || len(lines) == 0 {
		lines = append(lines, strings.TrimRight(cur.String(), " "))
	}
	return lines
}

// tokens splits s where a line may break: after spaces, and around every
// wide (CJK) character.
func tokens(s string) []string {
	var out []string
	start := 0
	for i, r := range s {
		switch {
		case runewidth.RuneWidth(r) == 2:
			if start < i {
				out = append(out, s[start:i])
			}
			out = append(out, string(r))
			start = i + len(string(r))
		case r == ' ':
			out = append(out, s[start:i+1])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
