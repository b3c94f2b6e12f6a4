// Package image builds klab's node image — a kernel and an initramfs that
// holds busybox, OpenSSH's sshd with the libraries it needs, the kernel
// modules the cluster needs and an init that configures the machine from
// the kernel command line — and the small per-node archives and cloud-init
// seeds that make one image serve every machine.
package image

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/templates"
)

// DefaultModules are the kernel modules the node image loads at boot: the
// virtio drivers, what the pod network modes use (bridge, veth, VXLAN,
// IPIP, tun), nftables for services and policy, overlayfs for containers.
// Names built into the kernel are skipped; patterns may match nothing.
var DefaultModules = []string{
	"virtio_pci", "virtio_net", "virtio_blk", "virtio_console", "virtio_rng",
	"ext4", "overlay", "af_packet",
	"bridge", "br_netfilter", "veth", "vxlan", "ipip", "tun", "dummy",
	"nf_tables", "nft_*", "nf_conntrack", "nf_nat", "nf_reject_ipv4", "nfnetlink",
	// The service proxy deletes stale UDP flows through conntrack's netlink.
	"nf_conntrack_netlink",
	// netlink.NewHandle opens a NETLINK_XFRM socket too, and fails
	// ("protocol not supported") without it.
	"xfrm_user",
}

// DefaultTools are host programs copied into the image, with the libraries
// they need, when the host has them: the full iproute2 and nftables tools
// and tcpdump, to look at a node's network in more detail than busybox
// can. They are conveniences; a host without them builds an image without.
var DefaultTools = []string{"ip", "bridge", "ss", "nft", "tcpdump", "bash"}

// DefaultShell is the program that becomes /bin/sh when the host has it.
// Not busybox's ash: it runs its own applets before programs on $PATH, so
// "ip" in a command over SSH would never be iproute2's.
const DefaultShell = "dash"

// Options say what to build the image from. Without a kernel, Build uses
// the host's (/boot and /lib/modules) when present and complete, or the
// newest kernel package in KernelCache.
type Options struct {
	KernelDeb string // a Debian linux-image package (.deb)
	KernelDir string // an unpacked one, or any tree with boot/vmlinuz-V and lib/modules/V
	Busybox   string // default: busybox on $PATH
	SSHD      string // default: /usr/sbin/sshd
	Modules   []string
	// Tools are programs (names on $PATH, or paths) put where $PATH
	// finds them; nil means DefaultTools, which are skipped when missing.
	Tools []string
	// Shell is /bin/sh (a name on $PATH or a path); empty means
	// DefaultShell when the host has it, busybox otherwise.
	Shell    string
	CacheDir string // default: CacheDir()
}

// Image is a built node image.
type Image struct {
	Hash          string    `json:"hash"`
	Dir           string    `json:"dir"`
	Kernel        string    `json:"kernel"`
	Initrd        string    `json:"initrd"`
	KernelVersion string    `json:"kernelVersion"`
	KernelSource  string    `json:"kernelSource"`
	Modules       int       `json:"modules"`
	InitrdBytes   int64     `json:"initrdBytes"`
	Built         time.Time `json:"built"`
	// Cached says the image was already built and was reused.
	Cached bool `json:"cached"`
}

// CacheDir is where images are kept: $KLAB_CACHE_DIR or /var/cache/klab.
func CacheDir() string {
	if d := os.Getenv("KLAB_CACHE_DIR"); d != "" {
		return d
	}
	return "/var/cache/klab"
}

// KernelCache is where "make deps" leaves Debian kernel packages for the
// image: CACHE/kernels.
func KernelCache(cache string) string { return filepath.Join(cache, "kernels") }

const formatVersion = "klab-node-image-1"

// kernel is a kernel image and its module tree.
type kernel struct {
	vmlinuz, modules, version, source string
}

