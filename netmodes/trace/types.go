// Package trace sends one real packet between two endpoints of a klab
// cluster and shows it hop by hop: where it was captured, what it looked
// like there (every header, decoded with gopacket), what changed since the
// hop before (MAC rewrite, TTL − 1, encapsulation added or removed) and
// why, in the words of the seed (VTEP, FDB lookup, tunl0, BGP-learned
// route, proxy ARP), in English or Chinese.
//
// A trace works in four steps:
//
//  1. Plan: from the cluster's state (pods and nodes from the API, each
//     node's devices, routes, FDB and neighbours from its agent, the
//     underlay from the provider's plan) it simulates the forwarding of the
//     packet node by node with the nodes' real tables, and compares every
//     routing decision with the route the network mode should have
//     programmed (Plan).
//  2. Capture: every interface on that path is captured at once
//     (AF_PACKET, in the namespace where the interface lives): node and pod
//     interfaces by the node agents (CaptureRequest, served over mTLS),
//     underlay bridge ports and the router by the CLI on the host
//     (Capture).
//  3. Probe: one packet carrying a unique marker is sent from the source's
//     network namespace (SendProbe, run by the source node's agent).
//  4. Report: the frames carrying the marker are decoded (Decode), matched
//     to the hops, compared, explained, and, when the packet did not
//     arrive, the loss is diagnosed (no route, policy drop, neighbour or
//     FDB failure, MTU). The Result renders as a table (Render), JSON or
//     YAML, and as a pcapng file with one interface block per hop
//     (WritePcap).
//
// The Result's JSON shape is a contract that the TUI and the labs read:
// change it only by adding fields.
package trace

import (
	"net/netip"
	"time"
)

// Protocols a probe can use.
const (
	ICMP = "icmp"
	TCP  = "tcp"
	UDP  = "udp"
)

// Endpoint kinds.
const (
	KindPod     = "pod"
	KindNode    = "node"
	KindService = "service"
)

// Hop kinds: where on the path a capture point is.
const (
	HopPod        = "pod"         // a pod's eth0, inside the pod's network namespace
	HopVeth       = "veth"        // the node side of a pod's veth (cali…)
	HopVXLAN      = "vxlan"       // vxlan.calico, the node's VTEP
	HopTunnel     = "tunnel"      // tunl0
	HopNIC        = "nic"         // a machine's underlay interface (eth0)
	HopBridgePort = "bridge-port" // a machine's port on an underlay bridge
	HopRouter     = "router"      // an interface of the router between subnets
)

// Causes of a lost packet (Result.Cause).
const (
	CauseNoRoute      = "no-route"     // a node has no route (or the wrong one) to the destination
	CauseLeftCluster  = "left-cluster" // a route sent the packet out of the cluster (to the host)
	CauseNeighbour    = "neighbour"    // ARP for the next hop failed, or a VXLAN neighbour entry is missing
	CauseFDB          = "fdb"          // no VXLAN FDB entry for the peer's VTEP
	CauseMTU          = "mtu"          // the packet is larger than a device's MTU
	CausePolicy       = "policy"       // a network policy dropped it
	CauseNoEndpoint   = "no-endpoint"  // a Service without ready endpoints
	CauseUnknown      = "unknown"      // nothing in the nodes' state explains it
	CauseCaptureError = "capture"      // a capture could not run where the packet was last seen
)

// Endpoint is one end of a trace: a pod, a node or (destination only) a
// Service.
type Endpoint struct {
	Kind string     `json:"kind"`           // pod, node or service
	Name string     `json:"name"`           // namespace/name of a pod or Service, a node's name
	IP   netip.Addr `json:"ip"`             // the pod's IP, the node's underlay IP, the Service's ClusterIP
	Node string     `json:"node,omitempty"` // the node a pod runs on
	// Port is a Service's port (the probe's destination port).
	Port int `json:"port,omitempty"`
	// Endpoint is the pod a Service's DNAT chose (set once the trace saw it).
	Endpoint string `json:"endpoint,omitempty"`
}

