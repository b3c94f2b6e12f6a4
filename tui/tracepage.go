package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

type traceStage int

const (
	tracePick traceStage = iota
	traceRunning
	traceShow
)

// tracePage picks two pods, traces a packet between them and animates it
// hop by hop over the nodes it crosses, with the headers of the selected
// hop.
type tracePage struct {
	common
	lang  string
	step  time.Duration
	stage traceStage

	field   int // 0: from, 1: to
	inputs  [2]input
	focused bool
	chosen  [2]string // namespace/name
	cands   []*Pod
	cursor  int

	req     TraceRequest
	res     *TraceResult
	failure string
	spin    spinner.Model
	hop     int
	animID  int
	details bool
	detail  scroller
}

func newTracePage(e *env, lang string, step time.Duration) *tracePage {
	t := &tracePage{common: common{env: e}, lang: lang, step: step, spin: spinner.New(spinner.WithSpinner(spinner.MiniDot))}
	for i, p := range []string{"from ", "to   "} {
		t.inputs[i] = input{prompt: p, placeholder: "type to search pods (name, node, IP)", limit: 64}
	}
	return t
}

func (t *tracePage) SetSize(w, h int) {
	t.common.SetSize(w, h)
	t.detail.setHeight(h - 1)
}

func (t *tracePage) Capturing() bool { return t.focused }

// search recomputes the candidates of the focused field: pods matching the
// input, best first; for "to", pods on another node than "from" first.
func (t *tracePage) search() {
	if t.snap == nil {
		return
	}
	pods := t.snap.Pods
	cands := make([]string, len(pods))
	for i := range pods {
		p := &pods[i]
		cands[i] = p.Namespace + "/" + p.Name + " " + p.IP + " " + p.Node
	}
	idx := fuzzyFilter(t.inputs[t.field].Value(), cands)
	srcNode := ""
	if t.field == 1 {
		if src := t.podByRef(t.chosen[0]); src != nil {
			srcNode = src.Node
		}
	}
	t.cands = t.cands[:0]
	for _, i := range idx {
		t.cands = append(t.cands, &pods[i])
	}
	if srcNode != "" {
		slices.SortStableFunc(t.cands, func(a, b *Pod) int {
			ao, bo := a.Node != srcNode, b.Node != srcNode
			switch {
			case ao == bo:
				return 0
			case ao:
				return -1
			}
			return 1
		})
	}
	t.cursor = max(0, min(t.cursor, len(t.cands)-1))
}

func (t *tracePage) podByRef(ref string) *Pod {
	if t.snap == nil {
		return nil
	}
	for i := range t.snap.Pods {
		p := &t.snap.Pods[i]
		if p.Namespace+"/"+p.Name == ref {
			return p
		}
	}
	return nil
}

func (t *tracePage) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		t.search()
	case traceDoneMsg:
		if msg.req != t.req || t.stage != traceRunning {
			return t, nil
		}
		t.stage, t.res, t.hop, t.details = traceShow, msg.res, 0, false
		return t, t.animate()
	case ErrMsg:
		if msg.Op == "trace" && t.stage == traceRunning {
			t.stage, t.failure = tracePick, msg.Err.Error()
		}
	case tickMsg:
		if msg.id != t.animID || t.res == nil {
			return t, nil
		}
		if t.hop < len(t.res.Hops)-1 {
			t.hop++
		}
		if t.hop >= len(t.res.Hops)-1 {
			t.animID = 0
			return t, nil
		}
		return t, tick(t.animID, t.step)
	case spinner.TickMsg:
		if t.stage == traceRunning {
			var cmd tea.Cmd
			t.spin, cmd = t.spin.Update(msg)
			return t, cmd
		}
	case tea.KeyMsg:
		return t.key(msg)
	}
	return t, nil
}

// animate starts the packet at the first hop.
func (t *tracePage) animate() tea.Cmd {
	t.hop = 0
	if t.res == nil || len(t.res.Hops) < 2 {
		t.animID = 0
		return nil
	}
	t.animID = newID()
	return tick(t.animID, t.step)
}

