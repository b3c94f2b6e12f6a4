package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/pprof"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/klab-dev/klab/cluster/pki"
)

// request is a parsed resource request.
type request struct {
	*http.Request
	user      *user
	verb      string // get, list, watch, create, update, patch, delete, deletecollection
	res       *resource
	namespace string
	name      string
	sub       string
}

func (s *Server) buildHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				s.writeError(w, r, apierrors.NewInternalError(fmt.Errorf("%v", p)))
			}
		}()
		s.serve(w, r)
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch path {
	case "/healthz", "/livez", "/readyz":
		s.health(w, r, path)
		return
	case "/version":
		s.writeJSON(w, http.StatusOK, version.Info{Major: Version.Major, Minor: Version.Minor, GitVersion: Version.GitVersion,
			GoVersion: goruntime.Version(), Compiler: goruntime.Compiler, Platform: goruntime.GOOS + "/" + goruntime.GOARCH})
		return
	}
	u := authenticate(r)
	if token, ok := bearerToken(r); u == nil && ok {
		var err error
		if u, err = s.authenticateToken(r.Context(), token); err != nil {
			s.writeError(w, r, apierrors.NewUnauthorized("Unauthorized: invalid bearer token: "+err.Error()))
			return
		}
	}
	if u == nil {
		s.writeError(w, r, apierrors.NewUnauthorized("Unauthorized: present a client certificate signed by the cluster CA (klab kubeconfig prints a kubeconfig that does) or a service account token"))
		return
	}
	if r.Method == http.MethodGet && s.disc.serve(w, r, path) {
		return
	}
	if strings.HasPrefix(r.URL.Path, "/debug/pprof") {
		// Where the server spends its time, for admins, as the upstream
		// API server's --profiling offers.
		if !u.in(pki.GroupMasters) {
			s.writeError(w, r, apierrors.NewForbidden(schema.GroupResource{}, path, fmt.Errorf("only admins (%s) may profile the API server", pki.GroupMasters)))
			return
		}
		pprofMux.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(path, "/openapi/") {
		s.openAPI(w, r, path)
		return
	}
	gv, rest, ok := splitGroupVersion(path)
	if !ok {
		s.writeError(w, r, notFound("the server could not find the requested resource "+path))
		return
	}
	req, err := s.parse(r, u, gv, rest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := authorize(u, req.verb, req.res, req.sub, req.namespace, req.name); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.dispatch(w, req)
}

var pprofMux = func() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	return m
}()

// splitGroupVersion splits /api/v1/… and /apis/GROUP/VERSION/….
func splitGroupVersion(path string) (schema.GroupVersion, []string, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		return schema.GroupVersion{Version: parts[1]}, parts[2:], true
	case len(parts) >= 4 && parts[0] == "apis":
		return schema.GroupVersion{Group: parts[1], Version: parts[2]}, parts[3:], true
	}
	return schema.GroupVersion{}, nil, false
}

// parse reads what a resource request asks for, as the Kubernetes API
// server's request info does: [watch/][namespaces/NS/]RESOURCE[/NAME[/SUB]].
func (s *Server) parse(r *http.Request, u *user, gv schema.GroupVersion, parts []string) (*request, error) {
	req := &request{Request: r, user: u}
	watchPath := false
	if parts[0] == "watch" {
		watchPath, parts = true, parts[1:]
	}
	if len(parts) >= 3 && parts[0] == "namespaces" && parts[2] != "status" && parts[2] != "finalize" {
		req.namespace, parts = parts[1], parts[2:]
	}
	if len(parts) == 0 || len(parts) > 3 {
		return nil, notFound("the server could not find the requested resource " + r.URL.Path)
	}
	req.res = s.reg.lookup(gv, parts[0])
	if req.res == nil {
		return nil, notFound(fmt.Sprintf("the server has no resource %q in %s: kubectl api-resources lists what it serves", parts[0], gvString(gv)))
	}
	if len(parts) > 1 {
		req.name = parts[1]
	}
	if len(parts) > 2 {
		req.sub = parts[2]
		if !req.res.hasSub(req.sub) {
			return nil, notFound(fmt.Sprintf("%s have no subresource %q", req.res.name, req.sub))
		}
	}
	if req.res.name == "namespaces" {
		req.namespace = ""
	}
	if !req.res.namespaced && req.namespace != "" {
		return nil, notFound(fmt.Sprintf("%s are not namespaced: leave namespaces/%s out of the URL", req.res.name, req.namespace))
	}
	watchParam := r.URL.Query().Get("watch")
	switch r.Method {
	case http.MethodGet:
		switch {
		case req.sub == "log" || req.sub == "exec" || req.sub == "attach" || req.sub == "portforward":
			req.verb = "get"
			if req.sub != "log" {
				req.verb = "create"
			}
		case watchPath || watchParam == "true" || watchParam == "1":
			req.verb = "watch"
		case req.name == "":
			req.verb = "list"
		default:
			req.verb = "get"
		}
	case http.MethodPost:
		req.verb = "create"
		if req.name != "" && req.sub == "" {
			return nil, apierrors.NewMethodNotSupported(req.res.gr(), "POST to a named object (create posts to the collection)")
		}
	case http.MethodPut:
		req.verb = "update"
	case http.MethodPatch:
		req.verb = "patch"
	case http.MethodDelete:
		req.verb = "delete"
		if req.name == "" {
			req.verb = "deletecollection"
		}
	default:
		return nil, apierrors.NewMethodNotSupported(req.res.gr(), r.Method)
	}
	if (req.verb == "update" || req.verb == "patch") && req.name == "" {
		return nil, apierrors.NewMethodNotSupported(req.res.gr(), r.Method+" without an object name")
	}
	if req.verb == "create" && req.sub == "" && req.res.namespaced && req.namespace == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("a %s is created in a namespace: POST to %s/namespaces/NAMESPACE/%s", kindName(req.res), apiPrefix(req.res.gv), req.res.name))
	}
	return req, nil
}

