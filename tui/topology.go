package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// topology is the drawn map: subnets, the router, nodes, their pods with
// IPs, and the tunnels of the current mode.
type topology struct {
	common
	scroll  scroller
	reports map[string]NetworkReport
}

func newTopology(e *env) *topology {
	return &topology{common: common{env: e}, reports: map[string]NetworkReport{}}
}

func (t *topology) SetSize(w, h int) {
	t.common.SetSize(w, h)
	t.scroll.setHeight(h)
	t.redraw()
}

func (t *topology) redraw() {
	if t.snap != nil && t.width >= minBox {
		t.scroll.set(drawTopology(t.styles, t.snap, t.reports, t.width))
	}
}

func (t *topology) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		t.redraw()
	case reportsMsg:
		// The Network view asks the agents; the map uses the same answers.
		t.reports = map[string]NetworkReport{}
		for _, r := range msg.reports {
			t.reports[r.Node] = r
		}
		t.redraw()
	case tea.KeyMsg:
		t.scroll.navigate(t.keys, msg)
	}
	return t, nil
}

func (t *topology) View() string {
	if t.snap == nil {
		return "\n  waiting for the cluster's state …"
	}
	return strings.Join(t.scroll.view(), "\n")
}

func (t *topology) ShortHelp() []key.Binding {
	return []key.Binding{t.keys.Down, t.keys.PgDown, t.keys.Tabs[4], t.keys.Views}
}

func (t *topology) FullHelp() [][]key.Binding {
	k := t.keys
	return [][]key.Binding{{k.Up, k.Down, k.PgUp, k.PgDown, k.Top, k.Bottom}}
}

// Box sizes of the map.
const (
	minBox = 22
	maxBox = 34
)

// drawTopology draws the cluster as lines of at most w cells.
func drawTopology(st *Styles, s *Snapshot, reports map[string]NetworkReport, w int) []string {
	podsOf := map[string][]*Pod{}
	var unscheduled int
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Node == "" {
			unscheduled++
			continue
		}
		podsOf[p.Node] = append(podsOf[p.Node], p)
	}
	var router *Node
	bySubnet := make([][]*Node, max(1, len(s.Cluster.Subnets)))
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Role == "router" {
			router = n
			continue
		}
		sn := min(max(n.Subnet, 0), len(bySubnet)-1)
		bySubnet[sn] = append(bySubnet[sn], n)
	}
	var out []string
	for si, nodes := range bySubnet {
		if si > 0 && router != nil {
			out = append(out, routerLines(st, router, s.Cluster.Subnets, w)...)
		}
		label := "underlay"
		if si < len(s.Cluster.Subnets) {
			sn := s.Cluster.Subnets[si]
			label = fmt.Sprintf("underlay %s %s", sn.Name, sn.CIDR)
			if host, _, _ := strings.Cut(s.Cluster.HostIP, "/"); si == 0 && host != "" {
				label += " · host " + host
			}
		}
		out = append(out, st.Bold.Render(label))
		out = append(out, drawSubnet(st, s, nodes, podsOf, reports, w)...)
	}
	if unscheduled > 0 {
		out = append(out, st.Warn.Render(fmt.Sprintf("%d pods not scheduled yet", unscheduled)))
	}
	out = append(out, "")
	out = append(out, tunnelLines(st, s, reports, w)...)
	return out
}

func routerLines(st *Styles, r *Node, subnets []Subnet, w int) []string {
	var ends []string
	for i, ip := range r.IPs {
		name := ""
		if i < len(subnets) {
			name = " (" + subnets[i].Name + ")"
		}
		ends = append(ends, ip+name)
	}
	return []string{
		"",
		cut("  ┌────────┐", w),
		cut("══┤ "+st.Bold.Render("router")+" ├══ "+strings.Join(ends, " ⇄ ")+st.Dim.Render("  joins the subnets"), w),
		cut("  └────────┘", w),
		"",
	}
}

// drawSubnet draws one subnet's bus and its nodes as boxes, in rows of as
// many as fit.
func drawSubnet(st *Styles, s *Snapshot, nodes []*Node, podsOf map[string][]*Pod, reports map[string]NetworkReport, w int) []string {
	if len(nodes) == 0 {
		return []string{st.Dim.Render("  (no nodes)")}
	}
	perRow := max(1, min(len(nodes), (w+1)/(minBox+1)))
	boxW := max(minBox, min(maxBox, (w-(perRow-1))/perRow))
	var out []string
	for start := 0; start < len(nodes); start += perRow {
		row := nodes[start:min(len(nodes), start+perRow)]
		boxes := make([][]string, len(row))
		tunnelRow := -1
		height := 0
		for i, n := range row {
			boxes[i], tunnelRow = nodeBox(st, s, n, podsOf[n.Name], reports[n.Name], boxW)
			height = max(height, len(boxes[i]))
		}
		// The bus, with a tee above every box.
		bus := []rune(strings.Repeat("═", w))
		for i := range row {
			c := i*(boxW+1) + boxW/2
			if c < len(bus) {
				bus[c] = '╤'
			}
		}
		out = append(out, st.Frame.Render(string(bus)))
		for line := range height {
			var b strings.Builder
			for i, box := range boxes {
				sep := " "
				// Cross-subnet modes tunnel only out of the subnet.
				if line == tunnelRow && tunnelRow >= 0 && i > 0 && !s.Network.CrossSubnet {
					sep = st.Tunnel.Render("─")
				}
				if i > 0 {
					b.WriteString(sep)
				}
				switch {
				case line < len(box)-1:
					b.WriteString(box[line])
				case line == height-1:
					b.WriteString(box[len(box)-1]) // the bottom border
				default:
					// Stretch shorter boxes to the row's height.
					b.WriteString(st.Frame.Render("│") + strings.Repeat(" ", boxW-2) + st.Frame.Render("│"))
				}
			}
			out = append(out, b.String())
		}
	}
	return out
}

