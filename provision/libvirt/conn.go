package libvirt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DefaultURI is the libvirt connection klab uses unless told otherwise.
const DefaultURI = "qemu:///system"

// DefaultSocket is libvirtd's socket for qemu:///system.
const DefaultSocket = "/var/run/libvirt/libvirt-sock"

// ErrNotRunning says libvirt does not answer.
var ErrNotRunning = errors.New("libvirt is not running")

// conn is a connection to libvirt that ends when its context does.
type conn struct {
	*golibvirt.Libvirt
	local bool
	stop  func() bool
}

// isLocal reports whether uri names this machine's libvirtd over its unix
// socket (qemu:///system, qemu+unix:///system).
func isLocal(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Host == "" && (u.Scheme == "qemu" || u.Scheme == "qemu+unix")
}

// checkURI refuses URIs that would turn host key checking off.
func checkURI(u *url.URL) error {
	q := u.Query()
	if v := q.Get("no_verify"); v != "" && v != "0" {
		return fmt.Errorf("libvirt URI %s: no_verify turns off checking the server's identity; klab never does that", u.Redacted())
	}
	if q.Get("known_hosts_verify") == "ignore" {
		return fmt.Errorf("libvirt URI %s: known_hosts_verify=ignore turns off host key checking; klab never does that", u.Redacted())
	}
	return nil
}

// connect opens uri. The connection is closed when ctx ends, so that no
// libvirt call outlives its caller's context; close it with Close.
func connect(ctx context.Context, uri string) (*conn, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("libvirt URI %q: %w", uri, err)
	}
	if err := checkURI(u); err != nil {
		return nil, err
	}
	var l *golibvirt.Libvirt
	local := isLocal(uri)
	if local {
		sock := DefaultSocket
		if s := u.Query().Get("socket"); s != "" {
			sock = s
		}
		l = golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(5*time.Second)))
		if err := l.ConnectToURI(golibvirt.RemoteURI(u)); err != nil {
			return nil, notRunning(uri, sock, err)
		}
	} else {
		l, err = golibvirt.ConnectToURI(u)
		if err != nil {
			return nil, fmt.Errorf("%w at %s: %v", ErrNotRunning, u.Redacted(), err)
		}
	}
	c := &conn{Libvirt: l, local: local}
	c.stop = context.AfterFunc(ctx, func() { l.Disconnect() })
	return c, nil
}

// Close ends the connection.
func (c *conn) Close() {
	if c.stop() {
		c.Disconnect()
	}
}

// notRunning explains why the local libvirtd does not answer, and how to
// start it, in one line.
func notRunning(uri, sock string, err error) error {
	if _, lerr := exec.LookPath("libvirtd"); lerr != nil {
		return fmt.Errorf("%w: libvirt is not installed (apt-get install libvirt-daemon-system qemu-system-x86 qemu-utils), or use --provider netns", ErrNotRunning)
	}
	why := err.Error()
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		why = "nothing listens on " + sock
	case errors.Is(err, fs.ErrPermission):
		why = "no permission to use " + sock + " (run klab with sudo)"
	}
	return fmt.Errorf("%w at %s (%s): start it with 'sudo systemctl start libvirtd', or where there is no systemd 'sudo virtlogd -d && sudo libvirtd -d' (klab's .ci/start-libvirt does this)", ErrNotRunning, uri, why)
}

// libvirtCode reports whether err is a libvirt error with one of codes.
func libvirtCode(err error, codes ...golibvirt.ErrorNumber) bool {
	var e golibvirt.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range codes {
		if e.Code == uint32(c) {
			return true
		}
	}
	return false
}

func notFound(err error) bool {
	return libvirtCode(err, golibvirt.ErrNoDomain, golibvirt.ErrNoNetwork, golibvirt.ErrNoStoragePool, golibvirt.ErrNoStorageVol)
}

// oneLine makes a libvirt error message fit on a line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
