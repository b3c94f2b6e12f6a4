package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// subresourceInfo says what a subresource answers with and which verbs
// it takes.
var subresourceInfo = map[string]struct {
	gvk   func(r *resource) schema.GroupVersionKind
	verbs []string
}{
	"status": {func(r *resource) schema.GroupVersionKind { return r.gvk() }, []string{"get", "patch", "update"}},
	"scale":  {func(*resource) schema.GroupVersionKind { return autoscalingv1.SchemeGroupVersion.WithKind("Scale") }, []string{"get", "patch", "update"}},
	"binding": {func(*resource) schema.GroupVersionKind {
		return schema.GroupVersionKind{Version: "v1", Kind: "Binding"}
	}, []string{"create"}},
	"log": {func(r *resource) schema.GroupVersionKind { return r.gvk() }, []string{"get"}},
	"exec": {func(*resource) schema.GroupVersionKind {
		return schema.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"}
	}, []string{"create", "get"}},
	"attach": {func(*resource) schema.GroupVersionKind {
		return schema.GroupVersionKind{Version: "v1", Kind: "PodAttachOptions"}
	}, []string{"create", "get"}},
	"token": {func(*resource) schema.GroupVersionKind {
		return schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}
	}, []string{"create"}},
	"portforward": {func(*resource) schema.GroupVersionKind {
		return schema.GroupVersionKind{Version: "v1", Kind: "PodPortForwardOptions"}
	}, []string{"create", "get"}},
}

// discovery answers /api, /apis and the group and version documents, in
// the legacy form and the aggregated one (apidiscovery.k8s.io/v2) that
// kubectl asks for first.
type discovery struct {
	reg *registry
}

func newDiscovery(reg *registry) *discovery { return &discovery{reg: reg} }

var aggregatedAs = map[string]schema.GroupVersion{"APIGroupDiscoveryList": apidiscoveryv2.SchemeGroupVersion}

// serve answers a discovery path; false when path is not one.
func (d *discovery) serve(w http.ResponseWriter, r *http.Request, path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case path == "/api" || path == "/apis":
		legacy := path == "/api"
		o, _ := negotiate(r.Header.Get("Accept"), false, aggregatedAs)
		if o.as == "APIGroupDiscoveryList" {
			writeEncoded(w, o, d.aggregated(legacy))
			return true
		}
		if legacy {
			writeEncoded(w, output{media: mediaJSON}, &metav1.APIVersions{Versions: []string{"v1"},
				ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
			return true
		}
		list := &metav1.APIGroupList{}
		for _, gv := range d.reg.groupVersions() {
			if gv.Group != "" {
				list.Groups = append(list.Groups, d.group(gv))
			}
		}
		writeEncoded(w, output{media: mediaJSON}, list)
		return true
	case len(parts) == 2 && parts[0] == "api" && parts[1] == "v1":
		writeEncoded(w, output{media: mediaJSON}, d.resourceList(schema.GroupVersion{Version: "v1"}))
		return true
	case len(parts) == 2 && parts[0] == "apis":
		for _, gv := range d.reg.groupVersions() {
			if gv.Group == parts[1] {
				g := d.group(gv)
				writeEncoded(w, output{media: mediaJSON}, &g)
				return true
			}
		}
	case len(parts) == 3 && parts[0] == "apis":
		gv := schema.GroupVersion{Group: parts[1], Version: parts[2]}
		if len(d.reg.inGroupVersion(gv)) > 0 {
			writeEncoded(w, output{media: mediaJSON}, d.resourceList(gv))
			return true
		}
	}
	return false
}

func writeEncoded(w http.ResponseWriter, o output, obj runtime.Object) {
	data, err := o.encode(obj)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", o.contentType())
	w.Header().Set("Vary", "Accept")
	w.Write(data)
}

func (d *discovery) group(gv schema.GroupVersion) metav1.APIGroup {
	v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
	return metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v}
}

func (d *discovery) resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	list := &metav1.APIResourceList{GroupVersion: gv.String()}
	for _, r := range d.reg.inGroupVersion(gv) {
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.name, SingularName: r.singular, Namespaced: r.namespaced, Kind: r.kind,
			Verbs: r.verbs, ShortNames: r.shortNames, Categories: r.categories,
		})
		for _, sub := range r.subresources {
			info := subresourceInfo[sub]
			gvk := info.gvk(r)
			ar := metav1.APIResource{Name: r.name + "/" + sub, Namespaced: r.namespaced, Kind: gvk.Kind, Verbs: info.verbs}
			if gvk.Group != r.gv.Group {
				ar.Group, ar.Version = gvk.Group, gvk.Version
			}
			list.APIResources = append(list.APIResources, ar)
		}
	}
	return list
}