func apiPrefix(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "/api/" + gv.Version
	}
	return "/apis/" + gv.Group + "/" + gv.Version
}

func gvString(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return gv.Version
	}
	return gv.String()
}

// requestTimeout bounds a request that does not stream, as upstream's
// default --request-timeout does.
const requestTimeout = time.Minute

func (s *Server) dispatch(w http.ResponseWriter, req *request) {
	var err error
	if _, streams := kubeletPaths[req.sub]; !streams && req.verb != "watch" {
		ctx, cancel := context.WithTimeout(req.Context(), requestTimeout)
		defer cancel()
		req.Request = req.WithContext(ctx)
	}
	switch {
	case req.sub == "log" || req.sub == "exec" || req.sub == "attach" || req.sub == "portforward":
		err = s.proxyToNode(w, req)
	case req.sub == "binding":
		err = s.bind(w, req)
	case req.sub == "token":
		err = s.createToken(w, req)
	case req.sub == "scale":
		err = s.scale(w, req)
	default:
		switch req.verb {
		case "get":
			err = s.get(w, req)
		case "list":
			err = s.list(w, req)
		case "watch":
			err = s.watch(w, req)
		case "create":
			err = s.create(w, req)
		case "update":
			err = s.update(w, req)
		case "patch":
			err = s.patch(w, req)
		case "delete":
			err = s.delete(w, req)
		case "deletecollection":
			err = s.deleteCollection(w, req)
		}
	}
	if err != nil {
		s.writeError(w, req.Request, err)
	}
}

func (s *Server) health(w http.ResponseWriter, r *http.Request, path string) {
	if path == "/livez" {
		io.WriteString(w, "ok")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if !s.ready.Load() {
		http.Error(w, "[-]bootstrap: not finished\nreadyz check failed", http.StatusServiceUnavailable)
		return
	}
	if _, err := s.store.CurrentRevision(ctx); err != nil {
		http.Error(w, "[-]etcd: "+err.Error()+"\nreadyz check failed", http.StatusServiceUnavailable)
		return
	}
	io.WriteString(w, "ok")
}

// readBody reads a request body up to the limit: 413 beyond.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > s.cfg.MaxRequestBytes {
		return nil, tooLarge(s.cfg.MaxRequestBytes)
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxRequestBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge(s.cfg.MaxRequestBytes)
	}
	if err != nil {
		return nil, apierrors.NewBadRequest("read request body: " + err.Error())
	}
	return b, nil
}

func tooLarge(limit int64) error {
	return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the request body is larger than %d MiB: split it, or keep large data out of the API", limit>>20))
}

// decodeBody decodes a request body into a new object of kind gvk. It
// returns the object, and warnings for fields it does not know (unless
// fieldValidation is Strict, which makes them an error).
func (s *Server) decodeBody(r *http.Request, gvk schema.GroupVersionKind, into runtime.Object) (runtime.Object, []string, error) {
	body, err := s.readBody(r)
	if err != nil {
		return nil, nil, err
	}
	if len(body) == 0 {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the request has no body: send a %s object as JSON or YAML", gvk.Kind))
	}
	return decodeObject(body, r.Header.Get("Content-Type"), r.URL.Query().Get("fieldValidation"), gvk, into)
}

func decodeObject(body []byte, contentType, validation string, gvk schema.GroupVersionKind, into runtime.Object) (runtime.Object, []string, error) {
	media, _, _ := mime.ParseMediaType(contentType)
	var dec runtime.Decoder
	format := "JSON"
	switch media {
	case "", mediaJSON:
		dec = strictJSON
	case mediaYAML, "application/x-yaml", "text/yaml":
		dec, format = strictYAML, "YAML"
	case mediaProtobuf:
		dec, format = protoSerializer, "protobuf"
	default:
		return nil, nil, unsupportedMedia(fmt.Sprintf("unsupported media type %q: send application/json or application/yaml", contentType))
	}
	obj, got, err := dec.Decode(body, &gvk, into)
	var warnings []string
	if err != nil && runtime.IsStrictDecodingError(err) && obj != nil {
		if validation == metav1.FieldValidationStrict {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("%s: fix the field names (kubectl explain %s lists them) or leave them out", err, strings.ToLower(gvk.Kind)))
		}
		if validation != metav1.FieldValidationIgnore {
			warnings = strictWarnings(err)
		}
		err = nil
	}
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the request body is not a valid %s object in %s: %v", gvk.Kind, format, err))
	}
	if got != nil && (got.Group != gvk.Group || got.Kind != gvk.Kind || got.Version != gvk.Version) {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the body is a %s (%s) but this URL takes a %s (%s): send it to its own resource's URL",
			got.Kind, got.GroupVersion().String(), gvk.Kind, gvk.GroupVersion().String()))
	}
	return obj, warnings, nil
}

func strictWarnings(err error) []string {
	se, ok := runtime.AsStrictDecodingError(err)
	if !ok {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range se.Errors() {
		out = append(out, e.Error())
	}
	return out
}

func addWarnings(w http.ResponseWriter, warnings []string) {
	for _, m := range warnings {
		w.Header().Add("Warning", fmt.Sprintf(`299 - %q`, m))
	}
}

// writeJSON writes a plain JSON value.
func (s *Server) writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", mediaJSON)
	w.WriteHeader(code)
	w.Write(b)
}

// notFound is a 404 with a message of its own.
func notFound(msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound, Message: msg,
	}}
}
