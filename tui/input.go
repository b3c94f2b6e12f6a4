package tui

import (
	"strings"

	tea "github.com/charmbracelet/bubbletea"
)

// input is a one-line text field: typing appends, backspace deletes,
// ctrl+w deletes a word, ctrl+u everything. It draws a block cursor at the
// end and never blinks (no timers, so views stay deterministic).
type input struct {
	prompt      string
	placeholder string
	value       []rune
	limit       int
	focused     bool
}

func (in *input) Value() string { return string(in.value) }

func (in *input) SetValue(s string) { in.value = []rune(s) }

func (in *input) Focus() { in.focused = true }

func (in *input) Blur() { in.focused = false }

// Update takes a key; it reports whether the value changed.
func (in *input) Update(msg tea.KeyMsg) bool {
	switch msg.Type {
	case tea.KeyBackspace:
		if len(in.value) > 0 {
			in.value = in.value[:len(in.value)-1]
			return true
		}
	case tea.KeyCtrlU:
		in.value = in.value[:0]
		return true
	case tea.KeyCtrlW:
		s := strings.TrimRight(string(in.value), " ")
		if i := strings.LastIndexAny(s, " /-"); i >= 0 {
			s = s[:i]
		} else {
			s = ""
		}
		in.value = []rune(s)
		return true
	case tea.KeyRunes, tea.KeySpace:
		r := msg.Runes
		if msg.Type == tea.KeySpace {
			r = []rune{' '}
		}
		if in.limit > 0 && len(in.value)+len(r) > in.limit {
			return false
		}
		in.value = append(in.value, r...)
		return true
	}
	return false
}

func (in *input) View(st *Styles, w int) string {
	v := string(in.value)
	if v == "" && !in.focused {
		return cut(in.prompt+st.Dim.Render(in.placeholder), w)
	}
	if in.focused {
		cursor := "█"
		if v == "" {
			return cut(in.prompt+cursor+st.Dim.Render(in.placeholder), w)
		}
		// Keep the end in view.
		room := w - width(in.prompt) - 1
		if width(v) > room && room > 1 {
			r := []rune(v)
			v = "…" + string(r[len(r)-room+1:])
		}
		return in.prompt + st.Input.Render(v) + cursor
	}
	return cut(in.prompt+st.Input.Render(v), w)
}
