package tui

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

type podsMode int

const (
	podsList podsMode = iota
	podsDetails
	podsLogs
	podsConfirm
)

// maxLogLines is how much of a followed log the view keeps.
const maxLogLines = 5000

// pods is the pods table: filter, details, logs, shell and delete.
type pods struct {
	common
	mode      podsMode
	table     table
	shown     []*Pod // the rows, after the filter
	filter    input
	filtering bool

	target PodRef // the pod of details, logs or the confirmation

	details     scroller
	describing  bool
	logs        scroller
	logLines    []string
	logID       int
	logCh       chan string
	logCancel   context.CancelFunc
	logEnded    string
	deleting    map[PodRef]bool
	lastDeleted string
}

func newPods(e *env) *pods {
	p := &pods{
		common:   common{env: e},
		filter:   input{prompt: "/", placeholder: "filter: name, namespace, node, IP or status", limit: 64},
		details:  scroller{},
		logs:     scroller{tail: true},
		deleting: map[PodRef]bool{},
		table: table{cols: []column{
			{title: "NAMESPACE", flex: true, max: 16}, {title: "NAME", flex: true}, {title: "READY"},
			{title: "STATUS", max: 18}, {title: "RESTARTS", right: true}, {title: "IP"}, {title: "NODE", max: 12},
			{title: "AGE", right: true},
		}},
	}
	p.table.style = func(_, col int, cell string) string {
		if col == 3 {
			return p.styles.state(cell)
		}
		return cell
	}
	return p
}

func (p *pods) SetSize(w, h int) {
	p.common.SetSize(w, h)
	p.table.setSize(w, h-1)
	p.details.setHeight(h - 1)
	p.logs.setHeight(h - 1)
}

func (p *pods) Capturing() bool { return p.filtering || p.mode == podsConfirm }

// selected is the pod under the cursor.
func (p *pods) selected() *Pod {
	if p.table.cursor < 0 || p.table.cursor >= len(p.shown) {
		return nil
	}
	return p.shown[p.table.cursor]
}

// rebuild applies the filter to the snapshot's pods, keeping the cursor on
// the pod it was on.
func (p *pods) rebuild() {
	if p.snap == nil {
		return
	}
	var keep PodRef
	if s := p.selected(); s != nil {
		keep = s.Ref()
	}
	all := p.snap.Pods
	idx := make([]int, len(all))
	for i := range all {
		idx[i] = i
	}
	if terms := strings.Fields(strings.ToLower(p.filter.Value())); len(terms) > 0 {
		// Every term must be in the pod's namespace/name, node, IP or status.
		idx = idx[:0]
		for i := range all {
			pd := &all[i]
			row := strings.ToLower(pd.Namespace + "/" + pd.Name + " " + pd.Node + " " + pd.IP + " " + pd.Status)
			if !slices.ContainsFunc(terms, func(t string) bool { return !strings.Contains(row, t) }) {
				idx = append(idx, i)
			}
		}
	}
	p.shown = p.shown[:0]
	rows := make([][]string, 0, len(idx))
	now := p.now()
	for _, i := range idx {
		pd := &all[i]
		p.shown = append(p.shown, pd)
		status := pd.Status
		if p.deleting[pd.Ref()] && status != "Terminating" {
			status = "Deleting"
		}
		rows = append(rows, []string{pd.Namespace, pd.Name, fmt.Sprintf("%d/%d", pd.Ready, pd.Total), status,
			strconv.Itoa(pd.Restarts), dash(pd.IP), dash(pd.Node), age(now, pd.Created)})
	}
	p.table.setRows(rows)
	if keep.Name != "" {
		for i, pd := range p.shown {
			if pd.Namespace == keep.Namespace && pd.Name == keep.Name {
				p.table.cursor = i
				p.table.clamp()
				break
			}
		}
	}
}

