package runtime

import (
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// nsTypes maps the namespaces a container joins to setns(2) types.
var nsTypes = map[string]int{
	"net": unix.CLONE_NEWNET,
	"ipc": unix.CLONE_NEWIPC,
	"uts": unix.CLONE_NEWUTS,
	"pid": unix.CLONE_NEWPID,
}

// startInNamespaces starts cmd in the namespaces kinds of process pid:
// on a locked thread that joins them first, so that the fork inherits
// them (for "pid", the child is born in that PID namespace). The thread
// is never unlocked: its namespaces are no longer the process's, so it
// ends with the goroutine instead of running other goroutines.
func startInNamespaces(cmd *exec.Cmd, pid int, kinds []string) error {
	// Open the namespaces here, so a bad pid is reported before a thread
	// is spent.
	fds := make([]*os.File, 0, len(kinds))
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	for _, k := range kinds {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, k))
		if err != nil {
			return fmt.Errorf("open %s namespace of process %d: %w", k, pid, err)
		}
		fds = append(fds, f)
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		for i, f := range fds {
			if err := unix.Setns(int(f.Fd()), nsTypes[kinds[i]]); err != nil {
				errc <- fmt.Errorf("join %s namespace of process %d: %w", kinds[i], pid, err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}
