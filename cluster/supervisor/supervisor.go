package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/cgroups"
)

// Options configure a supervisor.
type Options struct {
	Config string
	Socket string
	LogDir string
	Log    *slog.Logger
}

// Backoff between restarts: it starts at InitialBackoff, doubles after each
// crash up to MaxBackoff, and resets once a component has run for
// StableAfter.
const (
	InitialBackoff = 250 * time.Millisecond
	MaxBackoff     = 16 * time.Second
	StableAfter    = 10 * time.Second
	StopTimeout    = 10 * time.Second
	maxLogSize     = 10 << 20
)

// NextBackoff is the delay before restarting a component that ran for ran
// after the previous delay prev.
func NextBackoff(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= StableAfter {
		return InitialBackoff
	}
	return min(2*prev, MaxBackoff)
}

// State of a component.
const (
	StateRunning = "running"
	StateBackoff = "backoff" // crashed, waiting to restart
	StateStopped = "stopped" // stopped on request
	StateFailed  = "failed"  // could not be started at all
)

type proc struct {
	spec     Component
	state    string
	process  *os.Process
	pid      int
	restarts int
	since    time.Time
	lastExit string
	backoff  time.Duration
	stopping bool
	timer    *time.Timer
	exited   chan struct{}
}

// Supervisor runs components.
type Supervisor struct {
	opts    Options
	started time.Time
	mu      sync.Mutex
	procs   map[string]*proc
	byPid   map[int]*proc
	order   []string
}

// Run supervises until ctx ends or SIGTERM arrives, then stops every
// component. ready, when not nil, is called once the socket answers.
func Run(ctx context.Context, o Options, ready func()) error {
	cfg, err := LoadConfig(o.Config)
	if err != nil {
		return err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	s := &Supervisor{opts: o, started: time.Now(), procs: map[string]*proc{}, byPid: map[int]*proc{}}
	if cfg.Cgroup != "" {
		if err := joinCgroup(cfg.Cgroup); err != nil {
			return err
		}
	}
	// Orphans of our components (a pod's processes when the agent
	// restarts, say) become our children, and we reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become a subreaper: %w", err)
	}
	// Children are reaped on a goroutine of their own, so that whoever
	// stops a component can wait for its exit.
	chld := make(chan os.Signal, 16)
	signal.Notify(chld, syscall.SIGCHLD)
	defer signal.Stop(chld)
	go func() {
		for range chld {
			s.reap()
		}
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if err := os.MkdirAll(filepath.Dir(o.Socket), 0o755); err != nil {
		return err
	}
	os.Remove(o.Socket)
	ln, err := net.Listen("unix", o.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Socket, err)
	}
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer func() {
		srv.Close()
		os.Remove(o.Socket)
	}()

	s.apply(cfg)
	o.Log.Info("supervising", "components", len(cfg.Components), "socket", o.Socket)
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return nil
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				if err := s.reload(); err != nil {
					o.Log.Error("reload", "err", err)
				}
			default:
				o.Log.Info("stopping", "signal", sig.String())
				s.stopAll()
				return nil
			}
		}
	}
}

func joinCgroup(rel string) error {
	h, err := cgroups.Find()
	if err != nil {
		return err
	}
	g := cgroups.Group{H: h, Rel: rel}
	if err := g.Create(); err != nil {
		return err
	}
	return g.Add(os.Getpid())
}

// apply makes the running set match cfg: new components start, removed
// ones stop, changed ones restart.
func (s *Supervisor) apply(cfg *Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]Component{}
	var order []string
	for _, c := range cfg.Components {
		want[c.Name] = c
		order = append(order, c.Name)
	}
	var stop []*proc
	for name, p := range s.procs {
		c, ok := want[name]
		if !ok || !slices.Equal(c.Args, p.spec.Args) || !slices.Equal(c.Env, p.spec.Env) {
			stop = append(stop, p)
			delete(s.procs, name)
		}
	}
	s.mu.Unlock()
	for _, p := range stop {
		s.stop(p)
	}
	s.mu.Lock()
	s.order = order
	for _, name := range order {
		if _, ok := s.procs[name]; !ok {
			p := &proc{spec: want[name]}
			s.procs[name] = p
			s.start(p)
		}
	}
}

func (s *Supervisor) reload() error {
	cfg, err := LoadConfig(s.opts.Config)
	if err != nil {
		return err
	}
	s.opts.Log.Info("reloading", "components", len(cfg.Components))
	s.apply(cfg)
	return nil
}

