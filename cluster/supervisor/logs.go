package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// LogPath is a component's log file.
func LogPath(dir, component string) string { return filepath.Join(dir, component+".log") }

// Tail writes the last n lines of a log (all when n < 0) to w and, with
// follow, keeps writing what is appended until ctx ends, across rotation.
func Tail(ctx context.Context, path string, n int, follow bool, w io.Writer) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no log %s: is the component's name right? (klab status lists them)", path)
	}
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	if n >= 0 {
		if err := seekLastLines(f, n); err != nil {
			return err
		}
	}
	if _, err := io.Copy(w, f); err != nil {
		return err
	}
	if !follow {
		return nil
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		// Rotated or truncated: start again from the new file.
		cur, err1 := f.Stat()
		now, err2 := os.Stat(path)
		pos, _ := f.Seek(0, io.SeekCurrent)
		if err1 == nil && err2 == nil && (!os.SameFile(cur, now) || now.Size() < pos) {
			nf, err := os.Open(path)
			if err != nil {
				continue
			}
			f.Close()
			f = nf
		}
	}
}

// seekLastLines positions f at the start of its last n lines.
func seekLastLines(f *os.File, n int) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if n == 0 {
		_, err := f.Seek(0, io.SeekEnd)
		return err
	}
	const chunk = 64 << 10
	lines := 0
	buf := make([]byte, chunk)
	for end := size; end > 0; {
		start := max(0, end-chunk)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			lines++
			if lines == n {
				_, err := f.Seek(start+int64(i)+1, io.SeekStart)
				return err
			}
		}
		end = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}
