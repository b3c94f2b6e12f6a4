// Package tui is klab's terminal UI: the cluster's nodes, pods and
// components, its network (mode, routes, FDB, BGP) and a drawn topology, a
// live feed of what the control plane does, packet traces animated hop by
// hop, and the labs. It talks to a cluster only through the Cluster
// interface; tui/live implements it for real clusters.
package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// Options tune the TUI.
type Options struct {
	// Renderer decides colours (nil: the terminal on stdout).
	Renderer *lipgloss.Renderer
	// Now is the clock (nil: time.Now); tests fix it.
	Now func() time.Time
	// Lang is the language of labs and traces: en or zh.
	Lang string
	// Step is how long the trace animation stays on a hop (0: 350ms).
	Step time.Duration
	// Start is the view to open (0: Overview).
	Start int
	// Location is the time zone of the times shown (nil: local).
	Location *time.Location
}

// The smallest terminal the TUI draws in.
const (
	minWidth  = 60
	minHeight = 16
)

type rootState int

const (
	stateLoading rootState = iota
	stateWelcome
	stateReady
)

// Model is the root model: the frame (title, tabs, footer), the views,
// and the streams from the cluster.
type Model struct {
	env    *env
	cancel context.CancelFunc
	opts   Options

	state   rootState
	pages   [len(pageNames)]page
	welcome *welcomePage
	active  int
	help    bool
	err     *ErrMsg
	// quitting: the user quit while a cluster was being created; the TUI
	// ends once the creation has undone what it made.
	quitting bool
	snaps    chan *Snapshot
	feed     chan FeedItem

	width, height int
}

// New makes the TUI for a cluster. ctx bounds every call it makes; the
// model cancels it when the user quits.
func New(ctx context.Context, c Cluster, o Options) *Model {
	if o.Renderer == nil {
		o.Renderer = lipgloss.DefaultRenderer()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Lang != "zh" {
		o.Lang = "en"
	}
	if o.Step == 0 {
		o.Step = 350 * time.Millisecond
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &env{ctx: ctx, cluster: c, styles: NewStyles(o.Renderer), keys: DefaultKeyMap(), now: o.Now, loc: o.Location}
	m := &Model{env: e, cancel: cancel, opts: o, active: max(0, min(o.Start, len(pageNames)-1))}
	m.pages = [...]page{
		newOverview(e),
		newPods(e),
		newNetwork(e),
		newTopology(e),
		newTracePage(e, o.Lang, o.Step),
		newControlPlane(e),
		newLabs(e, o.Lang),
	}
	m.welcome = newWelcome(e)
	return m
}

// Init implements tea.Model: it asks whether the cluster exists.
func (m *Model) Init() tea.Cmd {
	ctx, c := m.env.ctx, m.env.cluster
	return func() tea.Msg {
		p, err := c.Lookup(ctx)
		if err != nil {
			return errMsg(ctx, "look up cluster "+c.Name(), err)
		}
		return presenceMsg{p}
	}
}

// start opens the streams from a cluster that exists, and starts the views.
func (m *Model) start() tea.Cmd {
	m.state = stateReady
	ctx, c := m.env.ctx, m.env.cluster
	m.snaps = make(chan *Snapshot, 1)
	m.feed = make(chan FeedItem, 256)
	cmds := []tea.Cmd{
		stream(ctx, "watch the cluster", m.snaps, c.Watch),
		m.receiveSnapshots(),
		stream(ctx, "follow the control plane", m.feed, c.Feed),
		m.receiveFeed(),
	}
	for _, p := range m.pages {
		cmds = append(cmds, p.Init())
	}
	return tea.Batch(cmds...)
}

// Update implements tea.Model.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmds []tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		w, h := m.bodySize()
		for _, p := range m.pages {
			p.SetSize(w, h)
		}
		m.welcome.SetSize(w, h)
		return m, nil

	case tea.KeyMsg:
		return m.key(msg)

	case presenceMsg:
		if msg.p.Exists {
			return m, m.start()
		}
		m.state = stateWelcome
		m.welcome.presence = msg.p
		return m, nil

	case createDoneMsg:
		if m.quitting {
			return m, tea.Quit
		}
		if msg.err == nil {
			m.welcome.Update(msg)
			return m, m.start()
		}

	case snapshotMsg:
		m.env.snap = msg.snap
		cmds = append(cmds, m.receiveSnapshots())

	case feedMsg:
		cmds = append(cmds, m.receiveFeed())

	case ErrMsg:
		m.err = &msg
	}

	if m.state == stateWelcome {
		w, cmd := m.welcome.Update(msg)
		m.welcome = w.(*welcomePage)
		return m, tea.Batch(append(cmds, cmd)...)
	}
	for i, p := range m.pages {
		np, cmd := p.Update(msg)
		m.pages[i] = np
		cmds = append(cmds, cmd)
	}
	return m, tea.Batch(cmds...)
}

