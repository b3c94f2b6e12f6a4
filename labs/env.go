package labs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/cluster/client/resources"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/internal/iox"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/providers"
	"github.com/klab-dev/klab/provision/transport"
)

// Env is a running cluster as checks, faults and commands see it.
type Env struct {
	Cluster  *provision.Cluster
	Provider provision.Provider
	Config   *rest.Config
	Net      *netctl.Client
	Objects  *resources.Client
	// Binary is the klab executable commands and scripts run as "klab".
	Binary string
	// Since is when the lab began: events before it are old.
	Since time.Time

	binDir string
	mu     sync.Mutex
}

// Connect opens the cluster called name; binary is the klab executable.
func Connect(name, binary string) (*Env, error) {
	c, err := provision.Load(name)
	if err != nil {
		return nil, err
	}
	p, _, err := providers.Get(c.Provider, binary)
	if err != nil {
		return nil, err
	}
	cfg, err := client.Config(name, "")
	if err != nil {
		return nil, err
	}
	nc, err := netctl.New(cfg, filepath.Join(provision.Dir(name), "pki"))
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %s: %w", name, err)
	}
	oc, err := resources.New(cfg, "default")
	if err != nil {
		return nil, fmt.Errorf("connect to cluster %s: %w", name, err)
	}
	return &Env{Cluster: c, Provider: p, Config: cfg, Net: nc, Objects: oc, Binary: binary, Since: time.Now()}, nil
}

// Close removes what the environment made on the host.
func (e *Env) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.binDir == "" {
		return nil
	}
	err := os.RemoveAll(e.binDir)
	e.binDir = ""
	return err
}

// node returns the cluster's machine called name.
func (e *Env) node(name string) (provision.Node, error) {
	n, ok := e.Cluster.Node(name)
	if !ok {
		return n, fmt.Errorf("cluster %s has no node %q (its nodes: %s)", e.Cluster.Name, name, strings.Join(e.Cluster.NodeNames(), ", "))
	}
	return n, nil
}

// report asks a node's agent for its network report.
func (e *Env) report(ctx context.Context, node string) (*agent.NetworkReport, error) {
	n, err := e.node(node)
	if err != nil {
		return nil, err
	}
	rep, err := e.Net.Agents.Network(ctx, n.IP.String())
	if err != nil {
		return nil, fmt.Errorf("ask %s's agent for its network: %w", node, err)
	}
	return rep, nil
}

// onNode runs argv on a node and returns its combined output and exit
// code; err is set only when the command could not run at all.
func (e *Env) onNode(ctx context.Context, node string, argv ...string) (string, int, error) {
	t, err := e.Provider.Transport(e.Cluster, node)
	if err != nil {
		return "", -1, err
	}
	defer t.Close()
	var out bytes.Buffer
	err = t.Run(ctx, transport.Cmd{Args: argv, Stdout: &out, Stderr: &out})
	var re *transport.RunError
	if errors.As(err, &re) && re.Code >= 0 {
		return out.String(), re.Code, nil
	}
	if err != nil {
		return out.String(), -1, fmt.Errorf("run %q on %s: %w", strings.Join(argv, " "), node, err)
	}
	return out.String(), 0, nil
}

// mustOnNode runs argv on a node and fails unless it exits 0.
func (e *Env) mustOnNode(ctx context.Context, node string, argv ...string) (string, error) {
	out, code, err := e.onNode(ctx, node, argv...)
	if err == nil && code != 0 {
		err = fmt.Errorf("%q on %s exited %d: %s", strings.Join(argv, " "), node, code, lastLine(out))
	}
	return out, err
}

// inPod runs argv in a pod's container (namespace/name or name) and
// returns its combined output and exit code.
func (e *Env) inPod(ctx context.Context, ref, container string, argv ...string) (string, int, error) {
	ns, name := splitRef(ref)
	var out iox.Buffer
	code, err := podio.Exec(ctx, e.Config, ns, name, podio.ExecOptions{Container: container, Command: argv, Stdout: &out, Stderr: &out})
	if err != nil {
		return out.String(), -1, fmt.Errorf("exec in pod %s/%s: %w", ns, name, err)
	}
	return out.String(), code, nil
}

// shell runs script with sh on the host, as the student would: klab on
// the PATH (this very binary) and KLAB_CLUSTER naming the lab's cluster.
// It returns the combined output and the exit code.
func (e *Env) shell(ctx context.Context, script string) (string, int, error) {
	dir, err := e.klabDir()
	if err != nil {
		return "", -1, err
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Env = append(os.Environ(), "KLAB_CLUSTER="+e.Cluster.Name, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out iox.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return out.String(), -1, fmt.Errorf("%w (after %s)", ctx.Err(), "its timeout")
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode(), nil
	case err != nil:
		return out.String(), -1, fmt.Errorf("run sh: %w", err)
	}
	return out.String(), 0, nil
}

// klabDir is a directory holding "klab" (a link to Binary), put first on
// the PATH of commands so that they run this klab, whatever its file name.
func (e *Env) klabDir() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.binDir != "" {
		return e.binDir, nil
	}
	bin, err := filepath.Abs(e.Binary)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "klab-lab-")
	if err != nil {
		return "", err
	}
	if err := os.Symlink(bin, filepath.Join(dir, "klab")); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	e.binDir = dir
	return dir, nil
}

// splitRef splits "namespace/name" (or "name", in default).
func splitRef(ref string) (ns, name string) {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return ns, name
	}
	return "default", ref
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