// Build builds the node image, or returns the cached one when an image
// with the same contents exists.
func Build(ctx context.Context, o Options) (*Image, error) {
	if o.CacheDir == "" {
		o.CacheDir = CacheDir()
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
	}
	if o.SSHD == "" {
		o.SSHD = "/usr/sbin/sshd"
	}
	if o.Busybox == "" {
		p, err := exec.LookPath("busybox")
		if err != nil {
			return nil, errors.New("busybox not found: install it (apt-get install busybox-static)")
		}
		o.Busybox = p
	}
	if _, err := os.Stat(o.SSHD); err != nil {
		return nil, fmt.Errorf("sshd not found at %s: install it (apt-get install openssh-server)", o.SSHD)
	}
	k, cleanup, err := findKernel(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	var raw bytes.Buffer
	nmods, err := writeBase(ctx, &raw, k, o)
	if err != nil {
		return nil, err
	}
	vmlinuz, err := os.ReadFile(k.vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("read kernel: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(formatVersion))
	h.Write(vmlinuz)
	h.Write(raw.Bytes())
	hash := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(o.CacheDir, "images", hash)
	if img, err := readImage(dir); err == nil {
		img.Cached = true
		return img, nil
	}

	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "vmlinuz"), vmlinuz, 0o644); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(tmp, "initrd.img"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	_, err = io.Copy(zw, &raw)
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write initramfs: %w", err)
	}
	fi, err := os.Stat(filepath.Join(tmp, "initrd.img"))
	if err != nil {
		return nil, err
	}
	img := &Image{
		Hash: hash, Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		KernelVersion: k.version, KernelSource: k.source, Modules: nmods, InitrdBytes: fi.Size(),
		Built: time.Now().UTC().Truncate(time.Second),
	}
	meta, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "image.json"), meta, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Built at the same time by someone else: theirs is as good.
		if img, rerr := readImage(dir); rerr == nil {
			return img, nil
		}
		return nil, fmt.Errorf("store image: %w", err)
	}
	return img, nil
}

func readImage(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, "image.json"))
	if err != nil {
		return nil, err
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, err
	}
	for _, p := range []string{img.Kernel, img.Initrd} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return &img, nil
}

// KernelAvailable reports where Build would take its kernel from, or why
// it has none.
func KernelAvailable(o Options) (string, error) {
	switch {
	case o.KernelDeb != "":
		_, err := os.Stat(o.KernelDeb)
		return o.KernelDeb, err
	case o.KernelDir != "":
		k, err := kernelIn(o.KernelDir)
		return k.vmlinuz, err
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
	}
	if k, err := hostKernel(o.Modules); err == nil {
		return k.vmlinuz, nil
	}
	if o.CacheDir == "" {
		o.CacheDir = CacheDir()
	}
	debs, _ := filepath.Glob(filepath.Join(KernelCache(o.CacheDir), "linux-image-*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("no kernel for the node image: no usable /boot and /lib/modules, and no package in %s", KernelCache(o.CacheDir))
	}
	slices.Sort(debs)
	return debs[len(debs)-1], nil
}

// findKernel picks the kernel the options name, or the host's, or one from
// the kernel cache. cleanup removes what unpacking a package left.
func findKernel(ctx context.Context, o Options) (k kernel, cleanup func(), err error) {
	cleanup = func() {}
	switch {
	case o.KernelDeb != "":
		return unpackDeb(ctx, o.KernelDeb, o.CacheDir)
	case o.KernelDir != "":
		k, err := kernelIn(o.KernelDir)
		return k, cleanup, err
	}
	if k, err := hostKernel(o.Modules); err == nil {
		return k, cleanup, nil
	}
	debs, _ := filepath.Glob(filepath.Join(KernelCache(o.CacheDir), "linux-image-*.deb"))
	if len(debs) > 0 {
		slices.Sort(debs)
		return unpackDeb(ctx, debs[len(debs)-1], o.CacheDir)
	}
	return k, cleanup, fmt.Errorf("no kernel for the node image: this host has no usable /boot and /lib/modules, and %s holds no package; "+
		"give --kernel-deb FILE (apt-get download linux-image-6.1.0-NN-cloud-amd64) or --kernel-dir DIR, or put the .deb in %s",
		KernelCache(o.CacheDir), KernelCache(o.CacheDir))
}

func hostKernel(modules []string) (kernel, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return kernel{}, err
	}
	rel := unix.ByteSliceToString(u.Release[:])
	k := kernel{vmlinuz: "/boot/vmlinuz-" + rel, modules: "/lib/modules/" + rel, version: rel, source: "host"}
	if _, err := os.Stat(k.vmlinuz); err != nil {
		return kernel{}, err
	}
	if _, err := moduleList(k, modules); err != nil {
		return kernel{}, err
	}
	return k, nil
}

func unpackDeb(ctx context.Context, deb, cache string) (kernel, func(), error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return kernel{}, nil, err
	}
	dir, err := os.MkdirTemp(cache, ".kernel-")
	if err != nil {
		return kernel{}, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput()
	if err != nil {
		cleanup()
		return kernel{}, nil, fmt.Errorf("unpack %s: %v: %s", deb, err, strings.TrimSpace(string(out)))
	}
	k, err := kernelIn(dir)
	if err != nil {
		cleanup()
		return kernel{}, nil, fmt.Errorf("%s: %w", deb, err)
	}
	k.source = filepath.Base(deb)
	return k, cleanup, nil
}

