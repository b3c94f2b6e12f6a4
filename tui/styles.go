package tui

import (
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
)

// Styles are every style the TUI draws with, made for one renderer: its
// colour profile decides how colours degrade (true colour, 256, the 16 ANSI
// colours, or none when NO_COLOR is set or the terminal has none).
type Styles struct {
	// Plain is true when the terminal shows no colour and no attributes:
	// selections and the active tab are then marked with characters.
	Plain bool

	Frame     lipgloss.Style
	Title     lipgloss.Style
	Tab       lipgloss.Style
	TabActive lipgloss.Style
	Header    lipgloss.Style
	Selected  lipgloss.Style
	Dim       lipgloss.Style
	Bold      lipgloss.Style
	OK        lipgloss.Style
	Warn      lipgloss.Style
	Bad       lipgloss.Style
	Accent    lipgloss.Style
	Key       lipgloss.Style
	KeyDesc   lipgloss.Style
	Packet    lipgloss.Style
	Path      lipgloss.Style
	Tunnel    lipgloss.Style
	Added     lipgloss.Style
	Removed   lipgloss.Style
	Input     lipgloss.Style
}

// Colours, each with its 256- and 16-colour fallbacks.
var (
	colAccent = lipgloss.CompleteColor{TrueColor: "#5FAFFF", ANSI256: "75", ANSI: "12"}
	colOK     = lipgloss.CompleteColor{TrueColor: "#5FD787", ANSI256: "78", ANSI: "10"}
	colWarn   = lipgloss.CompleteColor{TrueColor: "#FFD75F", ANSI256: "221", ANSI: "11"}
	colBad    = lipgloss.CompleteColor{TrueColor: "#FF5F5F", ANSI256: "203", ANSI: "9"}
	colDim    = lipgloss.CompleteColor{TrueColor: "#808080", ANSI256: "244", ANSI: "8"}
	colFrame  = lipgloss.CompleteColor{TrueColor: "#5F87AF", ANSI256: "67", ANSI: "4"}
	colPacket = lipgloss.CompleteColor{TrueColor: "#FF87FF", ANSI256: "213", ANSI: "13"}
	colTunnel = lipgloss.CompleteColor{TrueColor: "#AF87FF", ANSI256: "141", ANSI: "5"}
	colSelBg  = lipgloss.CompleteColor{TrueColor: "#303A4A", ANSI256: "237", ANSI: "4"}
	colSelFg  = lipgloss.CompleteColor{TrueColor: "#FFFFFF", ANSI256: "255", ANSI: "15"}
)

// NewStyles makes the styles for a renderer (lipgloss.DefaultRenderer() for
// the terminal on stdout).
func NewStyles(r *lipgloss.Renderer) *Styles {
	s := r.NewStyle
	return &Styles{
		Plain:     r.ColorProfile() == termenv.Ascii,
		Frame:     s().Foreground(colFrame),
		Title:     s().Bold(true),
		Tab:       s().Foreground(colDim),
		TabActive: s().Bold(true).Reverse(true),
		Header:    s().Bold(true).Foreground(colAccent),
		Selected:  s().Background(colSelBg).Foreground(colSelFg),
		Dim:       s().Foreground(colDim),
		Bold:      s().Bold(true),
		OK:        s().Foreground(colOK),
		Warn:      s().Foreground(colWarn),
		Bad:       s().Foreground(colBad),
		Accent:    s().Foreground(colAccent),
		Key:       s().Bold(true).Foreground(colAccent),
		KeyDesc:   s().Foreground(colDim),
		Packet:    s().Bold(true).Foreground(colPacket),
		Path:      s().Bold(true).Foreground(colPacket),
		Tunnel:    s().Foreground(colTunnel),
		Added:     s().Foreground(colOK),
		Removed:   s().Foreground(colBad),
		Input:     s().Foreground(colWarn),
	}
}

// state colours a state word: green when good, yellow when on its way,
// red when bad.
func (s *Styles) state(word string) string {
	switch word {
	case "Running", "running", "Ready", "Established", "Succeeded", "converged", "ok", "Completed":
		return s.OK.Render(word)
	case "Pending", "ContainerCreating", "backoff", "switching", "Terminating", "Connect", "Active", "OpenSent", "OpenConfirm", "waiting":
		return s.Warn.Render(word)
	}
	return s.Bad.Render(word)
}

// check renders ✓ or ✗.
func (s *Styles) check(ok bool) string {
	if ok {
		return s.OK.Render("✓")
	}
	return s.Bad.Render("✗")
}
