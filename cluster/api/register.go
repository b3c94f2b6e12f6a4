package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is klab's API group.
const GroupName = "network.klab.dev"

// SchemeGroupVersion is the group and version of klab's types.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1"}

// Resource names in URLs.
const (
	ResourceClusterNetworks = "clusternetworks"
	ResourceBGPPeers        = "bgppeers"
)

var (
	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme registers klab's types (and the meta/v1 options for
	// their group version) in a scheme.
	AddToScheme = schemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&ClusterNetwork{}, &ClusterNetworkList{},
		&BGPPeer{}, &BGPPeerList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
