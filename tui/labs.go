package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
)

// labsPage lists the labs and walks through one: the step's text in
// English or Chinese, its commands, and its checks run on demand.
type labsPage struct {
	common
	lang     string
	labs     []Lab
	loaded   bool
	loadErr  string
	table    table
	open     bool
	step     int
	scroll   scroller
	checking bool
	check    *LabCheck
	spin     spinner.Model
}

func newLabs(e *env, lang string) *labsPage {
	return &labsPage{
		common: common{env: e}, lang: lang,
		spin:  spinner.New(spinner.WithSpinner(spinner.MiniDot)),
		table: table{cols: []column{{title: "LAB", max: 10}, {title: "TITLE", flex: true}, {title: "PROGRESS"}}},
	}
}

func (l *labsPage) Init() tea.Cmd {
	ctx, c := l.ctx, l.cluster
	return func() tea.Msg {
		labs, err := c.Labs(ctx)
		if err != nil {
			return errMsg(ctx, "labs", err)
		}
		return labsMsg{labs}
	}
}

func (l *labsPage) SetSize(w, h int) {
	l.common.SetSize(w, h)
	l.table.setSize(w, h-1)
	l.scroll.setHeight(h - 2)
	l.rebuild()
}

func (l *labsPage) current() *Lab {
	if l.table.cursor < 0 || l.table.cursor >= len(l.labs) {
		return nil
	}
	return &l.labs[l.table.cursor]
}

func (l *labsPage) rebuild() {
	var rows [][]string
	for _, lab := range l.labs {
		progress := fmt.Sprintf("%d steps", len(lab.Steps))
		if lab.Active {
			progress = progressBar(lab.Done, len(lab.Steps))
		}
		rows = append(rows, []string{lab.ID, lab.Title.In(l.lang), progress})
	}
	l.table.setRows(rows)
	if l.open {
		l.scroll.set(l.stepLines())
	}
}

// inlineMarkdown renders **bold** and `code` within one line; a marker
// whose pair is on another line is dropped.
func inlineMarkdown(st *Styles, line string) string {
	var b strings.Builder
	for line != "" {
		i := strings.IndexAny(line, "*`")
		if i < 0 {
			b.WriteString(line)
			break
		}
		b.WriteString(line[:i])
		marker, style := "`", st.Accent
		if strings.HasPrefix(line[i:], "**") {
			marker, style = "**", st.Bold
		} else if line[i] == '*' {
			b.WriteByte('*')
			line = line[i+1:]
			continue
		}
		rest := line[i+len(marker):]
		j := strings.Index(rest, marker)
		if j < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(style.Render(rest[:j]))
		line = rest[j+len(marker):]
	}
	return b.String()
}

// progressBar draws done of total as ■■■□□□ 3/6.
func progressBar(done, total int) string {
	if total == 0 {
		return "-"
	}
	done = min(done, total)
	return strings.Repeat("■", done) + strings.Repeat("□", total-done) + fmt.Sprintf(" %d/%d", done, total)
}

func (l *labsPage) Update(msg tea.Msg) (page, tea.Cmd) {
	switch msg := msg.(type) {
	case labsMsg:
		l.labs, l.loaded, l.loadErr = msg.labs, true, ""
		l.rebuild()
	case labCheckMsg:
		l.checking, l.check = false, msg.check
		l.rebuild()
		// Show the results, and the progress the check may have made.
		l.scroll.offset = l.scroll.maxOffset()
		return l, l.Init()
	case ErrMsg:
		switch msg.Op {
		case "labs":
			l.loaded, l.loadErr = true, msg.Err.Error()
		case "lab check":
			l.checking = false
		}
	case spinner.TickMsg:
		if l.checking {
			var cmd tea.Cmd
			l.spin, cmd = l.spin.Update(msg)
			return l, cmd
		}
	case tea.KeyMsg:
		return l.key(msg)
	}
	return l, nil
}