// Result is a whole trace. Its JSON is documented in the package comment
// of klab's trace command and is stable.
type Result struct {
	Src  Endpoint `json:"src"`
	Dst  Endpoint `json:"dst"`
	Mode string   `json:"mode"` // "bgp", "vxlan", "ipip", "vxlan cross-subnet"
	// Implementation is how the mode is carried out on the source's node:
	// "kernel", or "userspace" for ipip without the kernel's ipip module.
	Implementation string `json:"implementation,omitempty"`
	Proto          string `json:"proto"`          // icmp, tcp or udp
	Port           int    `json:"port,omitempty"` // destination port (tcp, udp)
	Size           int    `json:"size"`           // payload bytes after the ICMP/TCP/UDP header
	Delivered      bool   `json:"delivered"`
	Hops           []Hop  `json:"hops"`
	// LostAt is the last hop that saw the packet before it vanished; nil
	// when it was delivered.
	LostAt *LostAt `json:"lost_at"`
	// Reason says why the packet was lost, in the chosen language; empty
	// when it was delivered.
	Reason string `json:"reason"`
	// Cause is the reason as a word for programs: no-route, left-cluster,
	// neighbour, fdb, mtu, policy, no-endpoint, unknown, capture.
	Cause string `json:"cause,omitempty"`
	// MissingRoute is the route the mode should have programmed where a
	// node had none (or another), as `ip route` prints it.
	MissingRoute string `json:"missing_route,omitempty"`
	// TUS is the time from the first hop to the last hop that saw it.
	TUS int64 `json:"t_us"`
	// Overhead is what encapsulation added to the packet at its largest.
	Overhead int `json:"overhead_bytes"`
	// Probes summarises every probe when --count sent more than one; Hops
	// are those of the first probe that was lost, or of the first.
	Probes []ProbeSummary `json:"probes,omitempty"`
	// Notes are things the reader should know: a capture that could not
	// run, the userspace encapsulator.
	Notes []string `json:"notes,omitempty"`
	// Lang is the language of Reason, Explain and Notes (en or zh).
	Lang string `json:"lang"`

	// frames are the frames each hop saw, for WritePcap.
	frames [][]Frame
}

// LostAt is where a packet was last seen.
type LostAt struct {
	Hop       int    `json:"hop"` // index of the last hop that saw it; 0 when no hop did
	Node      string `json:"node"`
	Interface string `json:"interface,omitempty"`
}

// ProbeSummary is one probe of several.
type ProbeSummary struct {
	Seq       int   `json:"seq"`
	Delivered bool  `json:"delivered"`
	TUS       int64 `json:"t_us"`
	Seen      int   `json:"hops_seen"`
}

// Hop is one capture point on the path, and the frame it saw.
type Hop struct {
	Index int `json:"index"`
	// Node is the machine the interface is on: a node, "router", or
	// "underlay" for the ports of the underlay bridges.
	Node string `json:"node"`
	// Pod is namespace/name when the interface is a pod's eth0.
	Pod       string `json:"pod,omitempty"`
	Interface string `json:"interface"`
	// Netns names the network namespace the interface is in: the pod's
	// (/run/netns/UID on its node), the node's, the underlay's.
	Netns string `json:"netns"`
	// Bridge is the underlay bridge of a bridge port.
	Bridge    string `json:"bridge,omitempty"`
	Kind      string `json:"kind"`      // pod, veth, vxlan, tunnel, nic, bridge-port, router
	Direction string `json:"direction"` // in or out
	// Seen tells whether the capture saw the packet here.
	Seen bool `json:"seen"`
	// Stray marks a hop off the path the mode should take: where a wrong
	// route sent the packet instead.
	Stray bool `json:"stray,omitempty"`
	// TUS is the time since the first hop, from kernel timestamps.
	TUS    int64   `json:"t_us"`
	Length int     `json:"length,omitempty"` // frame length in bytes
	Layers []Layer `json:"layers"`
	// Encap is the encapsulation the frame carries: none, vxlan or ipip.
	Encap string `json:"encap"`
	// Change is what changed since the previous hop that saw the packet.
	Change string `json:"change"`
	// Explain says what happened here, in the chosen language.
	Explain string `json:"explain"`
	// Route is the route that sent the packet on from this node (at the
	// last hop before a routing decision), as `ip route` prints it, and
	// RouteOrigin where it came from.
	Route       string `json:"route,omitempty"`
	RouteOrigin string `json:"route_origin,omitempty"`
	// FDB is the VXLAN forwarding entry used (at vxlan.calico out).
	FDB string `json:"fdb,omitempty"`
	// Error is why this hop could not be captured.
	Error string `json:"error,omitempty"`
}

