// Package iox holds small io helpers klab's packages share.
package iox

import (
	"bytes"
	"io"
	"reflect"
	"sync"
)

// Serialize returns the writers for a command's standard output and
// error, which are copied from two goroutines: when the caller gave the
// same writer for both (a bytes.Buffer, say), both become one writer that
// takes a lock around each Write, so that neither loses the other's data.
func Serialize(stdout, stderr io.Writer) (io.Writer, io.Writer) {
	if stdout == nil || !reflect.TypeOf(stdout).Comparable() || stdout != stderr {
		return stdout, stderr
	}
	l := &Locked{W: stdout}
	return l, l
}

// Locked is a writer safe for concurrent use.
type Locked struct {
	mu sync.Mutex
	W  io.Writer
}

func (l *Locked) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.W.Write(p)
}

// Buffer is a bytes.Buffer that writers and a reader may use at once:
// a command's two streams, or a command still writing while a test reads.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
