package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/term"
)

// SSHConfig says how to reach a machine over SSH.
type SSHConfig struct {
	Node       string // for messages
	Addr       string // host:port
	User       string
	Signer     ssh.Signer
	KnownHosts string // a known_hosts file holding the machine's pinned host key
	Timeout    time.Duration
}

// SSH reaches a machine over SSH. Host keys are checked against a
// known_hosts file: klab generates every machine's host key itself, so the
// key is known before the first connection and a different one is refused.
type SSH struct {
	node   string
	client *ssh.Client
}

var _ Transport = (*SSH)(nil)

// DialSSH connects and authenticates.
func DialSSH(ctx context.Context, cfg SSHConfig) (*SSH, error) {
	check, err := knownhosts.New(cfg.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("%s: read known hosts: %w", cfg.Node, err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	conf := &ssh.ClientConfig{
		User: cfg.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			err := check(host, remote, key)
			var ke *knownhosts.KeyError
			if errors.As(err, &ke) {
				if len(ke.Want) > 0 {
					return fmt.Errorf("host key mismatch: %s presents %s %s, but %s pins another key; refusing to connect (was the machine replaced?)",
						host, key.Type(), ssh.FingerprintSHA256(key), cfg.KnownHosts)
				}
				return fmt.Errorf("unknown host %s: its key is not in %s; refusing to connect", host, cfg.KnownHosts)
			}
			return err
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           timeout,
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Node, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(timeout))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, conf)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: ssh %s: %w", cfg.Node, cfg.Addr, err)
	}
	conn.SetDeadline(time.Time{})
	return &SSH{node: cfg.Node, client: ssh.NewClient(c, chans, reqs)}, nil
}

func commandLine(c Cmd) string {
	s := ShellQuote(c.Args)
	if len(c.Env) > 0 {
		s = "env " + ShellQuote(c.Env) + " " + s
	}
	return s
}

// Run implements Transport.
func (s *SSH) Run(ctx context.Context, c Cmd) error {
	sess, err := s.client.NewSession()
	if err != nil {
		return &RunError{Node: s.node, Args: c.Args, Code: -1, Err: err}
	}
	defer sess.Close()
	var t *tail
	sess.Stdin = c.Stdin
	sess.Stdout, sess.Stderr, t = outputs(c)
	if err := sess.Start(commandLine(c)); err != nil {
		return &RunError{Node: s.node, Args: c.Args, Code: -1, Err: err}
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL)
		sess.Close()
		<-done
		err = ctx.Err()
	}
	if err != nil {
		code := -1
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitStatus()
		}
		return &RunError{Node: s.node, Args: c.Args, Output: t.buf, Code: code, Err: err}
	}
	return nil
}

// Start implements Transport.
func (s *SSH) Start(ctx context.Context, c Cmd, logPath string) error {
	script := `log=$1; shift; mkdir -p "$(dirname "$log")"; setsid "$@" >>"$log" 2>&1 </dev/null &`
	args := append([]string{"sh", "-c", script, "sh", logPath}, c.Args...)
	if len(c.Env) > 0 {
		args = append([]string{"env"}, append(c.Env, args...)...)
	}
	return s.Run(ctx, Cmd{Args: args})
}

// Interactive implements Transport.
func (s *SSH) Interactive(ctx context.Context, c Cmd, in *os.File) error {
	sess, err := s.client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = in, c.Stdout, c.Stderr
	if fd := int(in.Fd()); term.IsTerminal(fd) {
		w, h, _ := term.GetSize(fd)
		tt := os.Getenv("TERM")
		if tt == "" {
			tt = "xterm"
		}
		if err := sess.RequestPty(tt, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			return err
		}
		old, err := term.MakeRaw(fd)
		if err != nil {
			return err
		}
		defer term.Restore(fd, old)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if w, h, err := term.GetSize(fd); err == nil {
					sess.WindowChange(h, w)
				}
			}
		}()
	}
	line := commandLine(c)
	if len(c.Args) == 0 {
		err = sess.Shell()
	} else {
		err = sess.Start(line)
	}
	if err != nil {
		return err
	}
	if err := sess.Wait(); err != nil {
		code := -1
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitStatus()
		}
		return &RunError{Node: s.node, Args: c.Args, Code: code, Err: err}
	}
	return nil
}

// WriteFile implements Transport.
func (s *SSH) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	return s.Run(ctx, Cmd{Args: writeFileScript(path, mode), Stdin: r})
}

// CopyFile implements Transport.
func (s *SSH) CopyFile(ctx context.Context, local, path string, mode fs.FileMode) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.WriteFile(ctx, path, f, mode)
}

// Close implements Transport.
func (s *SSH) Close() error { return s.client.Close() }

// NewKey makes an ed25519 key pair: the private key in OpenSSH PEM form and
// the public key in authorized_keys form.
func NewKey(comment string) (private []byte, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	if comment != "" {
		line += " " + comment
	}
	return pem.EncodeToMemory(block), line, nil
}

// KnownHostsLine pins a host key (authorized_keys form) for the addresses
// ("192.168.34.11", or "[host]:2222" for another port).
func KnownHostsLine(addrs []string, public string) (string, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(public))
	if err != nil {
		return "", err
	}
	return knownhosts.Line(addrs, key), nil
}
