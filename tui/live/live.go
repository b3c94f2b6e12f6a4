// Package live is the TUI's view of a real cluster: it implements
// tui.Cluster on the packages the CLI uses — provision for the cluster's
// state and machines, cluster/client and client-go informers for the API
// (watched, not polled), cluster/netctl for the network and the agents,
// cluster/install to create a cluster, and klab's own commands (klab trace,
// klab exec) where the TUI runs one.
package live

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/cluster/client/resources"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/providers"
	"github.com/klab-dev/klab/tui"
)

// SwitchTimeout is how long every node has to converge in a mode switch
// (klab net mode's default).
const SwitchTimeout = 30 * time.Second

// Cluster is a real cluster on this machine.
type Cluster struct {
	name   string
	binary string
	log    *slog.Logger

	mu   sync.Mutex
	conn *conn
}

var _ tui.Cluster = (*Cluster)(nil)

// conn is what reaching the cluster takes; made once, on first use.
type conn struct {
	state *provision.Cluster
	prov  provision.Provider
	cfg   *rest.Config
	net   *netctl.Client
}

// New returns the cluster called name. binary is the klab executable: the
// TUI runs it for traces and shells, and copies it to the machines of a
// cluster it creates. log receives what the TUI cannot show (client-go's
// retries, say).
func New(name, binary string, log *slog.Logger) *Cluster {
	return &Cluster{name: name, binary: binary, log: log}
}

// Name implements tui.Cluster.
func (c *Cluster) Name() string { return c.name }

// connect loads the cluster's state and makes its clients.
func (c *Cluster) connect() (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn, nil
	}
	st, err := provision.Load(c.name)
	if err != nil {
		return nil, err
	}
	p, err := providers.ForCluster(c.binary)(st.Provider)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: provider %s: %w", c.name, st.Provider, err)
	}
	cfg, err := client.Config(c.name, "")
	if err != nil {
		return nil, err
	}
	client.RouteKlog(c.log)
	nc, err := netctl.New(cfg, filepath.Join(provision.Dir(c.name), "pki"))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.name, err)
	}
	c.conn = &conn{state: st, prov: p, cfg: cfg, net: nc}
	return c.conn, nil
}

// Lookup implements tui.Cluster.
func (c *Cluster) Lookup(ctx context.Context) (tui.Presence, error) {
	var p tui.Presence
	names, err := provision.List()
	if err != nil {
		return p, err
	}
	for _, n := range names {
		if n != c.name {
			p.Others = append(p.Others, n)
		}
	}
	st, err := provision.Load(c.name)
	switch {
	case errors.Is(err, provision.ErrNotFound):
		return p, nil
	case err != nil:
		return p, err
	}
	p.Exists, p.Phase = true, string(st.Phase)
	return p, nil
}

// Create implements tui.Cluster: what `klab up` does, its progress lines
// sent to the TUI.
func (c *Cluster) Create(ctx context.Context, o tui.CreateOptions, out chan<- string) error {
	if os.Geteuid() != 0 {
		return errors.New("creating a cluster needs root (namespaces, links, mounts): run klab tui with sudo")
	}
	mode := api.NetworkMode(o.Mode)
	if !slices.Contains(api.Modes, mode) {
		return fmt.Errorf("unknown network mode %q: use bgp, vxlan or ipip", o.Mode)
	}
	plan := provision.PlanOptions{Name: c.name, Masters: 1, Workers: o.Workers, Subnets: o.Subnets}
	if err := plan.Validate(); err != nil {
		return err
	}
	p, why, err := providers.GetWith(o.Provider, c.binary, providers.LibvirtOptions())
	if err != nil {
		return err
	}
	lw := &lineWriter{ctx: ctx, out: out}
	pr := progress.New(lw)
	if why != "" {
		why = ": " + why
	}
	pr.Printf("creating cluster %q (provider %s%s)\n", c.name, p.Name(), why)
	start := time.Now()
	_, err = install.Up(ctx, install.Options{Plan: plan, Provider: p, Binary: c.binary, Mode: mode, Progress: pr, Log: c.log})
	if err == nil {
		pr.Printf("cluster %q is ready in %.1fs\n", c.name, time.Since(start).Seconds())
	}
	lw.Flush()
	return err
}

// lineWriter sends what is written to it line by line.
type lineWriter struct {
	ctx context.Context
	out chan<- string
	mu  sync.Mutex
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := strings.TrimRight(string(w.buf[:i]), "\r")
		w.buf = w.buf[i+1:]
		if err := w.send(line); err != nil {
			return len(p), err
		}
	}
}

