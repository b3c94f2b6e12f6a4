package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
)

type netMode int

const (
	netBrowse netMode = iota
	netPick
	netConfirm
	netSwitching
	netResult
)

// modeChoices are what the mode picker offers.
var modeChoices = []SwitchRequest{
	{Mode: "bgp"}, {Mode: "vxlan"}, {Mode: "ipip"},
	{Mode: "vxlan", CrossSubnet: true}, {Mode: "ipip", CrossSubnet: true},
}

// modeAbout says in one line what a mode does.
var modeAbout = map[string]string{
	"bgp":                "plain routes to every node's block, learned over BGP; no encapsulation",
	"vxlan":              "each node a VTEP: frames in UDP 4789, VNI 4096, FDB per node; +50 bytes",
	"ipip":               "IPv4 in IPv4 (protocol 4) through tunl0; +20 bytes",
	"vxlan cross-subnet": "VXLAN only to nodes in another subnet, plain routes within one",
	"ipip cross-subnet":  "IPIP only to nodes in another subnet, plain routes within one",
}

// network is the Network view: the mode, every node's devices, routes,
// FDB and BGP sessions, and the mode switch.
type network struct {
	common
	mode    netMode
	reports map[string]NetworkReport
	loading bool
	// seen is the network status the reports were fetched for.
	seen   string
	node   int // the node whose details show
	scroll scroller

	pick    int
	req     SwitchRequest
	from    string
	spin    spinner.Model
	result  *SwitchResult
	failure string
}

func newNetwork(e *env) *network {
	sp := spinner.New(spinner.WithSpinner(spinner.MiniDot))
	return &network{common: common{env: e}, spin: sp, reports: map[string]NetworkReport{}}
}

func (n *network) SetSize(w, h int) {
	n.common.SetSize(w, h)
	n.scroll.setHeight(max(1, h-n.headerHeight()))
	n.refreshLines()
}

func (n *network) Capturing() bool { return n.mode == netPick || n.mode == netConfirm }

// nodeNames are the nodes that take part in the pod network.
func (n *network) nodeNames() []string {
	if n.snap == nil {
		return nil
	}
	var out []string
	for _, nd := range n.snap.Nodes {
		if nd.Role != "router" {
			out = append(out, nd.Name)
		}
	}
	return out
}

// statusKey sums up the network status: when it changes, the reports are
// fetched again (a switch finished, a node came or went).
func statusKey(s *Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d", s.Network.Spec(), s.Network.Generation)
	for _, st := range s.Network.Nodes {
		fmt.Fprintf(&b, " %s:%s:%d:%t", st.Node, st.Mode, st.ObservedGeneration, st.Converged)
	}
	for _, nd := range s.Nodes {
		fmt.Fprintf(&b, " %s:%t", nd.Name, nd.Ready)
	}
	return b.String()
}

func (n *network) fetch() tea.Cmd {
	n.loading = true
	ctx, c := n.ctx, n.cluster
	return func() tea.Msg {
		reps, err := c.Reports(ctx)
		if reps == nil && err != nil {
			return errMsg(ctx, "network reports", err)
		}
		return reportsMsg{reports: reps}
	}
}

func (n *network) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		var cmd tea.Cmd
		if k := statusKey(msg.snap); k != n.seen && n.mode != netSwitching {
			n.seen = k
			cmd = n.fetch()
		}
		n.refreshLines()
		return n, cmd
	case reportsMsg:
		n.loading = false
		n.reports = map[string]NetworkReport{}
		for _, r := range msg.reports {
			n.reports[r.Node] = r
		}
		n.refreshLines()
	case switchDoneMsg:
		n.mode, n.result, n.failure = netResult, msg.res, ""
		if msg.err != nil {
			n.failure = msg.err.Error()
		}
		n.refreshLines()
		n.seen = ""
		return n, n.fetch()
	case ErrMsg:
		if msg.Op == "network reports" {
			n.loading = false
		}
	case spinner.TickMsg:
		if n.mode == netSwitching {
			var cmd tea.Cmd
			n.spin, cmd = n.spin.Update(msg)
			return n, cmd
		}
	case tea.KeyMsg:
		return n.key(msg)
	}
	return n, nil
}

