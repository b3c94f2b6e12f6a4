package runtime

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PauseOptions configures "klab pause".
type PauseOptions struct {
	// Hostname is set in the pause process's UTS namespace (the pod's).
	Hostname string
	// Ready, when set, gets "ready\n" once the namespaces are set up, and
	// is closed.
	Ready *os.File
}

// Pause is a pod's first process. Started in the pod's new namespaces, it
// sets the hostname and brings up lo, then does nothing but reap zombies
// — as PID 1 of the pod's PID namespace, or as a child subreaper — until
// SIGTERM or SIGINT ends it.
func Pause(o PauseOptions) error {
	resumeGC()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	if o.Hostname != "" {
		if err := unix.Sethostname([]byte(o.Hostname)); err != nil {
			return fmt.Errorf("set hostname %s: %w", o.Hostname, err)
		}
	}
	if lo, err := netlink.LinkByName("lo"); err != nil {
		return fmt.Errorf("find lo: %w", err)
	} else if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("become a subreaper: %w", err)
		}
	}
	if o.Ready != nil {
		if _, err := o.Ready.WriteString("ready\n"); err != nil {
			return err
		}
		o.Ready.Close()
	}
	for s := range sigs {
		if s != unix.SIGCHLD {
			return nil
		}
		reapAll()
	}
	return nil
}

// reapAll collects every child that has exited.
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
