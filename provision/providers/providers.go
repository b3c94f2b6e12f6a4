// Package providers chooses a provision.Provider by name, and "auto" by
// what this machine has.
package providers

import (
	"fmt"
	"net"
	"time"

	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/netns"
)

// Names lists the values of --provider.
var Names = []string{"auto", "netns", "libvirt"}

// LibvirtSocket is libvirtd's socket for qemu:///system.
const LibvirtSocket = "/var/run/libvirt/libvirt-sock"

// Get returns the provider called name. binary is the klab executable.
// For "auto" it also says why it picked the one it did.
func Get(name, binary string) (p provision.Provider, why string, err error) {
	switch name {
	case "netns":
		return netns.New(binary), "", nil
	case "libvirt":
		return nil, "", fmt.Errorf("provider libvirt is not part of this build yet: use --provider netns")
	case "auto", "":
		if libvirtAnswers() {
			return netns.New(binary), "libvirt is running, but this build has no libvirt provider yet", nil
		}
		return netns.New(binary), "libvirt not found", nil
	}
	return nil, "", fmt.Errorf("unknown provider %q: use auto, netns or libvirt", name)
}

func libvirtAnswers() bool {
	c, err := net.DialTimeout("unix", LibvirtSocket, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ForCluster returns the provider that made an existing cluster.
func ForCluster(binary string) func(name string) (provision.Provider, error) {
	return func(name string) (provision.Provider, error) {
		p, _, err := Get(name, binary)
		return p, err
	}
}
