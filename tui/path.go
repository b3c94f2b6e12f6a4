package tui

import (
	"fmt"
	"strconv"
	"strings"
)

// pathBox is one machine the packet crosses, with its hops in order.
type pathBox struct {
	title string
	hops  []int // indices into the trace's hops
	// labels are the hops' descriptions inside the box.
	labels []string
}

// boxesOf groups consecutive hops by machine; a pod's eth0 is in its
// node's box, labelled with the pod's name. short abbreviates long names
// (the hop's title below the drawing has them whole).
func boxesOf(s *Snapshot, hops []Hop, short bool) []pathBox {
	nodeIP := map[string]string{}
	if s != nil {
		for _, n := range s.Nodes {
			nodeIP[n.Name] = n.IP
		}
	}
	var boxes []pathBox
	last := ""
	for i, h := range hops {
		machine, label := h.Node, h.Interface
		podW, ifW := 10, 16
		if short {
			podW, ifW = 8, 12
		}
		if width(label) > ifW {
			label = cut(label, ifW)
		}
		if h.Pod != "" {
			name := h.Pod[strings.LastIndexByte(h.Pod, '/')+1:]
			label = shorten(name, podW) + " " + label
		}
		if h.Direction != "" {
			label += " " + h.Direction
		}
		if i == 0 || machine != last {
			title := machine
			if ip := nodeIP[machine]; ip != "" {
				title += " " + ip[strings.LastIndexByte(ip, '.'):]
			}
			boxes = append(boxes, pathBox{title: title})
		}
		b := &boxes[len(boxes)-1]
		b.hops = append(b.hops, i)
		b.labels = append(b.labels, label)
		last = machine
	}
	return boxes
}

// pathGap is the width of the wire between two boxes.
const pathGap = 4

// boxWidths gives each box the width its labels want (between 14 and 40
// cells), shrinking the widest when they do not fit in w; nil when they
// cannot. fits tells whether every box got what it wants.
func boxWidths(boxes []pathBox, w int) (ws []int, fits bool) {
	ws = make([]int, len(boxes))
	total := pathGap * (len(boxes) - 1)
	for i, b := range boxes {
		want := width(b.title) + 6
		for j, l := range b.labels {
			want = max(want, width(l)+len(fmt.Sprint(b.hops[j]+1))+8)
		}
		ws[i] = min(max(want, 14), 40)
		total += ws[i]
	}
	fits = total <= w
	for total > w {
		wi := 0
		for i := range ws {
			if ws[i] > ws[wi] {
				wi = i
			}
		}
		if ws[wi] <= 16 {
			return nil, false
		}
		ws[wi]--
		total--
	}
	// Share what is left, so the drawing spans the width.
	for i := 0; total < w && i < 4*len(ws); i++ {
		if ws[i%len(ws)] < 40 {
			ws[i%len(ws)]++
			total++
		}
	}
	return ws, fits
}

// drawPath draws the machines the packet crossed side by side, each
// listing its hops, the packet (●) at hop cur and the way it came drawn
// bold. The first machine's hops run down to the wire at the bottom, the
// last's up from it. When the boxes do not fit side by side, the hops are
// listed one a line.
func drawPath(st *Styles, s *Snapshot, r *TraceResult, cur, w int) []string {
	boxes := boxesOf(s, r.Hops, false)
	n := len(boxes)
	if n == 0 {
		return nil
	}
	ws, fits := boxWidths(boxes, w)
	if !fits {
		boxes = boxesOf(s, r.Hops, true)
		ws, _ = boxWidths(boxes, w)
	}
	if ws == nil {
		return pathList(st, r, cur, w)
	}
	rows := 0
	for _, b := range boxes {
		rows = max(rows, len(b.hops))
	}
	lost := -1
	if !r.Delivered && r.LostAt != nil {
		lost = r.LostAt.Hop
	}
	numW := len(strconv.Itoa(len(r.Hops)))
	// cell draws one hop inside a box of inner width iw.
	cell := func(b pathBox, j, iw int) string {
		i := b.hops[j]
		h := r.Hops[i]
		label := padLeft(strconv.Itoa(i+1), numW) + " " + b.labels[j]
		if i == lost {
			label += " ✗"
		}
		label = fit(label, iw-4) + " "
		switch {
		case i == cur:
			return st.Selected.Render(" ● " + label)
		case !h.Seen:
			return st.Dim.Render(" · " + label)
		case i > cur:
			return st.Dim.Render("   " + label)
		}
		return st.Path.Render(" •") + " " + label
	}
	// at returns which hop of box bi sits on row (or -1).
	at := func(bi, row int) int {
		k := len(boxes[bi].hops)
		if bi == n-1 && n > 1 {
			// Up from the wire: the first hop on the bottom row.
			if j := rows - 1 - row; j < k {
				return j
			}
			return -1
		}
		// Down to the wire: the last hop on the bottom row.
		if j := row - (rows - k); j >= 0 {
			return j
		}
		return -1
	}
	fr := st.Frame.Render
	var top, bottom strings.Builder
	for bi, b := range boxes {
		bw := ws[bi]
		if bi > 0 {
			top.WriteString(strings.Repeat(" ", pathGap))
			bottom.WriteString(strings.Repeat(" ", pathGap))
		}
		t := "─ " + cut(b.title, bw-6) + " "
		top.WriteString(fr("┌" + t + strings.Repeat("─", max(0, bw-2-width(t))) + "┐"))
		bottom.WriteString(fr("└" + strings.Repeat("─", bw-2) + "┘"))
	}
	out := []string{top.String()}
	for row := range rows {
		var line strings.Builder
		for bi, b := range boxes {
			if bi > 0 {
				switch {
				case row != rows-1:
					line.WriteString(strings.Repeat(" ", pathGap))
				case cur >= b.hops[0]:
					// The wire from the previous machine, travelled.
					line.WriteString(st.Path.Render(strings.Repeat("━", pathGap-1) + "▶"))
				default:
					line.WriteString(st.Dim.Render(strings.Repeat("─", pathGap-1) + "▷"))
				}
			}
			c := strings.Repeat(" ", ws[bi]-2)
			if j := at(bi, row); j >= 0 {
				c = cell(b, j, ws[bi]-2)
			}
			line.WriteString(fr("│") + c + fr("│"))
		}
		out = append(out, line.String())
	}
	return append(out, bottom.String())
}

// pathList is the narrow form: one hop a line.
func pathList(st *Styles, r *TraceResult, cur, w int) []string {
	var out []string
	for i, h := range r.Hops {
		mark := "  "
		switch {
		case i == cur:
			mark = st.Packet.Render("● ")
		case !h.Seen:
			mark = st.Dim.Render("· ")
		case i < cur:
			mark = st.Path.Render("• ")
		}
		line := fmt.Sprintf("%s%2d %s  %s", mark, i+1, h.Where(), st.Dim.Render("+"+usec(h.TUS)))
		if i == cur {
			line = st.Selected.Render(fit(line, w))
		}
		out = append(out, cut(line, w))
	}
	return out
}
