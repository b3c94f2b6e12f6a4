package tui

import (
	"context"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// page is the contract of a view: one tab of the TUI.
type page interface {
	// Init returns the view's first commands.
	Init() tea.Cmd
	// Update handles a message. Keys reach only the active view; every
	// other message reaches every view.
	Update(msg tea.Msg) (page, tea.Cmd)
	// View draws the view in the size it was given.
	View() string
	// SetSize gives the view its size (inside the frame).
	SetSize(width, height int)
	// ShortHelp are the keys the footer shows.
	ShortHelp() []key.Binding
	// FullHelp are the keys the help shows, in groups.
	FullHelp() [][]key.Binding
	// Capturing tells whether the view takes every key (a text input has
	// focus, a dialog is open): the root then handles none of its own but
	// ctrl+c.
	Capturing() bool
}

// env is what every view shares: the cluster, the styles, the keys, the
// clock and the last snapshot. The root owns it and updates snap; views
// read it in Update and View (never from a command's goroutine).
type env struct {
	ctx     context.Context
	cluster Cluster
	styles  *Styles
	keys    KeyMap
	now     func() time.Time
	loc     *time.Location
	snap    *Snapshot
}

// common is embedded in every view: the shared env and the view's size.
type common struct {
	*env
	width, height int
}

// SetSize implements page.
func (c *common) SetSize(width, height int) { c.width, c.height = width, height }

// Capturing implements page for views that never capture keys.
func (c *common) Capturing() bool { return false }

// Init implements page for views with nothing to start.
func (c *common) Init() tea.Cmd { return nil }
