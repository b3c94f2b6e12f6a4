package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// testImage builds an image in memory: busybox as /bin/busybox with a few
// applets, a user "app" (1000:1000), /hello.txt, and cfg.
func testImage(t testing.TB, cfg v1.Config) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("needs busybox-static (/bin/busybox)")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	for _, a := range []string{"sh", "cat", "id", "echo", "pwd", "sleep", "ls", "touch"} {
		add(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"))
	add(&tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:\napp:x:1000:\nextra:x:2000:app\n"))
	add(&tar.Header{Name: "hello.txt", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("hello from the image\n"))
	add(&tar.Header{Name: "work/", Typeflag: tar.TypeDir, Mode: 0o777}, nil)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// importTestImage writes a test image as an OCI layout, imports it as
// ref and returns ref.
func importTestImage(t testing.TB, r *Runtime, ref string, entrypoint, cmd []string) string {
	t.Helper()
	img := testImage(t, v1.Config{Entrypoint: entrypoint, Cmd: cmd})
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		t.Fatal(err)
	}
	got, err := r.cfg.Images.Import(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != ref {
		t.Fatalf("imported as %q, want %q", got.Name, ref)
	}
	return ref
}

// Imported images run, with their config (entrypoint, cmd, env, working
// directory, user) applied where the container does not override it.
func TestIntegrationImportedImageRuns(t *testing.T) {
	r := testRuntime(t)
	ctx := context.Background()
	cfg := v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{`echo "$GREETING from $(pwd) as $(id -u):$(id -g) $(id -G)"; cat /hello.txt`},
		Env:        []string{"PATH=/bin", "GREETING=hi"},
		WorkingDir: "/work",
		User:       "app",
	}
	img := testImage(t, cfg)
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "example.com/hello:oci"})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "hello.tar")
	tag, _ := name.NewTag("example.com/hello:docker")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cfg.Images.Import(ctx, dir, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cfg.Images.Import(ctx, archive, ""); err != nil {
		t.Fatal(err)
	}
	sb, err := r.CreateSandbox(ctx, SandboxConfig{ID: testID(t), Name: "imported"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    ContainerConfig
		want string
	}{
		{ContainerConfig{Name: "oci", Image: "example.com/hello:oci"}, "hi from /work as 1000:1000 1000 2000\nhello from the image\n"},
		{ContainerConfig{Name: "docker", Image: "example.com/hello:docker", Args: []string{"echo $GREETING again"}, Env: []EnvVar{{"GREETING", "bye"}}}, "bye again\n"},
		{ContainerConfig{Name: "root", Image: "example.com/hello:oci", User: &User{UID: 0}, Command: []string{"id", "-u"}}, "0\n"},
	} {
		c, err := r.StartContainer(ctx, sb.ID, tc.c)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := r.Wait(wctx, c.ID)
		cancel()
		if err != nil || st.Code != 0 {
			t.Fatalf("%s: exit %+v, %v: %s", tc.c.Name, st, err, logsOf(r, c.ID))
		}
		if got := logsOf(r, c.ID); got != tc.want {
			t.Errorf("%s: output %q, want %q", tc.c.Name, got, tc.want)
		}
	}
}
