package tui

import (
	"context"
	"os/exec"
	"time"
)

// Cluster is everything the TUI asks of a cluster. The TUI talks to the
// cluster only through it: tui/live implements it on the packages the CLI
// uses, tests implement it with fixed data. Calls that stream (Watch, Feed,
// Logs, Create) send into the channel they are given and return when ctx
// ends or the stream fails; they never close the channel.
type Cluster interface {
	// Name is the cluster's name.
	Name() string
	// Lookup tells whether the cluster exists on this machine, and which
	// others do.
	Lookup(ctx context.Context) (Presence, error)
	// Create makes the cluster, sending one line per finished step.
	Create(ctx context.Context, o CreateOptions, progress chan<- string) error
	// Watch sends a snapshot whenever the cluster changes (coalesced), the
	// first one as soon as it is known.
	Watch(ctx context.Context, out chan<- *Snapshot) error
	// Feed sends what the control plane and the nodes do: events (scheduler
	// decisions, the agent's sandboxes …), CNI calls and route changes,
	// starting with recent history.
	Feed(ctx context.Context, out chan<- FeedItem) error
	// Reports asks every node's agent what its network looks like.
	Reports(ctx context.Context) ([]NetworkReport, error)
	// SwitchMode switches the pod network's mode and waits until every node
	// converged. A failed switch may return a result with the error.
	SwitchMode(ctx context.Context, r SwitchRequest) (*SwitchResult, error)
	// Trace sends a probe from one pod to another and reports its hops.
	Trace(ctx context.Context, r TraceRequest) (*TraceResult, error)
	// Describe describes a pod in prose, with its events.
	Describe(ctx context.Context, p PodRef) (string, error)
	// Logs follows the log of a pod's container, line by line.
	Logs(ctx context.Context, p PodRef, out chan<- string) error
	// DeletePod deletes a pod.
	DeletePod(ctx context.Context, p PodRef) error
	// Shell is the command that opens an interactive shell in a pod.
	Shell(p PodRef) *exec.Cmd
	// Labs lists the labs with the cluster's progress in each.
	Labs(ctx context.Context) ([]Lab, error)
	// CheckLab runs the checks of one step of a lab.
	CheckLab(ctx context.Context, r LabCheckRequest) (*LabCheck, error)
}

// Presence is whether a cluster exists.
type Presence struct {
	Exists bool
	// Phase is the cluster's phase when it exists: creating, ready, failed.
	Phase string
	// Others are the other clusters on this machine.
	Others []string
}

// CreateOptions are what the TUI offers when it creates a cluster.
type CreateOptions struct {
	Provider string // netns, libvirt or auto
	Workers  int
	Subnets  int
	Mode     string // bgp, vxlan, ipip
}

// Snapshot is the cluster at one moment.
type Snapshot struct {
	Cluster ClusterInfo
	Network Network
	// Nodes are the machines of the cluster in the cluster's order
	// (masters, workers, router).
	Nodes []Node
	// Pods are sorted by namespace and name.
	Pods []Pod
	// Err says what could not be read (the API down, say); the rest is
	// what was last known.
	Err string
}

// ClusterInfo is the cluster's plan and state.
type ClusterInfo struct {
	Name        string
	Provider    string
	Phase       string
	Created     time.Time
	Subnets     []Subnet
	HostIP      string
	PodCIDR     string
	ServiceCIDR string
}

// Subnet is one underlay network.
type Subnet struct {
	Name    string
	CIDR    string
	Gateway string // the router's address in it, when there is a router
}

// Node is one machine, with what the API and its supervisor say of it.
type Node struct {
	Name   string
	Role   string // master, worker, router
	IP     string // underlay address
	Subnet int    // index into ClusterInfo.Subnets
	// IPs are the router's addresses, one per subnet.
	IPs []string
	// Machine is the provider's state: running, stopped, missing.
	Machine string
	// Registered tells whether the node has a Node object.
	Registered bool
	Ready      bool
	// NotReady says why a registered node is not Ready.
	NotReady string
	PodCIDR  string
	Pods     int
	CPU      Resource // millicores
	Memory   Resource // bytes
	// Components are what the node's supervisor runs.
	Components    []Component
	ComponentsErr string
}

// Resource is what pods on a node request of what it offers.
type Resource struct {
	Requested   int64
	Allocatable int64
}

// Component is one process under a node's supervisor.
type Component struct {
	Name     string
	State    string // running, backoff, stopped, failed
	Restarts int
	Since    time.Time
	LastExit string
}

// Pod is one pod.
type Pod struct {
	Namespace  string
	Name       string
	Node       string
	IP         string
	Phase      string
	Status     string // as kubectl shows it: Running, Pending, CrashLoopBackOff, Terminating …
	Ready      int
	Total      int
	Restarts   int
	Created    time.Time
	Containers []string
}

// Ref is the pod's reference.
func (p *Pod) Ref() PodRef { return PodRef{Namespace: p.Namespace, Name: p.Name} }

