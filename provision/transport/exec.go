package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/cgroups"
)

// Namespaces reaches a machine that is a set of namespaces on this host,
// entered with nsenter(1): the Go runtime is multi-threaded, and a
// multi-threaded process may not join a mount namespace, so a small C
// program does it for us.
type Namespaces struct {
	Node string
	// Files that pin the machine's namespaces.
	Net, UTS, Mount string
	// Cgroup, when set, receives every process started on the machine, so
	// that none escapes "down".
	Cgroup *cgroups.Group
	// Dirs maps directories of the machine to the host directories mounted
	// there, so files are copied directly rather than through a pipe.
	Dirs map[string]string
}

var _ Transport = (*Namespaces)(nil)

func (n *Namespaces) command(ctx context.Context, c Cmd) (*exec.Cmd, func(), error) {
	if len(c.Args) == 0 {
		return nil, nil, errors.New("no command")
	}
	args := []string{"--net=" + n.Net}
	if n.UTS != "" {
		args = append(args, "--uts="+n.UTS)
	}
	if n.Mount != "" {
		args = append(args, "--mount="+n.Mount)
	}
	args = append(args, "--")
	args = append(args, c.Args...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append([]string{"PATH=" + DefaultPath, "HOME=/root", "LANG=C.UTF-8"}, passEnv()...)
	cmd.Env = append(cmd.Env, c.Env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	release := func() {}
	if n.Cgroup != nil {
		if n.Cgroup.H.V2 {
			f, err := n.Cgroup.Open()
			if err != nil {
				return nil, nil, fmt.Errorf("%s: open cgroup: %w", n.Node, err)
			}
			cmd.SysProcAttr.UseCgroupFD = true
			cmd.SysProcAttr.CgroupFD = int(f.Fd())
			release = func() { f.Close() }
		}
	}
	return cmd, release, nil
}

// passEnv returns the caller's variables that describe its terminal.
func passEnv() []string {
	var out []string
	for _, k := range []string{"TERM", "COLORTERM", "NO_COLOR"} {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// afterStart puts a started process into the machine's cgroup when the
// cgroup could not be joined at clone time (cgroup v1).
func (n *Namespaces) afterStart(cmd *exec.Cmd) {
	if n.Cgroup != nil && !n.Cgroup.H.V2 {
		_ = n.Cgroup.Add(cmd.Process.Pid)
	}
}

// Run implements Transport.
func (n *Namespaces) Run(ctx context.Context, c Cmd) error {
	cmd, release, err := n.command(ctx, c)
	if err != nil {
		return err
	}
	defer release()
	cmd.Stdin = c.Stdin
	var t *tail
	cmd.Stdout, cmd.Stderr, t = outputs(c)
	if err := cmd.Start(); err != nil {
		return &RunError{Node: n.Node, Args: c.Args, Code: -1, Err: err}
	}
	n.afterStart(cmd)
	if err := cmd.Wait(); err != nil {
		return runError(n.Node, c.Args, t.buf, err)
	}
	return nil
}

func runError(node string, args []string, out []byte, err error) error {
	code := -1
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	return &RunError{Node: node, Args: args, Output: out, Code: code, Err: err}
}

// Start implements Transport.
func (n *Namespaces) Start(ctx context.Context, c Cmd, logPath string) error {
	host, ok := n.hostPath(logPath)
	if !ok {
		return fmt.Errorf("%s: log %s is not in a directory klab manages", n.Node, logPath)
	}
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	log, err := os.OpenFile(host, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	// Not bound to ctx: the process outlives this call.
	cmd, release, err := n.command(context.WithoutCancel(ctx), c)
	if err != nil {
		return err
	}
	defer release()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr.Setsid = true
	if err := cmd.Start(); err != nil {
		return &RunError{Node: n.Node, Args: c.Args, Code: -1, Err: err}
	}
	n.afterStart(cmd)
	go cmd.Wait() // reap it if it ends while we still run
	return nil
}

// Interactive implements Transport. The command shares the caller's
// terminal; the caller should ignore SIGINT while it runs.
func (n *Namespaces) Interactive(ctx context.Context, c Cmd, in *os.File) error {
	cmd, release, err := n.command(context.WithoutCancel(ctx), c)
	if err != nil {
		return err
	}
	defer release()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, c.Stdout, c.Stderr
	if err := cmd.Start(); err != nil {
		return &RunError{Node: n.Node, Args: c.Args, Code: -1, Err: err}
	}
	n.afterStart(cmd)
	if err := cmd.Wait(); err != nil {
		return runError(n.Node, c.Args, nil, err)
	}
	return nil
}

// hostPath maps a path on the machine to the host path behind it.
func (n *Namespaces) hostPath(p string) (string, bool) {
	p = filepath.Clean(p)
	best := ""
	for dir := range n.Dirs {
		if (p == dir || strings.HasPrefix(p, dir+"/")) && len(dir) > len(best) {
			best = dir
		}
	}
	if best == "" {
		return "", false
	}
	return filepath.Join(n.Dirs[best], strings.TrimPrefix(p, best)), true
}

// WriteFile implements Transport.
func (n *Namespaces) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	if host, ok := n.hostPath(path); ok {
		return writeAtomic(host, mode, func(f *os.File) error {
			_, err := io.Copy(f, r)
			return err
		})
	}
	return n.Run(ctx, Cmd{Args: writeFileScript(path, mode), Stdin: r})
}

// CopyFile implements Transport. Within a managed directory the copy
// shares blocks with the original where the filesystem can (reflink), and
// is an in-kernel copy otherwise.
func (n *Namespaces) CopyFile(ctx context.Context, local, path string, mode fs.FileMode) error {
	src, err := os.Open(local)
	if err != nil {
		return err
	}
	defer src.Close()
	host, ok := n.hostPath(path)
	if !ok {
		return n.WriteFile(ctx, path, src, mode)
	}
	return writeAtomic(host, mode, func(dst *os.File) error {
		if unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil {
			return nil
		}
		_, err := io.Copy(dst, src)
		return err
	})
}

// Close implements Transport.
func (n *Namespaces) Close() error { return nil }

// writeAtomic writes a file through a temporary file and a rename.
func writeAtomic(path string, mode fs.FileMode, fill func(*os.File) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// writeFileScript is a shell command that writes stdin to path atomically.
func writeFileScript(path string, mode fs.FileMode) []string {
	return []string{"sh", "-c", `set -e; d=$(dirname "$1"); mkdir -p "$d"; t="$d/.$(basename "$1").tmp$$"; cat > "$t"; chmod "$2" "$t"; mv -f "$t" "$1"`,
		"sh", path, fmt.Sprintf("%o", mode.Perm())}
}
