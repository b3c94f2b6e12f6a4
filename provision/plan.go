package provision

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"time"
)

// Role is what a machine of the cluster is for.
type Role string

const (
	RoleMaster Role = "master" // etcd, apiserver, scheduler, controller manager (and an agent)
	RoleWorker Role = "worker" // an agent and the pods
	RoleRouter Role = "router" // joins the underlay subnets (with --subnets 2); no cluster components
)

// Node is one machine of the cluster.
type Node struct {
	Name   string     `json:"name"`
	Role   Role       `json:"role"`
	IP     netip.Addr `json:"ip"`
	Subnet int        `json:"subnet"` // index into Cluster.Subnets
	// IPs holds the router's address in every subnet (routers only).
	IPs []netip.Addr `json:"ips,omitempty"`
}

// Subnet is one underlay ("physical") network.
type Subnet struct {
	Name    string       `json:"name"` // "a", "b"
	CIDR    netip.Prefix `json:"cidr"`
	Gateway netip.Addr   `json:"gateway,omitempty"` // the router's address, when there is a router
}

// Cluster is the plan of a cluster: its machines and networks. It is what
// "up" creates and what the state file records, so "down" can undo it.
type Cluster struct {
	Name        string       `json:"name"`
	Provider    string       `json:"provider"`
	Slot        int          `json:"slot"` // which underlay range: 192.168.(34+2*slot).0/24
	Subnets     []Subnet     `json:"subnets"`
	Nodes       []Node       `json:"nodes"`
	HostLink    string       `json:"hostLink"` // the host's own link into the underlay
	HostIP      netip.Prefix `json:"hostIP"`
	PodCIDR     netip.Prefix `json:"podCIDR"`
	ServiceCIDR netip.Prefix `json:"serviceCIDR"`
	// MTU of the underlay: its bridges, every machine's link into it.
	MTU     int       `json:"mtu"`
	Phase   Phase     `json:"phase"`
	Created time.Time `json:"created"`
}

// Phase is where a cluster is in its life.
type Phase string

const (
	PhaseCreating Phase = "creating"
	PhaseReady    Phase = "ready"
	PhaseFailed   Phase = "failed"
	PhaseDeleting Phase = "deleting"
)

// Limits of what klab plans.
const (
	MaxWorkers = 100
	MaxSlots   = 100
	// The underlay MTU: Ethernet's 1500 by default, up to a jumbo-frame
	// network's 9000; below 1280 a pod would have too little left once
	// VXLAN's 50 bytes are taken.
	DefaultMTU = 1500
	MinMTU     = 1280
	MaxMTU     = 9000
)