// nodeBox draws one node: name and underlay IP, pod block, its tunnel
// device, its pods. It returns the box's lines and which line shows the
// tunnel (-1 for none).
func nodeBox(st *Styles, s *Snapshot, n *Node, pods []*Pod, rep NetworkReport, w int) ([]string, int) {
	inner := w - 4
	fr := st.Frame.Render
	top := []rune(strings.Repeat("─", w-2))
	top[(w)/2-1] = '┴'
	lines := []string{fr("┌" + string(top) + "┐")}
	row := func(s string) { lines = append(lines, fr("│")+" "+fit(s, inner)+" "+fr("│")) }

	ready := st.OK.Render("●")
	switch {
	case n.Machine != "" && n.Machine != "running":
		ready = st.Bad.Render("○")
	case !n.Registered || !n.Ready:
		ready = st.Bad.Render("●")
	}
	ip := n.IP
	if width(n.Name)+width(ip)+3 > inner {
		// The last byte says it: the subnet is written above the boxes.
		ip = ip[strings.LastIndexByte(ip, '.'):]
	}
	row(ready + " " + st.Bold.Render(n.Name) + " " + ip)
	role := n.Role
	if n.PodCIDR != "" {
		role = n.PodCIDR
	}
	row(st.Dim.Render(role))

	tunnelRow := -1
	dev := tunnelDevice(s.Network.Mode)
	if dev != "" {
		present := true
		if rep.Node != "" && rep.Err == "" {
			present = false
			for _, d := range rep.Devices {
				if d.Name == dev {
					present = true
				}
			}
		}
		tunnelRow = len(lines)
		label := "◆ " + dev
		if !present {
			label = "◇ " + dev + " missing"
		}
		lines = append(lines, st.Tunnel.Render("┤")+" "+fit(st.Tunnel.Render(label), inner)+" "+st.Tunnel.Render("├"))
	} else if s.Network.Mode == "bgp" {
		tunnelRow = len(lines)
		label := "⇄ BGP"
		if rep.BGP != nil {
			est := 0
			for _, ss := range rep.BGP.Sessions {
				if ss.State == "Established" {
					est++
				}
			}
			label = fmt.Sprintf("⇄ BGP %d/%d peers", est, len(rep.BGP.Sessions))
		}
		lines = append(lines, st.Tunnel.Render("┤")+" "+fit(st.Tunnel.Render(label), inner)+" "+st.Tunnel.Render("├"))
	}
	for _, p := range pods {
		dot := st.OK.Render("●")
		if p.Status != "Running" {
			dot = st.Warn.Render("●")
		}
		ip := p.IP
		nameW := inner - 2 - width(ip) - 1
		row(dot + " " + fit(shorten(p.Name, nameW), nameW) + " " + st.Accent.Render(ip))
	}
	if len(pods) == 0 && n.Role != "router" {
		row(st.Dim.Render("no pods"))
	}
	lines = append(lines, fr("└"+strings.Repeat("─", w-2)+"┘"))
	return lines, tunnelRow
}

// shorten cuts a name in the middle ("web-5695d9996c-2mbkh" → "web-…2mbkh")
// so that what tells pods apart (the end) stays.
func shorten(name string, w int) string {
	r := []rune(name)
	if len(r) <= w || w < 5 {
		return cut(name, w)
	}
	head := (w - 1) / 3
	tail := w - 1 - head
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

func tunnelDevice(mode string) string {
	switch mode {
	case "vxlan":
		return "vxlan.calico"
	case "ipip":
		return "tunl0"
	}
	return ""
}

// tunnelLines explain the current mode's tunnels under the map.
func tunnelLines(st *Styles, s *Snapshot, reports map[string]NetworkReport, w int) []string {
	nw := s.Network
	where := "between every pair of nodes"
	if nw.CrossSubnet {
		where = "only between nodes in different subnets (plain routes within one)"
	}
	var out []string
	switch nw.Mode {
	case "vxlan":
		fdb := 0
		for _, r := range reports {
			fdb += len(r.FDB)
		}
		out = append(out, st.Tunnel.Render("◆ VXLAN")+": every node is a VTEP (vxlan.calico, VNI 4096, UDP 4789);",
			"  frames to another node's block go in UDP "+where+";",
			fmt.Sprintf("  the FDBs map each VTEP's MAC to its node's underlay IP (%d entries)", fdb))
	case "ipip":
		out = append(out, st.Tunnel.Render("◆ IPIP")+": packets to another node's block are wrapped in an outer IPv4",
			"  header (protocol 4) by tunl0 "+where+"; +20 bytes a packet")
	case "bgp":
		est, total := 0, 0
		for _, r := range reports {
			if r.BGP == nil {
				continue
			}
			for _, ss := range r.BGP.Sessions {
				total++
				if ss.State == "Established" {
					est++
				}
			}
		}
		sessions := "BGP full mesh"
		if total > 0 {
			sessions = fmt.Sprintf("BGP full mesh: %d of %d sessions Established", est, total)
		}
		out = append(out, st.Tunnel.Render("⇄ "+sessions)+";",
			"  every node learns the others' blocks with their underlay IP as next hop:",
			"  no tunnel, no encapsulation (the underlay must route pod addresses)")
	default:
		out = append(out, st.Dim.Render("the network mode is not known yet"))
	}
	for i := range out {
		out[i] = cut(out[i], w)
	}
	return out
}
