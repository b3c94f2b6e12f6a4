package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Import adds the image in src to the store under name (NAME:TAG; empty:
// the name recorded in src). src is an OCI layout directory, a tar of one
// (oci-archive), or a docker-archive tarball ("docker save").
func (s *Store) Import(ctx context.Context, src, as string) (*Image, error) {
	img, recorded, cleanup, err := open(ctx, src, as)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	defer cleanup()
	n := as
	if n == "" {
		n = recorded
	}
	if n == "" {
		return nil, fmt.Errorf("import %s: the image has no name: give it one with --name NAME:TAG", src)
	}
	if _, err := name.ParseReference(n); err != nil {
		return nil, fmt.Errorf("import %s: bad image name %q: %w", src, n, err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("import %s: read image config: %w", src, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	out := &Image{
		Name: Normalize(n),
		ID:   id.String(),
		Config: Config{
			Entrypoint: cfg.Config.Entrypoint,
			Cmd:        cfg.Config.Cmd,
			Env:        cfg.Config.Env,
			WorkingDir: cfg.Config.WorkingDir,
			User:       cfg.Config.User,
		},
		Created:  cfg.Created.UTC(),
		Imported: time.Now().UTC(),
	}
	err = s.locked(func() (err error) {
		imgs, err := s.read()
		if err != nil {
			return err
		}
		key := id.Hex
		if _, err := os.Stat(filepath.Join(s.Root, "rootfs", key)); err == nil {
			for _, i := range imgs {
				if i.Dir == filepath.Join("rootfs", key) {
					out.Dir, out.Size = i.Dir, i.Size
				}
			}
		}
		if out.Dir == "" {
			out.Dir, out.Size, err = s.extract(ctx, img, key)
			if err != nil {
				return fmt.Errorf("import %s: %w", src, err)
			}
		}
		return s.add(imgs, out)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// extract flattens img's layers into rootfs/<key>.
func (s *Store) extract(ctx context.Context, img v1.Image, key string) (rel string, size int64, err error) {
	tmp, err := s.tempDir()
	if err != nil {
		return "", 0, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", 0, err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	size, err = Untar(ctx, rc, tmp)
	if err != nil {
		return "", 0, fmt.Errorf("extract layers: %w", err)
	}
	rel, err = s.publish(tmp, key)
	return rel, size, err
}

// open finds the image in src and the name src records for it. Its
// layers are read lazily: call cleanup once done with the image.
func open(ctx context.Context, src, want string) (img v1.Image, recorded string, cleanup func(), err error) {
	cleanup = func() {}
	st, err := os.Stat(src)
	if err != nil {
		return nil, "", cleanup, err
	}
	if st.IsDir() {
		img, recorded, err = fromLayout(src, want)
		return img, recorded, cleanup, err
	}
	kind, err := archiveKind(src)
	if err != nil {
		return nil, "", cleanup, err
	}
	switch kind {
	case "docker":
		img, recorded, err = fromDockerArchive(src, want)
		return img, recorded, cleanup, err
	case "oci":
		dir, err := os.MkdirTemp("", "klab-oci-")
		if err != nil {
			return nil, "", cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		f, err := os.Open(src)
		if err != nil {
			cleanup()
			return nil, "", func() {}, err
		}
		defer f.Close()
		if _, err := Untar(ctx, f, dir); err != nil {
			cleanup()
			return nil, "", func() {}, fmt.Errorf("unpack OCI archive: %w", err)
		}
		img, recorded, err = fromLayout(dir, want)
		if err != nil {
			cleanup()
			return nil, "", func() {}, err
		}
		return img, recorded, cleanup, nil
	}
	return nil, "", cleanup, errors.New("not an image: want an OCI layout (directory or tar with oci-layout) or a docker-archive tarball (tar with manifest.json)")
}

// archiveKind says whether a tar file is a docker archive (manifest.json)
// or an OCI layout (oci-layout), by its entries' names.
func archiveKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	kind := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return kind, nil
		}
		if err != nil {
			return "", fmt.Errorf("read %s as tar: %w", path, err)
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "manifest.json":
			return "docker", nil // docker save since v25 writes both; manifest.json is enough
		case "oci-layout":
			kind = "oci"
		}
	}
}

func fromDockerArchive(path, want string) (v1.Image, string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, "", fmt.Errorf("read manifest.json: %w", err)
	}
	var tags []string
	for _, d := range m {
		tags = append(tags, d.RepoTags...)
	}
	pick := ""
	switch {
	case len(m) == 1:
		if len(m[0].RepoTags) > 0 {
			pick = m[0].RepoTags[0]
		}
		for _, t := range m[0].RepoTags {
			if Normalize(t) == Normalize(want) {
				pick = t
			}
		}
	default:
		for _, t := range tags {
			if want != "" && Normalize(t) == Normalize(want) {
				pick = t
			}
		}
		if pick == "" {
			return nil, "", fmt.Errorf("the archive holds %d images (%s): choose one with --name", len(m), strings.Join(tags, ", "))
		}
	}
	var tag *name.Tag
	if len(m) > 1 {
		t, err := name.NewTag(pick)
		if err != nil {
			return nil, "", err
		}
		tag = &t
	}
	img, err := tarball.Image(opener, tag)
	if err != nil {
		return nil, "", err
	}
	return img, pick, nil
}

const (
	refNameAnnotation   = "org.opencontainers.image.ref.name"
	imageNameAnnotation = "io.containerd.image.name"
)

// fromLayout picks an image from an OCI layout: the one named want, or the
// only one, or the one for this machine's platform.
func fromLayout(dir, want string) (v1.Image, string, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", fmt.Errorf("read OCI layout: %w", err)
	}
	type cand struct {
		img  v1.Image
		name string
		plat *v1.Platform
	}
	var cands []cand
	var walk func(idx v1.ImageIndex, name string) error
	walk = func(idx v1.ImageIndex, name string) error {
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			n := name
			if a := d.Annotations[imageNameAnnotation]; a != "" {
				n = a
			} else if a := d.Annotations[refNameAnnotation]; a != "" {
				n = a
			}
			switch {
			case d.MediaType.IsIndex():
				child, err := idx.ImageIndex(d.Digest)
				if err != nil {
					return err
				}
				if err := walk(child, n); err != nil {
					return err
				}
			case d.MediaType.IsImage():
				img, err := idx.Image(d.Digest)
				if err != nil {
					return err
				}
				cands = append(cands, cand{img: img, name: n, plat: d.Platform})
			}
		}
		return nil
	}
	if err := walk(idx, ""); err != nil {
		return nil, "", fmt.Errorf("read OCI layout: %w", err)
	}
	if len(cands) == 0 {
		return nil, "", errors.New("the OCI layout holds no image")
	}
	pick := func(ok func(cand) bool) []cand {
		var out []cand
		for _, c := range cands {
			if ok(c) {
				out = append(out, c)
			}
		}
		return out
	}
	if want != "" && len(cands) > 1 {
		if named := pick(func(c cand) bool { return c.name != "" && Normalize(c.name) == Normalize(want) }); len(named) > 0 {
			cands = named
		}
	}
	if len(cands) > 1 {
		if p := pick(func(c cand) bool {
			return c.plat != nil && c.plat.OS == "linux" && c.plat.Architecture == runtime.GOARCH
		}); len(p) > 0 {
			cands = p
		}
	}
	if len(cands) > 1 {
		return nil, "", fmt.Errorf("the OCI layout holds %d images: choose one with --name", len(cands))
	}
	n := cands[0].name
	if n != "" && !strings.ContainsAny(n, ":@/") {
		n = "" // a bare tag ("1.25") names no repository
	}
	return cands[0].img, n, nil
}
