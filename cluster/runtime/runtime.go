// Package runtime runs a node's pods: the pause process that holds a
// pod's namespaces, the containers that join them, their cgroups, logs
// and exec. The node agent (the kubelet role) maps a Pod onto the plain
// types here (SandboxConfig, ContainerConfig) and drives the lifecycle:
// CreateSandbox, StartContainer, Wait, Stop, RemoveContainer,
// RemoveSandbox, with ListSandboxes/ListContainers to recover after a
// restart, Logs and Exec to serve "klab logs" and "klab exec".
//
// # Design
//
// A sandbox is a "klab pause" process started with clone flags for new
// net, IPC and UTS namespaces (and PID, for SharePID). It sets the
// hostname, brings up lo, then only reaps zombies until SIGTERM. The
// runtime pins its network namespace at /run/netns/<id> — the CNI_NETNS
// the agent hands to the CNI plugin — and unpins it on removal.
//
// A container is a small init, "klab internal shim", plus the processes
// it starts. Go cannot enter a mount namespace from a multi-threaded
// process, but the container needs a new one anyway; so the runtime
// locks a thread, setns(2)es it into the pause process's net, IPC and
// UTS (and PID) namespaces, and forks the shim from that thread with
// CLONE_NEWNS (and CLONE_NEWPID when the pod does not share PIDs): the
// child inherits the thread's namespaces and gets a private mount
// namespace, in which it builds the container's root — an overlay with
// the image as lower layer and a per-container upper dir; its own /proc,
// a minimal /dev, read-only /sys, the pod's /etc/hosts, /etc/hostname
// and /etc/resolv.conf, the volumes — and pivot_roots into it. The
// thread is never returned to the Go scheduler; it exits with its
// goroutine.
//
// The shim then stays, like containerd's shim or conmon, as the parent
// (and, in its own PID namespace, PID 1) of the container's processes:
//   - it starts the main process with the container's user, env and
//     working directory, its stdout and stderr going through the shim
//     into a log file per container and attempt, one CRI-format line
//     ("<time> stdout F <text>") per line of output;
//   - it reaps every process that ends up its child, so orphans leave no
//     zombies, and records the main process's exit in exit.json before
//     it exits itself;
//   - it serves a unix socket: "exec" forks a process in the container
//     with the caller's stdin/stdout/stderr (or a TTY) passed as file
//     descriptors, and "signal" signals the main process.
//
// The shim is in its own session, not a child that dies with the agent:
// containers keep running while the agent restarts, and the agent finds
// them again from the state directory.
//
// # Cgroups
//
// Under the parent the agent gives (on a netns node
// klab/<cluster>/<node>/pods), with the same relative path in every
// hierarchy: pod-<sandbox>/infra holds pause and the shims, and
// pod-<sandbox>/<container> the container's processes with its limits.
// Each limit goes to the hierarchy that has its controller — v2 when the
// controller is enabled there, else v1 (memory.limit_in_bytes, cpu.shares,
// cpu.cfs_quota_us, pids.max). Processes are placed before they run: in
// v2 with CLONE_INTO_CGROUP, in v1 by the shim moving itself into the
// container's groups around each fork. The tracking hierarchy (v2 when
// mounted) is what removal kills by.
package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/cluster/runtime/image"
	"github.com/klab-dev/klab/internal/cgroups"
)

// Defaults for a node.
const (
	DefaultStateDir = "/var/lib/klab/runtime"
	DefaultRunDir   = "/run/klab/runtime"
	DefaultLogDir   = "/var/log/klab/pods"
	DefaultNetNSDir = "/run/netns"
)

// Config configures a runtime.
type Config struct {
	// Node names the node in messages.
	Node string
	// Binary is the klab executable, run as "klab pause" and "klab
	// internal shim".
	Binary string
	// StateDir keeps sandboxes and containers (DefaultStateDir).
	StateDir string
	// RunDir holds the shims' sockets (DefaultRunDir); keep it short, a
	// socket path has at most 107 bytes.
	RunDir string
	// LogDir holds container logs: LogDir/<sandbox>/<container>/<attempt>.log
	// (DefaultLogDir).
	LogDir string
	// NetNSDir is where network namespaces are pinned (DefaultNetNSDir).
	NetNSDir string
	// CgroupParent is the cgroup, relative to each hierarchy's root, that
	// pods go under, for instance klab/<cluster>/<node>/pods.
	CgroupParent string
	// Images is the node's image store.
	Images *image.Store
}