// Layer is one decoded header. Which fields are set depends on Type:
// Ethernet (src, dst MAC), IPv4 and IPIP (an outer IPv4 header carrying
// IPv4: src, dst, ttl, protocol, length, id, df), UDP and TCP (src_port,
// dst_port, length; flags and seq for TCP), VXLAN (vni), ICMPv4 (icmp,
// id, seq), Payload (length).
type Layer struct {
	Type     string `json:"type"`
	Src      string `json:"src,omitempty"`
	Dst      string `json:"dst,omitempty"`
	TTL      int    `json:"ttl,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
	Length   int    `json:"length,omitempty"`
	ID       int    `json:"id,omitempty"`
	DF       bool   `json:"df,omitempty"`
	SrcPort  int    `json:"src_port,omitempty"`
	DstPort  int    `json:"dst_port,omitempty"`
	VNI      int    `json:"vni,omitempty"`
	ICMP     string `json:"icmp,omitempty"` // "echo request", "echo reply", …
	Seq      uint32 `json:"seq,omitempty"`
	Flags    string `json:"flags,omitempty"` // TCP: "SYN", "SYN ACK", …
}

// CaptureRequest asks a capturer — a node's agent (POST /capture) or the
// CLI on the host — to capture on some interfaces the frames that carry
// Marker.
type CaptureRequest struct {
	Targets []CaptureTarget `json:"targets"`
	// Marker is the probe's unique bytes; only frames holding them are
	// reported.
	Marker []byte `json:"marker"`
	// Timeout ends the capture; the capturer caps it.
	Timeout time.Duration `json:"timeout"`
	// MaxFrames ends a target's capture after that many frames (0: 16).
	MaxFrames int `json:"max_frames,omitempty"`
}

// CaptureTarget is one interface to capture on.
type CaptureTarget struct {
	Interface string `json:"interface"`
	// Pod is the UID of the pod whose network namespace holds the
	// interface; empty means the capturer's own namespace, or Netns.
	Pod string `json:"pod,omitempty"`
	// Netns is the path of the namespace (host-side captures only).
	Netns string `json:"netns,omitempty"`
}

// CaptureEvent is one line of a capture stream: Ready once every target
// is open (or failed, with Error and Target), then one Frame per match.
type CaptureEvent struct {
	Ready  bool   `json:"ready,omitempty"`
	Target int    `json:"target"`
	Error  string `json:"error,omitempty"`
	Frame  *Frame `json:"frame,omitempty"`
}

// Frame is a captured frame that carries the marker.
type Frame struct {
	Time     time.Time `json:"time"` // kernel timestamp
	Outgoing bool      `json:"outgoing"`
	Length   int       `json:"length"`
	// LinkType is the pcap link type: 1 Ethernet, 101 raw IP (tun).
	LinkType int    `json:"link_type"`
	Data     []byte `json:"data"`
}

// ProbeRequest asks a node's agent (POST /probe) to send one probe.
type ProbeRequest struct {
	// Pod is the UID of the pod to send from; empty sends from the node.
	Pod   string     `json:"pod,omitempty"`
	Proto string     `json:"proto"`
	Dst   netip.Addr `json:"dst"`
	// Port is the destination port (tcp, udp).
	Port int `json:"port,omitempty"`
	// SrcPort is the source port (tcp, udp), ID the ICMP identifier and
	// Seq the ICMP sequence number or the TCP initial sequence number;
	// Ack is the acknowledgment field of a TCP SYN (no ACK flag: random).
	SrcPort int    `json:"src_port,omitempty"`
	ID      int    `json:"id,omitempty"`
	Seq     uint32 `json:"seq"`
	Ack     uint32 `json:"ack,omitempty"`
	// Size is the payload after the ICMP/TCP/UDP header.
	Size   int    `json:"size"`
	Marker []byte `json:"marker"`
}

// ProbeResult is what sending a probe gave.
type ProbeResult struct {
	Src    netip.Addr `json:"src"`    // the source address the kernel chose
	Sent   time.Time  `json:"sent"`   // just before the send
	Length int        `json:"length"` // the IPv4 packet's length
	// Code and Error are set when the sender's kernel refused the probe:
	// "mtu" (larger than the way out's MTU) or "no-route".
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}
