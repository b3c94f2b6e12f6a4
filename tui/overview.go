package tui

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// overview is the first view: the cluster, its mode, its nodes and the
// health of every component.
type overview struct {
	common
	scroll scroller
}

func newOverview(e *env) *overview { return &overview{common: common{env: e}} }

func (o *overview) SetSize(w, h int) {
	o.common.SetSize(w, h)
	o.scroll.setHeight(h)
	if o.snap != nil {
		o.scroll.set(o.lines())
	}
}

func (o *overview) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case snapshotMsg:
		o.scroll.set(o.lines())
	case tea.KeyMsg:
		o.scroll.navigate(o.keys, msg)
	}
	return o, nil
}

func (o *overview) View() string {
	if o.snap == nil {
		return "\n  waiting for the cluster's state …"
	}
	return strings.Join(o.scroll.view(), "\n")
}

func (o *overview) ShortHelp() []key.Binding {
	return []key.Binding{o.keys.Views, o.keys.NextTab, o.keys.Down}
}

func (o *overview) FullHelp() [][]key.Binding {
	return [][]key.Binding{{o.keys.Up, o.keys.Down, o.keys.PgUp, o.keys.PgDown}}
}

// lines draws the whole overview; the scroller shows what fits.
func (o *overview) lines() []string {
	st, s := o.styles, o.snap
	ci := s.Cluster
	var out []string
	if s.Err != "" {
		out = append(out, st.Warn.Render("! "+s.Err))
	}
	out = append(out, fmt.Sprintf("%s %s   %s %s   %s   created %s ago",
		st.Dim.Render("cluster"), st.Bold.Render(ci.Name), st.Dim.Render("provider"), ci.Provider, st.state(phaseWord(ci.Phase)), age(o.now(), ci.Created)))
	var nets []string
	for _, sn := range ci.Subnets {
		n := "underlay " + sn.Name + " " + sn.CIDR
		if sn.Gateway != "" {
			n += " (router " + sn.Gateway + ")"
		}
		nets = append(nets, n)
	}
	if ci.HostIP != "" {
		host, _, _ := strings.Cut(ci.HostIP, "/")
		nets = append(nets, "host "+host)
	}
	nets = append(nets, "pods "+ci.PodCIDR, "services "+ci.ServiceCIDR)
	out = append(out, wrapStyle(st.Dim, strings.Join(nets, " · "), o.width, 2)...)

	converged, total := 0, 0
	for _, n := range s.Network.Nodes {
		total++
		if n.Converged && n.Mode == s.Network.Mode && n.ObservedGeneration >= s.Network.Generation {
			converged++
		}
	}
	conv := fmt.Sprintf("converged on %d of %d nodes", converged, total)
	if converged < total {
		conv = st.Warn.Render(conv)
	} else {
		conv = st.OK.Render(conv)
	}
	out = append(out, fmt.Sprintf("%s %s · %s · pod MTU %d", st.Dim.Render("network"), st.Bold.Render(s.Network.Spec()), conv, s.Network.MTU))
	out = append(out, cut(st.Dim.Render("pods")+" "+podSummary(st, s.Pods), o.width), "")

	t := table{static: true, cols: []column{
		{title: "NODE", flex: true}, {title: "READY"}, {title: "ROLE"}, {title: "UNDERLAY IP"},
		{title: "POD CIDR"}, {title: "PODS", right: true}, {title: "CPU", right: true}, {title: "MEMORY", right: true},
	}}
	var rows [][]string
	for _, n := range s.Nodes {
		ready := "-"
		switch {
		case n.Role == "router":
		case !n.Registered:
			ready = "no"
		case n.Ready:
			ready = "✓"
		default:
			ready = "✗"
		}
		ip := n.IP
		if len(n.IPs) > 0 {
			ip = strings.Join(n.IPs, ",")
		}
		rows = append(rows, []string{n.Name, ready, n.Role, ip, dash(n.PodCIDR), strconv.Itoa(n.Pods), usage(n.CPU, cpu), usage(n.Memory, binSize)})
	}
	t.style = func(_, col int, cell string) string {
		switch {
		case col != 1 || cell == "-":
			return cell
		case cell == "✓":
			return st.OK.Render(cell)
		}
		return st.Bad.Render(cell)
	}
	t.setSize(o.width, len(rows)+1)
	t.setRows(rows)
	out = append(out, t.view(st)...)
	for _, n := range s.Nodes {
		if n.Registered && !n.Ready && n.NotReady != "" {
			out = append(out, st.Warn.Render("  "+n.Name+": "+n.NotReady))
		}
	}

	out = append(out, "", st.Header.Render("COMPONENTS")+st.Dim.Render("  (the node's supervisor; ↻ restarts)"))
	nameW := 0
	for _, n := range s.Nodes {
		nameW = max(nameW, width(n.Name))
	}
	for _, n := range s.Nodes {
		line := "  " + fit(n.Name, nameW) + "  "
		switch {
		case n.Machine != "" && n.Machine != "running":
			line += st.Bad.Render("machine " + n.Machine)
		case n.ComponentsErr != "":
			line += st.Bad.Render("supervisor: " + n.ComponentsErr)
		case len(n.Components) == 0 && n.Role == "router":
			line += st.Dim.Render("router: no cluster components")
		case len(n.Components) == 0:
			line += st.Dim.Render("no components reported")
		}
		var comps []string
		for _, c := range n.Components {
			dot := st.OK.Render("●")
			if c.State != "running" {
				dot = st.Bad.Render("●")
				if c.State == "backoff" {
					dot = st.Warn.Render("●")
				}
			}
			txt := c.Name
			if c.State != "running" {
				txt += " " + c.State
				if c.LastExit != "" {
					txt += " (" + c.LastExit + ")"
				}
			}
			if c.Restarts > 0 {
				txt += fmt.Sprintf(" %d↻", c.Restarts)
			}
			if st.Plain && c.State != "running" {
				txt = "!" + txt
			}
			comps = append(comps, dot+" "+txt)
		}
		// Wrap the components under the node's name.
		indent := strings.Repeat(" ", nameW+4)
		cur := line
		for i, c := range comps {
			if i > 0 && width(cur)+2+width(c) > o.width {
				out = append(out, cur)
				cur = indent
			} else if i > 0 {
				cur += "  "
			}
			cur += c
		}
		out = append(out, cur)
	}
	return out
}

// podSummary counts pods by status: "6: 4 Running · 2 Pending".
func podSummary(st *Styles, pods []Pod) string {
	if len(pods) == 0 {
		return "none yet"
	}
	count := map[string]int{}
	var order []string
	for i := range pods {
		s := pods[i].Status
		if count[s] == 0 {
			order = append(order, s)
		}
		count[s]++
	}
	slices.SortFunc(order, func(a, b string) int {
		if count[a] != count[b] {
			return count[b] - count[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%d %s", count[s], st.state(s))
	}
	return fmt.Sprintf("%d: %s", len(pods), strings.Join(parts, " · "))
}

func phaseWord(p string) string {
	switch p {
	case "ready":
		return "Ready"
	case "creating":
		return "Pending"
	case "":
		return "unknown"
	}
	return p
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
