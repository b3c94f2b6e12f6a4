package trace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/capture"
)

// Capture limits.
const (
	// MaxCaptureTimeout caps a capture's duration, whatever it asks.
	MaxCaptureTimeout = time.Minute
	// snapLen keeps whole frames of every probe size klab sends through a
	// 1500-byte underlay (and a little more).
	snapLen = 9216
	// defaultMaxFrames is how many matching frames a target reports.
	defaultMaxFrames = 16
	// MarkerLen is the length of a probe's marker.
	MarkerLen = 16
)

// Validate checks a capture request.
func (r CaptureRequest) Validate() error {
	if len(r.Targets) == 0 {
		return errors.New("capture: no targets")
	}
	if len(r.Marker) < 4 {
		return errors.New("capture: the marker must be at least 4 bytes")
	}
	for i, t := range r.Targets {
		if t.Interface == "" {
			return fmt.Errorf("capture: target %d has no interface", i)
		}
	}
	return nil
}

// Capture runs a capture request here: it opens a capture on every target,
// in the network namespace netnsOf gives for it ("" is the current one),
// calls emit once with a Ready event (after an event with Error for each
// target that could not be opened), then with every frame that carries
// the marker, until ctx ends, the request's timeout passes, every target
// has reported MaxFrames, or emit fails. emit is never called
// concurrently.
func Capture(ctx context.Context, req CaptureRequest, netnsOf func(CaptureTarget) (string, error), emit func(CaptureEvent) error) error {
	if err := req.Validate(); err != nil {
		return err
	}
	timeout := req.Timeout
	if timeout <= 0 || timeout > MaxCaptureTimeout {
		timeout = MaxCaptureTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	maxFrames := req.MaxFrames
	if maxFrames <= 0 {
		maxFrames = defaultMaxFrames
	}
	caps := make([]*capture.Capture, len(req.Targets))
	defer func() {
		for _, c := range caps {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, t := range req.Targets {
		c, err := openTarget(t, netnsOf)
		if err != nil {
			if err := emit(CaptureEvent{Target: i, Error: err.Error()}); err != nil {
				return err
			}
			continue
		}
		caps[i] = c
	}
	if err := emit(CaptureEvent{Ready: true}); err != nil {
		return err
	}
	events := make(chan CaptureEvent)
	var wg sync.WaitGroup
	for i, c := range caps {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lt := int(c.LinkType())
			for n := 0; n < maxFrames; {
				p, err := c.Read(ctx)
				if err != nil {
					return
				}
				if !bytes.Contains(p.Data, req.Marker) {
					continue
				}
				n++
				ev := CaptureEvent{Target: i, Frame: &Frame{Time: p.Time, Outgoing: p.Outgoing, Length: p.Length, LinkType: lt, Data: p.Data}}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(events)
	}()
	var emitErr error
	for ev := range events {
		if emitErr != nil {
			continue // drain until every reader has stopped
		}
		if emitErr = emit(ev); emitErr != nil {
			cancel()
		}
	}
	return emitErr
}

// openTarget opens a capture on t's interface inside its namespace.
func openTarget(t CaptureTarget, netnsOf func(CaptureTarget) (string, error)) (*capture.Capture, error) {
	path, err := netnsOf(t)
	if err != nil {
		return nil, err
	}
	ns, err := netmodes.OpenNetns(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var c *capture.Capture
	err = ns.Do(func() error {
		var err error
		c, err = capture.Open(t.Interface, capture.Options{SnapLen: snapLen})
		return err
	})
	return c, err
}

// Stream is a running capture's events, from an agent or from this
// host: Next returns them in order and io.EOF at the end. Close stops the
// capture and ends a Next that waits; it may be called more than once.
type Stream interface {
	Next() (CaptureEvent, error)
	Close() error
}

// LocalCapture runs req here, in the namespaces its targets name, as a
// Stream (the CLI's captures of the underlay and the router).
func LocalCapture(ctx context.Context, req CaptureRequest) Stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &localStream{events: make(chan CaptureEvent), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = Capture(ctx, req, func(t CaptureTarget) (string, error) { return t.Netns, nil }, func(ev CaptureEvent) error {
			select {
			case s.events <- ev:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	return s
}

type localStream struct {
	events chan CaptureEvent
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (s *localStream) Next() (CaptureEvent, error) {
	select {
	case ev := <-s.events:
		return ev, nil
	case <-s.done:
		if s.err != nil && !errors.Is(s.err, context.Canceled) {
			return CaptureEvent{}, s.err
		}
		return CaptureEvent{}, io.EOF
	}
}

func (s *localStream) Close() error {
	s.cancel()
	<-s.done
	return nil
}
