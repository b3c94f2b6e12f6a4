// Package resources is the engine of klab's kubectl-like commands (get,
// describe, apply, create, delete, scale, rollout): it resolves resource
// names through the server's discovery, reads manifests, and talks to any
// Kubernetes-compatible API server with its own tables, so klab and
// kubectl print the same columns.
package resources

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Client talks to one cluster on behalf of the CLI.
type Client struct {
	// Namespace is the default namespace of namespaced objects ("default").
	Namespace string
	Dynamic   dynamic.Interface
	Typed     kubernetes.Interface
	discovery discovery.CachedDiscoveryInterface
	mapper    meta.RESTMapper
	raw       *rest.RESTClient
}

// New builds a client from a rest.Config; namespace "" means default.
func New(cfg *rest.Config, namespace string) (*Client, error) {
	if namespace == "" {
		namespace = "default"
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client for %s: %w", cfg.Host, err)
	}
	cached := memory.NewMemCacheClient(dc)
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	rc := rest.CopyConfig(cfg)
	rc.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc.GroupVersion = nil
	rc.APIPath = ""
	raw, err := rest.UnversionedRESTClientFor(rc)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(cached), cached, func(string) {})
	return &Client{Namespace: namespace, Dynamic: dyn, Typed: typed, discovery: cached, mapper: mapper, raw: raw}, nil
}

// Mapping resolves what a user typed — pods, po, pod, deploy,
// deployments.apps, deployments.v1.apps, cn — to a resource.
func (c *Client) Mapping(arg string) (*meta.RESTMapping, error) {
	arg = strings.ToLower(strings.TrimSpace(arg))
	if arg == "" {
		return nil, errors.New("no resource type given: try pods, nodes, deployments …")
	}
	gvr, gr := schema.ParseResourceArg(arg)
	var gvk schema.GroupVersionKind
	var err error
	if gvr != nil {
		gvk, err = c.mapper.KindFor(*gvr)
	}
	if gvr == nil || err != nil {
		gvk, err = c.mapper.KindFor(gr.WithVersion(""))
	}
	if err != nil {
		if meta.IsNoMatchError(err) {
			return nil, c.unknownType(arg)
		}
		return nil, c.connErr(err)
	}
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, c.connErr(err)
	}
	return m, nil
}

// MappingFor resolves a kind from a manifest (apiVersion and kind).
func (c *Client) MappingFor(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("the server does not serve kind %q in %q: check apiVersion and kind", gvk.Kind, gvk.GroupVersion())
	}
	if err != nil {
		return nil, c.connErr(err)
	}
	return m, nil
}

// connErr words the errors of reaching the server.
func (c *Client) connErr(err error) error {
	var sErr *apierrors.StatusError
	if errors.As(err, &sErr) {
		return err
	}
	var uErr *url.Error
	if errors.As(err, &uErr) {
		return fmt.Errorf("cannot reach the API server: %v: is the cluster up ('klab status')?", uErr.Err)
	}
	return err
}

// unknownType is the error for a type nobody serves, naming the types
// one of whose names (plural, singular, short) is close to what was typed.
func (c *Client) unknownType(arg string) error {
	var close []string
	for name, plural := range c.knownNames() {
		if d := distance(arg, name); d <= 2 || len(arg) >= 3 && strings.HasPrefix(name, arg) {
			close = append(close, plural)
		}
	}
	slices.Sort(close)
	close = slices.Compact(close)
	if len(close) > 5 {
		close = close[:5]
	}
	if len(close) == 0 {
		return fmt.Errorf("unknown resource type %q: the server serves %s", arg, strings.Join(c.plurals(), ", "))
	}
	return fmt.Errorf("unknown resource type %q: did you mean %s?", arg, strings.Join(close, ", "))
}

// knownNames maps every plural, singular and short name discovery lists
// to its plural.
func (c *Client) knownNames() map[string]string {
	_, lists, _ := c.discovery.ServerGroupsAndResources()
	out := map[string]string{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			out[r.Name] = r.Name
			if r.SingularName != "" {
				out[r.SingularName] = r.Name
			}
			for _, s := range r.ShortNames {
				out[s] = r.Name
			}
		}
	}
	return out
}

func (c *Client) plurals() []string {
	_, lists, _ := c.discovery.ServerGroupsAndResources()
	var out []string
	for _, l := range lists {
		for _, r := range l.APIResources {
			if !strings.Contains(r.Name, "/") {
				out = append(out, r.Name)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// namespaced reports whether a mapping is for namespaced objects.
func namespaced(m *meta.RESTMapping) bool { return m.Scope.Name() == meta.RESTScopeNameNamespace }

// resourceClient is the dynamic client for a mapping in namespace ns
// ("" for all namespaces).
func (c *Client) resourceClient(m *meta.RESTMapping, ns string) dynamic.ResourceInterface {
	if namespaced(m) {
		return c.Dynamic.Resource(m.Resource).Namespace(ns)
	}
	return c.Dynamic.Resource(m.Resource)
}

// path is the REST path of a collection or of one object.
func path(m *meta.RESTMapping, ns, name string) string {
	gv := m.Resource.GroupVersion()
	p := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		p = "/api/" + gv.Version
	}
	if namespaced(m) && ns != "" {
		p += "/namespaces/" + ns
	}
	p += "/" + m.Resource.Resource
	if name != "" {
		p += "/" + name
	}
	return p
}

// typeName is how kubectl names a type in "TYPE/NAME": the lower-case
// kind, with the group when there is one (deployment.apps).
func typeName(m *meta.RESTMapping) string {
	k := strings.ToLower(m.GroupVersionKind.Kind)
	if g := m.GroupVersionKind.Group; g != "" {
		return k + "." + g
	}
	return k
}

// notFound rewords a 404 for an object: `pods "x" not found in namespace default`.
func notFound(err error, m *meta.RESTMapping, ns string) error {
	if apierrors.IsNotFound(err) && namespaced(m) && ns != "" {
		return fmt.Errorf("%s in namespace %s", strings.TrimSuffix(err.Error(), "."), ns)
	}
	return err
}
