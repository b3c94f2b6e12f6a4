// Package iox holds small io helpers klab's packages share.
package iox

import (
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
