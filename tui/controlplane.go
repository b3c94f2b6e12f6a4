package tui

import (
	"fmt"
	"slices"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// maxFeed is how many feed items the view keeps.
const maxFeed = 2000

// feedSources are what the feed can be narrowed to (f cycles).
var feedSources = []string{"", "scheduler", "controllers", "agent", "cni", "network"}

// controlPlane is the live feed of what the components do: scheduler
// decisions and other events, the agent's sandboxes, every CNI ADD/DEL
// with its JSON, route changes.
type controlPlane struct {
	common
	items   []FeedItem
	source  int
	shown   []int // indices into items
	table   table
	details bool
	detail  scroller
	target  FeedItem
}

func newControlPlane(e *env) *controlPlane {
	c := &controlPlane{common: common{env: e}, table: table{cols: []column{
		{title: "TIME"}, {title: "SOURCE", max: 11}, {title: "NODE", max: 10}, {title: "WHAT", max: 18},
		{title: "MESSAGE", flex: true},
	}}}
	c.table.style = func(row, col int, cell string) string {
		it := &c.items[c.shown[row]]
		switch {
		case col == 1:
			return sourceStyle(c.styles, it.Source).Render(cell)
		case col == 3 && it.Warning:
			return c.styles.Bad.Render(cell)
		}
		return cell
	}
	return c
}

func (c *controlPlane) SetSize(w, h int) {
	c.common.SetSize(w, h)
	c.table.setSize(w, h-1)
	c.detail.setHeight(h - 1)
	c.rebuild()
}

func (c *controlPlane) rebuild() {
	following := c.table.cursor >= len(c.table.rows)-1
	c.shown = c.shown[:0]
	want := feedSources[c.source]
	var rows [][]string
	for i, it := range c.items {
		if want != "" && it.Source != want {
			continue
		}
		c.shown = append(c.shown, i)
		msg := it.Message
		if it.Object != "" {
			msg = it.Object + ": " + msg
		}
		rows = append(rows, []string{it.Time.In(c.loc).Format("15:04:05"), it.Source, it.Node, it.Reason, msg})
	}
	c.table.setRows(rows)
	if following {
		c.table.move(len(rows))
	}
}

func sourceStyle(st *Styles, src string) interface{ Render(...string) string } {
	switch src {
	case "scheduler":
		return st.Accent
	case "cni":
		return st.Tunnel
	case "network":
		return st.Packet
	case "agent":
		return st.OK
	}
	return st.Dim
}

func (c *controlPlane) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case feedMsg:
		from := max(0, len(c.items)-1)
		c.items = append(c.items, msg.items...)
		byTime := func(a, b FeedItem) int { return a.Time.Compare(b.Time) }
		if !slices.IsSortedFunc(c.items[from:], byTime) {
			// History from several sources: keep the feed in time order.
			slices.SortStableFunc(c.items, byTime)
		}
		if len(c.items) > maxFeed {
			c.items = append([]FeedItem(nil), c.items[len(c.items)-maxFeed:]...)
		}
		c.rebuild()
	case tea.KeyMsg:
		k := c.keys
		if c.details {
			if key.Matches(msg, k.Back) || key.Matches(msg, k.Enter) {
				c.details = false
				return c, nil
			}
			c.detail.navigate(k, msg)
			return c, nil
		}
		if c.table.navigate(k, msg) {
			return c, nil
		}
		switch {
		case key.Matches(msg, k.Source):
			c.source = (c.source + 1) % len(feedSources)
			c.rebuild()
			c.table.move(len(c.shown))
		case key.Matches(msg, k.Enter):
			if c.table.cursor < len(c.shown) {
				c.target = c.items[c.shown[c.table.cursor]]
				c.details = true
				c.detail.offset = 0
				c.detail.set(c.detailLines())
			}
		}
	}
	return c, nil
}

func (c *controlPlane) detailLines() []string {
	st := c.styles
	it := c.target
	out := []string{
		fmt.Sprintf("%s  %s  %s", st.Bold.Render(it.Time.In(c.loc).Format("2006-01-02 15:04:05.000")), sourceStyle(st, it.Source).Render(it.Source), it.Node),
		st.Bold.Render(it.Reason) + "  " + it.Object,
	}
	out = append(out, wrap(it.Message, c.width)...)
	if it.Detail != "" {
		out = append(out, "")
		for _, l := range strings.Split(strings.TrimRight(it.Detail, "\n"), "\n") {
			out = append(out, cut(l, c.width))
		}
	}
	return out
}

func (c *controlPlane) View() string {
	st := c.styles
	if c.details {
		return st.Title.Render("feed item") + st.Dim.Render("  esc back") + "\n" + strings.Join(c.detail.view(), "\n")
	}
	src := "everything"
	if s := feedSources[c.source]; s != "" {
		src = s
	}
	head := fmt.Sprintf("%s %s  %s", st.Dim.Render("showing"), st.Bold.Render(src), st.Dim.Render(fmt.Sprintf("%d items · f: source · enter: details (CNI JSON)", len(c.shown))))
	lines := append([]string{cut(head, c.width)}, c.table.view(st)...)
	if len(c.shown) == 0 {
		lines = append(lines, st.Dim.Render("  nothing yet: create a pod (klab apply -f FILE) and watch it pass scheduler → agent → CNI"))
	}
	return strings.Join(lines, "\n")
}

func (c *controlPlane) ShortHelp() []key.Binding {
	k := c.keys
	if c.details {
		return []key.Binding{k.Back, k.Down}
	}
	return []key.Binding{k.Source, k.Enter, k.Down, k.Bottom}
}

func (c *controlPlane) FullHelp() [][]key.Binding {
	k := c.keys
	return [][]key.Binding{{k.Source, k.Enter}, {k.Up, k.Down, k.PgUp, k.PgDown, k.Top, k.Bottom}}
}
