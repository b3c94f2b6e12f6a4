package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/runtime"
)

// server is the agent's API, the kubelet's port 10250: container logs and
// exec, which the API server proxies there for "klab logs" and "klab
// exec". Clients need a certificate of the cluster CA in system:masters
// (the API server's kubelet client, or an admin).
type server struct {
	pods    *podManager
	network atomic.Pointer[network]
	proxy   atomic.Pointer[serviceProxy]
	policy  atomic.Pointer[policyAgent]
	log     *slog.Logger
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", s.logs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", s.exec)
	mux.HandleFunc("GET /network", s.networkReport)
	mux.HandleFunc("GET /services", s.servicesReport)
	mux.HandleFunc("GET /policy", s.policyReport)
	mux.HandleFunc("POST /capture", s.capture)
	mux.HandleFunc("POST /probe", s.probe)
	return s.authorize(mux)
}

// authorize admits only clients in system:masters.
func (s *server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "Unauthorized: a client certificate of the cluster CA is required", http.StatusUnauthorized)
			return
		}
		if !slices.Contains(r.TLS.PeerCertificates[0].Subject.Organization, pki.GroupMasters) {
			http.Error(w, fmt.Sprintf("Forbidden: %s may not use the node's API", r.TLS.PeerCertificates[0].Subject.CommonName), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// container finds a pod's container, by the names in the request.
func (s *server) container(w http.ResponseWriter, r *http.Request) (*podWorker, string, bool) {
	ns, pod, name := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	pw := s.pods.byName(ns, pod)
	if pw == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s is not on this node", ns, pod), http.StatusNotFound)
		return nil, "", false
	}
	id, ok := pw.containerID(name, r.URL.Query().Get("previous") == "true")
	if !ok {
		http.Error(w, fmt.Sprintf("container %q in pod %s/%s has not run", name, ns, pod), http.StatusBadRequest)
		return nil, "", false
	}
	return pw, id, true
}

func (s *server) logs(w http.ResponseWriter, r *http.Request) {
	_, id, ok := s.container(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	o := runtime.LogOptions{Follow: q.Get("follow") == "true", Timestamps: q.Get("timestamps") == "true"}
	if t := q.Get("tailLines"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil {
			http.Error(w, "tailLines: "+err.Error(), http.StatusBadRequest)
			return
		}
		o.Tail = n
	}
	w.Header().Set("Content-Type", "text/plain")
	fw := flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	if err := s.pods.rt.Logs(r.Context(), id, o, fw); err != nil && r.Context().Err() == nil {
		s.log.Warn("logs", "container", id, "err", err)
	}
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}

func (s *server) exec(w http.ResponseWriter, r *http.Request) {
	pw, id, ok := s.container(w, r)
	if !ok {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command: add ?command=...", http.StatusBadRequest)
		return
	}
	pod := pw.latest()
	uid := ""
	if pod != nil {
		uid = string(pod.UID)
	}
	remotecommand.ServeExec(w, r, executor{rt: s.pods.rt, id: id}, r.PathValue("pod"), uid, r.PathValue("container"), cmd, opts,
		4*time.Hour, 30*time.Second, remotecommand.SupportedStreamingProtocols)
}

// executor runs exec sessions in a container through the runtime.
type executor struct {
	rt podRuntime
	id string
}

// ExecInContainer implements remotecommand.Executor.
func (e executor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cfg := runtime.ExecConfig{Cmd: cmd, TTY: tty, Stdin: in}
	if out != nil {
		cfg.Stdout = out
	}
	if errw != nil {
		cfg.Stderr = errw
	}
	if resize != nil {
		sizes := make(chan runtime.TermSize, 1)
		cfg.Resize = sizes
		go func() {
			defer close(sizes)
			for s := range resize {
				select {
				case sizes <- runtime.TermSize{Rows: s.Height, Cols: s.Width}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	code, err := e.rt.Exec(ctx, e.id, cfg)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError(code)
	}
	return nil
}

// exitError is a command's non-zero exit, in the form the streaming
// protocol reports to the client (k8s.io/utils/exec.ExitError).
type exitError int

func (e exitError) Error() string   { return fmt.Sprintf("command terminated with exit code %d", int(e)) }
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return int(e) }

// serve runs the server until ctx ends.
func (s *server) serve(ctx context.Context, c *Config) error {
	tlsConf, err := pki.ServerTLS(c.CertFile, c.KeyFile, c.CAFile, false)
	if err != nil {
		return err
	}
	tlsConf.ClientAuth = tls.VerifyClientCertIfGiven
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	srv := &http.Server{Handler: s.handler(), TLSConfig: tlsConf, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
