package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/klab-dev/klab/cluster/runtime/internal/fsroot"
)

// busyboxPath is the PATH the built-in image sets.
const busyboxPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// buildBusybox assembles the built-in image from the node's busybox-static.
func (s *Store) buildBusybox(ctx context.Context) (img *Image, err error) {
	bin := s.BusyboxBinary
	if bin == "" {
		bin = "/bin/busybox"
	}
	sum, err := checkStatic(bin, "install busybox-static (apt-get install busybox-static)")
	if err != nil {
		return nil, fmt.Errorf("built-in image busybox on %s: %w", s.node(), err)
	}
	list, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w", err)
	}
	tmp, err := s.tempDir()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	size, err := assembleBusybox(tmp, bin, appletPaths(list))
	if err != nil {
		return nil, fmt.Errorf("assemble busybox image: %w", err)
	}
	rel, err := s.publish(tmp, "busybox-"+sum[:16])
	if err != nil {
		return nil, err
	}
	return &Image{
		Name:     Busybox,
		ID:       "sha256:" + sum,
		Dir:      rel,
		Config:   Config{Cmd: []string{"sh"}, Env: []string{busyboxPath}},
		Size:     size,
		Imported: time.Now().UTC(),
	}, nil
}

// checkStatic makes sure bin is a statically linked executable (a dynamic
// one would find no libc in the image) and returns its sha256; remedy
// says how to get one.
func checkStatic(bin, remedy string) (string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s is missing: %s", bin, remedy)
		}
		return "", fmt.Errorf("%s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked: %s", bin, remedy)
		}
	}
	r, err := os.Open(bin)
	if err != nil {
		return "", err
	}
	defer r.Close()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// appletPaths parses "busybox --list-full": one path per line, relative
// to "/" ("bin/sh", "usr/bin/wget").
func appletPaths(list []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		p := fsroot.Clean(strings.TrimSpace(sc.Text()))
		if p != "" && p != "bin/busybox" {
			out = append(out, p)
		}
	}
	return out
}

// busyboxFiles are the files the built-in image has besides busybox and
// its applets.
var busyboxFiles = map[string]string{
	"etc/passwd":      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
	"etc/group":       "root:x:0:\nnobody:x:65534:\n",
	"etc/hostname":    "",
	"etc/hosts":       "",
	"etc/resolv.conf": "",
}

// assembleBusybox lays out the built-in image in dir and returns its size.
func assembleBusybox(dir, bin string, applets []string) (int64, error) {
	dirs := map[string]os.FileMode{
		"bin": 0o755, "sbin": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755, "etc": 0o755,
		"root": 0o700, "home": 0o755, "tmp": 0o1777, "var/tmp": 0o1777, "var/www": 0o755,
		"proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755,
	}
	for d, mode := range dirs {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return 0, err
		}
		if err := os.Chmod(p, mode); err != nil {
			return 0, err
		}
	}
	for name, content := range busyboxFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return 0, err
		}
	}
	size, err := copyFile(bin, filepath.Join(dir, "bin/busybox"), 0o755)
	if err != nil {
		return 0, err
	}
	for _, a := range applets {
		p := filepath.Join(dir, a)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, err
		}
		if err := os.Symlink("/bin/busybox", p); err != nil && !errors.Is(err, os.ErrExist) {
			return 0, err
		}
	}
	return size, nil
}

func copyFile(src, dst string, mode os.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
