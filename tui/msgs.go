package tui

import (
	"context"
	"time"

	tea "github.com/charmbracelet/bubbletea"
)

// ErrMsg is the TUI's one error message: what failed (Op) and why. The
// root shows it above the footer; the view that started Op also gets it,
// to leave its waiting state.
type ErrMsg struct {
	Op  string
	Err error
}

func (e ErrMsg) Error() string { return e.Op + ": " + e.Err.Error() }

// Messages that carry what a command found.
type (
	presenceMsg   struct{ p Presence }
	snapshotMsg   struct{ snap *Snapshot }
	feedMsg       struct{ items []FeedItem }
	reportsMsg    struct{ reports []NetworkReport }
	switchDoneMsg struct {
		req SwitchRequest
		res *SwitchResult
		err error
	}
	traceDoneMsg struct {
		req TraceRequest
		res *TraceResult
	}
	describeMsg struct {
		ref  PodRef
		text string
	}
	logLinesMsg struct {
		id    int
		lines []string
	}
	logEndedMsg struct {
		id  int
		err error
	}
	deletedMsg    struct{ ref PodRef }
	shellDoneMsg  struct{}
	labsMsg       struct{ labs []Lab }
	labCheckMsg   struct{ check *LabCheck }
	createLineMsg struct{ lines []string }
	createDoneMsg struct{ err error }
	// tickMsg animates: id says which animation it belongs to.
	tickMsg struct{ id int }
)

// errCmd wraps an error of op, unless ctx is over (the TUI is closing).
func errMsg(ctx context.Context, op string, err error) tea.Msg {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return ErrMsg{Op: op, Err: err}
}

// receive waits for the next values on ch and wraps every value that is
// already there with the first, so that a burst becomes one message. It
// returns nil when ch is closed.
func receive[T any](ch <-chan T, wrap func([]T) tea.Msg) tea.Cmd {
	return func() tea.Msg {
		v, ok := <-ch
		if !ok {
			return nil
		}
		batch := []T{v}
		for len(batch) < 512 {
			select {
			case v, ok := <-ch:
				if !ok {
					return wrap(batch)
				}
				batch = append(batch, v)
			default:
				return wrap(batch)
			}
		}
		return wrap(batch)
	}
}

// stream runs a call that sends into ch until it returns, then closes ch
// (which ends the receiving command) and reports the call's error as op.
func stream[T any](ctx context.Context, op string, ch chan T, call func(context.Context, chan<- T) error) tea.Cmd {
	return func() tea.Msg {
		err := call(ctx, ch)
		close(ch)
		return errMsg(ctx, op, err)
	}
}

// tick fires a tickMsg for id after d.
func tick(id int, d time.Duration) tea.Cmd {
	return tea.Tick(d, func(time.Time) tea.Msg { return tickMsg{id: id} })
}

// keyMsg is a key press.
type keyMsg = tea.KeyMsg
