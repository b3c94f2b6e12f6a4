package tui

import (
	"strings"
	"sync/atomic"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/x/ansi"
)

var ids atomic.Int64

// newID returns an id no other animation or stream has.
func newID() int { return int(ids.Add(1)) }

// width is the number of cells s takes (escape sequences take none).
func width(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0x1b {
			return ansi.StringWidth(s)
		}
	}
	return len(s)
}

// fit cuts s to w cells (with an ellipsis) or pads it with spaces to w.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	n := width(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-n)
}

// cut cuts s to w cells, with an ellipsis.
func cut(s string, w int) string {
	if w <= 0 {
		return ""
	}
	if width(s) > w {
		return ansi.Truncate(s, w, "…")
	}
	return s
}

// padLeft right-aligns s in w cells.
func padLeft(s string, w int) string {
	n := width(s)
	if n >= w {
		return cut(s, w)
	}
	return strings.Repeat(" ", w-n) + s
}

// block makes exactly h lines of exactly w cells from lines.
func block(lines []string, w, h int) []string {
	out := make([]string, h)
	for i := range out {
		if i < len(lines) {
			out[i] = fit(lines[i], w)
		} else {
			out[i] = strings.Repeat(" ", max(w, 0))
		}
	}
	return out
}

// column describes a table column.
type column struct {
	title string
	// max caps the column's width (0: no cap); flex columns give up width
	// first when the table is too wide.
	max   int
	flex  bool
	right bool
}

// table is a list of rows with a cursor, drawn a screenful at a time, so
// that its cost does not grow with the number of rows.
type table struct {
	cols []column
	rows [][]string
	// style, when set, colours a cell of a row in view (the selected row
	// has its own style); it must not change the cell's width.
	style  func(row, col int, cell string) string
	widths []int
	cursor int
	offset int
	height int // rows shown, with the header
	width  int
	// static tables have no cursor.
	static bool
}

// setRows replaces the rows and recomputes the column widths; the cursor
// stays on the same index (clamped).
func (t *table) setRows(rows [][]string) {
	t.rows = rows
	t.layout()
	t.clamp()
}

func (t *table) setSize(w, h int) {
	t.width, t.height = w, h
	t.layout()
	t.clamp()
}

func (t *table) layout() {
	t.widths = make([]int, len(t.cols))
	for i, c := range t.cols {
		t.widths[i] = width(c.title)
	}
	caps := make([]int, len(t.cols))
	for i, c := range t.cols {
		caps[i] = t.width
		if c.max > 0 {
			caps[i] = c.max
		}
	}
	for _, r := range t.rows {
		for i := range t.cols {
			// A column at its cap need not measure more rows.
			if i < len(r) && t.widths[i] < caps[i] {
				t.widths[i] = max(t.widths[i], width(r[i]))
			}
		}
	}
	for i := range t.cols {
		t.widths[i] = min(t.widths[i], max(caps[i], 1))
	}
	// Two cells of gutter (the cursor) and one between columns.
	avail := t.width - 2 - (len(t.cols) - 1)
	total := 0
	for _, w := range t.widths {
		total += w
	}
	for total > avail {
		// Shrink the widest flex column, else the widest column.
		best := -1
		for i, c := range t.cols {
			if c.flex && t.widths[i] > 4 && (best < 0 || t.widths[i] > t.widths[best]) {
				best = i
			}
		}
		if best < 0 {
			for i := range t.cols {
				if t.widths[i] > 3 && (best < 0 || t.widths[i] > t.widths[best]) {
					best = i
				}
			}
		}
		if best < 0 {
			break
		}
		t.widths[best]--
		total--
	}
}

// visible is how many rows fit under the header.
func (t *table) visible() int { return max(t.height-1, 1) }

func (t *table) clamp() {
	if t.cursor >= len(t.rows) {
		t.cursor = len(t.rows) - 1
	}
	if t.cursor < 0 {
		t.cursor = 0
	}
	v := t.visible()
	if t.cursor < t.offset {
		t.offset = t.cursor
	}
	if t.cursor >= t.offset+v {
		t.offset = t.cursor - v + 1
	}
	t.offset = max(0, min(t.offset, len(t.rows)-v))
}

