// Package providers chooses a provision.Provider by name, and "auto" by
// what this machine has.
package providers

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/image"
	"github.com/klab-dev/klab/provision/libvirt"
	"github.com/klab-dev/klab/provision/netns"
)

// Names lists the values of --provider.
var Names = []string{"auto", "netns", "libvirt"}

// LibvirtSocket is libvirtd's socket for qemu:///system.
const LibvirtSocket = libvirt.DefaultSocket

// LibvirtOptions are the libvirt provider's settings from the environment:
// $KLAB_LIBVIRT_URI (default qemu:///system), $KLAB_ACCEL (auto, kvm or
// tcg), $KLAB_IMAGE (a qcow2 cloud image instead of klab's node image),
// and $KLAB_KERNEL_DEB or $KLAB_KERNEL_DIR (the kernel of klab's image).
// Flags, where a command has them, override these.
func LibvirtOptions() libvirt.Options {
	return libvirt.Options{
		URI:        os.Getenv("KLAB_LIBVIRT_URI"),
		Accel:      os.Getenv("KLAB_ACCEL"),
		CloudImage: os.Getenv("KLAB_IMAGE"),
		Image:      image.Options{KernelDeb: os.Getenv("KLAB_KERNEL_DEB"), KernelDir: os.Getenv("KLAB_KERNEL_DIR")},
	}
}

// Get returns the provider called name. binary is the klab executable.
// For "auto" it also says why it picked the one it did.
func Get(name, binary string) (p provision.Provider, why string, err error) {
	return GetWith(name, binary, LibvirtOptions())
}

// GetWith is Get with the libvirt provider's options given. "auto" picks
// libvirt when libvirtd answers and a kernel for klab's node image (or a
// cloud image) is at hand, and netns otherwise.
func GetWith(name, binary string, lo libvirt.Options) (p provision.Provider, why string, err error) {
	switch name {
	case "netns":
		return netns.New(binary), "", nil
	case "libvirt":
		return libvirt.New(binary, lo), "", nil
	case "auto", "":
		lp := libvirt.New(binary, lo)
		if !libvirtAnswers(lp) {
			return netns.New(binary), "libvirt not running", nil
		}
		if lo.CloudImage == "" {
			if _, err := image.KernelAvailable(lo.Image); err != nil {
				return netns.New(binary), "libvirt is running, but " + err.Error(), nil
			}
		}
		return lp, "libvirt is running", nil
	}
	return nil, "", fmt.Errorf("unknown provider %q: use auto, netns or libvirt", name)
}

func libvirtAnswers(p *libvirt.Provider) bool {
	if p.Opts.URI == libvirt.DefaultURI {
		c, err := net.DialTimeout("unix", LibvirtSocket, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Check(ctx) == nil
}

// ForCluster returns the provider that made an existing cluster.
func ForCluster(binary string) func(name string) (provision.Provider, error) {
	return func(name string) (provision.Provider, error) {
		p, _, err := Get(name, binary)
		return p, err
	}
}
