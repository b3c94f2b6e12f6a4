package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Klab is the name of the built-in image that holds the node's own klab
// binary as /klab: cluster add-ons (klab dns) run from it, so nothing is
// ever downloaded.
const Klab = "klab:latest"

// builtin returns how to assemble a built-in image, or nil when name is
// not one (or the store was not told where the klab binary is).
func (s *Store) builtin(name string) func(context.Context) (*Image, error) {
	switch {
	case name == Busybox:
		return s.buildBusybox
	case name == Klab && s.KlabBinary != "":
		return s.buildKlab
	}
	return nil
}

// current reports whether an image in the store is still what it was
// made from: the klab image is remade when the node's klab binary
// changed (a new klab was installed).
func (s *Store) current(img *Image) bool {
	if img.Name != Klab || s.KlabBinary == "" {
		return true
	}
	src, err1 := os.Stat(s.KlabBinary)
	have, err2 := os.Stat(filepath.Join(s.Rootfs(img), "klab"))
	return err1 == nil && err2 == nil && src.Size() == have.Size() && src.ModTime().Equal(have.ModTime())
}

// buildKlab assembles the klab image: /klab, the files every container
// expects (passwd, hosts, resolv.conf …) and the usual mount points.
func (s *Store) buildKlab(context.Context) (img *Image, err error) {
	sum, err := checkStatic(s.KlabBinary, "build klab without cgo (make build, or CGO_ENABLED=0 go build ./cmd/klab) and run klab up again")
	if err != nil {
		return nil, fmt.Errorf("built-in image klab on %s: %w", s.node(), err)
	}
	st, err := os.Stat(s.KlabBinary)
	if err != nil {
		return nil, err
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
	for _, d := range []string{"etc", "proc", "sys", "dev", "run", "tmp", "var/run"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(tmp, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	for name, content := range busyboxFiles {
		if err := os.WriteFile(filepath.Join(tmp, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	dst := filepath.Join(tmp, "klab")
	size, err := cloneFile(s.KlabBinary, dst)
	if err != nil {
		return nil, fmt.Errorf("copy %s into the klab image: %w", s.KlabBinary, err)
	}
	// current() compares size and time with the node's binary.
	if err := os.Chtimes(dst, st.ModTime(), st.ModTime()); err != nil {
		return nil, err
	}
	rel, err := s.publish(tmp, "klab-"+sum[:16])
	if err != nil {
		return nil, err
	}
	return &Image{
		Name:     Klab,
		ID:       "sha256:" + sum,
		Dir:      rel,
		Config:   Config{Entrypoint: []string{"/klab"}, Env: []string{"PATH=/"}},
		Size:     size,
		Created:  st.ModTime().UTC().Truncate(time.Second),
		Imported: time.Now().UTC(),
	}, nil
}

// cloneFile copies src to a new executable dst, sharing its blocks when
// the filesystem can (reflink), and returns the size.
func cloneFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return 0, err
	}
	var n int64
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		st, serr := in.Stat()
		if serr == nil {
			n = st.Size()
		}
		err = serr
	} else {
		n, err = io.Copy(out, in)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}
