package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

var hostnameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// CreateSandbox starts a pod's pause process in new namespaces, pins its
// network namespace and prepares what its containers share (volumes,
// /etc/hosts, /etc/resolv.conf). On failure nothing is left behind.
func (r *Runtime) CreateSandbox(ctx context.Context, cfg SandboxConfig) (sb *Sandbox, err error) {
	id := cfg.ID
	if id == "" {
		id = randomID("p")
	}
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	cfg.ID = id
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	if !hostnameRE.MatchString(cfg.Hostname) {
		return nil, configError("sandbox %s: bad hostname %q: want a DNS label (lower-case letters, digits, '-')", id, cfg.Hostname)
	}
	if err := r.checkVolumes(cfg.Volumes); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, err)
	}
	dir := r.sandboxDir(id)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create sandbox: %s already exists", id)
		}
		return nil, err
	}
	sb = &Sandbox{ID: id, Config: cfg, NetNS: r.netnsPath(id), Created: time.Now().UTC()}
	defer func() {
		if err != nil {
			r.removeSandbox(context.WithoutCancel(ctx), sb)
			sb = nil
		}
	}()
	if err := r.writePodFiles(sb); err != nil {
		return nil, err
	}
	for _, v := range cfg.Volumes {
		if v.EmptyDir {
			if err := os.MkdirAll(filepath.Join(dir, "volumes", v.Name), 0o777); err != nil {
				return nil, err
			}
			// Any container user may write, as in Kubernetes.
			if err := os.Chmod(filepath.Join(dir, "volumes", v.Name), 0o777); err != nil {
				return nil, err
			}
		}
	}
	if err := r.createGroups(infraCgroup(r.cfg.CgroupParent, id)); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, err)
	}
	if err := r.startPause(ctx, sb); err != nil {
		return nil, fmt.Errorf("sandbox %s: start pause: %w", id, err)
	}
	if err := pinNetNS(sb.PausePID, sb.NetNS); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, err)
	}
	if err := writeJSON(filepath.Join(dir, "sandbox.json"), sb); err != nil {
		return nil, err
	}
	sb.Ready = true
	return sb, nil
}

// checkVolumes rejects volumes that cannot be mounted, and makes the
// host paths that the volume's type says to create.
func (r *Runtime) checkVolumes(vols []Volume) error {
	seen := map[string]bool{}
	for _, v := range vols {
		if v.Name == "" || seen[v.Name] {
			return configError("volume name %q is empty or used twice", v.Name)
		}
		seen[v.Name] = true
		if v.EmptyDir == (v.HostPath != nil) {
			return configError("volume %q: want exactly one of emptyDir and hostPath", v.Name)
		}
		if v.HostPath == nil {
			continue
		}
		p := v.HostPath.Path
		if !filepath.IsAbs(p) {
			return configError("volume %q: host path %q is not absolute", v.Name, p)
		}
		st, err := os.Stat(p)
		missing := errors.Is(err, fs.ErrNotExist)
		if err != nil && !missing {
			return configError("volume %q: host path %s: %v", v.Name, p, err)
		}
		switch v.HostPath.Type {
		case "DirectoryOrCreate":
			if missing {
				if err := os.MkdirAll(p, 0o755); err != nil {
					return configError("volume %q: create %s on %s: %v", v.Name, p, r.cfg.Node, err)
				}
				continue
			}
		case "FileOrCreate":
			if missing {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return configError("volume %q: create %s on %s: %v", v.Name, p, r.cfg.Node, err)
				}
				f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					return configError("volume %q: create %s on %s: %v", v.Name, p, r.cfg.Node, err)
				}
				f.Close()
				continue
			}
		}
		if missing {
			return configError("volume %q: host path %s does not exist on %s", v.Name, p, r.cfg.Node)
		}
		want := map[string]fs.FileMode{
			"Directory": fs.ModeDir, "DirectoryOrCreate": fs.ModeDir, "File": 0, "FileOrCreate": 0,
			"Socket": fs.ModeSocket, "CharDevice": fs.ModeCharDevice | fs.ModeDevice, "BlockDevice": fs.ModeDevice,
		}
		if m, ok := want[v.HostPath.Type]; ok && st.Mode().Type() != m {
			return configError("volume %q: host path %s on %s is not a %s", v.Name, p, r.cfg.Node, v.HostPath.Type)
		} else if !ok && v.HostPath.Type != "" {
			return configError("volume %q: unknown hostPath type %q", v.Name, v.HostPath.Type)
		}
	}
	return nil
}

