package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netnsMarker records what klab did to /run/netns, so that the last "down"
// can undo exactly that.
const netnsMarker = runDir + "/netns-setup"

// prepareRunDirs makes /run/netns a shared mount point, as "ip netns add"
// does (so pins made later reach mount namespaces made earlier), and the
// cluster's pin directory a private one.
func prepareRunDirs(cluster string) error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return err
	}
	var did []string
	if _, err := os.Stat(netnsDir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(netnsDir, 0o755); err != nil {
			return err
		}
		did = append(did, "dir")
	}
	if err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		if !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("make %s shared: %w", netnsDir, err)
		}
		// Not a mount point yet.
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", netnsDir, err)
		}
		if err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("make %s shared: %w", netnsDir, err)
		}
		did = append(did, "mount")
	}
	if len(did) > 0 {
		if _, err := os.Stat(netnsMarker); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(netnsMarker, []byte(strings.Join(did, ",")), 0o644); err != nil {
				return err
			}
		}
	}
	dir := pinDir(cluster)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	return nil
}

// releaseRunDirs undoes prepareRunDirs' changes to /run/netns once no klab
// cluster is left and the directory is empty.
func releaseRunDirs() {
	entries, _ := os.ReadDir(runDir)
	for _, e := range entries {
		if e.IsDir() {
			return // another cluster
		}
	}
	if ns, _ := os.ReadDir(netnsDir); len(ns) > 0 {
		return
	}
	if b, err := os.ReadFile(netnsMarker); err == nil {
		did := string(b)
		if strings.Contains(did, "mount") {
			_ = unix.Unmount(netnsDir, unix.MNT_DETACH)
		}
		if strings.Contains(did, "dir") {
			_ = os.Remove(netnsDir)
		}
	}
	os.Remove(netnsMarker)
	os.Remove(runDir)
}

// spawn starts "klab internal nsinit" in new namespaces (flags), waits
// until it has set them up, and pins them: pins maps a namespace kind
// ("net", "uts", "mnt") to the file to bind it to.
func (p *Provider) spawn(ctx context.Context, flags uintptr, pins map[string]string, args []string) error {
	cmd := exec.CommandContext(ctx, p.Binary, append([]string{"internal", "nsinit"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Binary, err)
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
	}()
	fail := func(err error) error {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	select {
	case err := <-ready:
		if err != nil {
			return fail(fmt.Errorf("set up namespaces: %w", err))
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	case <-time.After(10 * time.Second):
		return fail(errors.New("set up namespaces: no answer in 10s"))
	}
	for kind, path := range pins {
		if err := bindNS(cmd.Process.Pid, kind, path); err != nil {
			return fail(err)
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("nsinit: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// bindNS pins namespace kind of process pid at path.
func bindNS(pid int, kind, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create pin %s: %w", path, err)
	}
	f.Close()
	src := fmt.Sprintf("/proc/%d/ns/%s", pid, kind)
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin %s namespace at %s: %w", kind, path, err)
	}
	return nil
}