func (t *tracePage) run() tea.Cmd {
	t.req = TraceRequest{Src: t.chosen[0], Dst: t.chosen[1], Proto: "icmp", Lang: t.lang}
	t.stage, t.res, t.animID, t.failure = traceRunning, nil, 0, ""
	ctx, c, req := t.ctx, t.cluster, t.req
	return tea.Batch(t.spin.Tick, func() tea.Msg {
		res, err := c.Trace(ctx, req)
		if err != nil {
			return errMsg(ctx, "trace", err)
		}
		return traceDoneMsg{req: req, res: res}
	})
}

func (t *tracePage) focus(field int) tea.Cmd {
	t.inputs[1-field].Blur()
	t.inputs[field].Focus()
	t.field, t.focused, t.cursor = field, true, 0
	t.search()
	return nil
}

func (t *tracePage) key(msg tea.KeyMsg) (page, tea.Cmd) {
	k := t.keys
	if t.focused {
		switch msg.String() {
		case "esc":
			if t.inputs[t.field].Value() != "" {
				t.inputs[t.field].SetValue("")
				t.search()
				return t, nil
			}
			t.focused = false
			t.inputs[t.field].Blur()
			return t, nil
		case "up", "ctrl+p":
			t.cursor = max(0, t.cursor-1)
			return t, nil
		case "down", "ctrl+n":
			t.cursor = min(len(t.cands)-1, t.cursor+1)
			return t, nil
		case "tab":
			return t, t.focus(1 - t.field)
		case "enter":
			if t.cursor >= len(t.cands) || len(t.cands) == 0 {
				return t, nil
			}
			p := t.cands[t.cursor]
			t.chosen[t.field] = p.Namespace + "/" + p.Name
			t.inputs[t.field].SetValue(t.chosen[t.field])
			if t.field == 0 {
				t.inputs[1].SetValue("")
				return t, t.focus(1)
			}
			t.focused = false
			t.inputs[1].Blur()
			if t.chosen[0] != "" {
				return t, t.run()
			}
			return t, t.focus(0)
		}
		if t.inputs[t.field].Update(msg) {
			t.cursor = 0
			t.search()
		}
		return t, nil
	}

	switch t.stage {
	case tracePick:
		switch {
		case key.Matches(msg, k.Enter), key.Matches(msg, k.Filter):
			if t.chosen[0] != "" && t.chosen[1] != "" && key.Matches(msg, k.Enter) {
				return t, t.run()
			}
			f := 0
			if t.chosen[0] != "" {
				f = 1
			}
			return t, t.focus(f)
		case key.Matches(msg, k.Back) && t.res != nil:
			t.stage = traceShow
		}
	case traceShow:
		if t.details {
			if key.Matches(msg, k.Back) || key.Matches(msg, k.Enter) {
				t.details = false
				return t, nil
			}
			t.detail.navigate(k, msg)
			return t, nil
		}
		switch {
		case key.Matches(msg, k.Left):
			t.animID = 0
			t.hop = max(0, t.hop-1)
		case key.Matches(msg, k.Right):
			t.animID = 0
			t.hop = min(len(t.res.Hops)-1, t.hop+1)
		case key.Matches(msg, k.Top):
			t.animID, t.hop = 0, 0
		case key.Matches(msg, k.Bottom):
			t.animID, t.hop = 0, max(0, len(t.res.Hops)-1)
		case key.Matches(msg, k.Replay):
			return t, t.animate()
		case key.Matches(msg, k.Enter):
			t.details = true
			t.detail.offset = 0
			t.detail.set(t.hopDetails(t.width))
		case key.Matches(msg, k.Refresh):
			return t, t.run()
		case key.Matches(msg, k.New), key.Matches(msg, k.Filter):
			t.stage = tracePick
			return t, t.focus(0)
		}
	}
	return t, nil
}

func (t *tracePage) View() string {
	st := t.styles
	switch {
	case t.stage == traceRunning:
		return fmt.Sprintf("%s tracing %s → %s …\n\n%s", t.spin.View(), t.req.Src, t.req.Dst,
			st.Dim.Render("  captures start on every interface of the path, then one probe is sent"))
	case t.stage == traceShow && t.details:
		return st.Title.Render(fmt.Sprintf("hop %d of %d", t.hop+1, len(t.res.Hops))) + st.Dim.Render("  esc back") + "\n" + strings.Join(t.detail.view(), "\n")
	case t.stage == traceShow:
		return t.resultView()
	}
	return t.pickView()
}

