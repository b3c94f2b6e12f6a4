package netns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/cgroups"
)

// InitOptions is what "klab internal nsinit" sets up inside the new
// namespaces of a machine, before the provider pins them.
type InitOptions struct {
	Hostname string
	// Binds maps host directories to the machine's directories that show them.
	Binds [][2]string
	// Overlays are host directories the machine sees copy-on-write, so that
	// it can have directories of its own inside them (/etc/klab, /opt/cni…)
	// without creating anything on the host.
	Overlays []string
	// Sysctls are KEY=VALUE pairs under /proc/sys, written in the new
	// network namespace.
	Sysctls []string
}

// Init runs in the child process that owns a new machine's namespaces:
// it gives the machine its own /run, /sys/class/net, overlays, directories,
// hostname and sysctls, says "ready" on stdout, and waits for stdin to
// close (the provider pins the namespaces meanwhile).
func Init(o InitOptions, stdin io.Reader, stdout io.Writer) error {
	if err := initNamespaces(o); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, stdin)
	return err
}

func initNamespaces(o InitOptions) error {
	for _, kv := range o.Sysctls {
		k, v, _ := strings.Cut(kv, "=")
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", k, err)
		}
	}
	if o.Hostname == "" {
		return nil // a network namespace only (the underlay)
	}
	// Mounts made in the host keep reaching the machine (so unmounting a
	// pin there releases it here too); the machine's never reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := detachRunAndPins(); err != nil {
		return err
	}
	const stage, ovl = "/run/.klab/stage", "/run/.klab/ovl"
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount /run: %w", err)
	}
	for _, d := range []string{"/run/klab", "/run/netns", "/run/lock", stage, ovl} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	// Bind the host directories to staging points first: once the
	// overlays are up, the host paths would resolve inside them.
	for i, b := range o.Binds {
		st := filepath.Join(stage, fmt.Sprint(i))
		if err := os.Mkdir(st, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(b[0], st, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", b[0], err)
		}
	}
	for _, d := range o.Overlays {
		name := strings.ReplaceAll(strings.Trim(d, "/"), "/", "_")
		upper, work := filepath.Join(ovl, name, "upper"), filepath.Join(ovl, name, "work")
		if err := os.MkdirAll(upper, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return err
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", d, upper, work)
		if err := unix.Mount("overlay", d, "overlay", 0, opts); err != nil {
			return fmt.Errorf("overlay on %s: %w", d, err)
		}
	}
	for i, b := range o.Binds {
		if err := os.MkdirAll(b[1], 0o755); err != nil {
			return err
		}
		if err := unix.Mount(filepath.Join(stage, fmt.Sprint(i)), b[1], "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", b[0], b[1], err)
		}
	}
	if err := ownSysClassNet(); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(o.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if err := os.WriteFile("/etc/hostname", []byte(o.Hostname+"\n"), 0o644); err != nil {
		return err
	}
	return nil
}

// detachRunAndPins drops this namespace's copies of /run's mounts and of
// every namespace pin: holding them would keep other machines' (and other
// clusters') namespaces alive after they are deleted.
func detachRunAndPins() error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var targets []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		mi, ok := cgroups.ParseMountInfo(sc.Text())
		if !ok {
			continue
		}
		if mi.FSType == "nsfs" || mi.MountPoint == "/run" || strings.HasPrefix(mi.MountPoint, "/run/") {
			targets = append(targets, mi.MountPoint)
		}
	}
	// Deepest first.
	slices.SortFunc(targets, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, t := range slices.Compact(targets) {
		if err := unix.Unmount(t, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("detach %s: %w", t, err)
		}
	}
	return nil
}

// ownSysClassNet shows this network namespace's devices under
// /sys/class/net (sysfs shows those of the namespace that mounted it)
// while keeping the rest of /sys, cgroups included, as it is.
func ownSysClassNet() error {
	const sys = "/run/.klab/sys"
	if err := os.MkdirAll(sys, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("sysfs", sys, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	for _, d := range []string{"class/net", "devices/virtual/net"} {
		if err := unix.Mount(filepath.Join(sys, d), filepath.Join("/sys", d), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /sys/%s: %w", d, err)
		}
	}
	return nil
}
