package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klab-dev/klab/internal/testutil"
)

// fakeKernel lays out an unpacked kernel package: boot/vmlinuz-V and
// lib/modules/V with modules.dep, modules.builtin and module files.
func fakeKernel(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"boot/vmlinuz-" + version:                                "not really a kernel",
		"lib/modules/" + version + "/modules.dep":                "kernel/net/ipv4/ipip.ko: kernel/net/ipv4/tunnel4.ko\nkernel/net/ipv4/tunnel4.ko:\nkernel/drivers/net/veth.ko.gz:\n",
		"lib/modules/" + version + "/modules.builtin":            "kernel/fs/ext4/ext4.ko\n",
		"lib/modules/" + version + "/kernel/net/ipv4/ipip.ko":    "ipip module",
		"lib/modules/" + version + "/kernel/net/ipv4/tunnel4.ko": "tunnel4 module",
	}
	for rel, data := range files {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A gzip-compressed module, decompressed into the image.
	gz := filepath.Join(dir, "lib/modules", version, "kernel/drivers/net/veth.ko")
	os.MkdirAll(filepath.Dir(gz), 0o755)
	os.WriteFile(gz, []byte("veth module"), 0o644)
	if out, err := exec.Command("gzip", gz).CombinedOutput(); err != nil {
		t.Skipf("gzip: %v: %s", err, out)
	}
	return dir
}

func TestBuildFromKernelDir(t *testing.T) {
	testutil.RequireCommand(t, "busybox", "gzip")
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("needs OpenSSH's sshd (make deps installs it)")
	}
	kdir := fakeKernel(t, "9.9.9-test")
	cache := t.TempDir()
	o := Options{KernelDir: kdir, Modules: []string{"ipip", "veth", "ext4", "nft_*"}, CacheDir: cache}
	img, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if img.Cached || img.KernelVersion != "9.9.9-test" || img.Modules != 3 {
		t.Errorf("image %+v", img)
	}
	if k, _ := os.ReadFile(img.Kernel); string(k) != "not really a kernel" {
		t.Errorf("kernel %q", k)
	}
	raw, err := os.ReadFile(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := parseCPIO(t, gunzip(t, raw))
	got := map[string]cpioEntry{}
	for _, e := range entries {
		got[e.name] = e
	}
	for name, want := range map[string]string{
		"etc/klab-image/modules":                            "kernel/net/ipv4/tunnel4.ko\nkernel/net/ipv4/ipip.ko\nkernel/drivers/net/veth.ko\n",
		"lib/modules/9.9.9-test/kernel/drivers/net/veth.ko": "veth module",
		"lib/modules/9.9.9-test/kernel/net/ipv4/ipip.ko":    "ipip module",
	} {
		if got[name].data != want {
			t.Errorf("%s: %q, want %q", name, got[name].data, want)
		}
	}
	for _, name := range []string{"init", "bin/busybox", "usr/sbin/sshd", "etc/ssh/sshd_config", "etc/passwd", "etc/inittab", "dev/console", "bin/sh", "lib64/ld-linux-x86-64.so.2"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing from the initramfs", name)
		}
	}
	if init := got["init"].data; !strings.Contains(init, "/lib/modules/9.9.9-test/") || got["init"].mode != 0o100755 {
		t.Errorf("init (mode %o) does not load modules of 9.9.9-test", got["init"].mode)
	}
	if sh := got["bin/sh"]; sh.mode&0o170000 != 0o100000 && sh.data != "/bin/busybox" {
		t.Errorf("bin/sh is neither a shell of its own nor busybox: mode %o, %q", sh.mode, sh.data)
	}
	// A host tool (iproute2's ip) is where $PATH finds it, as a file.
	if p, err := exec.LookPath("ip"); err == nil {
		if e := got[strings.TrimPrefix(p, "/")]; e.mode&0o170000 != 0o100000 {
			t.Errorf("%s: mode %o, want the host's program", p, e.mode)
		}
	}

	again, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Hash != img.Hash {
		t.Errorf("second build: cached %v, hash %s vs %s", again.Cached, again.Hash, img.Hash)
	}
	o.Modules = []string{"ipip"}
	other, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if other.Cached || other.Hash == img.Hash {
		t.Errorf("different modules, same image %s", other.Hash)
	}
}

func TestBuildErrors(t *testing.T) {
	testutil.RequireCommand(t, "busybox")
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("needs OpenSSH's sshd")
	}
	kdir := fakeKernel(t, "1.0")
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{KernelDir: t.TempDir()}, "no vmlinuz-VERSION"},
		{Options{KernelDir: kdir, Modules: []string{"wireguard"}}, "wireguard is neither built in nor in modules.dep"},
		{Options{KernelDir: kdir, SSHD: "/nonexistent/sshd"}, "sshd not found"},
		{Options{KernelDir: kdir, Modules: []string{"ipip"}, Tools: []string{"no-such-tool-x"}}, "tool no-such-tool-x"},
	} {
		tc.o.CacheDir = t.TempDir()
		_, err := Build(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%+v): %v, want %q", tc.o, err, tc.want)
		}
	}
}
