package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// cidrSet hands out the blocks of one size in a cluster CIDR: the lowest
// free block first, so a cluster built the same way numbers its nodes the
// same way (master 10.42.0.0/24, node1 10.42.1.0/24 …).
type cidrSet struct {
	mu      sync.Mutex
	cluster netip.Prefix
	bits    int // block prefix length
	used    map[int]string
}

func newCIDRSet(cluster string, blockBits int) (*cidrSet, error) {
	p, err := netip.ParsePrefix(cluster)
	if err != nil {
		return nil, fmt.Errorf("cluster CIDR %q: %w", cluster, err)
	}
	p = p.Masked()
	if !p.Addr().Is4() {
		return nil, fmt.Errorf("cluster CIDR %s: only IPv4 is supported", p)
	}
	if blockBits < p.Bits() || blockBits > 30 {
		return nil, fmt.Errorf("node CIDR size /%d does not fit in cluster CIDR %s (want /%d to /30)", blockBits, p, p.Bits())
	}
	if blockBits-p.Bits() > 16 {
		return nil, fmt.Errorf("node CIDR size /%d makes %d blocks out of %s: at most 65536", blockBits, 1<<(blockBits-p.Bits()), p)
	}
	return &cidrSet{cluster: p, bits: blockBits, used: map[int]string{}}, nil
}

func (s *cidrSet) size() int { return 1 << (s.bits - s.cluster.Bits()) }

func (s *cidrSet) block(i int) netip.Prefix {
	base := s.cluster.Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(i) << (32 - s.bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), s.bits)
}

// index is the block number of p, or -1 when p is not one of the set's blocks.
func (s *cidrSet) index(p netip.Prefix) int {
	if p.Bits() != s.bits || !s.cluster.Contains(p.Addr()) || p.Masked() != p {
		return -1
	}
	a, b := s.cluster.Addr().As4(), p.Addr().As4()
	base := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return int((n - base) >> (32 - s.bits))
}

// occupy marks a block a node already has; false when it belongs to
// another node or is not one of the set's blocks.
func (s *cidrSet) occupy(p netip.Prefix, node string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.index(p)
	if i < 0 {
		return false
	}
	if owner, ok := s.used[i]; ok && owner != node {
		return false
	}
	s.used[i] = node
	return true
}

// allocate gives node the lowest free block (the one it holds, if any).
func (s *cidrSet) allocate(node string) (netip.Prefix, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, owner := range s.used {
		if owner == node {
			return s.block(i), nil
		}
	}
	for i := range s.size() {
		if _, ok := s.used[i]; !ok {
			s.used[i] = node
			return s.block(i), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /%d left in %s: all %d are taken", s.bits, s.cluster, s.size())
}

// release frees the block(s) held by node.
func (s *cidrSet) release(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, owner := range s.used {
		if owner == node {
			delete(s.used, i)
		}
	}
}

// podCIDRs gives every node a block of the cluster's pod CIDR in
// spec.podCIDR and spec.podCIDRs; the node's agent configures its CNI with
// it. A node keeps its block for life; deleting the node frees it.
type podCIDRs struct {
	cs       kubernetes.Interface
	nodes    corelisters.NodeLister
	synced   cache.InformerSynced
	set      *cidrSet
	recorder record.EventRecorder
	loop     *loop

	once    sync.Once
	loadErr error
}

func newPodCIDRs(m *manager, f informers.SharedInformerFactory) (*podCIDRs, error) {
	set, err := newCIDRSet(m.o.ClusterCIDR, m.o.NodeCIDRMaskSize)
	if err != nil {
		return nil, err
	}
	inf := f.Core().V1().Nodes().Informer()
	c := &podCIDRs{
		cs:       m.cs,
		nodes:    f.Core().V1().Nodes().Lister(),
		synced:   inf.HasSynced,
		set:      set,
		recorder: m.recorder("node-ipam-controller"),
	}
	c.loop = newLoop("podcidr", m.log, c.sync)
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.enqueue,
		UpdateFunc: func(_, obj any) { c.loop.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if n, ok := deleted(obj).(*v1.Node); ok {
				c.set.release(n.Name)
				c.loop.log.Info("released pod CIDR of deleted node", "node", n.Name, "podCIDR", n.Spec.PodCIDR)
			}
		},
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// load marks the blocks nodes already have, once, before anything new is
// handed out: a restarted controller must not give a taken block away.
func (c *podCIDRs) load() error {
	c.once.Do(func() {
		nodes, err := c.nodes.List(labels.Everything())
		if err != nil {
			c.loadErr = err
			return
		}
		for _, n := range nodes {
			if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil && !c.set.occupy(p, n.Name) {
				c.recorder.Eventf(n, v1.EventTypeWarning, "CIDRNotAvailable", "podCIDR %s is outside %s or taken by another node", p, c.set.cluster)
			}
		}
	})
	return c.loadErr
}

func (c *podCIDRs) sync(ctx context.Context, name string) error {
	if !c.synced() {
		return fmt.Errorf("node informer not synced yet")
	}
	if err := c.load(); err != nil {
		return err
	}
	n, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if n.Spec.PodCIDR != "" {
		return nil
	}
	p, err := c.set.allocate(n.Name)
	if err != nil {
		c.recorder.Eventf(n, v1.EventTypeWarning, "CIDRNotAvailable", "%v", err)
		return err
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{
		"podCIDR": p.String(), "podCIDRs": []string{p.String()},
	}})
	if err != nil {
		return err
	}
	if _, err := c.cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.set.release(n.Name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("set podCIDR %s on node %s: %w", p, n.Name, err)
	}
	c.loop.log.Info("allocated pod CIDR", "node", n.Name, "podCIDR", p)
	c.recorder.Eventf(n, v1.EventTypeNormal, "CIDRAssigned", "Assigned podCIDR %s", p)
	return nil
}
