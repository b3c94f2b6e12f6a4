// Package provision makes the machines of a cluster and the networks between
// them, and gives every machine a transport. Providers: netns (machines are
// network namespaces) and libvirt (machines are VMs).
package provision

import (
	"context"

	"github.com/klab-dev/klab/provision/transport"
)

// Provider creates and deletes the machines of a cluster. Every provider
// gives the rest of klab the same thing: a node name, an underlay address
// and a transport.
type Provider interface {
	// Name is the provider's name in flags and state ("netns", "libvirt").
	Name() string
	// CreateNetwork makes the underlay subnets (and the router between them).
	CreateNetwork(ctx context.Context, c *Cluster) error
	// CreateNodes makes every machine of c and attaches it to its subnet.
	CreateNodes(ctx context.Context, c *Cluster) error
	// Delete removes everything the Create methods made for c. It works
	// after a partial create, with processes already dead, and when things
	// are already gone.
	Delete(ctx context.Context, c *Cluster) error
	// Nodes reports the state of every machine of c.
	Nodes(ctx context.Context, c *Cluster) ([]NodeState, error)
	// Transport returns a way to run commands on, and copy files to, a machine.
	Transport(c *Cluster, node string) (transport.Transport, error)
}

// Describer is a Provider that can say how a cluster's machines run: the
// libvirt provider says whether its VMs have KVM or are emulated, and why.
type Describer interface {
	Describe(c *Cluster) string
}

// NodeState is what a provider knows of a machine.
type NodeState struct {
	Name  string `json:"name"`
	State string `json:"state"` // running, stopped, missing
	// Detail is provider-specific: the namespace, or the VM's domain name and state.
	Detail string `json:"detail,omitempty"`
}

// Paths on every machine, whatever the provider.
const (
	NodeBinary    = "/usr/local/bin/klab"
	NodeConfigDir = "/etc/klab"
	NodeStateDir  = "/var/lib/klab"
	NodeLogDir    = "/var/log/klab"
	NodeRunDir    = "/run/klab"
)
