package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/cluster/runtime/image"
	"github.com/klab-dev/klab/cluster/runtime/internal/fsroot"
	"github.com/klab-dev/klab/internal/cgroups"
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// StartContainer creates a container in a sandbox and starts it. A spec
// that cannot run is a *StartError with the reason for the pod's status
// (an unknown image, no command, an unknown volume, a command that does
// not exist); then nothing is left behind.
func (r *Runtime) StartContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (_ *Container, err error) {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return nil, err
	}
	if !sb.Ready {
		return nil, fmt.Errorf("sandbox %s is not running (its pause process is gone): remove and recreate it", sandboxID)
	}
	if !nameRE.MatchString(cfg.Name) {
		return nil, configError("bad container name %q: want a DNS label", cfg.Name)
	}
	img, err := r.cfg.Images.Resolve(ctx, cfg.Image)
	if err != nil {
		var nf *image.NotFoundError
		if errors.As(err, &nf) {
			return nil, &StartError{Reason: ReasonImageNotFound, Err: err}
		}
		return nil, fmt.Errorf("container %s: %w", cfg.Name, err)
	}
	rootfs := r.cfg.Images.Rootfs(img)
	proc, err := r.process(sb, cfg, img, rootfs)
	if err != nil {
		return nil, err
	}
	binds, err := r.binds(sb, cfg)
	if err != nil {
		return nil, err
	}

	id := sandboxID + "-" + randomID("")[:8]
	c := &Container{
		ID:        id,
		SandboxID: sandboxID,
		Config:    cfg,
		ImageID:   img.ID,
		LogPath:   r.logPath(sandboxID, cfg.Name, cfg.Attempt),
	}
	dir := r.containerDir(id)
	defer func() {
		if err != nil {
			r.killContainer(context.WithoutCancel(ctx), c)
			r.removeContainerFiles(c)
			os.Remove(c.LogPath)
		}
	}()
	for _, d := range []string{filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs"), filepath.Dir(c.LogPath), r.cfg.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(c.LogPath); err == nil {
		return nil, fmt.Errorf("container %s attempt %d already has a log %s: give each start its own attempt", cfg.Name, cfg.Attempt, c.LogPath)
	}
	rel := containerCgroup(r.cfg.CgroupParent, sandboxID, id)
	if err := r.createGroups(rel); err != nil {
		return nil, err
	}
	if err := r.applyLimits(rel, cfg.Resources); err != nil {
		return nil, fmt.Errorf("container %s: %w", cfg.Name, err)
	}
	spec := shimSpec{
		ID:       id,
		Rootfs:   filepath.Join(dir, "rootfs"),
		Lower:    []string{rootfs},
		Upper:    filepath.Join(dir, "upper"),
		Work:     filepath.Join(dir, "work"),
		Binds:    binds,
		Process:  proc,
		OwnPID:   !sb.Config.SharePID,
		Dir:      dir,
		Socket:   r.socketPath(id),
		Log:      c.LogPath,
		CgroupV2: r.v2Dir(rel),
		CgroupV1: r.v1Dirs(rel),
		InfraV1:  r.v1Dirs(infraCgroup(r.cfg.CgroupParent, sandboxID)),
	}
	if err := writeJSON(filepath.Join(dir, "container.json"), c); err != nil {
		return nil, err
	}
	if err := r.startShim(ctx, sb, c, &spec); err != nil {
		return nil, err
	}
	c.State = Running
	if err := writeJSON(filepath.Join(dir, "container.json"), c); err != nil {
		return nil, err
	}
	return c, nil
}