// kernelIn finds boot/vmlinuz-VERSION (or vmlinuz-VERSION) and
// lib/modules/VERSION (or usr/lib/modules/VERSION) under dir; with
// several versions, the last in lexical order.
func kernelIn(dir string) (kernel, error) {
	var found []string
	for _, pat := range []string{"boot/vmlinuz-*", "vmlinuz-*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		found = append(found, m...)
	}
	slices.Sort(found)
	for i := len(found) - 1; i >= 0; i-- {
		v := strings.TrimPrefix(filepath.Base(found[i]), "vmlinuz-")
		for _, md := range []string{"lib/modules", "usr/lib/modules"} {
			mods := filepath.Join(dir, md, v)
			if fi, err := os.Stat(mods); err == nil && fi.IsDir() {
				return kernel{vmlinuz: found[i], modules: mods, version: v, source: dir}, nil
			}
		}
	}
	if len(found) == 0 {
		return kernel{}, fmt.Errorf("no vmlinuz-VERSION in %s or %s/boot", dir, dir)
	}
	return kernel{}, fmt.Errorf("%s has no lib/modules/VERSION for %s", dir, filepath.Base(found[len(found)-1]))
}

// moduleList resolves the wanted modules of k to files, dependencies first.
func moduleList(k kernel, wanted []string) ([]string, error) {
	var deps *ModuleDeps
	if f, err := os.Open(filepath.Join(k.modules, "modules.dep")); err == nil {
		deps, err = ParseModulesDep(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	} else {
		var err error
		if deps, err = ScanModules(filepath.Join(k.modules, "kernel")); err != nil {
			return nil, err
		}
		// ScanModules names files relative to kernel/.
		for n, f := range deps.files {
			deps.files[n] = "kernel/" + f
		}
		nd := make(map[string][]string, len(deps.deps))
		for f, ds := range deps.deps {
			var out []string
			for _, d := range ds {
				out = append(out, "kernel/"+d)
			}
			if out == nil {
				out = []string{}
			}
			nd["kernel/"+f] = out
		}
		deps.deps = nd
	}
	builtin := map[string]bool{}
	if f, err := os.Open(filepath.Join(k.modules, "modules.builtin")); err == nil {
		builtin, err = ParseModulesBuiltin(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	files, err := deps.Closure(wanted, builtin)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.version, err)
	}
	return files, nil
}

// writeBase writes the uncompressed base initramfs. It returns the number
// of modules in it.
func writeBase(ctx context.Context, w io.Writer, k kernel, o Options) (int, error) {
	mods, err := moduleList(k, o.Modules)
	if err != nil {
		return 0, err
	}
	c := NewCPIO(w)
	for _, d := range []struct {
		name string
		perm fs.FileMode
	}{
		{"bin", 0o755}, {"sbin", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755}, {"usr/local/bin", 0o755},
		{"etc/ssh", 0o755}, {"etc/klab", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"dev", 0o755},
		{"run", 0o755}, {"tmp", 0o777 | fs.ModeSticky}, {"root", 0o700}, {"var/lib/klab", 0o755},
		{"var/log/klab", 0o755}, {"var/empty", 0o755}, {"mnt", 0o755},
	} {
		if err := c.Dir(d.name, d.perm); err != nil {
			return 0, err
		}
	}
	// The kernel opens /dev/console before /init mounts devtmpfs.
	if err := c.CharDevice("dev/console", 0o600, 5, 1); err != nil {
		return 0, err
	}
	if err := c.CharDevice("dev/null", 0o666, 1, 3); err != nil {
		return 0, err
	}

	// busybox and its applets.
	seen := map[string]bool{}
	if err := addBinary(c, o.Busybox, "/bin/busybox", seen); err != nil {
		return 0, err
	}
	out, err := exec.CommandContext(ctx, o.Busybox, "--list-full").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --list-full: %w", o.Busybox, err)
	}
	own := map[string]bool{"bin/busybox": true, "usr/sbin/sshd": true, "init": true}
	shell, err := findTools([]string{cmp.Or(o.Shell, DefaultShell)}, o.Shell == "")
	if err != nil {
		return 0, fmt.Errorf("shell %w", err)
	}
	for _, t := range shell {
		if err := addBinary(c, t.file, "/bin/sh", seen); err != nil {
			return 0, fmt.Errorf("shell: %w", err)
		}
		own["bin/sh"] = true
	}
	names, optional := o.Tools, false
	if names == nil {
		names, optional = DefaultTools, true
	}
	tools, err := findTools(names, optional)
	if err != nil {
		return 0, fmt.Errorf("tool %w", err)
	}
	for _, t := range tools {
		if err := addBinary(c, t.file, t.path, seen); err != nil {
			return 0, fmt.Errorf("tool %s: %w", t.path, err)
		}
		own[strings.TrimPrefix(t.path, "/")] = true
	}
	for _, applet := range strings.Fields(string(out)) {
		applet = strings.TrimPrefix(applet, "/")
		if own[applet] {
			continue
		}
		own[applet] = true
		if err := c.Symlink(applet, "/bin/busybox"); err != nil {
			return 0, err
		}
	}

	// sshd and the libraries it needs.
	if err := addBinary(c, o.SSHD, "/usr/sbin/sshd", seen); err != nil {
		return 0, err
	}

	// Configuration from templates.
	init, err := templates.Render("image/init", map[string]string{"KernelVersion": k.version})
	if err != nil {
		return 0, err
	}
	if err := c.File("init", init, 0o755); err != nil {
		return 0, err
	}
	for _, f := range []struct {
		tmpl, path string
		perm       fs.FileMode
	}{
		{"image/inittab", "etc/inittab", 0o644},
		{"image/sshd_config", "etc/ssh/sshd_config", 0o644},
		{"image/passwd", "etc/passwd", 0o644},
		{"image/group", "etc/group", 0o644},
		{"image/shadow", "etc/shadow", 0o600},
		{"image/nsswitch.conf", "etc/nsswitch.conf", 0o644},
	} {
		b, err := templates.File(f.tmpl)
		if err != nil {
			return 0, err
		}
		if err := c.File(f.path, b, f.perm); err != nil {
			return 0, err
		}
	}

	// Kernel modules, decompressed, and the order to load them in.
	var list []string
	for _, m := range mods {
		data, name, err := readModule(ctx, filepath.Join(k.modules, m))
		if err != nil {
			return 0, err
		}
		rel := filepath.Join(filepath.Dir(m), name)
		if err := c.File(filepath.Join("lib/modules", k.version, rel), data, 0o644); err != nil {
			return 0, err
		}
		list = append(list, rel)
	}
	if err := c.File("etc/klab-image/modules", []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		return 0, err
	}
	if err := c.File("etc/klab-image/release", []byte(fmt.Sprintf("format=%s\nkernel=%s\n", formatVersion, k.version)), 0o644); err != nil {
		return 0, err
	}
	return len(mods), c.Close()
}

