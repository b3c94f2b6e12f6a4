package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/iox"
)

// ExecConfig is a command to run in a running container.
type ExecConfig struct {
	Cmd []string
	// Env is added to the container's environment.
	Env        []EnvVar
	WorkingDir string
	// TTY runs the command on a terminal: Stdout gets everything, Stderr
	// nothing, and Resize changes its size.
	TTY    bool
	Stdin  io.Reader // nil: none (end of file at once)
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // nil: discarded
	Resize <-chan TermSize
}

// TermSize is a terminal's size.
type TermSize struct {
	Rows, Cols uint16
}

// Exec runs a command in a running container, as the container's user,
// and returns its exit code once it has ended and its output has been
// copied. Ending ctx kills it. Stdin is read until it ends or the command
// does (a reader that never ends keeps one goroutine waiting in Read).
func (r *Runtime) Exec(ctx context.Context, id string, e ExecConfig) (int, error) {
	c, err := r.container(id)
	if err != nil {
		return -1, err
	}
	if c.State != Running {
		return -1, fmt.Errorf("container %s is not running", c.Config.Name)
	}
	if len(e.Cmd) == 0 {
		return -1, errors.New("exec: no command given")
	}
	e.Stdout, e.Stderr = iox.Serialize(e.Stdout, e.Stderr)
	if e.Stdout == nil {
		e.Stdout = io.Discard
	}
	if e.Stderr == nil {
		e.Stderr = io.Discard
	}
	conn, err := r.dialShim(ctx, c)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var theirs []*os.File // the command's ends, sent to the shim
	var copies sync.WaitGroup
	var stdinW io.WriteCloser
	defer func() {
		for _, f := range theirs {
			f.Close()
		}
	}()
	if e.TTY {
		master, slave, err := openPTY()
		if err != nil {
			return -1, err
		}
		defer master.Close()
		theirs = append(theirs, slave)
		stdinW = master
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(e.Stdout, master) // ends with EIO once the command's side closes
		}()
		if e.Resize != nil {
			go func() {
				for {
					select {
					case sz, ok := <-e.Resize:
						if !ok {
							return
						}
						unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Rows, Col: sz.Cols})
					case <-ctx.Done():
						return
					}
				}
			}()
		}
	} else {
		inR, inW, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		theirs = append(theirs, inR)
		stdinW = inW
		for _, w := range []io.Writer{e.Stdout, e.Stderr} {
			pr, pw, err := os.Pipe()
			if err != nil {
				inW.Close()
				return -1, err
			}
			theirs = append(theirs, pw)
			copies.Add(1)
			go func() {
				defer copies.Done()
				defer pr.Close()
				io.Copy(w, pr)
			}()
		}
	}
	req := shimRequest{Exec: &execRequest{Args: e.Cmd, Cwd: e.WorkingDir, TTY: e.TTY}}
	for _, v := range e.Env {
		req.Exec.Env = append(req.Exec.Env, v.Name+"="+v.Value)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return -1, err
	}
	fds := make([]int, len(theirs))
	for i, f := range theirs {
		fds[i] = int(f.Fd())
	}
	if _, _, err := conn.WriteMsgUnix(append(b, '\n'), unix.UnixRights(fds...), nil); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.Config.Name, err)
	}
	for _, f := range theirs {
		f.Close()
	}
	theirs = nil
	replies := bufio.NewReader(conn)
	var rep shimReply
	if err := readReply(replies, &rep); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.Config.Name, err)
	}
	if rep.Error != "" {
		if !e.TTY {
			stdinW.Close()
		}
		copies.Wait()
		return -1, fmt.Errorf("exec in %s: %s", c.Config.Name, rep.Error)
	}
	if e.Stdin != nil {
		go func() {
			io.Copy(stdinW, e.Stdin)
			if !e.TTY {
				stdinW.Close()
			} else {
				stdinW.Write([]byte{4}) // ^D: end of input on a terminal
			}
		}()
	} else if !e.TTY {
		stdinW.Close()
	}
	if err := readReply(replies, &rep); err != nil || rep.Exit == nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, fmt.Errorf("exec in %s: the container ended first (%v)", c.Config.Name, err)
	}
	copies.Wait()
	if !e.TTY {
		stdinW.Close()
	}
	return *rep.Exit, nil
}

func readReply(r *bufio.Reader, rep *shimReply) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return err
	}
	*rep = shimReply{}
	return json.Unmarshal(line, rep)
}