func (m *Model) key(msg tea.KeyMsg) (tea.Model, tea.Cmd) {
	k := m.env.keys
	if msg.String() == "ctrl+c" {
		return m.quit()
	}
	cur := m.current()
	if m.help {
		switch {
		case key.Matches(msg, k.Quit) && msg.String() == "q":
			return m.quit()
		default:
			m.help = false
		}
		return m, nil
	}
	if !cur.Capturing() {
		switch {
		case key.Matches(msg, k.Quit):
			return m.quit()
		case key.Matches(msg, k.Help):
			m.help = true
			return m, nil
		case key.Matches(msg, k.Back) && m.err != nil:
			m.err = nil
			return m, nil
		}
		if m.state == stateReady {
			switch {
			case key.Matches(msg, k.NextTab):
				m.active = (m.active + 1) % len(m.pages)
				return m, nil
			case key.Matches(msg, k.PrevTab):
				m.active = (m.active + len(m.pages) - 1) % len(m.pages)
				return m, nil
			}
			for i, b := range k.Tabs {
				if key.Matches(msg, b) {
					m.active = i
					return m, nil
				}
			}
		}
	}
	if m.state == stateWelcome {
		w, cmd := m.welcome.Update(msg)
		m.welcome = w.(*welcomePage)
		return m, cmd
	}
	if m.state != stateReady {
		return m, nil
	}
	p, cmd := cur.Update(msg)
	m.pages[m.active] = p
	return m, cmd
}

func (m *Model) quit() (tea.Model, tea.Cmd) {
	m.cancel()
	if m.state == stateWelcome && m.welcome.creating {
		m.quitting, m.welcome.stopping = true, true
		return m, nil
	}
	return m, tea.Quit
}

func (m *Model) current() page {
	if m.state == stateWelcome {
		return m.welcome
	}
	return m.pages[m.active]
}

// receiveSnapshots waits for the next snapshots; the last of a burst wins.
func (m *Model) receiveSnapshots() tea.Cmd {
	return receive(m.snaps, func(s []*Snapshot) tea.Msg { return snapshotMsg{s[len(s)-1]} })
}

// receiveFeed waits for the next feed items.
func (m *Model) receiveFeed() tea.Cmd {
	return receive(m.feed, func(items []FeedItem) tea.Msg { return feedMsg{items} })
}

// bodySize is the size inside the frame: a border and a margin on each
// side; the title, tabs and a rule above, a rule, the footer and the
// border below.
func (m *Model) bodySize() (int, int) { return max(0, m.width-4), max(0, m.height-6) }

