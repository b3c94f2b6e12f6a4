package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/cluster/runtime/internal/fsroot"
)

// Shim is a container's init, "klab internal shim", started by the
// runtime in the pod's namespaces with a new mount (and maybe PID)
// namespace. It reads its spec from in, builds the container's root,
// starts the main process, answers on status, and then stays until the
// main process has ended: reaping, logging, serving exec and signal
// requests. It returns once the exit is recorded.
func Shim(in io.Reader, status *os.File) error {
	resumeGC()
	s := &shim{waiters: map[int]chan unix.WaitStatus{}, v2fd: -1, dirfd: -1}
	// Before any child exists, so that no SIGCHLD is missed.
	s.sigs = make(chan os.Signal, 64)
	signal.Notify(s.sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	if err := json.NewDecoder(in).Decode(&s.spec); err != nil {
		return report(status, shimStatus{Error: "read spec: " + err.Error()})
	}
	if err := s.setup(); err != nil {
		return report(status, shimStatus{Error: err.Error()})
	}
	go s.signals()
	pid, err := s.startMain()
	if err != nil {
		return report(status, shimStatus{Error: err.Error(), Reason: ReasonContainerCannotRun})
	}
	if err := report(status, shimStatus{PID: pid}); err != nil {
		return err
	}
	go s.serve()
	return s.finish(<-s.mainWait)
}

// report answers the runtime once; an error is also returned.
func report(status *os.File, st shimStatus) error {
	b, _ := json.Marshal(st)
	_, werr := status.Write(append(b, '\n'))
	status.Close()
	if st.Error != "" {
		return errors.New(st.Error)
	}
	return werr
}

type shim struct {
	spec shimSpec
	sigs chan os.Signal

	// mu serialises forks with the reaper, so that a child's exit is
	// never collected before its waiter is registered, and the v1 cgroup
	// moves around each fork.
	mu       sync.Mutex
	waiters  map[int]chan unix.WaitStatus
	mainPID  int
	mainWait chan unix.WaitStatus

	v2fd    int        // the container's v2 group, for CLONE_INTO_CGROUP
	v1ctr   []*os.File // cgroup.procs of the container's v1 groups
	v1infra []*os.File // cgroup.procs of the pod's infra v1 groups
	procs   *os.File   // the container group's cgroup.procs, to find stragglers
	dirfd   int        // the container's state directory
	log     *logFile
	logs    sync.WaitGroup
	ln      *net.UnixListener
}

// setup opens everything that lives outside the container (cgroups, state
// directory, log, socket) and then builds the container's root and
// pivots into it.
func (s *shim) setup() error {
	sp := &s.spec
	if os.Getpid() != 1 {
		// Orphans of the container come to the shim, not to some process
		// outside it.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("become a subreaper: %w", err)
		}
	}
	for _, d := range sp.InfraV1 {
		f, err := os.OpenFile(filepath.Join(d, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", d, err)
		}
		s.v1infra = append(s.v1infra, f)
	}
	if err := s.moveTo(s.v1infra); err != nil {
		return err
	}
	for _, d := range sp.CgroupV1 {
		f, err := os.OpenFile(filepath.Join(d, "cgroup.procs"), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", d, err)
		}
		s.v1ctr = append(s.v1ctr, f)
	}
	procsDir := ""
	if sp.CgroupV2 != "" {
		fd, err := unix.Open(sp.CgroupV2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", sp.CgroupV2, err)
		}
		s.v2fd = fd
		procsDir = sp.CgroupV2
	} else if len(sp.CgroupV1) > 0 {
		procsDir = sp.CgroupV1[0]
	}
	if procsDir != "" {
		f, err := os.Open(filepath.Join(procsDir, "cgroup.procs"))
		if err != nil {
			return err
		}
		s.procs = f
	}
	fd, err := unix.Open(sp.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", sp.Dir, err)
	}
	s.dirfd = fd
	lf, err := os.OpenFile(sp.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	s.log = &logFile{f: lf}
	os.Remove(sp.Socket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sp.Socket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sp.Socket, err)
	}
	ln.SetUnlinkOnClose(false) // the path is outside the container; the runtime removes it
	s.ln = ln
	return s.buildRoot()
}

// moveTo moves the shim into the groups whose cgroup.procs files are fs.
func (s *shim) moveTo(fs []*os.File) error {
	for _, f := range fs {
		// "0" is the writer, whatever its PID in this namespace.
		if _, err := f.Write([]byte("0")); err != nil {
			return fmt.Errorf("join cgroup %s: %w", filepath.Dir(f.Name()), err)
		}
	}
	return nil
}

// device is a node of the container's /dev.
type device struct {
	name         string
	major, minor uint32
}

var devices = []device{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}

// buildRoot mounts the container's root and pivots into it.
func (s *shim) buildRoot() error {
	sp := &s.spec
	// Nothing done here may reach the node, nor the node's later mounts
	// this namespace; and pivot_root wants a private parent.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(sp.Lower, ":"), sp.Upper, sp.Work)
	if err := unix.Mount("overlay", sp.Rootfs, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount the container's root (overlay %s): %w", opts, err)
	}
	root, err := fsroot.Open(sp.Rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	mounts := []struct {
		target, fstype, source string
		flags                  uintptr
		data                   string
	}{
		{"proc", "proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"dev", "tmpfs", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
		{"dev/pts", "devpts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"dev/shm", "tmpfs", "shm", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=1777,size=65536k"},
		{"sys", "sysfs", "sysfs", unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	for _, m := range mounts {
		err := at(root, m.target, true, func(p string) error {
			return unix.Mount(m.source, p, m.fstype, m.flags, m.data)
		})
		if err != nil {
			return fmt.Errorf("mount %s on /%s: %w", m.fstype, m.target, err)
		}
		if m.target == "dev" {
			if err := makeDev(root); err != nil {
				return err
			}
		}
	}
	for _, b := range sp.Binds {
		st, err := os.Stat(b.Source)
		if err != nil {
			return fmt.Errorf("mount %s: %w", b.Target, err)
		}
		if err := at(root, b.Target, st.IsDir(), func(p string) error {
			return unix.Mount(b.Source, p, "", unix.MS_BIND|unix.MS_REC, "")
		}); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.Source, b.Target, err)
		}
		if b.ReadOnly {
			// The path now leads to the new mount: remount that.
			if err := at(root, b.Target, st.IsDir(), func(p string) error {
				return unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, "")
			}); err != nil {
				return fmt.Errorf("make %s read-only: %w", b.Target, err)
			}
		}
	}
	cwd, err := root.MkdirAll(sp.Process.Cwd, 0o755)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	unix.Close(cwd)
	return pivot(sp.Rootfs)
}

// at runs fn with a path that leads to target inside root (made when
// missing: a directory, or an empty file), resolved so that symlinks in
// the image cannot point it outside.
func at(root *fsroot.Root, target string, dir bool, fn func(path string) error) error {
	var fd int
	var err error
	if dir {
		fd, err = root.MkdirAll(target, 0o755)
	} else {
		fd, err = root.OpenFile(target, unix.O_PATH, 0)
		if errors.Is(err, unix.ENOENT) {
			pfd, base, perr := root.Parent(target)
			if perr != nil {
				return perr
			}
			unix.Unlinkat(pfd, base, 0) // a dangling symlink
			f, cerr := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			unix.Close(pfd)
			if cerr != nil {
				return cerr
			}
			unix.Close(f)
			fd, err = root.OpenFile(target, unix.O_PATH, 0)
		}
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn("/proc/self/fd/" + strconv.Itoa(fd))
}

// makeDev fills the container's /dev tmpfs.
func makeDev(root *fsroot.Root) error {
	dfd, err := root.OpenFile("dev", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	for _, d := range devices {
		if err := unix.Mknodat(dfd, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("make /dev/%s: %w", d.name, err)
		}
		if err := unix.Fchmodat(dfd, d.name, 0o666, 0); err != nil {
			return err
		}
	}
	links := [][2]string{{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"}}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], dfd, l[1]); err != nil {
			return fmt.Errorf("make /dev/%s: %w", l[1], err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := unix.Mkdirat(dfd, d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes rootfs the root and lets go of the old one (and with it
// every mount the namespace copied from the node, pins included).
func pivot(rootfs string) error {
	fd, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchdir(fd); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// The old root is now stacked on "."; detach it.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the old root: %w", err)
	}
	return unix.Chdir("/")
}

// startMain starts the container's main process.
func (s *shim) startMain() (int, error) {
	p := s.spec.Process
	argv0, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return 0, err
	}
	null, err := os.Open("/dev/null")
	if err != nil {
		return 0, err
	}
	defer null.Close()
	var files []uintptr
	var closeAfter []*os.File
	if p.TTY {
		master, slave, err := openPTY()
		if err != nil {
			return 0, err
		}
		closeAfter = append(closeAfter, slave)
		files = []uintptr{slave.Fd(), slave.Fd(), slave.Fd()}
		s.logs.Add(1)
		go func() {
			defer s.logs.Done()
			s.log.copyLog("stdout", master)
			master.Close()
		}()
	} else {
		files = []uintptr{null.Fd()}
		for _, stream := range []string{"stdout", "stderr"} {
			r, w, err := os.Pipe()
			if err != nil {
				return 0, err
			}
			closeAfter = append(closeAfter, w)
			files = append(files, w.Fd())
			s.logs.Add(1)
			go func() {
				defer s.logs.Done()
				s.log.copyLog(stream, r)
				r.Close()
			}()
		}
	}
	defer func() {
		for _, f := range closeAfter {
			f.Close()
		}
	}()
	pid, ch, err := s.spawn(argv0, p, files)
	if err != nil {
		return 0, err
	}
	s.mainPID, s.mainWait = pid, ch
	return pid, nil
}

// spawn forks and execs a process of the container: in its cgroups, as its
// user, in a session of its own.
func (s *shim) spawn(argv0 string, p process, files []uintptr) (int, chan unix.WaitStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.moveTo(s.v1ctr); err != nil {
		return 0, nil, err
	}
	attr := &syscall.ProcAttr{
		Dir:   p.Cwd,
		Env:   p.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: p.UID, Gid: p.GID, Groups: p.Groups},
			Setsid:     true,
			Setctty:    p.TTY,
			Ctty:       0,
		},
	}
	if s.v2fd >= 0 {
		attr.Sys.UseCgroupFD, attr.Sys.CgroupFD = true, s.v2fd
	}
	pid, err := syscall.ForkExec(argv0, p.Args, attr)
	if merr := s.moveTo(s.v1infra); merr != nil && err == nil {
		err = merr
	}
	if err != nil {
		if pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
		return 0, nil, fmt.Errorf("run %s: %w", p.Args[0], err)
	}
	ch := make(chan unix.WaitStatus, 1)
	s.waiters[pid] = ch
	return pid, ch, nil
}

// signals reaps children and passes termination signals on to the main
// process.
func (s *shim) signals() {
	for sig := range s.sigs {
		if sig == unix.SIGCHLD {
			s.reap()
			continue
		}
		s.mu.Lock()
		pid := s.mainPID
		s.mu.Unlock()
		if pid > 0 {
			unix.Kill(pid, sig.(syscall.Signal))
		}
	}
}

// reap collects every exited child and hands the statuses of the ones
// waited for to their waiters.
func (s *shim) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ch, ok := s.waiters[pid]; ok {
			ch <- ws
			delete(s.waiters, pid)
		}
	}
}

// finish ends the container once its main process has: it kills what is
// left of it, lets the log catch up, records the exit and closes.
func (s *shim) finish(ws unix.WaitStatus) error {
	code, sig := exitCode(ws)
	s.killRest()
	done := make(chan struct{})
	go func() { s.logs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		fmt.Fprintln(os.Stderr, "shim: output still open 5s after the container ended; its log may be cut short")
	}
	s.ln.Close()
	rec := exitRecord{Code: code, Signal: sig, FinishedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	b, _ := json.Marshal(rec)
	fd, err := unix.Openat(s.dirfd, "exit.json.tmp", unix.O_CREAT|unix.O_TRUNC|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("record exit: %w", err)
	}
	f := os.NewFile(uintptr(fd), "exit.json.tmp")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("record exit: %w", err)
	}
	f.Close()
	if err := unix.Renameat(s.dirfd, "exit.json.tmp", s.dirfd, "exit.json"); err != nil {
		return fmt.Errorf("record exit: %w", err)
	}
	return nil
}

// killRest kills the container's remaining processes (background jobs,
// exec sessions) and reaps them.
func (s *shim) killRest() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var pids []int
		if s.spec.OwnPID {
			// PID 1 of its own namespace: -1 is everyone else in it.
			if err := unix.Kill(-1, unix.SIGKILL); errors.Is(err, unix.ESRCH) {
				return
			}
		} else {
			pids = s.containerPIDs()
			if len(pids) == 0 {
				return
			}
			for _, p := range pids {
				unix.Kill(p, unix.SIGKILL)
			}
		}
		s.reap()
		time.Sleep(5 * time.Millisecond)
	}
}

// containerPIDs lists the processes in the container's group.
func (s *shim) containerPIDs() []int {
	if s.procs == nil {
		return nil
	}
	b := make([]byte, 64<<10)
	n, _ := s.procs.ReadAt(b, 0)
	var out []int
	for _, f := range strings.Fields(string(b[:n])) {
		if p, err := strconv.Atoi(f); err == nil && p > 0 && p != os.Getpid() {
			out = append(out, p)
		}
	}
	return out
}

// serve answers requests on the socket until it is closed.
func (s *shim) serve() {
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(conn)
	}
}

func (s *shim) handle(conn *net.UnixConn) {
	defer conn.Close()
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	var fds []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if rights, err := unix.ParseUnixRights(&m); err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	enc := json.NewEncoder(conn)
	var req shimRequest
	if err := json.Unmarshal(buf[:n], &req); err != nil {
		enc.Encode(shimReply{Error: "bad request: " + err.Error()})
		return
	}
	switch {
	case req.Signal != 0:
		s.mu.Lock()
		pid := s.mainPID
		s.mu.Unlock()
		if err := unix.Kill(pid, syscall.Signal(req.Signal)); err != nil {
			enc.Encode(shimReply{Error: err.Error()})
			return
		}
		enc.Encode(shimReply{})
	case req.Exec != nil:
		owned := fds
		fds = nil // exec closes them
		s.exec(conn, enc, req.Exec, owned)
	default:
		enc.Encode(shimReply{Error: "empty request"})
	}
}

// exec runs a process in the container for an exec request and reports
// its exit; the process is killed if the caller goes away first. It owns
// fds and closes them.
func (s *shim) exec(conn *net.UnixConn, enc *json.Encoder, req *execRequest, fds []int) {
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	p := s.spec.Process
	p.Args, p.TTY = req.Args, req.TTY
	if len(p.Args) == 0 {
		enc.Encode(shimReply{Error: "no command"})
		return
	}
	p.Env = append(append([]string(nil), p.Env...), req.Env...)
	if req.Cwd != "" {
		p.Cwd = req.Cwd
	}
	var files []uintptr
	switch {
	case req.TTY && len(fds) == 1:
		files = []uintptr{uintptr(fds[0]), uintptr(fds[0]), uintptr(fds[0])}
	case !req.TTY && len(fds) == 3:
		files = []uintptr{uintptr(fds[0]), uintptr(fds[1]), uintptr(fds[2])}
	default:
		enc.Encode(shimReply{Error: fmt.Sprintf("want %d file descriptors, got %d", map[bool]int{true: 1, false: 3}[req.TTY], len(fds))})
		return
	}
	argv0, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		enc.Encode(shimReply{Error: err.Error()})
		return
	}
	pid, ch, err := s.spawn(argv0, p, files)
	if err != nil {
		enc.Encode(shimReply{Error: err.Error()})
		return
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	fds = nil
	enc.Encode(shimReply{PID: pid})
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn)
		close(gone)
	}()
	var ws unix.WaitStatus
	select {
	case ws = <-ch:
	case <-gone:
		unix.Kill(-pid, unix.SIGKILL) // its session's process group
		ws = <-ch
	}
	code, _ := exitCode(ws)
	enc.Encode(shimReply{Exit: &code})
}

// lookPath finds a command in the container's PATH, as execvp would.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("exec %s: %w", file, err)
		}
		return file, nil
	}
	pathEnv := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %q: executable file not found in $PATH (%s)", file, pathEnv)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// openPTY opens a new pseudo-terminal: the master, and its slave
// (TIOCGPTPEER, so that no /dev/pts path is looked up).
func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open a terminal: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock terminal: %w", err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, m.Fd(), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		m.Close()
		return nil, nil, fmt.Errorf("open terminal peer: %w", errno)
	}
	return m, os.NewFile(fd, "pty"), nil
}
