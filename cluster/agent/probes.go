package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/klab-dev/klab/cluster/runtime"
)

// startProbes runs a container's startup, liveness and readiness probes
// until ctx ends. Results reach the worker as events: readiness flips,
// startup success, and liveness (or startup) failure, which restarts the
// container.
func (w *podWorker) startProbes(ctx context.Context, pod *corev1.Pod, spec *corev1.Container, id, podIP string) {
	if spec.StartupProbe == nil && spec.LivenessProbe == nil && spec.ReadinessProbe == nil {
		return
	}
	name := spec.Name
	emit := func(kind eventKind, msg string) {
		select {
		case w.events <- event{kind: kind, name: name, id: id, msg: msg}:
		case <-ctx.Done():
		}
	}
	started := make(chan struct{})
	p := &prober{rt: w.m.rt, id: id, podIP: podIP, ports: spec.Ports}
	go func() {
		if s := spec.StartupProbe; s != nil {
			passed := false
			p.loop(ctx, s, func(success bool, msg string) bool {
				if passed = success; success {
					emit(evStarted, "")
				} else {
					emit(evLivenessFailed, "Startup probe failed: "+msg)
				}
				return false
			})
			if !passed {
				return
			}
		}
		close(started)
	}()
	if l := spec.LivenessProbe; l != nil {
		go func() {
			select {
			case <-started:
			case <-ctx.Done():
				return
			}
			p.loop(ctx, l, func(success bool, msg string) bool {
				if !success {
					emit(evLivenessFailed, "Liveness probe failed: "+msg)
					return false
				}
				return true
			})
		}()
	}
	if r := spec.ReadinessProbe; r != nil {
		go func() {
			select {
			case <-started:
			case <-ctx.Done():
				return
			}
			p.loop(ctx, r, func(success bool, msg string) bool {
				if success {
					emit(evReady, "")
				} else {
					emit(evNotReady, "Readiness probe failed: "+msg)
				}
				return true
			})
		}()
	}
}

// prober runs one container's probes.
type prober struct {
	rt    podRuntime
	id    string
	podIP string
	ports []corev1.ContainerPort
}

// loop probes every period and calls report when the result crosses the
// success or failure threshold; report returns whether to go on. loop
// reports whether it ended by report (not by ctx).
func (p *prober) loop(ctx context.Context, pr *corev1.Probe, report func(success bool, msg string) bool) bool {
	period := seconds(pr.PeriodSeconds, 10)
	timeout := seconds(pr.TimeoutSeconds, 1)
	successes, failures := 0, 0
	need := func(v int32, def int) int {
		if v <= 0 {
			return def
		}
		return int(v)
	}
	okAt, failAt := need(pr.SuccessThreshold, 1), need(pr.FailureThreshold, 3)
	wait := seconds(pr.InitialDelaySeconds, 0)
	last := ""
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = period
		err := p.probe(ctx, pr, timeout)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			successes, failures = successes+1, 0
			if successes == okAt && last != "ok" {
				last = "ok"
				if !report(true, "") {
					return true
				}
			}
			continue
		}
		successes, failures = 0, failures+1
		if failures >= failAt && last != "fail" {
			last = "fail"
			if !report(false, err.Error()) {
				return true
			}
		}
	}
}

func seconds(v int32, def int) time.Duration {
	if v <= 0 {
		return time.Duration(def) * time.Second
	}
	return time.Duration(v) * time.Second
}

// probe runs a probe once.
func (p *prober) probe(ctx context.Context, pr *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case pr.Exec != nil:
		var out strings.Builder
		code, err := p.rt.Exec(ctx, p.id, runtime.ExecConfig{Cmd: pr.Exec.Command, Stdout: &out, Stderr: &out})
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("command %q exited with %d: %s", strings.Join(pr.Exec.Command, " "), code, strings.TrimSpace(out.String()))
		}
		return nil
	case pr.HTTPGet != nil:
		g := pr.HTTPGet
		if g.Scheme == corev1.URISchemeHTTPS {
			return fmt.Errorf("https probes are not supported by klab: use http")
		}
		port, err := p.port(g.Port)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = p.podIP
		}
		url := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/" + strings.TrimPrefix(g.Path, "/")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		req.Header.Set("User-Agent", "klab-probe")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("Get %q: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case pr.TCPSocket != nil:
		port, err := p.port(pr.TCPSocket.Port)
		if err != nil {
			return err
		}
		host := pr.TCPSocket.Host
		if host == "" {
			host = p.podIP
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("klab supports exec, httpGet and tcpSocket probes")
}

// port resolves a probe's port, by number or by the container port's name.
func (p *prober) port(v intstr.IntOrString) (int, error) {
	if v.Type == intstr.Int {
		return v.IntValue(), nil
	}
	for _, cp := range p.ports {
		if cp.Name == v.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", v.StrVal)
}
