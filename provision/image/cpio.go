package image

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// CPIO writes an archive in the "newc" format, the one the Linux kernel
// unpacks into its initial root filesystem. Archives may be concatenated:
// the kernel unpacks each in turn, later entries replacing earlier ones.
type CPIO struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

// NewCPIO returns a writer of a newc archive on w.
func NewCPIO(w io.Writer) *CPIO {
	return &CPIO{w: w, ino: 1, dirs: map[string]bool{"": true, ".": true}}
}

// Mode bits of a newc header (the file type, as in stat(2)).
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
)

func (c *CPIO) header(name string, mode uint32, size int, rdev [2]uint32) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check. mtime stays 0 so
	// that an archive depends only on its contents.
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name + "\x00"))
	c.pad(len(h) + len(name) + 1)
}

func (c *CPIO) write(b []byte) {
	if c.err != nil {
		return
	}
	_, c.err = c.w.Write(b)
}

func (c *CPIO) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// permBits are the permission bits of a header, sticky bit included.
func permBits(perm fs.FileMode) uint32 {
	b := uint32(perm.Perm())
	if perm&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

// clean turns an absolute or relative path into an archive name.
func clean(name string) (string, error) {
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	if n == "" {
		return "", fmt.Errorf("cpio: empty name %q", name)
	}
	return n, nil
}

// parents adds the directories above name that the archive does not hold yet.
func (c *CPIO) parents(name string) {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return
	}
	c.parents(dir)
	c.dirs[dir] = true
	c.header(dir, cpioDir|0o755, 0, [2]uint32{})
}

// Dir adds a directory (and its missing parents).
func (c *CPIO) Dir(name string, perm fs.FileMode) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if c.dirs[n] {
		return c.err
	}
	c.parents(n)
	c.dirs[n] = true
	c.header(n, cpioDir|permBits(perm), 0, [2]uint32{})
	return c.err
}

// File adds a regular file with the given contents.
func (c *CPIO) File(name string, data []byte, perm fs.FileMode) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	c.parents(n)
	c.header(n, cpioFile|permBits(perm), len(data), [2]uint32{})
	c.write(data)
	c.pad(len(data))
	return c.err
}

// Symlink adds a symbolic link name pointing at target.
func (c *CPIO) Symlink(name, target string) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	c.parents(n)
	c.header(n, cpioSymlink|0o777, len(target), [2]uint32{})
	c.write([]byte(target))
	c.pad(len(target))
	return c.err
}

// CharDevice adds a character device node (/dev/console, say, which the
// kernel needs before devtmpfs is mounted).
func (c *CPIO) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	c.parents(n)
	c.header(n, cpioChar|permBits(perm), 0, [2]uint32{major, minor})
	return c.err
}

// Close writes the trailer. It does not close the underlying writer.
func (c *CPIO) Close() error {
	c.header("TRAILER!!!", 0, 0, [2]uint32{})
	return c.err
}
