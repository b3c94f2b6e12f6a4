// Package image is a node's image store: root filesystems that containers
// run on, each with the image config that says what to run.
//
// Images come from two places, and none is ever downloaded:
//   - the built-in busybox image ("busybox", "busybox:latest"), assembled
//     on the node on first use from the busybox-static binary
//     (/bin/busybox) with every applet linked to it;
//   - the built-in klab image ("klab"): the node's klab binary as /klab,
//     which cluster add-ons such as "klab dns" run from;
//   - images imported from an OCI layout (a directory, or a tar of one) or
//     a docker-archive tarball ("docker save") with "klab image import",
//     flattened with go-containerregistry's mutate.Extract.
//
// On disk (Root, /var/lib/klab/images on a node): rootfs/<id>/ holds each
// image's files, images.json names them. Containers use a rootfs as the
// read-only lower layer of an overlay mount and never write to it.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where a node keeps its images.
const DefaultRoot = "/var/lib/klab/images"

// Busybox is the name of the built-in image.
const Busybox = "busybox:latest"

// Config is what an image says about running it; a container's own
// settings override it.
type Config struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Image is an image in the store.
type Image struct {
	Name string `json:"name"` // normalised: "busybox:latest", "example.com/app:1"
	// ID is the image's config digest, or for the built-in busybox image
	// the digest of the busybox binary it was made from.
	ID       string    `json:"id"`
	Dir      string    `json:"rootfs"` // the rootfs directory, relative to the store's root
	Config   Config    `json:"config"`
	Size     int64     `json:"size"` // bytes of files in the rootfs
	Created  time.Time `json:"created,omitzero"`
	Imported time.Time `json:"imported"`
}

// Store is a node's image store.
type Store struct {
	// Root is the store's directory (DefaultRoot on a node).
	Root string
	// Node names the node in messages ("not found on node1").
	Node string
	// BusyboxBinary is the static busybox the built-in image is made
	// from; empty means /bin/busybox.
	BusyboxBinary string
	// KlabBinary is the klab executable the built-in klab image is made
	// from; empty: the store has no klab image.
	KlabBinary string
}

// Rootfs is the absolute path of an image's root filesystem.
func (s *Store) Rootfs(img *Image) string { return filepath.Join(s.Root, img.Dir) }

// NotFoundError is an image that the node does not have.
type NotFoundError struct {
	Name, Node string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("image %q not found on %s: import it with klab image import", e.Name, e.Node)
}

// Normalize gives an image name its canonical form: Docker Hub's
// "docker.io/library/" prefix dropped and ":latest" added when there is no
// tag or digest.
func Normalize(name string) string {
	n := strings.TrimSpace(name)
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"} {
		if strings.HasPrefix(n, p) {
			n = strings.TrimPrefix(n, p)
			break
		}
	}
	if n == "" || strings.Contains(n, "@") {
		return n
	}
	last := n[strings.LastIndex(n, "/")+1:]
	if !strings.Contains(last, ":") {
		n += ":latest"
	}
	return n
}

// Resolve finds an image by name (or by ID), assembling the built-in
// busybox and klab images on first use (and klab's again when the node's
// binary changed). An image the node does not have is a
// *NotFoundError.
func (s *Store) Resolve(ctx context.Context, name string) (*Image, error) {
	want := Normalize(name)
	var found *Image
	err := s.locked(func() error {
		imgs, err := s.read()
		if err != nil {
			return err
		}
		for i := range imgs {
			if imgs[i].Name == want || imgs[i].ID == name {
				if _, err := os.Stat(s.Rootfs(&imgs[i])); err == nil && s.current(&imgs[i]) {
					found = &imgs[i]
					return nil
				}
			}
		}
		build := s.builtin(want)
		if build == nil {
			return nil
		}
		img, err := build(ctx)
		if err != nil {
			return err
		}
		found = img
		return s.add(imgs, img)
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, &NotFoundError{Name: name, Node: s.node()}
	}
	return found, nil
}

// List returns the store's images, by name.
func (s *Store) List() ([]Image, error) {
	var imgs []Image
	err := s.locked(func() (err error) {
		imgs, err = s.read()
		return err
	})
	slices.SortFunc(imgs, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return imgs, err
}

func (s *Store) node() string {
	if s.Node != "" {
		return s.Node
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "this node"
}

func (s *Store) indexPath() string { return filepath.Join(s.Root, "images.json") }

// locked runs fn holding the store's lock, so that an import from the
// CLI and the agent's first busybox use never race.
func (s *Store) locked(fn func() error) error {
	if err := os.MkdirAll(filepath.Join(s.Root, "rootfs"), 0o755); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(s.Root, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock image store %s: %w", s.Root, err)
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return fn()
}

func (s *Store) read() ([]Image, error) {
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var imgs []Image
	if err := json.Unmarshal(b, &imgs); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.indexPath(), err)
	}
	return imgs, nil
}

// add records img, replacing an image of the same name; a rootfs no
// image uses any more is removed.
func (s *Store) add(imgs []Image, img *Image) error {
	var old []string
	imgs = slices.DeleteFunc(imgs, func(i Image) bool {
		if i.Name == img.Name {
			old = append(old, i.Dir)
			return true
		}
		return false
	})
	imgs = append(imgs, *img)
	b, err := json.MarshalIndent(imgs, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.indexPath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.indexPath()); err != nil {
		return err
	}
	for _, dir := range old {
		if !slices.ContainsFunc(imgs, func(i Image) bool { return i.Dir == dir }) {
			os.RemoveAll(filepath.Join(s.Root, dir))
		}
	}
	return nil
}

// publish moves a finished rootfs from tmp to rootfs/<key>, unless an
// identical one is already there.
func (s *Store) publish(tmp, key string) (string, error) {
	rel := filepath.Join("rootfs", key)
	dst := filepath.Join(s.Root, rel)
	if _, err := os.Stat(dst); err == nil {
		return rel, os.RemoveAll(tmp)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("store rootfs: %w", err)
	}
	return rel, nil
}

// tempDir makes a directory for a rootfs being assembled, inside the
// store so that publishing it is a rename.
func (s *Store) tempDir() (string, error) {
	return os.MkdirTemp(filepath.Join(s.Root, "rootfs"), ".tmp-")
}