// start starts p; s.mu is held.
func (s *Supervisor) start(p *proc) {
	p.timer = nil
	p.stopping = false
	logPath := filepath.Join(s.opts.LogDir, p.spec.Name+".log")
	if err := os.MkdirAll(s.opts.LogDir, 0o755); err != nil {
		s.failed(p, err)
		return
	}
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > maxLogSize {
		os.Rename(logPath, logPath+".1")
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.failed(p, err)
		return
	}
	defer log.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		s.failed(p, err)
		return
	}
	defer devnull.Close()
	path, err := exec.LookPath(p.spec.Args[0])
	if err != nil {
		fmt.Fprintf(log, "%s klab supervise: cannot start %s: %v\n", time.Now().Format(time.RFC3339), p.spec.Name, err)
		s.failed(p, err)
		return
	}
	fmt.Fprintf(log, "%s klab supervise: starting %s (restart %d)\n", time.Now().Format(time.RFC3339), p.spec.Name, p.restarts)
	env := append(os.Environ(), p.spec.Env...)
	proc, err := os.StartProcess(path, p.spec.Args, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{devnull, log, log},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM},
	})
	if err != nil {
		s.failed(p, err)
		return
	}
	p.process, p.pid, p.state, p.since = proc, proc.Pid, StateRunning, time.Now()
	p.exited = make(chan struct{})
	s.byPid[p.pid] = p
	s.opts.Log.Info("started", "component", p.spec.Name, "pid", p.pid, "restarts", p.restarts)
}

func (s *Supervisor) failed(p *proc, err error) {
	p.state, p.lastExit = StateFailed, err.Error()
	s.opts.Log.Error("cannot start", "component", p.spec.Name, "err", err)
	s.scheduleRestart(p, 0)
}

func (s *Supervisor) scheduleRestart(p *proc, ran time.Duration) {
	p.backoff = NextBackoff(p.backoff, ran)
	p.timer = time.AfterFunc(p.backoff, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cur, ok := s.procs[p.spec.Name]; ok && cur == p && p.timer != nil && !p.stopping {
			p.restarts++
			s.start(p)
		}
	})
}

// reap collects every child that exited: components and adopted orphans.
func (s *Supervisor) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		s.mu.Lock()
		if p, ok := s.byPid[pid]; ok {
			delete(s.byPid, pid)
			s.exited(p, ws)
		}
		s.mu.Unlock()
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return fmt.Sprintf("exit code %d", ws.ExitStatus())
}

// exited handles a component's exit; s.mu is held.
func (s *Supervisor) exited(p *proc, ws unix.WaitStatus) {
	ran := time.Since(p.since)
	p.process.Release()
	p.process, p.pid, p.lastExit = nil, 0, describe(ws)
	close(p.exited)
	if p.stopping {
		p.state = StateStopped
		return
	}
	p.state = StateBackoff
	s.opts.Log.Warn("exited", "component", p.spec.Name, "how", p.lastExit, "ran", ran.Round(time.Millisecond))
	s.scheduleRestart(p, ran)
}

// stop stops p: SIGTERM to its process group, SIGKILL after StopTimeout.
func (s *Supervisor) stop(p *proc) {
	s.mu.Lock()
	p.stopping = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	if p.state != StateRunning {
		p.state = StateStopped
		s.mu.Unlock()
		return
	}
	pid, exited := p.pid, p.exited
	s.mu.Unlock()
	_ = unix.Kill(-pid, unix.SIGTERM)
	select {
	case <-exited:
	case <-time.After(StopTimeout):
		_ = unix.Kill(-pid, unix.SIGKILL)
		<-exited
	}
}

// stopAll stops every component in reverse order of start.
func (s *Supervisor) stopAll() {
	s.mu.Lock()
	order := slices.Clone(s.order)
	s.mu.Unlock()
	slices.Reverse(order)
	for _, name := range order {
		s.mu.Lock()
		p := s.procs[name]
		s.mu.Unlock()
		if p != nil {
			s.stop(p)
		}
	}
}

// Status is what the supervisor reports.
type Status struct {
	PID        int               `json:"pid"`
	Since      time.Time         `json:"since"`
	Components []ComponentStatus `json:"components"`
}

// ComponentStatus is one component's state.
type ComponentStatus struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	PID      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts"`
	Since    time.Time `json:"since,omitzero"`
	LastExit string    `json:"lastExit,omitempty"`
}

func (s *Supervisor) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{PID: os.Getpid(), Since: s.started, Components: []ComponentStatus{}}
	for _, name := range s.order {
		p := s.procs[name]
		st.Components = append(st.Components, ComponentStatus{
			Name: name, State: p.state, PID: p.pid, Restarts: p.restarts, Since: p.since, LastExit: p.lastExit,
		})
	}
	return st
}

// control starts, stops or restarts one component by name.
func (s *Supervisor) control(action, name string) error {
	s.mu.Lock()
	p, ok := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no component %q", name)
	}
	switch action {
	case "stop":
		s.stop(p)
	case "start", "restart":
		if action == "restart" {
			s.stop(p)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if p.state != StateRunning {
			p.backoff = 0
			s.start(p)
		}
	default:
		return errors.New("unknown action " + action)
	}
	return nil
}