// process merges the image's config and the container's into what the
// shim runs.
func (r *Runtime) process(sb *Sandbox, cfg ContainerConfig, img *image.Image, rootfs string) (process, error) {
	args := argv(img.Config, cfg)
	if len(args) == 0 {
		return process{}, configError("container %q has no command: image %s sets none, so give the container one", cfg.Name, img.Name)
	}
	root, err := fsroot.Open(rootfs)
	if err != nil {
		return process{}, fmt.Errorf("container %s: %w", cfg.Name, err)
	}
	defer root.Close()
	passwd := parsePasswd(strings.NewReader(readIn(root, "etc/passwd")))
	groups := parseGroup(strings.NewReader(readIn(root, "etc/group")))
	uid, gid, extra, home, err := resolveUser(cfg.User, img.Config.User, passwd, groups)
	if err != nil {
		return process{}, configError("container %q: %v", cfg.Name, err)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = img.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if cwd, err = cleanContainerPath(cwd); err != nil {
		return process{}, configError("container %q: working directory: %v", cfg.Name, err)
	}
	return process{
		Args:   args,
		Env:    mergeEnv(img.Config.Env, cfg.Env, sb.Config.Hostname, home, cfg.TTY),
		Cwd:    cwd,
		UID:    uid,
		GID:    gid,
		Groups: extra,
		TTY:    cfg.TTY,
	}, nil
}

// readIn reads a small file inside an image's root, or "".
func readIn(root *fsroot.Root, rel string) string {
	fd, err := root.OpenFile(rel, unix.O_RDONLY, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	b := make([]byte, 1<<20)
	n, _ := f.Read(b)
	return string(b[:n])
}

// binds lists what is bind-mounted into the container: the pod's /etc
// files, then its volume mounts.
func (r *Runtime) binds(sb *Sandbox, cfg ContainerConfig) ([]bindMount, error) {
	dir := r.sandboxDir(sb.ID)
	var out []bindMount
	taken := map[string]bool{}
	for _, m := range cfg.Mounts {
		p, err := cleanContainerPath(m.Path)
		if err != nil {
			return nil, configError("container %q mounts volume %q: %v", cfg.Name, m.Volume, err)
		}
		taken[p] = true
	}
	for _, f := range []string{"hosts", "hostname", "resolv.conf"} {
		if !taken["/etc/"+f] {
			out = append(out, bindMount{Source: filepath.Join(dir, f), Target: "/etc/" + f})
		}
	}
	for _, m := range cfg.Mounts {
		var vol *Volume
		for i := range sb.Config.Volumes {
			if sb.Config.Volumes[i].Name == m.Volume {
				vol = &sb.Config.Volumes[i]
			}
		}
		if vol == nil {
			return nil, configError("container %q mounts volume %q, which the pod does not have", cfg.Name, m.Volume)
		}
		src := filepath.Join(dir, "volumes", vol.Name)
		if vol.HostPath != nil {
			src = vol.HostPath.Path
			if _, err := os.Stat(src); err != nil {
				return nil, configError("container %q mounts volume %q: host path %s does not exist on %s", cfg.Name, m.Volume, src, r.cfg.Node)
			}
		}
		if m.SubPath != "" {
			sub := path.Clean(m.SubPath)
			if path.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
				return nil, configError("container %q mounts volume %q: subPath %q must be relative and stay inside the volume", cfg.Name, m.Volume, m.SubPath)
			}
			root, err := fsroot.Open(src)
			if err != nil {
				return nil, configError("container %q mounts volume %q: %v", cfg.Name, m.Volume, err)
			}
			fd, err := root.MkdirAll(sub, 0o755)
			root.Close()
			if err != nil {
				return nil, configError("container %q mounts volume %q: subPath: %v", cfg.Name, m.Volume, err)
			}
			// The directory as resolved inside the volume, so a symlink in
			// it cannot point the mount elsewhere.
			real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			unix.Close(fd)
			if err != nil {
				return nil, err
			}
			src = real
		}
		p, _ := cleanContainerPath(m.Path)
		out = append(out, bindMount{Source: src, Target: p, ReadOnly: m.ReadOnly})
	}
	return out, nil
}

// startShim starts the container's shim in the pod's namespaces and
// waits for its word that the main process runs.
func (r *Runtime) startShim(ctx context.Context, sb *Sandbox, c *Container, spec *shimSpec) error {
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(spec.Dir, "shim.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(r.cfg.Binary, "internal", "shim")
	cmd.Env = helperEnv(2)
	cmd.Stdin = strings.NewReader(string(specJSON))
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	flags := uintptr(syscall.CLONE_NEWNS)
	kinds := []string{"net", "ipc", "uts"}
	if sb.Config.SharePID {
		kinds = append(kinds, "pid")
	} else {
		flags |= syscall.CLONE_NEWPID
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: true}
	if dir := r.v2Dir(infraCgroup(r.cfg.CgroupParent, sb.ID)); dir != "" {
		cg, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer cg.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.Fd())
	}
	if err := startInNamespaces(cmd, sb.PausePID, kinds); err != nil {
		return fmt.Errorf("container %s: start shim: %w", c.Config.Name, err)
	}
	go cmd.Wait() // reap it, should it end while this process runs
	c.ShimPID = cmd.Process.Pid
	c.ShimStart = startTime(c.ShimPID)
	c.Started = time.Now().UTC()
	answer := make(chan shimStatus, 1)
	go func() {
		var st shimStatus
		line, err := bufio.NewReader(out).ReadBytes('\n')
		if err != nil {
			st.Error = "the shim ended before the container ran"
		} else if err := json.Unmarshal(line, &st); err != nil {
			st.Error = fmt.Sprintf("the shim said %q", line)
		}
		answer <- st
	}()
	var st shimStatus
	select {
	case st = <-answer:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("container %s: the shim did not answer in 30s", c.Config.Name)
	}
	if st.Error != "" {
		msg := st.Error
		if b, _ := os.ReadFile(logf.Name()); len(b) > 0 && st.Reason == "" {
			msg += ": " + strings.TrimSpace(string(b))
		}
		err := fmt.Errorf("container %s: %s", c.Config.Name, msg)
		if st.Reason != "" {
			return &StartError{Reason: st.Reason, Err: err}
		}
		return err
	}
	c.PID = r.mainPID(c)
	return nil
}

// mainPID finds the main process's PID as this process sees it: the
// shim's child in the container's group (the shim knows it only in the
// container's PID namespace).
func (r *Runtime) mainPID(c *Container) int {
	g := cgroups.Group{H: r.track, Rel: containerCgroup(r.cfg.CgroupParent, c.SandboxID, c.ID)}
	pids, _ := g.Procs()
	for _, p := range pids {
		if parentPID(p) == c.ShimPID {
			return p
		}
	}
	return 0
}

// container reads a container's record.
func (r *Runtime) container(id string) (*Container, error) {
	var c Container
	if strings.ContainsAny(id, "/.") || id == "" {
		return nil, fmt.Errorf("no container %q on %s", id, r.cfg.Node)
	}
	if err := readJSON(filepath.Join(r.containerDir(id), "container.json"), &c); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no container %q on %s", id, r.cfg.Node)
		}
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	r.fillState(&c)
	return &c, nil
}

