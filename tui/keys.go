package tui

import "github.com/charmbracelet/bubbles/key"

// KeyMap is every key the TUI knows. Views pick the ones they use for the
// footer and the help.
type KeyMap struct {
	Quit    key.Binding
	Help    key.Binding
	Back    key.Binding
	NextTab key.Binding
	PrevTab key.Binding
	Tabs    [7]key.Binding
	Views   key.Binding

	Up     key.Binding
	Down   key.Binding
	Left   key.Binding
	Right  key.Binding
	PgUp   key.Binding
	PgDown key.Binding
	Top    key.Binding
	Bottom key.Binding
	Enter  key.Binding

	Filter  key.Binding
	Logs    key.Binding
	Shell   key.Binding
	Delete  key.Binding
	Mode    key.Binding
	Refresh key.Binding
	Replay  key.Binding
	New     key.Binding
	Source  key.Binding
	Check   key.Binding
	Lang    key.Binding
	Next    key.Binding
	Prev    key.Binding
	Create  key.Binding
	Yes     key.Binding
	No      key.Binding
}

// DefaultKeyMap returns the keys.
func DefaultKeyMap() KeyMap {
	k := KeyMap{
		Quit:    key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Help:    key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Back:    key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		NextTab: key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next view")),
		PrevTab: key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous view")),

		Up:     key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:   key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		Left:   key.NewBinding(key.WithKeys("left"), key.WithHelp("←", "previous")),
		Right:  key.NewBinding(key.WithKeys("right"), key.WithHelp("→", "next")),
		PgUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PgDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+d"), key.WithHelp("pgdn", "page down")),
		Top:    key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g", "top")),
		Bottom: key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G", "bottom")),
		Enter:  key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "details")),

		Filter:  key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Logs:    key.NewBinding(key.WithKeys("l"), key.WithHelp("l", "logs")),
		Shell:   key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "shell")),
		Delete:  key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "delete")),
		Mode:    key.NewBinding(key.WithKeys("m"), key.WithHelp("m", "mode")),
		Refresh: key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh")),
		Replay:  key.NewBinding(key.WithKeys(" "), key.WithHelp("space", "replay")),
		New:     key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "new trace")),
		Source:  key.NewBinding(key.WithKeys("f"), key.WithHelp("f", "source")),
		Check:   key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "check")),
		Lang:    key.NewBinding(key.WithKeys("L"), key.WithHelp("L", "en/中文")),
		Next:    key.NewBinding(key.WithKeys("n", "right"), key.WithHelp("n/→", "next step")),
		Prev:    key.NewBinding(key.WithKeys("p", "left"), key.WithHelp("p/←", "previous step")),
		Create:  key.NewBinding(key.WithKeys("c", "enter"), key.WithHelp("c", "create")),
		Yes:     key.NewBinding(key.WithKeys("y"), key.WithHelp("y", "yes")),
		No:      key.NewBinding(key.WithKeys("n", "esc"), key.WithHelp("n", "no")),
	}
	k.Views = key.NewBinding(key.WithKeys("1", "2", "3", "4", "5", "6", "7"), key.WithHelp("1-7", "views"))
	for i := range k.Tabs {
		n := string(rune('1' + i))
		k.Tabs[i] = key.NewBinding(key.WithKeys(n), key.WithHelp(n, pageNames[i]))
	}
	return k
}

// pageNames are the views in tab order.
var pageNames = [7]string{"Overview", "Pods", "Network", "Topology", "Trace", "Control plane", "Labs"}
