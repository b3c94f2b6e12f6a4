package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Container logs are in the CRI format the kubelet reads: one line per
// line of output, "<RFC 3339 time> <stdout|stderr> <F|P> <text>", where P
// marks a part of a line too long for one entry and F its end.

// maxLogLine is the longest text one log entry holds.
const maxLogLine = 16 << 10

// logFile is a container's log, written by both of its streams.
type logFile struct {
	mu sync.Mutex
	f  *os.File
}

// entry writes one log entry.
func (l *logFile) entry(stream string, full bool, text []byte) error {
	tag := "P"
	if full {
		tag = "F"
	}
	var b bytes.Buffer
	b.Grow(len(text) + 48)
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(text)
	b.WriteByte('\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.f.Write(b.Bytes())
	return err
}

// copyLog copies one stream of a process into the log, line by line,
// until r ends (a terminal's EIO once the other side is closed counts as
// the end).
func (l *logFile) copyLog(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if werr := l.entry(stream, true, bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))); werr != nil {
				return werr
			}
		case errors.Is(err, bufio.ErrBufferFull):
			if werr := l.entry(stream, false, line); werr != nil {
				return werr
			}
		default:
			if len(line) > 0 {
				if werr := l.entry(stream, true, line); werr != nil {
					return werr
				}
			}
			return nil
		}
	}
}

// LogOptions selects what Logs shows.
type LogOptions struct {
	// Follow keeps reading as the container writes, until it has ended
	// or ctx does.
	Follow bool
	// Tail shows only the last lines; 0 or less: all.
	Tail int
	// Timestamps puts each line's time before it.
	Timestamps bool
	// Stream, when set ("stdout" or "stderr"), shows only that stream.
	Stream string
}

// logLine is a parsed log entry.
type logLine struct {
	time   string
	stream string
	full   bool
	text   []byte
}

func parseLogLine(b []byte) (logLine, bool) {
	f := bytes.SplitN(b, []byte(" "), 4)
	if len(f) < 3 {
		return logLine{}, false
	}
	l := logLine{time: string(f[0]), stream: string(f[1]), full: string(f[2]) != "P"}
	if len(f) == 4 {
		l.text = f[3]
	}
	return l, true
}

// Logs writes a container's log for its attempt to w.
func (r *Runtime) Logs(ctx context.Context, id string, o LogOptions, w io.Writer) error {
	c, err := r.container(id)
	if err != nil {
		return err
	}
	f, err := os.Open(c.LogPath)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", c.Config.Name, err)
	}
	defer f.Close()
	out := bufio.NewWriter(w)
	started := true // at the start of an output line (for timestamps)
	emit := func(l logLine) error {
		if o.Stream != "" && l.stream != o.Stream {
			return nil
		}
		if o.Timestamps && started {
			out.WriteString(l.time)
			out.WriteByte(' ')
		}
		out.Write(l.text)
		if l.full {
			out.WriteByte('\n')
		}
		started = l.full
		return nil
	}
	rd := bufio.NewReader(f)
	var pending []byte // a line the writer has not finished yet
	readLines := func(fn func(logLine)) {
		for {
			b, err := rd.ReadBytes('\n')
			pending = append(pending, b...)
			if err != nil {
				return
			}
			if l, ok := parseLogLine(bytes.TrimSuffix(pending, []byte("\n"))); ok {
				fn(l)
			}
			pending = nil
		}
	}
	if o.Tail > 0 {
		var ring []logLine
		ends := 0 // full lines in ring
		readLines(func(l logLine) {
			l.text = bytes.Clone(l.text)
			ring = append(ring, l)
			if l.full {
				ends++
			}
			for ends > o.Tail {
				if ring[0].full {
					ends--
				}
				ring = ring[1:]
			}
		})
		for _, l := range ring {
			emit(l)
		}
	} else {
		readLines(func(l logLine) { emit(l) })
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if !o.Follow {
		return nil
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done := r.exited(c)
		readLines(func(l logLine) { emit(l) })
		if err := out.Flush(); err != nil {
			return err
		}
		if done {
			return nil // it had ended before this last read
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// exited reports whether a container's shim has ended (its log is then
// complete).
func (r *Runtime) exited(c *Container) bool {
	return !alive(c.ShimPID, c.ShimStart)
}