func (t *tracePage) pickView() string {
	st := t.styles
	out := []string{st.Title.Render("trace a packet from one pod to another"), ""}
	for i := range t.inputs {
		if t.focused && t.field == i {
			out = append(out, t.inputs[i].View(st, t.width))
			continue
		}
		v := t.chosen[i]
		label := []string{"from ", "to   "}[i]
		if v == "" {
			v = st.Dim.Render("—")
		} else if p := t.podByRef(v); p != nil {
			v = st.Bold.Render(v) + " " + st.Dim.Render(p.IP+" on "+p.Node)
		}
		out = append(out, label+v)
	}
	out = append(out, "")
	if !t.focused {
		hint := "enter or / to pick the pods"
		if t.chosen[0] != "" && t.chosen[1] != "" {
			hint = "enter traces · / picks again"
		}
		if t.res != nil {
			hint += " · esc shows the last trace"
		}
		out = append(out, st.Dim.Render(hint))
		if t.failure != "" {
			out = append(out, "")
			out = append(out, wrapStyle(st.Bad, "✗ the trace failed: "+t.failure, t.width, 2)...)
		}
		return strings.Join(out, "\n")
	}
	if t.snap == nil || len(t.snap.Pods) == 0 {
		out = append(out, st.Dim.Render("no pods in the cluster yet"))
		return strings.Join(out, "\n")
	}
	room := max(1, t.height-len(out))
	start := max(0, min(t.cursor-room+1, len(t.cands)-room))
	srcNode := ""
	if src := t.podByRef(t.chosen[0]); src != nil && t.field == 1 {
		srcNode = src.Node
	}
	for i := start; i < min(len(t.cands), start+room); i++ {
		p := t.cands[i]
		where := p.Node
		if srcNode != "" && p.Node != srcNode {
			where += " (another node)"
		}
		line := fmt.Sprintf("%s  %s  %s", p.Namespace+"/"+p.Name, dash(p.IP), where)
		if i == t.cursor {
			out = append(out, st.Selected.Render(fit("▸ "+line, t.width)))
		} else {
			out = append(out, "  "+line)
		}
	}
	if len(t.cands) == 0 {
		out = append(out, st.Dim.Render("  no pod matches"))
	}
	return strings.Join(out, "\n")
}

// resultView: the summary, the path drawn over the nodes, and the
// selected hop's headers.
func (t *tracePage) resultView() string {
	st := t.styles
	r := t.res
	out := wrapIndent(fmt.Sprintf("%s → %s  %s", r.Src, r.Dst, st.Dim.Render("mode "+r.Mode)), t.width, 2)
	n := len(r.Hops)
	if r.Delivered {
		sum := fmt.Sprintf("✓ delivered in %s · %d hops", usec(r.TUS), n)
		if r.Overhead > 0 {
			sum += fmt.Sprintf(" · encapsulation +%d bytes", r.Overhead)
		}
		out = append(out, st.OK.Render(sum))
	} else {
		lost := "✗ lost"
		if l := r.LostAt; l != nil && l.Node != "" {
			lost += fmt.Sprintf(" after hop %d (%s", l.Hop+1, l.Node)
			if l.Interface != "" {
				lost += " · " + l.Interface
			}
			lost += ")"
		}
		if r.Reason != "" {
			lost += ": " + r.Reason.String()
		}
		out = append(out, wrapStyle(st.Bad, lost, t.width, 2)...)
		if r.MissingRoute != "" {
			out = append(out, cut(st.Dim.Render("missing route: ")+r.MissingRoute, t.width))
		}
	}
	for _, note := range r.Notes {
		out = append(out, cut(st.Dim.Render("note: "+note), t.width))
	}
	if n == 0 {
		return strings.Join(append(out, "", st.Dim.Render("no hop saw the packet")), "\n")
	}
	out = append(out, drawPath(st, t.snap, r, t.hop, t.width)...)
	h := r.Hops[t.hop]
	when := "+" + usec(h.TUS)
	if !h.Seen {
		when = "not seen"
	}
	title := fmt.Sprintf("─ hop %d of %d · %s · %s ", t.hop+1, n, h.Where(), when)
	out = append(out, st.Bold.Render(cut(title, t.width))+st.Dim.Render(strings.Repeat("─", max(0, t.width-width(title)))))
	room := t.height - len(out)
	det := t.hopDetails(t.width)
	if len(det) > room && room > 0 {
		det = append(det[:room-1], st.Dim.Render("… enter shows all"))
	}
	return strings.Join(append(out, det...), "\n")
}