func (n *network) key(msg tea.KeyMsg) (page, tea.Cmd) {
	k := n.keys
	switch n.mode {
	case netPick:
		switch {
		case key.Matches(msg, k.Up):
			n.pick = (n.pick + len(modeChoices) - 1) % len(modeChoices)
		case key.Matches(msg, k.Down):
			n.pick = (n.pick + 1) % len(modeChoices)
		case key.Matches(msg, k.Enter):
			n.req = modeChoices[n.pick]
			n.mode = netConfirm
		case key.Matches(msg, k.Back), msg.String() == "q", key.Matches(msg, k.Mode):
			n.mode = netBrowse
		}
		return n, nil
	case netConfirm:
		switch {
		case key.Matches(msg, k.Yes):
			return n, n.startSwitch()
		case key.Matches(msg, k.No), msg.String() == "q":
			n.mode = netBrowse
		}
		return n, nil
	case netSwitching:
		return n, nil
	case netResult:
		if key.Matches(msg, k.Back) || key.Matches(msg, k.Enter) {
			n.mode, n.result = netBrowse, nil
			n.refreshLines()
			return n, nil
		}
		n.scroll.navigate(k, msg)
		return n, nil
	}
	names := n.nodeNames()
	switch {
	case key.Matches(msg, k.Mode):
		if n.snap == nil {
			return n, nil
		}
		n.mode, n.pick = netPick, 0
		for i, c := range modeChoices {
			if c.Mode == n.snap.Network.Mode && c.CrossSubnet == n.snap.Network.CrossSubnet {
				n.pick = i
			}
		}
	case key.Matches(msg, k.Left) && len(names) > 0:
		n.node = (n.node + len(names) - 1) % len(names)
		n.scroll.offset = 0
		n.refreshLines()
	case key.Matches(msg, k.Right) && len(names) > 0:
		n.node = (n.node + 1) % len(names)
		n.scroll.offset = 0
		n.refreshLines()
	case key.Matches(msg, k.Refresh):
		return n, n.fetch()
	default:
		n.scroll.navigate(k, msg)
	}
	return n, nil
}

func (n *network) startSwitch() tea.Cmd {
	n.mode, n.result, n.failure = netSwitching, nil, ""
	n.from = n.snap.Network.Spec()
	n.refreshLines()
	ctx, c, req := n.ctx, n.cluster, n.req
	return tea.Batch(n.spin.Tick, func() tea.Msg {
		res, err := c.SwitchMode(ctx, req)
		if ctx.Err() != nil {
			return nil
		}
		return switchDoneMsg{req: req, res: res, err: err}
	})
}

// headerHeight is the lines above the scrolled part.
func (n *network) headerHeight() int { return 3 }

// refreshLines redraws the scrolled part.
func (n *network) refreshLines() {
	if n.snap == nil {
		return
	}
	switch n.mode {
	case netResult:
		n.scroll.set(n.resultLines())
	default:
		n.scroll.set(n.nodeLines())
	}
}

func (n *network) View() string {
	st := n.styles
	if n.snap == nil {
		return "\n  waiting for the cluster's state …"
	}
	nw := n.snap.Network
	head := fmt.Sprintf("%s %s   %s   %s   %s",
		st.Dim.Render("mode"), st.Bold.Render(nw.Spec()),
		st.Dim.Render(fmt.Sprintf("generation %d", nw.Generation)), st.Dim.Render(fmt.Sprintf("pod MTU %d", nw.MTU)), st.Dim.Render("pods "+nw.PodCIDR))
	chips := n.chips()
	var body []string
	switch n.mode {
	case netPick:
		body = n.pickLines()
	case netConfirm:
		body = n.confirmLines()
	case netSwitching:
		body = n.progressLines()
	default:
		body = n.scroll.view()
	}
	return strings.Join(append([]string{head, chips, n.selector()}, body...), "\n")
}

// chips are every node's state in the mode: ✓ converged, ⋯ switching.
func (n *network) chips() string {
	st := n.styles
	nw := n.snap.Network
	var parts []string
	for _, s := range nw.Nodes {
		mark := st.OK.Render("✓")
		if !s.Converged || s.ObservedGeneration < nw.Generation || s.Mode != nw.Mode {
			mark = st.Warn.Render("⋯")
		}
		parts = append(parts, mark+" "+s.Node+" "+st.Dim.Render(s.Implementation))
	}
	if len(parts) == 0 {
		return st.Dim.Render("no node reports its network yet")
	}
	return cut(strings.Join(parts, "  "), n.width)
}

// selector shows which node's details are below.
func (n *network) selector() string {
	st := n.styles
	names := n.nodeNames()
	if len(names) == 0 || n.mode == netPick || n.mode == netConfirm || n.mode == netSwitching || n.mode == netResult {
		return st.Dim.Render(strings.Repeat("─", n.width))
	}
	sel := min(n.node, len(names)-1)
	var parts []string
	for i, nm := range names {
		if i == sel {
			if st.Plain {
				nm = "[" + nm + "]"
			} else {
				nm = st.TabActive.Render(" " + nm + " ")
			}
		} else {
			nm = st.Dim.Render(nm)
		}
		parts = append(parts, nm)
	}
	s := "← " + strings.Join(parts, " ") + " →"
	if n.loading {
		s += st.Dim.Render("  asking the agents …")
	}
	return cut(s, n.width)
}