// fillState sets State and Exit from the shim and exit.json.
func (r *Runtime) fillState(c *Container) {
	var rec exitRecord
	err := readJSON(filepath.Join(r.containerDir(c.ID), "exit.json"), &rec)
	if err == nil {
		c.State = Exited
		c.Exit = r.exitStatus(c, &rec)
		return
	}
	if alive(c.ShimPID, c.ShimStart) {
		c.State = Running
		return
	}
	c.State = Exited
	c.Exit = r.exitStatus(c, nil)
}

// exitStatus interprets an exit record (nil: the shim died without one).
func (r *Runtime) exitStatus(c *Container, rec *exitRecord) *ExitStatus {
	if rec == nil {
		return &ExitStatus{Code: 128 + int(syscall.SIGKILL), Signal: "SIGKILL", Reason: ReasonError,
			Message: "the container's shim ended without recording an exit (killed?)", FinishedAt: time.Now().UTC()}
	}
	st := &ExitStatus{Code: rec.Code, Signal: rec.Signal}
	st.FinishedAt, _ = time.Parse(time.RFC3339Nano, rec.FinishedAt)
	switch {
	case rec.Code == 0:
		st.Reason = ReasonCompleted
	case rec.Signal == "SIGKILL" && r.oomKilled(containerCgroup(r.cfg.CgroupParent, c.SandboxID, c.ID)):
		st.Reason = ReasonOOMKilled
	default:
		st.Reason = ReasonError
	}
	return st
}

// Status returns a container with its state.
func (r *Runtime) Status(ctx context.Context, id string) (*Container, error) {
	return r.container(id)
}