// hopDetails are the selected hop's lines: what changed, the route and
// FDB entry used, every header, the explanation.
func (t *tracePage) hopDetails(w int) []string {
	st := t.styles
	h := t.res.Hops[t.hop]
	var out []string
	if h.Change != "" {
		for i, l := range wrapIndent("Δ "+h.Change.String(), w, 2) {
			if i == 0 {
				l = st.Packet.Render("Δ") + strings.TrimPrefix(l, "Δ")
			}
			out = append(out, l)
		}
	}
	if h.Error != "" {
		out = append(out, wrapStyle(st.Bad, "capture: "+h.Error, w, 2)...)
	}
	if h.Route != "" {
		route := labelled("route", h.Route.String())
		if h.RouteOrigin != "" {
			route += st.Dim.Render("  (" + h.RouteOrigin + ")")
		}
		out = append(out, cut(st.Dim.Render("route ")+route, w))
	}
	if h.FDB != "" {
		out = append(out, cut(st.Dim.Render("fdb   ")+labelled("fdb", h.FDB.String()), w))
	}
	for _, l := range h.Layers {
		var f []string
		for _, kv := range l.Fields {
			switch kv.Value {
			case "true": // a flag: its name says it
				f = append(f, kv.Key)
			case "false", "":
			default:
				f = append(f, st.Dim.Render(kv.Key)+" "+kv.Value)
			}
		}
		out = append(out, wrapIndent(st.Accent.Render(fit(l.Type, 9))+" "+strings.Join(f, "  "), w, 10)...)
	}
	if h.Explain != "" {
		out = append(out, wrapStyle(st.Dim, h.Explain.String(), w, 0)...)
	}
	return out
}

// labelled drops a label the value already starts with ("fdb 66:… dst …").
func labelled(label, v string) string { return strings.TrimPrefix(v, label+" ") }

// usec prints microseconds.
func usec(us int64) string {
	if us < 1000 {
		return strconv.FormatInt(us, 10) + "µs"
	}
	return dur(time.Duration(us) * time.Microsecond)
}

func (t *tracePage) ShortHelp() []key.Binding {
	k := t.keys
	if t.focused {
		return []key.Binding{
			key.NewBinding(key.WithKeys("up", "down"), key.WithHelp("↑/↓", "choose")),
			key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "pick")),
			key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "from/to")),
			key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "done")),
		}
	}
	switch t.stage {
	case traceShow:
		if t.details {
			return []key.Binding{k.Back, k.Down}
		}
		return []key.Binding{key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "hop")), k.Enter, k.Replay, k.Refresh, k.New}
	case tracePick:
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "pick/trace")), key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "search"))}
	}
	return nil
}

func (t *tracePage) FullHelp() [][]key.Binding {
	k := t.keys
	return [][]key.Binding{
		{key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "pick the pods (type to search, tab from/to)")), key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "trace / hop details"))},
		{key.NewBinding(key.WithKeys("left", "right"), key.WithHelp("←/→", "previous/next hop")), k.Replay, k.Refresh, k.New},
	}
}

// wrapStyle wraps plain text and styles each line.
func wrapStyle(style lipgloss.Style, s string, w, indent int) []string {
	lines := wrapIndent(s, w, indent)
	for i, l := range lines {
		lines[i] = style.Render(l)
	}
	return lines
}

// wrap breaks s into lines of w cells at spaces.
func wrap(s string, w int) []string { return wrapIndent(s, w, 0) }

// wrapIndent wraps s, indenting continuation lines by indent cells.
func wrapIndent(s string, w, indent int) []string {
	if width(s) <= w || w < indent+10 {
		return []string{cut(s, w)}
	}
	var out []string
	words := strings.Split(s, " ")
	cur := ""
	for _, word := range words {
		switch {
		case cur == "":
			cur = word
		case width(cur)+1+width(word) <= w:
			cur += " " + word
		default:
			out = append(out, cut(cur, w))
			cur = strings.Repeat(" ", indent) + word
		}
	}
	return append(out, cut(cur, w))
}