func (p *pods) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		// Pods that are gone are no longer being deleted.
		for ref := range p.deleting {
			if !slices.ContainsFunc(msg.snap.Pods, func(pd Pod) bool { return pd.Ref() == ref }) {
				delete(p.deleting, ref)
			}
		}
		p.rebuild()
	case describeMsg:
		if msg.ref == p.target && p.mode == podsDetails {
			p.describing = false
			p.details.set(strings.Split(strings.TrimRight(msg.text, "\n"), "\n"))
		}
	case logLinesMsg:
		if msg.id != p.logID {
			return p, nil
		}
		p.logLines = append(p.logLines, msg.lines...)
		if n := len(p.logLines); n > maxLogLines {
			p.logLines = slices.Clone(p.logLines[n-maxLogLines:])
		}
		p.logs.set(p.logLines)
		return p, p.receiveLogs()
	case logEndedMsg:
		if msg.id == p.logID {
			p.logEnded = "the log ended"
			if msg.err != nil {
				p.logEnded = "the log ended: " + msg.err.Error()
			}
		}
	case deletedMsg:
		p.lastDeleted = msg.ref.String()
	case ErrMsg:
		if strings.HasPrefix(msg.Op, "describe ") && p.mode == podsDetails {
			p.describing = false
		}
		if ref, ok := strings.CutPrefix(msg.Op, "delete pod "); ok {
			for r := range p.deleting {
				if r.String() == ref {
					delete(p.deleting, r)
				}
			}
			p.rebuild()
		}
	case tea.KeyMsg:
		return p.key(msg)
	}
	return p, nil
}

func (p *pods) key(msg tea.KeyMsg) (page, tea.Cmd) {
	k := p.keys
	switch p.mode {
	case podsConfirm:
		switch {
		case key.Matches(msg, k.Yes):
			p.mode = podsList
			p.deleting[p.target] = true
			p.rebuild()
			ctx, c, ref := p.ctx, p.cluster, p.target
			return p, func() tea.Msg {
				if err := c.DeletePod(ctx, ref); err != nil {
					return errMsg(ctx, "delete pod "+ref.String(), err)
				}
				return deletedMsg{ref}
			}
		case key.Matches(msg, k.No):
			p.mode = podsList
		}
		return p, nil
	case podsDetails:
		if key.Matches(msg, k.Back) || key.Matches(msg, k.Enter) {
			p.mode = podsList
			return p, nil
		}
		p.details.navigate(k, msg)
		return p, nil
	case podsLogs:
		if key.Matches(msg, k.Back) || key.Matches(msg, k.Logs) {
			p.stopLogs()
			p.mode = podsList
			return p, nil
		}
		p.logs.navigate(k, msg)
		return p, nil
	}

	if p.filtering {
		switch msg.String() {
		case "esc":
			p.filtering = false
			p.filter.Blur()
			p.filter.SetValue("")
			p.rebuild()
			return p, nil
		case "enter", "down", "up":
			p.filtering = false
			p.filter.Blur()
			return p, nil
		}
		if p.filter.Update(msg) {
			p.rebuild()
		}
		return p, nil
	}

	if p.table.navigate(k, msg) {
		return p, nil
	}
	switch {
	case key.Matches(msg, k.Filter):
		p.filtering = true
		p.filter.Focus()
		return p, nil
	case key.Matches(msg, k.Back) && p.filter.Value() != "":
		p.filter.SetValue("")
		p.rebuild()
		return p, nil
	}
	sel := p.selected()
	if sel == nil {
		return p, nil
	}
	ref := sel.Ref()
	switch {
	case key.Matches(msg, k.Enter):
		p.mode, p.target, p.describing = podsDetails, ref, true
		p.details.offset = 0
		p.details.set(nil)
		ctx, c := p.ctx, p.cluster
		return p, func() tea.Msg {
			text, err := c.Describe(ctx, ref)
			if err != nil {
				return errMsg(ctx, "describe "+ref.String(), err)
			}
			return describeMsg{ref: ref, text: text}
		}
	case key.Matches(msg, k.Logs):
		p.mode, p.target = podsLogs, ref
		return p, p.startLogs(withContainer(ref, sel))
	case key.Matches(msg, k.Shell):
		cmd := p.cluster.Shell(withContainer(ref, sel))
		return p, tea.ExecProcess(cmd, func(err error) tea.Msg {
			if err != nil {
				return ErrMsg{Op: "shell in " + ref.String(), Err: err}
			}
			return shellDoneMsg{}
		})
	case key.Matches(msg, k.Delete):
		p.mode, p.target = podsConfirm, ref
	}
	return p, nil
}

