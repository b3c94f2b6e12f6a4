package api

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
)

// DeepCopyInto copies s into out.
func (s *ClusterNetworkStatus) DeepCopyInto(out *ClusterNetworkStatus) {
	*out = *s
	if s.Nodes != nil {
		out.Nodes = make(map[string]NodeNetworkStatus, len(s.Nodes))
		for k, v := range s.Nodes {
			v.Changes.Added = slices.Clone(v.Changes.Added)
			v.Changes.Removed = slices.Clone(v.Changes.Removed)
			out.Nodes[k] = v
		}
	}
}

// DeepCopyInto copies c into out.
func (c *ClusterNetwork) DeepCopyInto(out *ClusterNetwork) {
	*out = *c
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec = c.Spec
	c.Status.DeepCopyInto(&out.Status)
}

// DeepCopy returns a copy of c.
func (c *ClusterNetwork) DeepCopy() *ClusterNetwork {
	if c == nil {
		return nil
	}
	out := new(ClusterNetwork)
	c.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (c *ClusterNetwork) DeepCopyObject() runtime.Object { return c.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *ClusterNetworkList) DeepCopyInto(out *ClusterNetworkList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]ClusterNetwork, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *ClusterNetworkList) DeepCopy() *ClusterNetworkList {
	if l == nil {
		return nil
	}
	out := new(ClusterNetworkList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *ClusterNetworkList) DeepCopyObject() runtime.Object { return l.DeepCopy() }

// DeepCopyInto copies s into out.
func (s *BGPPeerSpec) DeepCopyInto(out *BGPPeerSpec) {
	*out = *s
	if s.NodeSelector != nil {
		out.NodeSelector = s.NodeSelector.DeepCopy()
	}
}

// DeepCopyInto copies p into out.
func (p *BGPPeer) DeepCopyInto(out *BGPPeer) {
	*out = *p
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	p.Spec.DeepCopyInto(&out.Spec)
}

// DeepCopy returns a copy of p.
func (p *BGPPeer) DeepCopy() *BGPPeer {
	if p == nil {
		return nil
	}
	out := new(BGPPeer)
	p.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (p *BGPPeer) DeepCopyObject() runtime.Object { return p.DeepCopy() }

// DeepCopyInto copies l into out.
func (l *BGPPeerList) DeepCopyInto(out *BGPPeerList) {
	*out = *l
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	if l.Items != nil {
		out.Items = make([]BGPPeer, len(l.Items))
		for i := range l.Items {
			l.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
}

// DeepCopy returns a copy of l.
func (l *BGPPeerList) DeepCopy() *BGPPeerList {
	if l == nil {
		return nil
	}
	out := new(BGPPeerList)
	l.DeepCopyInto(out)
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *BGPPeerList) DeepCopyObject() runtime.Object { return l.DeepCopy() }