// nodeLines are the selected node's routes, devices, FDB, neighbours and
// BGP sessions.
func (n *network) nodeLines() []string {
	st := n.styles
	names := n.nodeNames()
	if len(names) == 0 {
		return nil
	}
	name := names[min(n.node, len(names)-1)]
	r, ok := n.reports[name]
	if !ok {
		if n.loading {
			return []string{st.Dim.Render("asking " + name + "'s agent …")}
		}
		return []string{st.Dim.Render("no report from " + name + "'s agent (r asks again)")}
	}
	if r.Err != "" {
		return []string{st.Bad.Render(name + "'s agent did not answer: " + r.Err)}
	}
	var out []string
	title := func(s string) { out = append(out, st.Header.Render(s)) }
	out = append(out, fmt.Sprintf("%s runs %s (%s)", st.Bold.Render(r.Node), st.Bold.Render(dash(r.Mode)), dash(r.Implementation)))

	title("ROUTES")
	rt := table{static: true, cols: []column{{title: "DESTINATION"}, {title: "VIA"}, {title: "DEVICE", flex: true}, {title: "PROTO"}, {title: "FLAGS", flex: true}}}
	var rows [][]string
	for _, ro := range r.Routes {
		var flags []string
		if ro.OnLink {
			flags = append(flags, "onlink")
		}
		if ro.Scope != "" {
			flags = append(flags, "scope "+ro.Scope)
		}
		rows = append(rows, []string{ro.Dst, ro.Via, ro.Dev, ro.Proto, strings.Join(flags, " ")})
	}
	rt.style = func(_, col int, cell string) string {
		switch {
		case col == 3 && cell == "klab":
			return st.Accent.Render(cell)
		case col == 2 && isTunnel(cell):
			return st.Tunnel.Render(cell)
		}
		return cell
	}
	rt.setSize(n.width, len(rows)+1)
	rt.setRows(rows)
	out = append(out, rt.view(st)...)

	title("DEVICES")
	for _, d := range r.Devices {
		kind := d.Kind
		if d.VNI != 0 {
			kind = fmt.Sprintf("vxlan VNI %d port %d local %s", d.VNI, d.Port, d.Local)
		}
		state := ""
		if !d.Up {
			state = st.Bad.Render(" down")
		}
		name := d.Name
		if isTunnel(d.Name) {
			name = st.Tunnel.Render(fit(d.Name, 16))
		} else {
			name = fit(name, 16)
		}
		out = append(out, cut(fmt.Sprintf("  %s %s mtu %d %s %s%s", name, kind, d.MTU, st.Dim.Render(d.MAC), strings.Join(d.Addrs, " "), state), n.width))
	}
	if len(r.FDB) > 0 {
		title("FDB (VXLAN: VTEP MAC → node)")
		for _, f := range r.FDB {
			out = append(out, fmt.Sprintf("  %s → %s  dev %s", f.MAC, f.Dst, f.Dev))
		}
	}
	if len(r.Neighbors) > 0 {
		title("NEIGHBOURS")
		for _, nb := range r.Neighbors {
			out = append(out, fmt.Sprintf("  %-15s %s  dev %s  %s", nb.IP, nb.MAC, nb.Dev, st.Dim.Render(nb.State)))
		}
	}
	if r.BGP != nil {
		title(fmt.Sprintf("BGP  AS %d  router id %s", r.BGP.AS, r.BGP.RouterID))
		for _, s := range r.BGP.Sessions {
			up := ""
			if s.Uptime > 0 {
				up = "up " + dur(s.Uptime)
			}
			out = append(out, fmt.Sprintf("  %-8s %-15s AS %d  %s  %s  ↓%d ↑%d", s.Peer, s.Address, s.AS, st.state(s.State), st.Dim.Render(up), s.Received, s.Advertised))
		}
		for _, rt := range r.BGP.Routes {
			out = append(out, st.Dim.Render(fmt.Sprintf("  learned %s via %s from %s", rt.Prefix, rt.NextHop, rt.From)))
		}
	} else {
		out = append(out, st.Dim.Render("no BGP speaker on this node"))
	}
	return out
}

func isTunnel(dev string) bool { return dev == "vxlan.calico" || dev == "tunl0" }