// View implements tea.Model.
func (m *Model) View() string {
	if m.width == 0 {
		return ""
	}
	if m.width < minWidth || m.height < minHeight {
		return cut(fmt.Sprintf("terminal too small: %d×%d (need %d×%d)", m.width, m.height, minWidth, minHeight), m.width)
	}
	st := m.env.styles
	inner := m.width - 2
	bw, bh := m.bodySize()
	fr := st.Frame.Render
	var b strings.Builder
	b.Grow(m.width * m.height * 2)

	// Title line: ┌ klab ─ cluster X · netns · mode bgp ───── 1 Overview ─┐
	title := " " + st.Title.Render("klab") + " ─ " + m.subtitle() + " "
	right := ""
	if m.state == stateReady {
		right = fmt.Sprintf(" %d %s ", m.active+1, pageNames[m.active])
	}
	title = cut(title, inner-width(right)-2)
	fill := inner - width(title) - width(right) - 2
	b.WriteString(fr("┌─") + title + fr(strings.Repeat("─", max(0, fill))) + right + fr("─┐") + "\n")

	// Tabs.
	left, right := fr("│")+" ", " "+fr("│")+"\n"
	b.WriteString(left + fit(m.tabs(bw), bw) + right)
	b.WriteString(fr("├"+strings.Repeat("─", inner)+"┤") + "\n")

	// Body.
	var body string
	switch {
	case m.help:
		body = m.helpView(bw, bh)
	case m.state == stateWelcome:
		body = m.welcome.View()
	case m.state == stateLoading:
		body = "\n  looking for cluster " + m.env.cluster.Name() + " …"
	default:
		body = m.current().View()
	}
	for _, l := range block(strings.Split(body, "\n"), bw, bh) {
		b.WriteString(left)
		b.WriteString(l)
		b.WriteString(right)
	}

	// Error (if any) on the rule, the footer and the bottom border.
	if m.err != nil {
		e := " " + st.Bad.Render("✗ "+m.err.Error()) + " " + st.Dim.Render("(esc)") + " "
		e = cut(e, inner-1)
		b.WriteString(fr("├─") + e + fr(strings.Repeat("─", max(0, inner-1-width(e)))+"┤") + "\n")
	} else {
		b.WriteString(fr("├"+strings.Repeat("─", inner)+"┤") + "\n")
	}
	b.WriteString(left + fit(helpLine(st, m.footerKeys(), bw), bw) + right)
	b.WriteString(fr("└" + strings.Repeat("─", inner) + "┘"))
	return b.String()
}

// subtitle is the title line's text: the cluster, provider and mode.
func (m *Model) subtitle() string {
	name := m.env.cluster.Name()
	s := m.env.snap
	if m.state == stateWelcome || s == nil {
		return "cluster " + name
	}
	parts := []string{"cluster " + name, s.Cluster.Provider, "mode " + s.Network.Spec()}
	if s.Cluster.Phase != "" && s.Cluster.Phase != "ready" {
		parts = append(parts, s.Cluster.Phase)
	}
	return strings.Join(parts, " · ")
}

// tabs draws the tab bar; it abbreviates when the width is short.
func (m *Model) tabs(w int) string {
	st := m.env.styles
	if m.state != stateReady {
		return st.Dim.Render("no views yet: the cluster does not exist")
	}
	for _, short := range []bool{false, true} {
		for _, sep := range []string{"  ", " "} {
			var parts []string
			total := 0
			for i, n := range pageNames {
				if short {
					n = strings.Fields(n)[0]
				}
				label := fmt.Sprintf("%d %s", i+1, n)
				if i == m.active {
					if st.Plain {
						label = "[" + label + "]"
					} else {
						label = st.TabActive.Render(" " + label + " ")
					}
				} else {
					label = st.Tab.Render(label)
				}
				parts = append(parts, label)
				total += width(label)
			}
			if total+len(sep)*(len(parts)-1) <= w || (sep == " " && short) {
				return strings.Join(parts, sep)
			}
		}
	}
	return ""
}

func (m *Model) footerKeys() []key.Binding {
	k := m.env.keys
	var b []key.Binding
	if m.help {
		return []key.Binding{k.Back, k.Quit}
	}
	if m.state != stateLoading {
		b = append(b, m.current().ShortHelp()...)
	}
	if m.current().Capturing() {
		return b
	}
	return append(b, k.Help, k.Quit)
}

// helpView lists every key: the view's, then the global ones.
func (m *Model) helpView(w, h int) string {
	st := m.env.styles
	k := m.env.keys
	groups := m.current().FullHelp()
	groups = append(groups, []key.Binding{k.Views, k.NextTab, k.PrevTab, k.Help, k.Back, k.Quit})
	var lines []string
	title := "keys"
	if m.state == stateReady {
		title = "keys of " + pageNames[m.active]
	}
	lines = append(lines, st.Title.Render(title), "")
	for _, g := range groups {
		for _, b := range g {
			if !b.Enabled() {
				continue
			}
			lines = append(lines, "  "+st.Key.Render(fit(b.Help().Key, 11))+" "+b.Help().Desc)
		}
		lines = append(lines, "")
	}
	if len(lines) > h {
		// Two columns when one does not fit.
		half := (len(lines) + 1) / 2
		cw := w / 2
		var two []string
		for i := range half {
			l := fit(lines[i], cw)
			if i+half < len(lines) {
				l += lines[i+half]
			}
			two = append(two, l)
		}
		lines = two
	}
	return strings.Join(lines, "\n")
}
