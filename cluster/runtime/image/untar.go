package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/cluster/runtime/internal/fsroot"
)

// Untar unpacks a tar stream into dir and returns the bytes of file data
// written. Every path is resolved inside dir (see fsroot): an entry named
// "../x", or one that goes through a symlink the tar made, stays in dir.
// Ownership, modes (setuid included) and device nodes are kept, so this
// needs root for images that have them.
func Untar(ctx context.Context, r io.Reader, dir string) (int64, error) {
	root, err := fsroot.Open(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return size, err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return size, nil
		}
		if err != nil {
			return size, err
		}
		rel := fsroot.Clean(h.Name)
		if rel == "" {
			continue // the root itself
		}
		n, err := extractEntry(root, rel, h, tr)
		if err != nil {
			return size, fmt.Errorf("%s: %w", h.Name, err)
		}
		size += n
	}
}

func extractEntry(root *fsroot.Root, rel string, h *tar.Header, r io.Reader) (int64, error) {
	if h.Typeflag == tar.TypeDir {
		fd, err := root.MkdirAll(rel, 0o755)
		if err != nil {
			return 0, err
		}
		unix.Close(fd)
	}
	dirfd, base, err := root.Parent(rel)
	if err != nil {
		return 0, err
	}
	defer unix.Close(dirfd)
	if h.Typeflag != tar.TypeDir {
		// Replace what is there, never write through it (a symlink).
		if err := unix.Unlinkat(dirfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			if errors.Is(err, unix.EISDIR) {
				return 0, fmt.Errorf("a directory is in the way")
			}
			return 0, err
		}
	}
	mode := uint32(h.Mode & 0o7777)
	var n int64
	switch h.Typeflag {
	case tar.TypeDir:
	case tar.TypeReg:
		fd, err := unix.Openat(dirfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return 0, err
		}
		f := os.NewFile(uintptr(fd), rel)
		n, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return n, err
		}
	case tar.TypeSymlink:
		return 0, chown(dirfd, base, h, unix.Symlinkat(h.Linkname, dirfd, base))
	case tar.TypeLink:
		odir, obase, err := root.Parent(h.Linkname)
		if err != nil {
			return 0, err
		}
		defer unix.Close(odir)
		return 0, unix.Linkat(odir, obase, dirfd, base, 0)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		dev := unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
		if err := unix.Mknodat(dirfd, base, kind|mode, int(dev)); err != nil {
			return 0, err
		}
	default:
		return 0, nil // pax headers are consumed by archive/tar; others carry no file
	}
	if err := chown(dirfd, base, h, nil); err != nil {
		return n, err
	}
	// After chown, which clears setuid and setgid.
	if err := unix.Fchmodat(dirfd, base, mode, 0); err != nil {
		return n, err
	}
	if h.Typeflag == tar.TypeReg {
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		if err := unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return n, err
		}
	}
	return n, nil
}

// chown gives the entry its owner, unless err (of making it) is set.
func chown(dirfd int, base string, h *tar.Header, err error) error {
	if err != nil {
		return err
	}
	return unix.Fchownat(dirfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW)
}