// move moves the cursor by n rows.
func (t *table) move(n int) {
	t.cursor += n
	t.clamp()
}

// navigate handles the movement keys; it reports whether k was one.
func (t *table) navigate(k KeyMap, msg keyMsg) bool {
	switch {
	case key.Matches(msg, k.Up):
		t.move(-1)
	case key.Matches(msg, k.Down):
		t.move(1)
	case key.Matches(msg, k.PgUp):
		t.move(-t.visible())
	case key.Matches(msg, k.PgDown):
		t.move(t.visible())
	case key.Matches(msg, k.Top):
		t.move(-len(t.rows))
	case key.Matches(msg, k.Bottom):
		t.move(len(t.rows))
	default:
		return false
	}
	return true
}

func (t *table) row(st *Styles, idx int, cells []string, selected bool) string {
	var b strings.Builder
	if selected {
		b.WriteString("▸ ")
	} else {
		b.WriteString("  ")
	}
	for i, w := range t.widths {
		if i > 0 {
			b.WriteByte(' ')
		}
		c := ""
		if i < len(cells) {
			c = cells[i]
		}
		if t.style != nil && idx >= 0 && !selected && width(c) <= w {
			c = t.style(idx, i, c)
		}
		if t.cols[i].right {
			b.WriteString(padLeft(c, w))
		} else {
			b.WriteString(fit(c, w))
		}
	}
	line := b.String()
	if selected {
		return st.Selected.Render(fit(line, t.width))
	}
	return line
}

// view draws the header and the rows in view.
func (t *table) view(st *Styles) []string {
	hdr := make([]string, len(t.cols))
	for i, c := range t.cols {
		hdr[i] = c.title
	}
	lines := []string{st.Header.Render(fit(t.row(st, -1, hdr, false), t.width))}
	end := min(len(t.rows), t.offset+t.visible())
	for i := t.offset; i < end; i++ {
		lines = append(lines, t.row(st, i, t.rows[i], i == t.cursor && !t.static))
	}
	return lines
}

// scroller shows a window of lines. With tail set, the window stays at
// the end while it is there, as lines are added (logs, feeds).
type scroller struct {
	lines  []string
	offset int
	height int
	tail   bool
}

func (s *scroller) maxOffset() int { return max(0, len(s.lines)-s.height) }

func (s *scroller) set(lines []string) {
	atEnd := s.offset >= s.maxOffset()
	s.lines = lines
	if s.tail && atEnd {
		s.offset = s.maxOffset()
	}
	s.clamp()
}

func (s *scroller) setHeight(h int) {
	atEnd := s.offset >= s.maxOffset()
	s.height = h
	if s.tail && atEnd {
		s.offset = s.maxOffset()
	}
	s.clamp()
}

func (s *scroller) clamp() { s.offset = max(0, min(s.offset, s.maxOffset())) }

// navigate handles the scrolling keys; it reports whether k was one.
func (s *scroller) navigate(k KeyMap, msg keyMsg) bool {
	page := max(1, s.height-1)
	switch {
	case key.Matches(msg, k.Up):
		s.offset--
	case key.Matches(msg, k.Down):
		s.offset++
	case key.Matches(msg, k.PgUp):
		s.offset -= page
	case key.Matches(msg, k.PgDown):
		s.offset += page
	case key.Matches(msg, k.Top):
		s.offset = 0
	case key.Matches(msg, k.Bottom):
		s.offset = s.maxOffset()
	default:
		return false
	}
	s.clamp()
	return true
}

func (s *scroller) view() []string {
	end := min(len(s.lines), s.offset+s.height)
	return s.lines[s.offset:end]
}

// helpLine renders key bindings as "key desc  key desc …".
func helpLine(st *Styles, bindings []key.Binding, w int) string {
	var parts []string
	used := 0
	for _, b := range bindings {
		if !b.Enabled() {
			continue
		}
		h := b.Help()
		p := st.Key.Render(h.Key) + " " + st.KeyDesc.Render(h.Desc)
		pw := width(h.Key) + 1 + width(h.Desc)
		if used > 0 {
			pw += 2
		}
		if used+pw > w {
			break
		}
		parts = append(parts, p)
		used += pw
	}
	return strings.Join(parts, "  ")
}