func (n *network) pickLines() []string {
	st := n.styles
	out := []string{st.Title.Render("switch the pod network to:"), ""}
	for i, c := range modeChoices {
		cur := c.Mode == n.snap.Network.Mode && c.CrossSubnet == n.snap.Network.CrossSubnet
		label := fit(c.String(), 20)
		if cur {
			label = fit(c.String()+" (now)", 20)
		}
		line := label + "  " + st.Dim.Render(modeAbout[c.String()])
		if i == n.pick {
			line = st.Selected.Render(fit("▸ "+label+"  "+modeAbout[c.String()], n.width))
		} else {
			line = "  " + line
		}
		out = append(out, cut(line, n.width))
	}
	return append(out, "", st.Dim.Render("↑/↓ choose · enter confirm · esc cancel"))
}

func (n *network) confirmLines() []string {
	st := n.styles
	from := n.snap.Network.Spec()
	nodes := len(n.snap.Network.Nodes)
	out := []string{
		st.Title.Render(fmt.Sprintf("switch %s → %s on %d nodes?", from, n.req.String(), nodes)), "",
		"Every node's agent removes what " + from + " made (devices, routes, FDB) and",
		"adds what " + n.req.String() + " needs; pods keep their IPs. When a node does not",
		"converge within 30s, the previous mode is put back.", "",
		st.Key.Render("y") + " switch   " + st.Key.Render("n") + " cancel",
	}
	if from == n.req.String() {
		out[0] = st.Title.Render("the network already runs " + from + ": apply it again?")
	}
	return out
}

// progressLines show each node going through the switch, from the
// ClusterNetwork status as the watch delivers it.
func (n *network) progressLines() []string {
	st := n.styles
	nw := n.snap.Network
	out := []string{st.Title.Render(fmt.Sprintf("%s switching %s → %s", n.spin.View(), n.from, n.req.String())), ""}
	for _, name := range n.nodeNames() {
		s, ok := nw.Node(name)
		done := ok && nw.Mode == n.req.Mode && nw.CrossSubnet == n.req.CrossSubnet &&
			s.Mode == n.req.Mode && s.Converged && s.ObservedGeneration >= nw.Generation
		line := "  " + fit(name, 10) + " "
		switch {
		case done:
			line += st.OK.Render("✓ "+s.Mode) + " " + st.Dim.Render(s.Implementation+" in "+dur(s.Took))
		case ok && s.Message != "":
			line += st.Warn.Render("⋯ "+s.Mode) + " " + st.Dim.Render(s.Message)
		default:
			line += st.Warn.Render("⋯ waiting for the agent")
		}
		out = append(out, cut(line, n.width))
	}
	return out
}

// resultLines are what each node removed and added.
func (n *network) resultLines() []string {
	st := n.styles
	var out []string
	res := n.result
	if n.failure != "" {
		out = append(out, st.Bad.Render("✗ "+n.failure))
	}
	if res == nil {
		return append(out, "", st.Dim.Render("esc back"))
	}
	out = append(out, st.Title.Render(fmt.Sprintf("%s → %s on %d nodes in %s", res.From, res.To, len(res.Nodes), dur(res.Took)))+st.Dim.Render("  esc back"))
	for _, nd := range res.Nodes {
		mark := st.check(nd.Converged)
		line := fmt.Sprintf("%s %s  %s %s", mark, st.Bold.Render(nd.Node), nd.Implementation, st.Dim.Render(dur(nd.Took)))
		if nd.Message != "" {
			line += "  " + st.Warn.Render(nd.Message)
		}
		out = append(out, line)
		for _, r := range nd.Removed {
			out = append(out, cut("    "+st.Removed.Render("- "+r), n.width))
		}
		for _, a := range nd.Added {
			out = append(out, cut("    "+st.Added.Render("+ "+a), n.width))
		}
		if len(nd.Removed)+len(nd.Added) == 0 {
			out = append(out, st.Dim.Render("    nothing changed"))
		}
	}
	return out
}

func (n *network) ShortHelp() []key.Binding {
	k := n.keys
	switch n.mode {
	case netPick:
		return []key.Binding{k.Up, k.Down, key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "choose")), k.Back}
	case netConfirm:
		return []key.Binding{k.Yes, k.No}
	case netSwitching:
		return nil
	case netResult:
		return []key.Binding{k.Back, k.Down}
	}
	return []key.Binding{k.Mode, key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "node")), k.Down, k.Refresh}
}

func (n *network) FullHelp() [][]key.Binding {
	k := n.keys
	return [][]key.Binding{
		{k.Mode, k.Left, k.Right, k.Refresh},
		{k.Up, k.Down, k.PgUp, k.PgDown, k.Top, k.Bottom},
	}
}
