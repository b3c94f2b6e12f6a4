package api

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Scheme holds klab's types alone, for the client.
var (
	Scheme         = runtime.NewScheme()
	parameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	if err := AddToScheme(Scheme); err != nil {
		panic(err)
	}
}

// Client is a typed client of network.klab.dev/v1.
type Client struct {
	rest rest.Interface
}

// NewForConfig makes a client from a REST config (from a kubeconfig, say).
func NewForConfig(c *rest.Config) (*Client, error) {
	cfg := rest.CopyConfig(c)
	cfg.GroupVersion = &SchemeGroupVersion
	cfg.APIPath = "/apis"
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(Scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s client: %w", GroupName, err)
	}
	return &Client{rest: rc}, nil
}

// NewWithRESTClient wraps an existing REST client of this group version.
func NewWithRESTClient(rc rest.Interface) *Client { return &Client{rest: rc} }

// ClusterNetworks is the client of ClusterNetworks.
func (c *Client) ClusterNetworks() *Resource[*ClusterNetwork, *ClusterNetworkList] {
	return &Resource[*ClusterNetwork, *ClusterNetworkList]{c.rest, ResourceClusterNetworks,
		func() *ClusterNetwork { return &ClusterNetwork{} }, func() *ClusterNetworkList { return &ClusterNetworkList{} }}
}

// BGPPeers is the client of BGPPeers.
func (c *Client) BGPPeers() *Resource[*BGPPeer, *BGPPeerList] {
	return &Resource[*BGPPeer, *BGPPeerList]{c.rest, ResourceBGPPeers,
		func() *BGPPeer { return &BGPPeer{} }, func() *BGPPeerList { return &BGPPeerList{} }}
}

// Resource is a typed client of one cluster-scoped resource: T is the
// object type and L its list.
type Resource[T, L runtime.Object] struct {
	rest     rest.Interface
	resource string
	newT     func() T
	newL     func() L
}

// Get reads one object.
func (r *Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newT()
	err := r.rest.Get().Resource(r.resource).Name(name).VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// List reads every object the options select.
func (r *Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newL()
	req := r.rest.Get().Resource(r.resource).VersionedParams(&opts, parameterCodec)
	if opts.TimeoutSeconds != nil {
		req = req.Timeout(time.Duration(*opts.TimeoutSeconds) * time.Second)
	}
	err := req.Do(ctx).Into(out)
	return out, err
}

// Watch watches the objects the options select.
func (r *Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	req := r.rest.Get().Resource(r.resource).VersionedParams(&opts, parameterCodec)
	if opts.TimeoutSeconds != nil {
		req = req.Timeout(time.Duration(*opts.TimeoutSeconds) * time.Second)
	}
	return req.Watch(ctx)
}

// Create creates an object.
func (r *Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newT()
	err := r.rest.Post().Resource(r.resource).VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces an object's spec and metadata; it fails with a conflict
// when obj's resourceVersion is not the current one.
func (r *Resource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	return r.put(ctx, obj, opts, "")
}

// UpdateStatus replaces an object's status.
func (r *Resource[T, L]) UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	return r.put(ctx, obj, opts, "status")
}

func (r *Resource[T, L]) put(ctx context.Context, obj T, opts metav1.UpdateOptions, sub string) (T, error) {
	out := r.newT()
	m, err := metaOf(obj)
	if err != nil {
		return out, err
	}
	req := r.rest.Put().Resource(r.resource).Name(m.GetName()).VersionedParams(&opts, parameterCodec).Body(obj)
	if sub != "" {
		req = req.SubResource(sub)
	}
	err = req.Do(ctx).Into(out)
	return out, err
}

// Patch patches an object (or its status, with subresource "status").
// The API server takes JSON merge and JSON patches for klab's types.
func (r *Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error) {
	out := r.newT()
	err := r.rest.Patch(pt).Resource(r.resource).Name(name).SubResource(subresources...).
		VersionedParams(&opts, parameterCodec).Body(data).Do(ctx).Into(out)
	return out, err
}

// Delete deletes an object.
func (r *Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.rest.Delete().Resource(r.resource).Name(name).Body(&opts).Do(ctx).Error()
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}