func (w *lineWriter) send(line string) error {
	select {
	case w.out <- line:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

// Flush sends what is left without a newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.send(string(w.buf))
		w.buf = nil
	}
}

// Reports implements tui.Cluster: every member's agent, asked in parallel;
// one that does not answer has its error in its report.
func (c *Cluster) Reports(ctx context.Context) ([]tui.NetworkReport, error) {
	cn, err := c.connect()
	if err != nil {
		return nil, err
	}
	members := cn.state.Members()
	out := make([]tui.NetworkReport, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps, err := cn.net.Reports(ctx, cn.state, m.Name)
			if err != nil || len(reps) == 0 || reps[0] == nil {
				out[i] = tui.NetworkReport{Node: m.Name, Err: fmt.Sprint(err)}
				return
			}
			out[i] = report(reps[0])
		}()
	}
	wg.Wait()
	return out, nil
}

// SwitchMode implements tui.Cluster with netctl, as klab net mode does.
func (c *Cluster) SwitchMode(ctx context.Context, r tui.SwitchRequest) (*tui.SwitchResult, error) {
	cn, err := c.connect()
	if err != nil {
		return nil, err
	}
	res, err := cn.net.Switch(ctx, api.NetworkMode(r.Mode), r.CrossSubnet, SwitchTimeout)
	return switchResult(res), err
}

// Trace implements tui.Cluster: it runs `klab trace SRC DST -o json`,
// whose output is the trace's stable JSON. The trace captures on the
// host's underlay namespaces and asks the agents for the rest; running it
// as its own process keeps that out of the TUI.
func (c *Cluster) Trace(ctx context.Context, r tui.TraceRequest) (*tui.TraceResult, error) {
	args := []string{"--name", c.name, "trace", r.Src, r.Dst, "-o", "json"}
	if r.Proto != "" {
		args = append(args, "--proto", r.Proto)
	}
	if r.Lang != "" {
		args = append(args, "--lang", r.Lang)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.binary, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	// A lost packet exits 1 with the trace on stdout.
	if stdout.Len() > 0 {
		var res tui.TraceResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return nil, fmt.Errorf("read the trace: %w", err)
		}
		return &res, nil
	}
	if runErr != nil {
		if msg := lastLine(stderr.String()); msg != "" {
			return nil, errors.New(strings.TrimPrefix(msg, "klab: "))
		}
		return nil, fmt.Errorf("klab trace: %w", runErr)
	}
	return nil, errors.New("klab trace printed nothing")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Describe implements tui.Cluster with klab describe's engine.
func (c *Cluster) Describe(ctx context.Context, p tui.PodRef) (string, error) {
	cn, err := c.connect()
	if err != nil {
		return "", err
	}
	rc, err := resources.New(cn.cfg, p.Namespace)
	if err != nil {
		return "", err
	}
	m, err := rc.Mapping("pods")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := rc.Describe(ctx, &b, []resources.Target{{Mapping: m, Names: []string{p.Name}}}, p.Namespace, ""); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Logs implements tui.Cluster with klab logs' engine, following.
func (c *Cluster) Logs(ctx context.Context, p tui.PodRef, out chan<- string) error {
	cn, err := c.connect()
	if err != nil {
		return err
	}
	lw := &lineWriter{ctx: ctx, out: out}
	err = podio.Logs(ctx, cn.cfg, p.Namespace, p.Name, podio.LogOptions{Container: p.Container, Follow: true, Tail: 1000}, lw)
	lw.Flush()
	return err
}

// DeletePod implements tui.Cluster.
func (c *Cluster) DeletePod(ctx context.Context, p tui.PodRef) error {
	cn, err := c.connect()
	if err != nil {
		return err
	}
	err = cn.net.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Shell implements tui.Cluster: `klab exec -it` with bash, or sh.
func (c *Cluster) Shell(p tui.PodRef) *exec.Cmd {
	args := []string{"--name", c.name, "exec", "-it", "-n", p.Namespace, p.Name}
	if p.Container != "" {
		args = append(args, "-c", p.Container)
	}
	args = append(args, "--", "/bin/sh", "-c", `exec "$(command -v bash || echo sh)"`)
	return exec.Command(c.binary, args...)
}

// scanLines calls fn with every line r gives until it ends.
func scanLines(r io.Reader, fn func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
	return sc.Err()
}
