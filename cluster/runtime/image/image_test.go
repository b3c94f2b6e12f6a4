package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/klab-dev/klab/internal/testutil"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                          "busybox:latest",
		"busybox:1.36":                     "busybox:1.36",
		"docker.io/library/nginx":          "nginx:latest",
		"docker.io/bitnami/redis:7":        "bitnami/redis:7",
		"localhost:5000/app":               "localhost:5000/app:latest",
		"example.com/app@sha256:abcd":      "example.com/app@sha256:abcd",
		" nginx:1.25 ":                     "nginx:1.25",
		"index.docker.io/library/alpine:3": "alpine:3",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAppletPaths(t *testing.T) {
	got := appletPaths([]byte("bin/sh\nusr/bin/wget\n\nbin/busybox\n../../etc/x\n"))
	want := []string{"bin/sh", "usr/bin/wget", "etc/x"}
	if !slices.Equal(got, want) {
		t.Errorf("appletPaths = %q, want %q", got, want)
	}
}

func TestUnknownImage(t *testing.T) {
	s := &Store{Root: t.TempDir(), Node: "node1"}
	_, err := s.Resolve(context.Background(), "nginx:1.25")
	var nf *NotFoundError
	if !errors.As(err, &nf) || err.Error() != `image "nginx:1.25" not found on node1: import it with klab image import` {
		t.Errorf("Resolve of an unknown image: %v", err)
	}
}

// Untar keeps every entry inside the directory, whatever the names and
// symlinks in the archive say.
func TestUntarStaysInside(t *testing.T) {
	outside := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	uid, gid := os.Getuid(), os.Getgid()
	entries := []tar.Header{
		{Name: "escape", Typeflag: tar.TypeSymlink, Linkname: outside},
		{Name: "escape/owned", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "../../dotdot", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "rel", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../" + outside},
		{Name: "rel/owned2", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "dir/file", Typeflag: tar.TypeReg, Mode: 0o640},
		{Name: "dir/hard", Typeflag: tar.TypeLink, Linkname: "dir/file"},
	}
	for _, h := range entries {
		h.Uid, h.Gid = uid, gid
		if h.Typeflag == tar.TypeReg {
			h.Size = 2
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("hi"))
		}
	}
	tw.Close()
	dir := t.TempDir()
	n, err := Untar(context.Background(), &buf, dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Errorf("size %d, want 8", n)
	}
	if got, _ := os.ReadDir(outside); len(got) != 0 {
		t.Errorf("files written outside: %v", got)
	}
	for _, p := range []string{"dotdot", "dir/file", filepath.Join(outside[1:], "owned"), filepath.Join(outside[1:], "owned2")} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	a, _ := os.Stat(filepath.Join(dir, "dir/file"))
	b, _ := os.Stat(filepath.Join(dir, "dir/hard"))
	if !os.SameFile(a, b) || a.Mode().Perm() != 0o640 {
		t.Errorf("hard link or mode wrong: %v %v", a, b)
	}
}

// The built-in image has busybox and its applets.
func TestIntegrationBusybox(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs busybox-static (/bin/busybox)")
	}
	s := &Store{Root: t.TempDir(), Node: "node1"}
	img, err := s.Resolve(context.Background(), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"bin/sh", "usr/bin/wget", "sbin/ip", "bin/ping", "usr/sbin/httpd", "usr/bin/nc"} {
		if l, err := os.Readlink(filepath.Join(s.Rootfs(img), p)); err != nil || l != "/bin/busybox" {
			t.Errorf("%s: %q, %v", p, l, err)
		}
	}
	again, err := s.Resolve(context.Background(), "docker.io/library/busybox:latest")
	if err != nil || again.ID != img.ID || again.Dir != img.Dir {
		t.Errorf("second resolve: %+v, %v", again, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].Name != Busybox {
		t.Errorf("List = %+v, %v", list, err)
	}
	if _, err := (&Store{Root: t.TempDir(), BusyboxBinary: "/bin/true"}).Resolve(context.Background(), "busybox"); err == nil {
		t.Error("a dynamically linked busybox was accepted")
	}
}
