package image

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const modulesDep = `kernel/net/ipv4/ipip.ko: kernel/net/ipv4/ip_tunnel.ko kernel/net/ipv4/tunnel4.ko
kernel/net/ipv4/ip_tunnel.ko:
kernel/net/ipv4/tunnel4.ko:
kernel/drivers/net/vxlan/vxlan.ko: kernel/net/ipv4/udp_tunnel.ko kernel/net/ipv6/ip6_udp_tunnel.ko
kernel/net/ipv4/udp_tunnel.ko:
kernel/net/ipv6/ip6_udp_tunnel.ko:
kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nfnetlink.ko:
kernel/lib/libcrc32c.ko:
kernel/net/netfilter/nft_ct.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nf_conntrack.ko kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko
kernel/net/netfilter/nft-fib.ko: kernel/net/netfilter/nf_tables.ko kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko
kernel/fs/overlayfs/overlay.ko.xz:
`

func TestClosure(t *testing.T) {
	deps, err := ParseModulesDep(strings.NewReader(modulesDep))
	if err != nil {
		t.Fatal(err)
	}
	builtin := map[string]bool{"ext4": true}
	for _, tc := range []struct {
		name    string
		wanted  []string
		want    []string
		wantErr string
	}{
		{name: "deps first", wanted: []string{"ipip"}, want: []string{"kernel/net/ipv4/ip_tunnel.ko", "kernel/net/ipv4/tunnel4.ko", "kernel/net/ipv4/ipip.ko"}},
		{name: "shared deps once", wanted: []string{"nft_ct", "nf_tables"}, want: []string{
			"kernel/net/netfilter/nfnetlink.ko", "kernel/lib/libcrc32c.ko", "kernel/net/netfilter/nf_tables.ko",
			"kernel/net/netfilter/nf_conntrack.ko", "kernel/net/netfilter/nft_ct.ko"}},
		{name: "pattern, dash as underscore", wanted: []string{"nft_*"}, want: []string{
			"kernel/net/netfilter/nfnetlink.ko", "kernel/lib/libcrc32c.ko", "kernel/net/netfilter/nf_tables.ko",
			"kernel/net/netfilter/nf_conntrack.ko", "kernel/net/netfilter/nft_ct.ko", "kernel/net/netfilter/nft-fib.ko"}},
		{name: "builtin needs no file", wanted: []string{"ext4", "overlay"}, want: []string{"kernel/fs/overlayfs/overlay.ko.xz"}},
		{name: "pattern may match nothing", wanted: []string{"xt_*"}, want: nil},
		{name: "missing", wanted: []string{"wireguard"}, wantErr: "wireguard is neither built in nor in modules.dep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := deps.Closure(tc.wanted, builtin)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestClosureErrors(t *testing.T) {
	for name, dep := range map[string]string{
		"cycle":   "a.ko: b.ko\nb.ko: a.ko\n",
		"unknown": "a.ko: zz.ko\n",
	} {
		deps, err := ParseModulesDep(strings.NewReader(dep))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := deps.Closure([]string{"a"}, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ParseModulesDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("bad line: no error")
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/net/ipv4/ipip.ko":               "ipip",
		"kernel/net/netfilter/nft-fib.ko.xz":    "nft_fib",
		"kernel/drivers/net/vxlan/vxlan.ko.zst": "vxlan",
		"overlay":                               "overlay",
	} {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestScanModules reads dependencies from modules' own .modinfo, with
// ELF files made here.
func TestScanModules(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, depends string) {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, elfWithSection(t, ".modinfo", []byte("license=GPL\x00depends="+depends+"\x00intree=Y\x00")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("net/ipv4/ipip.ko", "ip_tunnel,tunnel4")
	write("net/ipv4/ip_tunnel.ko", "")
	write("net/ipv4/tunnel4.ko", "")
	deps, err := ScanModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := deps.Closure([]string{"ipip"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"net/ipv4/ip_tunnel.ko", "net/ipv4/tunnel4.ko", "net/ipv4/ipip.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	write("net/ipv4/broken.ko", "missing_mod")
	if _, err := ScanModules(dir); err == nil || !strings.Contains(err.Error(), "missing_mod") {
		t.Errorf("missing dependency: %v", err)
	}
}
