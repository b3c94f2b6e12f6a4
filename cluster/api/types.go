// Package api is klab's own API group, network.klab.dev/v1: the pod
// network's configuration (ClusterNetwork, a cluster-scoped singleton named
// "default") with every node's report of how far it got, and the BGP peers
// outside the cluster (BGPPeer). It holds the Go types, their registration
// in a scheme, and a typed client.
package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NetworkMode is how pod traffic crosses the underlay.
type NetworkMode string

// The modes, as in Calico.
const (
	// ModeBGP routes pod blocks natively, learned over BGP: no encapsulation.
	ModeBGP NetworkMode = "bgp"
	// ModeVXLAN wraps pod packets in UDP (VXLAN, VNI 4096, port 4789).
	ModeVXLAN NetworkMode = "vxlan"
	// ModeIPIP wraps pod packets in IP (protocol 4).
	ModeIPIP NetworkMode = "ipip"
)

// Modes lists the valid modes.
var Modes = []NetworkMode{ModeBGP, ModeVXLAN, ModeIPIP}

// DefaultPodMTU is the pods' MTU on a 1500-byte underlay: what VXLAN, the
// largest encapsulation, leaves of it.
const DefaultPodMTU = 1450

// ClusterNetworkName is the name of the one ClusterNetwork.
const ClusterNetworkName = "default"

// ClusterNetwork is the pod network's configuration. There is one, named
// "default"; the network agent on every node reconciles to its spec and
// reports in its status.
type ClusterNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ClusterNetworkSpec   `json:"spec"`
	Status ClusterNetworkStatus `json:"status,omitempty"`
}

// ClusterNetworkSpec is the wanted network.
type ClusterNetworkSpec struct {
	// Mode is bgp, vxlan or ipip.
	Mode NetworkMode `json:"mode"`
	// PodCIDR is the pool that nodes' pod blocks come from (10.42.0.0/16).
	PodCIDR string `json:"podCIDR"`
	// CrossSubnet encapsulates only traffic between nodes in different
	// underlay subnets (vxlan and ipip modes); within a subnet it is routed.
	CrossSubnet bool `json:"crossSubnet,omitempty"`
	// MTU of the pods' interfaces: the underlay's MTU less VXLAN's 50
	// bytes, the largest encapsulation, so that a pod's MTU is right in
	// every mode and a mode switch need not touch running pods (as Calico
	// sizes veths). klab up sets it from --mtu; it defaults to
	// DefaultPodMTU. A change reaches pods created after it.
	MTU int32 `json:"mtu,omitempty"`
}

// ClusterNetworkStatus holds every node's report, by node name.
type ClusterNetworkStatus struct {
	Nodes map[string]NodeNetworkStatus `json:"nodes,omitempty"`
}

// NodeNetworkStatus is what one node's network agent reports.
type NodeNetworkStatus struct {
	// Mode the node runs now.
	Mode NetworkMode `json:"mode"`
	// Converged is true once the node's devices and routes match the spec.
	Converged bool `json:"converged"`
	// Failed says the node cannot converge as things are (a route the
	// kernel refuses, say), as opposed to still being on its way.
	Failed bool `json:"failed,omitempty"`
	// ObservedGeneration is the spec generation the node reconciled to.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Implementation says how the mode is realised, e.g. "ipip kernel" or
	// "ipip userspace" where the kernel lacks the module.
	Implementation string `json:"implementation,omitempty"`
	// Message explains a failure or what is still being done.
	Message string `json:"message,omitempty"`
	// LastTransition is when Mode or Converged last changed.
	LastTransition metav1.Time `json:"lastTransition,omitempty"`
	// Changes is what the node's last reconcile removed and added
	// (devices, routes, FDB and neighbour entries), and Took how long it took.
	Changes NetworkChanges  `json:"changes,omitzero"`
	Took    metav1.Duration `json:"took,omitzero"`
}

// NetworkChanges lists what a reconcile did, one entry a line:
// "route 10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink".
type NetworkChanges struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// ClusterNetworkList is a list of ClusterNetworks.
type ClusterNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterNetwork `json:"items"`
}

// BGPPeer is a BGP speaker outside the cluster (a router) that nodes
// peer with.
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BGPPeerSpec `json:"spec"`
}

// DefaultASN is the cluster's own AS number (Calico's default).
const DefaultASN = 64512

// BGPPeerSpec says whom to peer with, and which nodes do.
type BGPPeerSpec struct {
	// PeerIP is the peer's address.
	PeerIP string `json:"peerIP"`
	// ASN is the peer's AS number.
	ASN uint32 `json:"asn"`
	// NodeSelector picks the nodes that peer; nil means every node.
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
