package providers

import (
	"strings"
	"testing"

	"github.com/klab-dev/klab/provision/libvirt"
)

func TestGetWith(t *testing.T) {
	missing := libvirt.Options{URI: "qemu:///system?socket=" + t.TempDir() + "/none"}
	for _, tc := range []struct {
		name, want, why, err string
	}{
		{name: "netns", want: "netns"},
		{name: "libvirt", want: "libvirt"},
		{name: "auto", want: "netns", why: "libvirt not running"},
		{name: "", want: "netns", why: "libvirt not running"},
		{name: "docker", err: `unknown provider "docker"`},
	} {
		p, why, err := GetWith(tc.name, "/bin/klab", missing)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || p.Name() != tc.want || why != tc.why {
			t.Errorf("%q: %v %q %v, want %s %q", tc.name, p, why, err, tc.want, tc.why)
		}
	}
}

func TestLibvirtOptionsFromEnvironment(t *testing.T) {
	t.Setenv("KLAB_LIBVIRT_URI", "qemu+ssh://lab@host/system")
	t.Setenv("KLAB_ACCEL", "tcg")
	t.Setenv("KLAB_IMAGE", "/images/debian.qcow2")
	t.Setenv("KLAB_KERNEL_DEB", "/k.deb")
	o := LibvirtOptions()
	if o.URI != "qemu+ssh://lab@host/system" || o.Accel != "tcg" || o.CloudImage != "/images/debian.qcow2" || o.Image.KernelDeb != "/k.deb" {
		t.Errorf("options %+v", o)
	}
	p, _, err := Get("libvirt", "/bin/klab")
	if err != nil {
		t.Fatal(err)
	}
	if lp := p.(*libvirt.Provider); lp.Opts.URI != o.URI || lp.Opts.Accel != "tcg" {
		t.Errorf("provider options %+v", lp.Opts)
	}
}