// PodRef names a pod (and optionally one of its containers).
type PodRef struct {
	Namespace string
	Name      string
	Container string
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// Network is the ClusterNetwork: the mode asked for and what each node
// reports.
type Network struct {
	Mode        string // bgp, vxlan, ipip
	CrossSubnet bool
	PodCIDR     string
	MTU         int
	Generation  int64
	Nodes       []NodeNetwork // sorted by node
}

// Spec is the mode in the CLI's words ("vxlan cross-subnet").
func (n Network) Spec() string {
	if n.Mode == "" {
		return "unknown"
	}
	if n.CrossSubnet {
		return n.Mode + " cross-subnet"
	}
	return n.Mode
}

// Node returns the status a node reports, if any.
func (n Network) Node(name string) (NodeNetwork, bool) {
	for _, s := range n.Nodes {
		if s.Node == name {
			return s, true
		}
	}
	return NodeNetwork{}, false
}

// NodeNetwork is what one node's network agent reports.
type NodeNetwork struct {
	Node               string
	Mode               string
	Implementation     string
	Converged          bool
	ObservedGeneration int64
	Message            string
	Since              time.Time
	Added              []string
	Removed            []string
	Took               time.Duration
}

// NetworkReport is what a node's agent says about its network.
type NetworkReport struct {
	Node           string
	Mode           string
	Implementation string
	Devices        []Device
	Routes         []Route
	FDB            []FDBEntry
	Neighbors      []Neighbor
	BGP            *BGPStatus
	// Err says why the agent did not answer.
	Err string
}

// Device is a network interface.
type Device struct {
	Name  string
	Kind  string
	MTU   int
	MAC   string
	Up    bool
	Addrs []string
	VNI   int
	Port  int
	Local string
}

// Route is a route of the main table.
type Route struct {
	Dst    string
	Via    string
	Dev    string
	Proto  string
	Scope  string
	OnLink bool
}

// FDBEntry maps a VTEP's MAC to the node behind it.
type FDBEntry struct {
	MAC string
	Dst string
	Dev string
}

// Neighbor is an ARP entry.
type Neighbor struct {
	IP    string
	MAC   string
	Dev   string
	State string
}

// BGPStatus is a node's BGP speaker.
type BGPStatus struct {
	AS       uint32
	RouterID string
	Sessions []BGPSession
	Routes   []BGPRoute
}

// BGPSession is one BGP session.
type BGPSession struct {
	Peer       string
	Address    string
	AS         uint32
	State      string
	Uptime     time.Duration
	Received   int
	Advertised int
}

// BGPRoute is a route learned over BGP.
type BGPRoute struct {
	Prefix  string
	NextHop string
	From    string
}

// SwitchRequest asks for a mode.
type SwitchRequest struct {
	Mode        string
	CrossSubnet bool
}

func (r SwitchRequest) String() string {
	if r.CrossSubnet {
		return r.Mode + " cross-subnet"
	}
	return r.Mode
}

// SwitchResult is how a mode switch went.
type SwitchResult struct {
	From  string
	To    string
	Nodes []SwitchNode
	Took  time.Duration
}

// SwitchNode is how one node went through a switch: what it removed and
// added.
type SwitchNode struct {
	Node           string
	Converged      bool
	Mode           string
	Implementation string
	Removed        []string
	Added          []string
	Took           time.Duration
	Message        string
}

// FeedItem is one thing the cluster did.
type FeedItem struct {
	Time   time.Time
	Source string // scheduler, controller-manager, agent, cni, network, …
	Node   string
	Reason string // an event's reason, a CNI command, "routes"
	Object string // namespace/name or kind/name
	// Message is one line.
	Message string
	Warning bool
	// Detail is shown on demand: a CNI call's JSON, every route changed.
	Detail string
}

// Lab is a teaching lab and where the cluster is in it.
type Lab struct {
	ID      string
	Title   Text
	Summary Text
	Steps   []LabStep
	// Active tells whether the cluster is doing this lab (klab lab start);
	// Step is then the step it is on and Done counts the steps that passed.
	Active bool
	Step   int
	Done   int
}

// Text is a text in English and Chinese.
type Text struct {
	EN string
	ZH string
}

// In returns the text in lang ("zh" or anything else for English), or the
// other language when it is missing.
func (t Text) In(lang string) string {
	if lang == "zh" && t.ZH != "" || t.EN == "" {
		return t.ZH
	}
	return t.EN
}

// LabStep is one step of a lab.
type LabStep struct {
	Title    Text
	Text     Text
	Commands []string
	Checks   []Text
}

// LabCheckRequest asks for the checks of one step (0-based).
type LabCheckRequest struct {
	Lab  string
	Step int
	Lang string
}

// LabCheck is the outcome of a step's checks.
type LabCheck struct {
	Lab     string
	Step    int
	Results []CheckResult
}

// Passed tells whether every check passed.
func (c *LabCheck) Passed() bool {
	for _, r := range c.Results {
		if !r.OK {
			return false
		}
	}
	return len(c.Results) > 0
}

// CheckResult is one check.
type CheckResult struct {
	Name string
	OK   bool
	// Detail says what was found; Hint what to do when it failed.
	Detail string
	Hint   string
}