func (l *labsPage) key(msg tea.KeyMsg) (page, tea.Cmd) {
	k := l.keys
	if key.Matches(msg, k.Lang) {
		l.lang = map[string]string{"en": "zh", "zh": "en"}[l.lang]
		l.rebuild()
		return l, nil
	}
	if !l.open {
		if l.table.navigate(k, msg) {
			return l, nil
		}
		if key.Matches(msg, k.Enter) && l.current() != nil {
			lab := l.current()
			l.open, l.check, l.step = true, nil, 0
			if lab.Active {
				l.step = min(lab.Step, max(0, len(lab.Steps)-1))
			}
			l.scroll.offset = 0
			l.rebuild()
		}
		return l, nil
	}
	lab := l.current()
	switch {
	case key.Matches(msg, k.Back):
		l.open = false
	case key.Matches(msg, k.Next):
		if l.step < len(lab.Steps)-1 {
			l.step++
			l.check, l.scroll.offset = nil, 0
			l.rebuild()
		}
	case key.Matches(msg, k.Prev):
		if l.step > 0 {
			l.step--
			l.check, l.scroll.offset = nil, 0
			l.rebuild()
		}
	case key.Matches(msg, k.Check):
		if l.checking {
			return l, nil
		}
		l.checking, l.check = true, nil
		l.rebuild()
		ctx, c := l.ctx, l.cluster
		req := LabCheckRequest{Lab: lab.ID, Step: l.step, Lang: l.lang}
		return l, tea.Batch(l.spin.Tick, func() tea.Msg {
			res, err := c.CheckLab(ctx, req)
			if err != nil {
				return errMsg(ctx, "lab check", err)
			}
			return labCheckMsg{res}
		})
	default:
		l.scroll.navigate(k, msg)
	}
	return l, nil
}

// stepLines are the open step: its text, commands and checks.
func (l *labsPage) stepLines() []string {
	st := l.styles
	lab := l.current()
	if lab == nil || len(lab.Steps) == 0 {
		return []string{st.Dim.Render("this lab has no steps")}
	}
	s := lab.Steps[min(l.step, len(lab.Steps)-1)]
	var out []string
	out = append(out, st.Bold.Render(s.Title.In(l.lang)), "")
	for _, para := range strings.Split(strings.TrimRight(s.Text.In(l.lang), "\n"), "\n") {
		for _, line := range wrap(para, l.width) {
			out = append(out, inlineMarkdown(st, line))
		}
	}
	if len(s.Commands) > 0 {
		out = append(out, "")
		for _, c := range s.Commands {
			out = append(out, cut(st.Accent.Render("$ ")+c, l.width))
		}
	}
	out = append(out, "")
	switch {
	case l.checking:
		out = append(out, l.spin.View()+" checking …")
	case l.check != nil && l.check.Step == l.step && l.check.Lab == lab.ID:
		for _, r := range l.check.Results {
			line := st.check(r.OK) + " " + r.Name
			if r.Detail != "" {
				line += st.Dim.Render("  " + r.Detail)
			}
			out = append(out, wrapIndent(line, l.width, 2)...)
			if !r.OK && r.Hint != "" {
				out = append(out, wrapStyle(st.Warn, "  hint: "+r.Hint, l.width, 8)...)
			}
		}
	default:
		for _, c := range s.Checks {
			out = append(out, cut(st.Dim.Render("□ "+c.In(l.lang)), l.width))
		}
		if len(s.Checks) > 0 {
			out = append(out, st.Dim.Render("c runs the checks"))
		}
	}
	return out
}

func (l *labsPage) View() string {
	st := l.styles
	switch {
	case !l.loaded:
		return "\n  loading the labs …"
	case l.loadErr != "":
		return "\n  " + st.Bad.Render("labs: "+l.loadErr)
	case len(l.labs) == 0:
		return "\n  " + st.Dim.Render("no labs")
	}
	if !l.open {
		head := st.Dim.Render(fmt.Sprintf("%d labs · enter opens one · L: English/中文", len(l.labs)))
		lines := append([]string{head}, l.table.view(st)...)
		return strings.Join(lines, "\n")
	}
	lab := l.current()
	right := fmt.Sprintf("step %d of %d", l.step+1, len(lab.Steps))
	title := cut(fmt.Sprintf("Lab %s · %s", lab.ID, lab.Title.In(l.lang)), l.width-width(right)-2)
	head := st.Title.Render(title) + strings.Repeat(" ", max(1, l.width-width(title)-width(right))) + right
	progress := progressBar(lab.Done, len(lab.Steps)) + st.Dim.Render(fmt.Sprintf(" · this cluster is on step %d", lab.Step+1))
	if !lab.Active {
		progress = st.Dim.Render(cut("this cluster is not doing this lab: checks run, progress is not kept (klab lab start "+lab.ID+")", l.width))
	}
	return strings.Join(append([]string{head, progress}, l.scroll.view()...), "\n")
}

func (l *labsPage) ShortHelp() []key.Binding {
	k := l.keys
	if l.open {
		return []key.Binding{k.Check, k.Next, k.Prev, k.Lang, k.Back}
	}
	return []key.Binding{key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open")), k.Lang}
}

func (l *labsPage) FullHelp() [][]key.Binding {
	k := l.keys
	return [][]key.Binding{{k.Check, k.Next, k.Prev, k.Lang, k.Back}, {k.Up, k.Down}}
}