// PlanOptions is what the user asks for.
type PlanOptions struct {
	Name     string
	Provider string
	Masters  int
	Workers  int
	Subnets  int
	Slot     int
	// MTU of the underlay; 0 means DefaultMTU.
	MTU int
}

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,18}[a-z0-9])?$`)

// ValidateName checks a cluster name: it names namespaces, links, VMs and a
// directory, so it is a short DNS label.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("invalid cluster name %q: use 1 to 20 lowercase letters, digits and '-', starting with a letter", name)
	}
	return nil
}

// Validate checks the options a user gave, with the flag names in errors.
func (o PlanOptions) Validate() error {
	if err := ValidateName(o.Name); err != nil {
		return err
	}
	switch {
	case o.Masters != 1 && o.Masters != 3 && o.Masters != 5:
		if o.Masters%2 == 0 && o.Masters > 0 {
			return fmt.Errorf("--masters %d: etcd needs an odd number of members to keep a majority; use 1, 3 or 5", o.Masters)
		}
		return fmt.Errorf("--masters %d: use 1, 3 or 5", o.Masters)
	case o.Workers < 0 || o.Workers > MaxWorkers:
		return fmt.Errorf("--nodes %d: the number of worker nodes must be between 0 and %d", o.Workers, MaxWorkers)
	case o.Subnets != 1 && o.Subnets != 2:
		return fmt.Errorf("--subnets %d: use 1 (one underlay network) or 2 (two, joined by a router)", o.Subnets)
	case o.Subnets == 2 && o.Workers < 2:
		return fmt.Errorf("--subnets 2 needs at least 2 worker nodes (--nodes 2), one in each subnet")
	case o.MTU != 0 && (o.MTU < MinMTU || o.MTU > MaxMTU):
		return fmt.Errorf("--mtu %d: the underlay MTU must be between %d and %d (%d is Ethernet's, %d a jumbo-frame network's)", o.MTU, MinMTU, MaxMTU, DefaultMTU, MaxMTU)
	case o.Slot < 0 || o.Slot >= MaxSlots:
		return fmt.Errorf("underlay slot %d out of range", o.Slot)
	}
	return nil
}

// Plan lays out a cluster: names and addresses, as in the seed's pictures.
//
// Subnet a is 192.168.(34+2*slot).0/24 and subnet b (with --subnets 2) the
// next /24. Masters take .10 upwards ("master", or "master1".. with several),
// workers follow ("node1", "node2", …) and keep their host number in either
// subnet; with two subnets the masters sit in a and the workers alternate
// a, b, a, … so node1 and node2 are always a routed hop apart. The router
// is .1 in every subnet and the host's own link .254 in subnet a.
func Plan(o PlanOptions) (*Cluster, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	third := 34 + 2*o.Slot
	c := &Cluster{
		Name:        o.Name,
		Provider:    o.Provider,
		Slot:        o.Slot,
		HostLink:    HostLinkName(o.Name),
		PodCIDR:     netip.MustParsePrefix("10.42.0.0/16"),
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/16"),
		MTU:         o.MTU,
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	for i := range o.Subnets {
		s := Subnet{Name: string(rune('a' + i)), CIDR: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(third + i), 0}), 24)}
		if o.Subnets > 1 {
			s.Gateway = hostAddr(s.CIDR, 1)
		}
		c.Subnets = append(c.Subnets, s)
	}
	c.HostIP = netip.PrefixFrom(hostAddr(c.Subnets[0].CIDR, 254), 24)
	host := 10
	for i := 1; i <= o.Masters; i++ {
		name := "master"
		if o.Masters > 1 {
			name += strconv.Itoa(i)
		}
		c.Nodes = append(c.Nodes, Node{Name: name, Role: RoleMaster, IP: hostAddr(c.Subnets[0].CIDR, host)})
		host++
	}
	for i := 1; i <= o.Workers; i++ {
		sub := (i - 1) % o.Subnets
		c.Nodes = append(c.Nodes, Node{Name: "node" + strconv.Itoa(i), Role: RoleWorker, Subnet: sub, IP: hostAddr(c.Subnets[sub].CIDR, host)})
		host++
	}
	if o.Subnets > 1 {
		r := Node{Name: "router", Role: RoleRouter, IP: c.Subnets[0].Gateway}
		for _, s := range c.Subnets {
			r.IPs = append(r.IPs, s.Gateway)
		}
		c.Nodes = append(c.Nodes, r)
	}
	return c, nil
}

func hostAddr(p netip.Prefix, host int) netip.Addr {
	b := p.Addr().As4()
	b[3] = byte(host)
	return netip.AddrFrom4(b)
}

// HostLinkName names the host's link into a cluster's underlay:
// "klab-NAME", or "klab-" and a hash when that is longer than an interface
// name may be.
func HostLinkName(cluster string) string {
	if n := "klab-" + cluster; len(n) <= 15 {
		return n
	}
	h := sha256.Sum256([]byte(cluster))
	return "klab-" + hex.EncodeToString(h[:])[:10]
}

// Node returns the node called name.
func (c *Cluster) Node(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Members returns the nodes that are cluster members (not the router).
func (c *Cluster) Members() []Node {
	var out []Node
	for _, n := range c.Nodes {
		if n.Role != RoleRouter {
			out = append(out, n)
		}
	}
	return out
}

// NodeNames lists every machine's name, router included.
func (c *Cluster) NodeNames() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Name
	}
	return out
}

// Masters lists the master nodes.
func (c *Cluster) Masters() []Node {
	var out []Node
	for _, n := range c.Nodes {
		if n.Role == RoleMaster {
			out = append(out, n)
		}
	}
	return out
}
