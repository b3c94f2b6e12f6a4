// Package transport runs commands on, and copies files to, a machine of the
// cluster: by entering its namespaces (netns nodes) or over SSH (VMs).
package transport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/klab-dev/klab/internal/iox"
)

// Cmd is a command to run on a machine.
type Cmd struct {
	Args   []string
	Env    []string // KEY=VALUE, added to the machine's default environment
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Transport reaches one machine.
type Transport interface {
	// Run runs c and waits for it. A command that fails returns a *RunError.
	Run(ctx context.Context, c Cmd) error
	// Start starts c detached: it keeps running after Start returns and
	// after the caller exits. Its output is appended to logPath on the machine.
	Start(ctx context.Context, c Cmd, logPath string) error
	// Interactive runs c attached to the caller's terminal (a shell, say),
	// with a pseudo-terminal on the machine when in is a terminal.
	Interactive(ctx context.Context, c Cmd, in *os.File) error
	// WriteFile writes r to path on the machine, atomically, creating the
	// parent directories.
	WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error
	// CopyFile copies a local file to path on the machine.
	CopyFile(ctx context.Context, local, path string, mode fs.FileMode) error
	// Close releases the transport.
	Close() error
}

// RunError is a command that failed on a machine: the command, how it
// ended, and the end of what it printed.
type RunError struct {
	Node   string
	Args   []string
	Output []byte
	Code   int // exit code, or -1 when the command did not run to an exit
	Err    error
}

func (e *RunError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %q: %v", e.Node, strings.Join(e.Args, " "), e.Err)
	if out := lastLines(e.Output, 3); out != "" {
		fmt.Fprintf(&b, ": %s", out)
	}
	return b.String()
}

func (e *RunError) Unwrap() error { return e.Err }

// ExitCode is the command's exit code, or -1.
func (e *RunError) ExitCode() int { return e.Code }

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, " | "))
}

// Output runs c and returns its standard output.
func Output(ctx context.Context, t Transport, args ...string) ([]byte, error) {
	var out bytes.Buffer
	err := t.Run(ctx, Cmd{Args: args, Stdout: &out})
	return out.Bytes(), err
}

// tail keeps the last max bytes written to it, for error messages.
type tail struct {
	mu  sync.Mutex // stdout and stderr may both write to it
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

// outputs returns the writers a command's stdout and stderr go to: the
// caller's, with stderr (and stdout, when the caller does not want it) also
// kept in a tail for the error.
func outputs(c Cmd) (stdout, stderr io.Writer, t *tail) {
	t = &tail{max: 4096}
	stdout, stderr = iox.Serialize(c.Stdout, c.Stderr)
	if stdout == nil {
		stdout = t
	}
	if stderr == nil {
		stderr = t
	} else {
		stderr = io.MultiWriter(stderr, t)
	}
	return stdout, stderr, t
}

// ShellQuote quotes args for a POSIX shell.
func ShellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// DefaultPath is the PATH commands get on a machine.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
