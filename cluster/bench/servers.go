package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// StopServers ends bench servers on this machine: the processes whose
// command line is "… bench-serve … FLAG VALUE …", such as "--run RUN" for
// one run's servers or "--listen ADDR" for whichever holds an address. It
// runs on the node ("klab internal bench-stop"), where there may be no
// pkill (klab's node image has none), and returns how many it signalled.
func StopServers(flag, value string) (int, error) {
	if value == "" {
		return 0, fmt.Errorf("%s: say which bench servers to stop", flag)
	}
	files, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !isServer(bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0}), flag, value) {
			continue // gone, or not a server to stop
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return len(pids), fmt.Errorf("stop bench server %d: %w", pid, err)
		}
		pids = append(pids, pid)
	}
	// Gone means its ports are free for the next server.
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for running(pid) {
			if time.Now().After(deadline) {
				return len(pids), fmt.Errorf("bench server %d did not stop within 10 s of SIGTERM", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return len(pids), nil
}

// isServer says whether argv is a bench server given flag with value.
func isServer(argv [][]byte, flag, value string) bool {
	i := slices.IndexFunc(argv, func(a []byte) bool { return string(a) == "bench-serve" })
	if i < 0 {
		return false
	}
	for j := i + 1; j+1 < len(argv); j++ {
		if string(argv[j]) == flag && string(argv[j+1]) == value {
			return true
		}
	}
	return false
}

// running says whether process pid exists and is not a zombie (a zombie
// holds no sockets; its parent may be slow to reap it).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}
