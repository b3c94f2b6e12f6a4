// Package progress prints the steps of a long operation: one line per step
// with its duration, a spinner while it runs (only on a terminal), colour
// only on a terminal and never when NO_COLOR is set.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Printer prints steps to one writer. It is safe for use by one step at a
// time; steps do not nest.
type Printer struct {
	w      io.Writer
	tty    bool
	colour bool
	mu     sync.Mutex
}

// New returns a printer on w. Spinners and colour are enabled when w is a
// terminal (and, for colour, NO_COLOR is unset).
func New(w io.Writer) *Printer {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	_, noColour := os.LookupEnv("NO_COLOR")
	return &Printer{w: w, tty: tty, colour: tty && !noColour}
}

// Discard is a printer that prints nothing.
func Discard() *Printer { return &Printer{w: io.Discard} }

// Colour reports whether the printer writes ANSI colour.
func (p *Printer) Colour() bool { return p.colour }

// Printf prints a plain line.
func (p *Printer) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// Step is one running step.
type Step struct {
	p     *Printer
	msg   string
	start time.Time
	stop  chan struct{}
	done  sync.WaitGroup
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Start begins a step. On a terminal a spinner runs until End.
func (p *Printer) Start(msg string) *Step {
	s := &Step{p: p, msg: msg, start: time.Now(), stop: make(chan struct{})}
	if p.tty {
		s.done.Add(1)
		go s.spin()
	}
	return s
}

func (s *Step) spin() {
	defer s.done.Done()
	t := time.NewTicker(80 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		s.p.mu.Lock()
		fmt.Fprintf(s.p.w, "\r %s %s %s", spinner[i%len(spinner)], s.msg, fmtDur(time.Since(s.start)))
		s.p.mu.Unlock()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// Rename changes the step's message, e.g. to add what it found.
func (s *Step) Rename(msg string) {
	s.p.mu.Lock()
	s.msg = msg
	s.p.mu.Unlock()
}

// End finishes the step: ✓ when err is nil, ✗ otherwise. It returns err.
func (s *Step) End(err error) error {
	d := time.Since(s.start)
	if s.p.tty {
		close(s.stop)
		s.done.Wait()
	}
	mark, colour := "✓", "32"
	if err != nil {
		mark, colour = "✗", "31"
	}
	if s.p.colour {
		mark = "\x1b[" + colour + "m" + mark + "\x1b[0m"
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	prefix := ""
	if s.p.tty {
		prefix = "\r\x1b[K"
	}
	fmt.Fprintf(s.p.w, "%s %s %-52s %s\n", prefix, mark, s.msg, fmtDur(d))
	return err
}

// Do runs fn as a step named msg.
func (p *Printer) Do(msg string, fn func(*Step) error) error {
	s := p.Start(msg)
	return s.End(fn(s))
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return strings.TrimSuffix(d.Round(time.Second).String(), "0s")
	}
}
