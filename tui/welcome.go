package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
)

// welcomePage is the first screen when the cluster does not exist: it
// offers to create one and shows the creation's progress.
type welcomePage struct {
	common
	presence Presence
	opts     CreateOptions
	creating bool
	stopping bool
	lines    []string
	failed   string
	progress chan string
	spin     spinner.Model
}

var providerChoices = []string{"netns", "auto", "libvirt"}

func newWelcome(e *env) *welcomePage {
	return &welcomePage{
		common: common{env: e},
		opts:   CreateOptions{Provider: "netns", Workers: 2, Subnets: 1, Mode: "bgp"},
		spin:   spinner.New(spinner.WithSpinner(spinner.MiniDot)),
	}
}

func (w *welcomePage) Capturing() bool { return w.creating }

func (w *welcomePage) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case createLineMsg:
		w.lines = append(w.lines, msg.lines...)
		return w, w.receive()
	case createDoneMsg:
		w.creating = false
		if msg.err != nil {
			w.failed = msg.err.Error()
		}
	case spinner.TickMsg:
		if w.creating {
			var cmd tea.Cmd
			w.spin, cmd = w.spin.Update(msg)
			return w, cmd
		}
	case tea.KeyMsg:
		if w.creating {
			return w, nil
		}
		k := w.keys
		switch {
		case key.Matches(msg, k.Create):
			return w, w.create()
		case msg.String() == "p":
			w.opts.Provider = next(providerChoices, w.opts.Provider)
		case msg.String() == "m":
			w.opts.Mode = next([]string{"bgp", "vxlan", "ipip"}, w.opts.Mode)
		case msg.String() == "+" || msg.String() == "=":
			w.opts.Workers = min(w.opts.Workers+1, 8)
		case msg.String() == "-":
			w.opts.Workers = max(w.opts.Workers-1, 0)
		case msg.String() == "s":
			w.opts.Subnets = 3 - w.opts.Subnets
		}
	}
	return w, nil
}

func next(choices []string, cur string) string {
	for i, c := range choices {
		if c == cur {
			return choices[(i+1)%len(choices)]
		}
	}
	return choices[0]
}

// create runs the cluster's creation, its progress lines going to the view.
func (w *welcomePage) create() tea.Cmd {
	w.creating, w.failed, w.lines = true, "", nil
	w.progress = make(chan string, 64)
	ctx, c, o, ch := w.ctx, w.cluster, w.opts, w.progress
	run := func() tea.Msg {
		err := c.Create(ctx, o, ch)
		close(ch)
		return createDoneMsg{err: err}
	}
	return tea.Batch(run, w.receive(), w.spin.Tick)
}

func (w *welcomePage) receive() tea.Cmd {
	return receive(w.progress, func(lines []string) tea.Msg { return createLineMsg{lines} })
}

func (w *welcomePage) View() string {
	st := w.styles
	name := w.cluster.Name()
	var out []string
	if w.creating || len(w.lines) > 0 {
		head := fmt.Sprintf("%s creating cluster %q", w.spin.View(), name)
		if w.stopping {
			head = fmt.Sprintf("%s stopping: undoing what was made for %q …", w.spin.View(), name)
		}
		if !w.creating {
			head = st.OK.Render("✓") + fmt.Sprintf(" cluster %q", name)
			if w.failed != "" {
				head = st.Bad.Render("✗") + fmt.Sprintf(" creating cluster %q failed", name)
			}
		}
		out = append(out, st.Title.Render(head), "")
		room := max(1, w.height-4)
		lines := w.lines
		if len(lines) > room {
			lines = lines[len(lines)-room:]
		}
		for _, l := range lines {
			out = append(out, "  "+l)
		}
		if w.failed != "" {
			out = append(out, "")
			out = append(out, wrapStyle(st.Bad, w.failed, w.width, 2)...)
			out = append(out, st.Dim.Render("c tries again"))
		}
		return strings.Join(out, "\n")
	}
	out = append(out, st.Title.Render(fmt.Sprintf("There is no cluster %q on this machine yet.", name)), "")
	out = append(out, wrap("klab can make one now: its nodes are network namespaces (or VMs), the control plane and node components are klab's own, and the pod network runs in Calico-style BGP, VXLAN or IPIP mode. On netns it takes a few seconds.", w.width)...)
	out = append(out, "",
		fmt.Sprintf("  %s  %s   %s", fit("provider", 9), st.Bold.Render(fit(w.opts.Provider, 22)), st.Dim.Render("p changes")),
		fmt.Sprintf("  %s  %s   %s", fit("nodes", 9), st.Bold.Render(fit(fmt.Sprintf("master + %d workers", w.opts.Workers), 22)), st.Dim.Render("+/- changes")),
		fmt.Sprintf("  %s  %s   %s", fit("subnets", 9), st.Bold.Render(fit(fmt.Sprint(w.opts.Subnets), 22)), st.Dim.Render("s: 1 or 2 (behind a router)")),
		fmt.Sprintf("  %s  %s   %s", fit("mode", 9), st.Bold.Render(fit(w.opts.Mode, 22)), st.Dim.Render("m changes")), "",
		"  "+st.Key.Render("c")+" create it    "+st.Key.Render("q")+" quit",
	)
	if w.failed != "" {
		out = append(out, "")
		out = append(out, wrapStyle(st.Bad, w.failed, w.width, 2)...)
	}
	if len(w.presence.Others) > 0 {
		out = append(out, "", st.Dim.Render(cut("other clusters here: "+strings.Join(w.presence.Others, ", ")+" (klab tui --name NAME)", w.width)))
	}
	return strings.Join(out, "\n")
}

func (w *welcomePage) ShortHelp() []key.Binding {
	if w.creating {
		return []key.Binding{key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "stop (undoes what was made)"))}
	}
	return []key.Binding{w.keys.Create}
}

func (w *welcomePage) FullHelp() [][]key.Binding {
	return [][]key.Binding{{w.keys.Create,
		key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "provider")),
		key.NewBinding(key.WithKeys("+", "-"), key.WithHelp("+/-", "workers")),
		key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "subnets")),
		key.NewBinding(key.WithKeys("m"), key.WithHelp("m", "mode")),
	}}
}