// writePodFiles writes the files every container of the pod mounts.
func (r *Runtime) writePodFiles(sb *Sandbox) error {
	dir := r.sandboxDir(sb.ID)
	node, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	files := map[string]string{
		"hosts":       hostsFile(sb.Config.Hostname, sb.IPs, sb.Config.HostAliases),
		"hostname":    sb.Config.Hostname + "\n",
		"resolv.conf": resolvConf(sb.Config.DNS, node),
	}
	for name, content := range files {
		// In place, not by rename: containers see these files through bind
		// mounts of the inode.
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// SetSandboxIPs records the pod's addresses (from CNI ADD) and adds them
// to its /etc/hosts, which its containers see at once.
func (r *Runtime) SetSandboxIPs(ctx context.Context, id string, ips []string) error {
	sb, err := r.sandbox(id)
	if err != nil {
		return err
	}
	sb.IPs = slices.Clone(ips)
	if err := r.writePodFiles(sb); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	return writeJSON(filepath.Join(r.sandboxDir(id), "sandbox.json"), sb)
}

// startPause starts the pause process and waits until it is ready.
func (r *Runtime) startPause(ctx context.Context, sb *Sandbox) error {
	flags := uintptr(syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if sb.Config.SharePID {
		flags |= syscall.CLONE_NEWPID
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	defer rd.Close()
	logf, err := os.OpenFile(filepath.Join(r.sandboxDir(sb.ID), "pause.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		wr.Close()
		return err
	}
	defer logf.Close()
	cmd := exec.Command(r.cfg.Binary, "pause", "--hostname", sb.Config.Hostname, "--ready-fd", "3")
	cmd.Env = helperEnv(1)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{wr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setsid: true}
	if dir := r.v2Dir(infraCgroup(r.cfg.CgroupParent, sb.ID)); dir != "" {
		cg, err := os.Open(dir)
		if err != nil {
			wr.Close()
			return err
		}
		defer cg.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(cg.Fd())
	}
	err = cmd.Start()
	wr.Close()
	if err != nil {
		return err
	}
	go cmd.Wait() // reap it, should it end while this process runs
	sb.PausePID = cmd.Process.Pid
	sb.PauseStart = startTime(sb.PausePID)
	for _, d := range r.v1Dirs(infraCgroup(r.cfg.CgroupParent, sb.ID)) {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(fmt.Sprint(sb.PausePID)), 0o644); err != nil {
			return fmt.Errorf("move pause into %s: %w", d, err)
		}
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(rd).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("pause said %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(10 * time.Second):
		err = errors.New("no answer in 10s")
	}
	if err != nil {
		if b, _ := os.ReadFile(logf.Name()); len(b) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(b)))
		}
		return err
	}
	return nil
}

// sandbox reads a sandbox's record.
func (r *Runtime) sandbox(id string) (*Sandbox, error) {
	if validID(id) != nil {
		return nil, fmt.Errorf("no sandbox %q on %s", id, r.cfg.Node)
	}
	var sb Sandbox
	if err := readJSON(filepath.Join(r.sandboxDir(id), "sandbox.json"), &sb); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no sandbox %q on %s", id, r.cfg.Node)
		}
		return nil, fmt.Errorf("sandbox %s: %w", id, err)
	}
	sb.Ready = alive(sb.PausePID, sb.PauseStart)
	return &sb, nil
}

// ListSandboxes returns the node's sandboxes, for an agent that restarts.
func (r *Runtime) ListSandboxes(ctx context.Context) ([]Sandbox, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.StateDir, "sandboxes"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var out []Sandbox
	for _, e := range entries {
		sb, err := r.sandbox(e.Name())
		if err != nil {
			continue // half made or half removed; RemoveSandbox cleans it
		}
		out = append(out, *sb)
	}
	return out, nil
}

// RemoveSandbox kills the pod's containers and pause process, unpins its
// network namespace and removes its cgroups, volumes, logs and files. The
// agent calls CNI DEL before (it needs the namespace). Removing a sandbox
// that is gone is not an error.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if validID(id) != nil {
		return fmt.Errorf("no sandbox %q on %s", id, r.cfg.Node)
	}
	sb, err := r.sandbox(id)
	if err != nil {
		if _, serr := os.Stat(r.sandboxDir(id)); serr != nil {
			return nil // gone
		}
		sb = &Sandbox{ID: id, NetNS: r.netnsPath(id)} // half made: clean by name
	}
	return r.removeSandbox(ctx, sb)
}

func (r *Runtime) removeSandbox(ctx context.Context, sb *Sandbox) error {
	var errs []error
	cs, _ := r.ListContainers(ctx)
	// All of the pod's processes — containers, shims, pause — are below
	// its group.
	if err := r.removeGroups(ctx, podCgroup(r.cfg.CgroupParent, sb.ID)); err != nil {
		errs = append(errs, fmt.Errorf("sandbox %s: %w", sb.ID, err))
	}
	if sb.PausePID > 0 && alive(sb.PausePID, sb.PauseStart) {
		syscall.Kill(sb.PausePID, syscall.SIGKILL)
		if err := waitGone(ctx, sb.PausePID, sb.PauseStart); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range cs {
		if c.SandboxID == sb.ID {
			if err := r.removeContainerFiles(&c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := unpinNetNS(sb.NetNS); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []string{r.sandboxDir(sb.ID), filepath.Join(r.cfg.LogDir, sb.ID)} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
