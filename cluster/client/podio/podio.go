// Package podio streams a pod's logs and runs commands in its containers
// through the API server, which passes both on to the node's agent.
package podio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/klab-dev/klab/internal/iox"
)

// LogOptions choose what of a container's log to print.
type LogOptions struct {
	Container  string
	Follow     bool
	Previous   bool
	Timestamps bool
	Tail       int64 // < 0: all
}

// container resolves the container to use: the one named, or the pod's
// only one.
func container(ctx context.Context, cs kubernetes.Interface, ns, pod, name string) (*corev1.Pod, string, error) {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("pods %q not found in namespace %s", pod, ns)
	}
	if err != nil {
		return nil, "", err
	}
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
		if c.Name == name {
			return p, name, nil
		}
	}
	if name != "" {
		return nil, "", fmt.Errorf("pod %s has no container %q: its containers are %v", pod, name, names)
	}
	if len(names) > 1 {
		return nil, "", fmt.Errorf("pod %s has %d containers %v: choose one with -c", pod, len(names), names)
	}
	return p, names[0], nil
}

// Logs copies a container's log to w.
func Logs(ctx context.Context, cfg *rest.Config, ns, pod string, o LogOptions, w io.Writer) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	_, name, err := container(ctx, cs, ns, pod, o.Container)
	if err != nil {
		return err
	}
	opts := &corev1.PodLogOptions{Container: name, Follow: o.Follow, Previous: o.Previous, Timestamps: o.Timestamps}
	if o.Tail >= 0 {
		opts.TailLines = &o.Tail
	}
	r, err := cs.CoreV1().Pods(ns).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		return fmt.Errorf("logs of %s/%s: %w", pod, name, err)
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ExecOptions say how to run a command in a container.
type ExecOptions struct {
	Container string
	Command   []string
	Stdin     *os.File // nil: no input
	TTY       bool
	Stdout    io.Writer
	Stderr    io.Writer
}

// Exec runs a command in a container and returns its exit code.
func Exec(ctx context.Context, cfg *rest.Config, ns, pod string, o ExecOptions) (int, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return -1, err
	}
	_, name, err := container(ctx, cs, ns, pod, o.Container)
	if err != nil {
		return -1, err
	}
	tty := o.TTY && o.Stdin != nil && term.IsTerminal(int(o.Stdin.Fd()))
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: name, Command: o.Command,
			Stdin: o.Stdin != nil, Stdout: true, Stderr: !tty, TTY: tty,
		}, scheme.ParameterCodec)
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		return -1, err
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", req.URL().String())
	if err != nil {
		return -1, err
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool { return true })
	if err != nil {
		return -1, err
	}
	so := remotecommand.StreamOptions{Tty: tty}
	so.Stdout, so.Stderr = iox.Serialize(o.Stdout, o.Stderr)
	if o.Stdin != nil {
		so.Stdin = o.Stdin
	}
	if tty {
		fd := int(o.Stdin.Fd())
		old, err := term.MakeRaw(fd)
		if err != nil {
			return -1, err
		}
		defer term.Restore(fd, old)
		q := newSizeQueue(ctx, fd)
		defer q.stop()
		so.TerminalSizeQueue = q
	}
	err = exec.StreamWithContext(ctx, so)
	var ce utilexec.CodeExitError
	if errors.As(err, &ce) {
		return ce.Code, nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

// sizeQueue reports the terminal's size, and again on every SIGWINCH.
type sizeQueue struct {
	fd    int
	ch    chan os.Signal
	first bool
	done  chan struct{}
}

func newSizeQueue(ctx context.Context, fd int) *sizeQueue {
	q := &sizeQueue{fd: fd, ch: make(chan os.Signal, 1), first: true, done: make(chan struct{})}
	signal.Notify(q.ch, syscall.SIGWINCH)
	go func() {
		select {
		case <-ctx.Done():
		case <-q.done:
		}
		signal.Stop(q.ch)
		close(q.ch)
	}()
	return q
}

func (q *sizeQueue) stop() { close(q.done) }

// Next implements remotecommand.TerminalSizeQueue.
func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	if !q.first {
		if _, ok := <-q.ch; !ok {
			return nil
		}
	}
	q.first = false
	w, h, err := term.GetSize(q.fd)
	if err != nil {
		return nil
	}
	return &remotecommand.TerminalSize{Width: uint16(w), Height: uint16(h)}
}