// ListContainers returns the node's containers with their states.
func (r *Runtime) ListContainers(ctx context.Context) ([]Container, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.StateDir, "containers"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var out []Container
	for _, e := range entries {
		c, err := r.container(e.Name())
		if err != nil {
			continue
		}
		out = append(out, *c)
	}
	return out, nil
}

// Wait waits until the container's main process has ended and returns
// how it ended.
func (r *Runtime) Wait(ctx context.Context, id string) (*ExitStatus, error) {
	c, err := r.container(id)
	if err != nil {
		return nil, err
	}
	if c.State == Running {
		if err := waitGone(ctx, c.ShimPID, c.ShimStart); err != nil {
			return nil, fmt.Errorf("container %s: %w", c.Config.Name, err)
		}
		r.fillState(c)
	}
	return c.Exit, nil
}

// Stop stops a container: SIGTERM to its main process, then, after
// grace, SIGKILL to every process in it. It returns how it ended.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) (*ExitStatus, error) {
	c, err := r.container(id)
	if err != nil {
		return nil, err
	}
	if c.State != Running {
		return c.Exit, nil
	}
	if grace > 0 {
		if err := r.signal(ctx, c, syscall.SIGTERM); err == nil {
			gctx, cancel := context.WithTimeout(ctx, grace)
			st, err := r.Wait(gctx, id)
			cancel()
			if err == nil {
				return st, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	if err := r.killContainer(ctx, c); err != nil {
		return nil, err
	}
	return r.Wait(ctx, id)
}

// killContainer kills every process of the container (not its shim, which
// then records the exit and ends).
func (r *Runtime) killContainer(ctx context.Context, c *Container) error {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	g := cgroups.Group{H: r.track, Rel: containerCgroup(r.cfg.CgroupParent, c.SandboxID, c.ID)}
	if err := g.Kill(kctx); err != nil {
		return fmt.Errorf("container %s: %w", c.Config.Name, err)
	}
	return nil
}

// signal asks the shim to signal the main process.
func (r *Runtime) signal(ctx context.Context, c *Container, sig syscall.Signal) error {
	conn, err := r.dialShim(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(shimRequest{Signal: int(sig)}); err != nil {
		return err
	}
	var rep shimReply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return fmt.Errorf("container %s: signal: %w", c.Config.Name, err)
	}
	if rep.Error != "" {
		return fmt.Errorf("container %s: signal: %s", c.Config.Name, rep.Error)
	}
	return nil
}

func (r *Runtime) dialShim(ctx context.Context, c *Container) (*net.UnixConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", r.socketPath(c.ID))
	if err != nil {
		return nil, fmt.Errorf("container %s is not running (its shim does not answer): %w", c.Config.Name, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn.(*net.UnixConn), nil
}

// RemoveContainer kills the container if it still runs and removes its
// cgroups, files, socket and log. Removing a container that is gone is
// not an error.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	c, err := r.container(id)
	if err != nil {
		if _, serr := os.Stat(r.containerDir(id)); serr != nil {
			return nil
		}
		return err
	}
	if err := r.killContainer(ctx, c); err != nil {
		return err
	}
	if c.ShimPID > 0 {
		if err := waitGone(ctx, c.ShimPID, c.ShimStart); err != nil {
			return err
		}
	}
	return errors.Join(r.removeContainerFiles(c), removeLog(c.LogPath))
}

// removeContainerFiles removes a container's cgroups, state and socket;
// its processes must be gone.
func (r *Runtime) removeContainerFiles(c *Container) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if c.ShimPID > 0 && alive(c.ShimPID, c.ShimStart) {
		syscall.Kill(c.ShimPID, syscall.SIGKILL)
		if err := waitGone(ctx, c.ShimPID, c.ShimStart); err != nil {
			errs = append(errs, err)
		}
	}
	if err := r.removeGroups(ctx, containerCgroup(r.cfg.CgroupParent, c.SandboxID, c.ID)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(r.containerDir(c.ID)); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(r.socketPath(c.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeLog removes a log file and its directory once empty.
func removeLog(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	os.Remove(filepath.Dir(p))
	return nil
}

// exitCode turns a wait status into a shell-style exit code and the
// signal name, if a signal ended the process.
func exitCode(ws unix.WaitStatus) (int, string) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return ws.ExitStatus(), ""
}