// withContainer names the pod's first container: logs and shells go to it.
func withContainer(ref PodRef, p *Pod) PodRef {
	if len(p.Containers) > 0 {
		ref.Container = p.Containers[0]
	}
	return ref
}

// startLogs follows a pod's log; a new id makes lines of an older stream
// count for nothing.
func (p *pods) startLogs(ref PodRef) tea.Cmd {
	p.stopLogs()
	p.logID = newID()
	p.logLines, p.logEnded = nil, ""
	p.logs.offset = 0
	p.logs.set(nil)
	ctx, cancel := context.WithCancel(p.ctx)
	p.logCancel = cancel
	p.logCh = make(chan string, 256)
	id, ch, c := p.logID, p.logCh, p.cluster
	run := func() tea.Msg {
		err := c.Logs(ctx, ref, ch)
		close(ch)
		if ctx.Err() != nil {
			err = nil
		}
		return logEndedMsg{id: id, err: err}
	}
	return tea.Batch(run, p.receiveLogs())
}

func (p *pods) receiveLogs() tea.Cmd {
	id := p.logID
	return receive(p.logCh, func(lines []string) tea.Msg { return logLinesMsg{id: id, lines: lines} })
}

func (p *pods) stopLogs() {
	if p.logCancel != nil {
		p.logCancel()
		p.logCancel = nil
	}
}

func (p *pods) View() string {
	st := p.styles
	switch p.mode {
	case podsDetails:
		head := st.Title.Render("pod "+p.target.String()) + st.Dim.Render("  esc back")
		if p.describing {
			return head + "\n\n  describing …"
		}
		return head + "\n" + strings.Join(p.details.view(), "\n")
	case podsLogs:
		head := st.Title.Render("logs of "+p.target.String()) + st.Dim.Render("  following · esc back")
		lines := p.logs.view()
		if len(p.logLines) == 0 {
			lines = []string{st.Dim.Render("  waiting for the log …")}
		}
		if p.logEnded != "" {
			head = st.Title.Render("logs of "+p.target.String()) + "  " + st.Warn.Render(p.logEnded)
		}
		return head + "\n" + strings.Join(lines, "\n")
	}
	if p.snap == nil {
		return "\n  waiting for the cluster's state …"
	}
	var top string
	switch {
	case p.mode == podsConfirm:
		top = st.Warn.Render("delete pod "+p.target.String()+"?") + "  " + st.Key.Render("y") + " yes  " + st.Key.Render("n") + " no"
	case p.filtering:
		top = p.filter.View(st, p.width)
	case p.filter.Value() != "":
		top = fmt.Sprintf("%s %s  %s", st.Dim.Render("filter"), st.Input.Render(p.filter.Value()), st.Dim.Render(fmt.Sprintf("%d of %d pods · esc clears", len(p.shown), len(p.snap.Pods))))
	default:
		top = st.Dim.Render(fmt.Sprintf("%d pods", len(p.snap.Pods)))
		if p.lastDeleted != "" {
			top += st.Dim.Render(" · deleted " + p.lastDeleted)
		}
	}
	lines := append([]string{top}, p.table.view(st)...)
	switch {
	case len(p.shown) == 0 && p.filter.Value() != "":
		lines = append(lines, st.Dim.Render("  no pods match the filter"))
	case len(p.shown) == 0:
		lines = append(lines, st.Dim.Render("  no pods yet: klab apply -f FILE creates some"))
	}
	return strings.Join(lines, "\n")
}

func (p *pods) ShortHelp() []key.Binding {
	k := p.keys
	switch p.mode {
	case podsDetails, podsLogs:
		return []key.Binding{k.Back, k.Down, k.Bottom}
	case podsConfirm:
		return []key.Binding{k.Yes, k.No}
	}
	if p.filtering {
		return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "apply")), key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "clear"))}
	}
	return []key.Binding{k.Filter, k.Enter, k.Logs, k.Shell, k.Delete}
}

func (p *pods) FullHelp() [][]key.Binding {
	k := p.keys
	return [][]key.Binding{
		{k.Filter, k.Enter, k.Logs, k.Shell, k.Delete},
		{k.Up, k.Down, k.PgUp, k.PgDown, k.Top, k.Bottom},
	}
}