// Runtime runs pods on this node.
type Runtime struct {
	cfg   Config
	track cgroups.Hierarchy            // processes are tracked and killed here
	ctrl  map[string]cgroups.Hierarchy // memory, cpu, pids → their hierarchy
}

// controllers are the cgroup controllers limits are written to.
var controllers = []string{"memory", "cpu", "pids"}

// New returns a runtime; it needs a cgroup hierarchy to track processes.
func New(cfg Config) (*Runtime, error) {
	if cfg.Binary == "" {
		return nil, errors.New("runtime: no klab binary given")
	}
	if cfg.Images == nil {
		return nil, errors.New("runtime: no image store given")
	}
	for _, d := range []struct {
		p   *string
		def string
	}{{&cfg.StateDir, DefaultStateDir}, {&cfg.RunDir, DefaultRunDir}, {&cfg.LogDir, DefaultLogDir}, {&cfg.NetNSDir, DefaultNetNSDir}} {
		if *d.p == "" {
			*d.p = d.def
		}
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "klab/pods"
	}
	track, err := cgroups.Find()
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	ctrl, err := cgroups.Controllers(controllers...)
	if err != nil {
		return nil, fmt.Errorf("runtime: find cgroup controllers: %w", err)
	}
	return &Runtime{cfg: cfg, track: track, ctrl: ctrl}, nil
}

// Paths.

func (r *Runtime) sandboxDir(id string) string {
	return filepath.Join(r.cfg.StateDir, "sandboxes", id)
}

func (r *Runtime) containerDir(id string) string {
	return filepath.Join(r.cfg.StateDir, "containers", id)
}

func (r *Runtime) socketPath(id string) string { return filepath.Join(r.cfg.RunDir, id+".sock") }

func (r *Runtime) netnsPath(id string) string { return filepath.Join(r.cfg.NetNSDir, id) }

// logPath is where a container's output for one attempt goes.
func (r *Runtime) logPath(sandbox, name string, attempt int) string {
	return filepath.Join(r.cfg.LogDir, sandbox, name, strconv.Itoa(attempt)+".log")
}

func podCgroup(parent, sandbox string) string { return filepath.Join(parent, "pod-"+sandbox) }

func infraCgroup(parent, sandbox string) string {
	return filepath.Join(podCgroup(parent, sandbox), "infra")
}

func containerCgroup(parent, sandbox, id string) string {
	return filepath.Join(podCgroup(parent, sandbox), id)
}

// hierarchies are every hierarchy a pod has groups in: the tracking one
// and those of the controllers, each once.
func (r *Runtime) hierarchies() []cgroups.Hierarchy {
	out := []cgroups.Hierarchy{r.track}
	for _, c := range controllers {
		h, ok := r.ctrl[c]
		if !ok {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o.Root == h.Root
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

// groups returns the group rel in every hierarchy.
func (r *Runtime) groups(rel string) []cgroups.Group {
	var out []cgroups.Group
	for _, h := range r.hierarchies() {
		out = append(out, cgroups.Group{H: h, Rel: rel})
	}
	return out
}

// Helpers.

func randomID(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// startTime is a process's start time in clock ticks after boot (field 22
// of /proc/PID/stat), or 0 when there is no such process.
func startTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it don't.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	t, _ := strconv.ParseUint(f[19], 10, 64)
	return t
}

// parentPID is a process's parent, or 0.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}

// alive reports whether the process pid that started at start still
// runs (a zombie counts as gone).
func alive(pid int, start uint64) bool {
	if pid <= 0 || startTime(pid) != start {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

// pinNetNS bind-mounts the network namespace of pid at path.
func pinNetNS(pid int, path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create netns pin %s: %w", path, err)
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/net", pid), path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin network namespace at %s: %w", path, err)
	}
	return nil
}

// unpinNetNS undoes pinNetNS; a missing pin is fine.
func unpinNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns pin %s: %w", path, err)
	}
	return nil
}

// waitGone waits until process pid (started at start) has exited, or ctx
// ends. It watches a pidfd, so it works for processes that are not this
// one's children (a shim found after an agent restart).
func waitGone(ctx context.Context, pid int, start uint64) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if startTime(pid) != start {
		return nil // the PID is another process's now
	}
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if n > 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for process %d: %w", pid, err)
		}
	}
}
