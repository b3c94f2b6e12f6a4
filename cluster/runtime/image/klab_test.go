package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The klab image holds the store's klab binary as /klab, and is made
// again when that binary changes. Any static binary stands in for klab.
func TestKlabImage(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs a static binary to stand in for klab: busybox-static (/bin/busybox)")
	}
	bin := filepath.Join(t.TempDir(), "klab")
	if _, err := cloneFile("/bin/busybox", bin); err != nil {
		t.Fatal(err)
	}
	s := &Store{Root: t.TempDir(), Node: "node1", KlabBinary: bin}
	ctx := context.Background()
	img, err := s.Resolve(ctx, "klab")
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != Klab || !slices.Equal(img.Config.Entrypoint, []string{"/klab"}) {
		t.Errorf("image %+v", img)
	}
	for _, p := range []string{"klab", "etc/resolv.conf", "etc/hosts", "proc", "tmp"} {
		if _, err := os.Stat(filepath.Join(s.Rootfs(img), p)); err != nil {
			t.Errorf("the image lacks %s: %v", p, err)
		}
	}
	again, err := s.Resolve(ctx, "klab:latest")
	if err != nil || again.Dir != img.Dir || again.Imported != img.Imported {
		t.Errorf("a second resolve made it again: %+v, %v", again, err)
	}
	// A new klab on the node: the image follows.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(bin, later, later); err != nil {
		t.Fatal(err)
	}
	fresh, err := s.Resolve(ctx, "klab")
	if err != nil || fresh.Imported.Equal(img.Imported) {
		t.Errorf("after the binary changed: %+v, %v", fresh, err)
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("the store lists %d images, want the one klab image", len(list))
	}
	var nf *NotFoundError
	if _, err := (&Store{Root: t.TempDir()}).Resolve(ctx, "klab"); !errors.As(err, &nf) {
		t.Errorf("a store without a klab binary: %v, want not found", err)
	}
}

// A klab built with cgo cannot run in the image, which has no libc: the
// error says how to build one that can.
func TestKlabImageDynamic(t *testing.T) {
	const dynamic = "/bin/ls"
	if _, err := os.Stat(dynamic); err != nil {
		t.Skip("needs a dynamically linked executable: " + dynamic)
	}
	s := &Store{Root: t.TempDir(), Node: "node1", KlabBinary: dynamic}
	_, err := s.Resolve(context.Background(), "klab")
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("a dynamically linked klab: %v, want how to build a static one", err)
	}
}
