// Package fsroot works on paths inside a directory tree that is not
// trusted — an image's root filesystem — as if that directory were "/":
// every path is resolved by the kernel with openat2(RESOLVE_IN_ROOT), so
// neither ".." nor a symlink (absolute or relative) in the tree can lead
// outside it. Image extraction and the container's mount points use it.
package fsroot

import (
	"errors"
	"fmt"
	"path"

	"golang.org/x/sys/unix"
)

// Root is an open directory that paths are resolved in.
type Root struct {
	fd   int
	Path string
}

// Open opens dir as a root.
func Open(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &Root{fd: fd, Path: dir}, nil
}

// Close releases the root.
func (r *Root) Close() error { return unix.Close(r.fd) }

// Clean turns a path inside the root ("/etc/hosts", "./bin/sh",
// "../x") into its clean relative form ("etc/hosts", "bin/sh", "x");
// the root itself is "".
func Clean(p string) string {
	return path.Clean("/" + p)[1:]
}

// OpenFile opens rel, resolved inside the root (a final symlink is
// followed, inside the root too). flags are open(2) flags.
func (r *Root) OpenFile(rel string, flags int, mode uint32) (int, error) {
	rel = Clean(rel)
	if rel == "" {
		rel = "."
	}
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(r.fd, rel, how)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue // a concurrent rename; the kernel asks to retry
		}
		if err != nil {
			return -1, &PathError{Op: "open", Root: r.Path, Path: rel, Err: err}
		}
		return fd, nil
	}
	return -1, &PathError{Op: "open", Root: r.Path, Path: rel, Err: unix.EAGAIN}
}

// MkdirAll makes directory rel and its missing parents inside the root
// and returns it opened with O_PATH, for use as the dirfd of *at calls.
// A dangling symlink on the way is followed (inside the root) and the
// directory it names is made.
func (r *Root) MkdirAll(rel string, mode uint32) (int, error) {
	return r.mkdirAll(rel, mode, 0)
}

// maxLinks bounds the symlinks MkdirAll follows, as the kernel's ELOOP.
const maxLinks = 40

func (r *Root) mkdirAll(rel string, mode uint32, links int) (int, error) {
	rel = Clean(rel)
	fd, err := r.OpenFile(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err == nil || !errors.Is(err, unix.ENOENT) || rel == "" {
		return fd, err
	}
	dir, base := path.Split(rel)
	pfd, err := r.mkdirAll(dir, mode, links)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, base, mode); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			return -1, &PathError{Op: "mkdir", Root: r.Path, Path: rel, Err: err}
		}
		buf := make([]byte, unix.PathMax)
		n, lerr := unix.Readlinkat(pfd, base, buf)
		if lerr == nil {
			// A dangling symlink: make what it points to, in the root.
			if links >= maxLinks {
				return -1, &PathError{Op: "mkdir", Root: r.Path, Path: rel, Err: unix.ELOOP}
			}
			target := string(buf[:n])
			if !path.IsAbs(target) {
				target = path.Join(dir, target)
			}
			lfd, err := r.mkdirAll(target, mode, links+1)
			if err != nil {
				return -1, err
			}
			unix.Close(lfd)
		}
	}
	return r.OpenFile(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// Parent opens the directory that holds rel (making it when missing) and
// returns it with rel's last element: the pair that *at calls take, so
// that the last element itself is never followed.
func (r *Root) Parent(rel string) (dirfd int, base string, err error) {
	rel = Clean(rel)
	if rel == "" {
		return -1, "", &PathError{Op: "parent", Root: r.Path, Path: "/", Err: unix.EINVAL}
	}
	dir, base := path.Split(rel)
	fd, err := r.MkdirAll(dir, 0o755)
	if err != nil {
		return -1, "", err
	}
	return fd, base, nil
}

// PathError is a failed operation on a path inside a root.
type PathError struct {
	Op, Root, Path string
	Err            error
}

func (e *PathError) Error() string {
	return fmt.Sprintf("%s /%s in %s: %v", e.Op, e.Path, e.Root, e.Err)
}

func (e *PathError) Unwrap() error { return e.Err }