func (d *discovery) aggregated(legacy bool) *apidiscoveryv2.APIGroupDiscoveryList {
	list := &apidiscoveryv2.APIGroupDiscoveryList{}
	for _, gv := range d.reg.groupVersions() {
		if (gv.Group == "") != legacy {
			continue
		}
		v := apidiscoveryv2.APIVersionDiscovery{Version: gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
		for _, r := range d.reg.inGroupVersion(gv) {
			scope := apidiscoveryv2.ScopeCluster
			if r.namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			gvk := r.gvk()
			rd := apidiscoveryv2.APIResourceDiscovery{
				Resource: r.name, SingularResource: r.singular, Scope: scope, Verbs: r.verbs,
				ShortNames: r.shortNames, Categories: r.categories,
				ResponseKind: &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
			}
			for _, sub := range r.subresources {
				info := subresourceInfo[sub]
				sk := info.gvk(r)
				rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
					Subresource: sub, Verbs: info.verbs, ResponseKind: &metav1.GroupVersionKind{Group: sk.Group, Version: sk.Version, Kind: sk.Kind},
				})
			}
			v.Resources = append(v.Resources, rd)
		}
		list.Items = append(list.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: gv.Group}, Versions: []apidiscoveryv2.APIVersionDiscovery{v}})
	}
	return list
}

// openAPI serves a minimal OpenAPI v3: for every resource, the PATCH
// operation with its group-version-kind and the fieldValidation
// parameter, which tells kubectl that the server validates fields itself
// (so it sends fieldValidation=Strict rather than needing full schemas).
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request, path string) {
	docs := map[string][]byte{}
	for _, gv := range s.reg.groupVersions() {
		b, _ := json.Marshal(s.openAPIDoc(gv))
		docs[strings.TrimPrefix(apiPrefix(gv), "/")] = b
	}
	rest := strings.TrimPrefix(path, "/openapi/v3")
	if rest == "" {
		paths := map[string]any{}
		for name, b := range docs {
			h := sha256.Sum256(b)
			paths[name] = map[string]string{"serverRelativeURL": "/openapi/v3/" + name + "?hash=" + strings.ToUpper(hex.EncodeToString(h[:16]))}
		}
		s.writeJSON(w, http.StatusOK, map[string]any{"paths": paths})
		return
	}
	b, ok := docs[strings.TrimPrefix(rest, "/")]
	if !ok {
		s.writeError(w, r, notFound("no OpenAPI document at "+path+": /openapi/v3 lists them"))
		return
	}
	w.Header().Set("Content-Type", mediaJSON)
	w.Write(b)
}

func (s *Server) openAPIDoc(gv schema.GroupVersion) map[string]any {
	paths := map[string]any{}
	for _, r := range s.reg.inGroupVersion(gv) {
		p := apiPrefix(gv) + "/"
		if r.namespaced {
			p += "namespaces/{namespace}/"
		}
		gvk := r.gvk()
		content := map[string]any{"application/json-patch+json": map[string]any{}, "application/merge-patch+json": map[string]any{}}
		if !r.noStrategicMerge {
			content["application/strategic-merge-patch+json"] = map[string]any{}
		}
		paths[p+r.name+"/{name}"] = map[string]any{
			"patch": map[string]any{
				"operationId":                     "patch" + r.kind,
				"x-kubernetes-group-version-kind": map[string]string{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind},
				"parameters": []map[string]any{
					{"name": "fieldValidation", "in": "query", "schema": map[string]string{"type": "string"}},
					{"name": "dryRun", "in": "query", "schema": map[string]string{"type": "string"}},
				},
				"requestBody": map[string]any{"content": content},
				"responses":   map[string]any{"200": map[string]any{"description": "OK"}},
			},
		}
	}
	return map[string]any{
		"openapi":    "3.0.0",
		"info":       map[string]string{"title": "klab", "version": Version.GitVersion},
		"paths":      paths,
		"components": map[string]any{"schemas": map[string]any{}},
	}
}