// tool is a host program and where it goes in the image.
type tool struct{ file, path string }

// findTools resolves program names (or paths) to files, in the order
// given; each goes where $PATH found it. optional leaves out what the host
// lacks instead of failing.
func findTools(names []string, optional bool) ([]tool, error) {
	var out []tool
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if p, err = filepath.Abs(p); err != nil {
			return nil, err
		}
		file, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, err
		}
		out = append(out, tool{file: file, path: p})
	}
	return out, nil
}

// addBinary adds an executable at path and, when it is dynamically
// linked, its interpreter and libraries at the paths the loader expects.
func addBinary(c *CPIO, file, path string, seen map[string]bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := c.File(path, data, 0o755); err != nil {
		return err
	}
	libs, err := Libraries(file, DefaultLibDirs)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if seen[l] {
			continue
		}
		seen[l] = true
		b, err := os.ReadFile(l)
		if err != nil {
			return err
		}
		if err := c.File(l, b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// readModule reads a module file, decompressing .ko.gz in Go and .ko.xz
// and .ko.zst with xz(1) and zstd(1): busybox's insmod loads plain .ko
// files only.
func readModule(ctx context.Context, file string) (data []byte, name string, err error) {
	base := filepath.Base(file)
	switch {
	case strings.HasSuffix(base, ".ko"):
		data, err = os.ReadFile(file)
		return data, base, err
	case strings.HasSuffix(base, ".ko.gz"):
		f, err := os.Open(file)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", file, err)
		}
		data, err = io.ReadAll(zr)
		return data, strings.TrimSuffix(base, ".gz"), err
	case strings.HasSuffix(base, ".ko.xz"), strings.HasSuffix(base, ".ko.zst"):
		ext := filepath.Ext(base)
		tool := map[string]string{".xz": "xz", ".zst": "zstd"}[ext]
		out, err := exec.CommandContext(ctx, tool, "-dc", file).Output()
		if err != nil {
			return nil, "", fmt.Errorf("decompress %s with %s (install it, or give an uncompressed kernel): %w", file, tool, err)
		}
		return out, strings.TrimSuffix(base, ext), nil
	}
	return nil, "", fmt.Errorf("%s: not a kernel module", file)
}
