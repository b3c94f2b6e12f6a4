package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"sigs.k8s.io/yaml"

	"github.com/klab-dev/klab/cluster/store"
)

func accessor(obj runtime.Object) metav1.Object {
	m, err := meta.Accessor(obj)
	if err != nil {
		panic(fmt.Sprintf("%T has no object metadata", obj))
	}
	return m
}

// readRevision is the revision a get or list reads at: 0 for the newest
// (resourceVersion "" or "0", or NotOlderThan), the given one for Exact.
func readRevision(r *http.Request) (int64, error) {
	q := r.URL.Query()
	rv := q.Get("resourceVersion")
	if rv == "" || rv == "0" || q.Get("resourceVersionMatch") != string(metav1.ResourceVersionMatchExact) {
		if _, err := store.ParseRevision(rv); err != nil {
			return 0, apierrors.NewBadRequest(err.Error())
		}
		return 0, nil
	}
	n, err := store.ParseRevision(rv)
	if err != nil {
		return 0, apierrors.NewBadRequest(err.Error())
	}
	return n, nil
}

func (s *Server) get(w http.ResponseWriter, req *request) error {
	rev, err := readRevision(req.Request)
	if err != nil {
		return err
	}
	obj := req.res.newObj()
	if err := s.store.Get(req.Context(), req.res.key(req.namespace, req.name), rev, obj); err != nil {
		return storeError(err, req.res.gr(), req.name)
	}
	return s.respond(w, req, http.StatusOK, obj)
}

// listOptions parses a list or watch request's query.
func listOptions(r *http.Request) (*metav1.ListOptions, error) {
	var o metav1.ListOptions
	if err := parameterCodec.DecodeParameters(r.URL.Query(), schema.GroupVersion{Version: "v1"}, &o); err != nil {
		return nil, apierrors.NewBadRequest("list options: " + err.Error())
	}
	return &o, nil
}

// selector is a parsed label and field selector.
type selector struct {
	labels labels.Selector
	fields fields.Selector
}

func (s *Server) selector(res *resource, o *metav1.ListOptions) (*selector, error) {
	sel := &selector{labels: labels.Everything(), fields: fields.Everything()}
	var err error
	if o.LabelSelector != "" {
		if sel.labels, err = labels.Parse(o.LabelSelector); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("labelSelector %q: %v", o.LabelSelector, err))
		}
	}
	if o.FieldSelector != "" {
		if sel.fields, err = fields.ParseSelector(o.FieldSelector); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("fieldSelector %q: %v", o.FieldSelector, err))
		}
		known := fieldSet(res, res.newObj())
		for _, req := range sel.fields.Requirements() {
			if _, ok := known[req.Field]; !ok {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s (%s can be selected by %s)", req.Field, res.name, knownFields(known)))
			}
		}
	}
	return sel, nil
}

func (sel *selector) matches(res *resource, obj runtime.Object) bool {
	if !sel.labels.Empty() && !sel.labels.Matches(labels.Set(accessor(obj).GetLabels())) {
		return false
	}
	return sel.fields.Empty() || sel.fields.Matches(fieldSet(res, obj))
}

func (sel *selector) everything() bool { return sel.labels.Empty() && sel.fields.Empty() }

// continueToken is what a paged list hands back in metadata.continue.
type continueToken struct {
	Revision int64  `json:"rv"`
	Start    string `json:"start"`
}

func decodeContinue(tok string) (*continueToken, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	var c continueToken
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		return nil, apierrors.NewBadRequest("continue token is not one this server made: start the list again without it")
	}
	return &c, nil
}

func encodeContinue(c continueToken) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) list(w http.ResponseWriter, req *request) error {
	o, err := listOptions(req.Request)
	if err != nil {
		return err
	}
	sel, err := s.selector(req.res, o)
	if err != nil {
		return err
	}
	list, err := s.listObjects(req.Context(), req.res, req.namespace, o, sel)
	if err != nil {
		return err
	}
	return s.respond(w, req, http.StatusOK, list)
}

func (s *Server) listObjects(ctx context.Context, res *resource, namespace string, o *metav1.ListOptions, sel *selector) (runtime.Object, error) {
	lo := store.ListOptions{Limit: o.Limit}
	if o.ResourceVersion != "" && o.ResourceVersion != "0" && o.ResourceVersionMatch == metav1.ResourceVersionMatchExact {
		rev, err := store.ParseRevision(o.ResourceVersion)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		lo.Revision = rev
	}
	if o.Continue != "" {
		c, err := decodeContinue(o.Continue)
		if err != nil {
			return nil, err
		}
		lo.Revision, lo.Continue = c.Revision, c.Start
	}
	if sel != nil && !sel.everything() {
		lo.Filter = func(obj runtime.Object) bool { return sel.matches(res, obj) }
	}
	r, err := s.store.List(ctx, res.listPrefix(namespace), lo, res.newObj)
	if err != nil {
		return nil, storeError(err, res.gr(), "")
	}
	list := res.newList()
	if err := meta.SetList(list, r.Items); err != nil {
		return nil, err
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, err
	}
	lm.SetResourceVersion(strconv.FormatInt(r.Revision, 10))
	if r.Next != "" {
		lm.SetContinue(encodeContinue(continueToken{Revision: r.Revision, Start: r.Next}))
		if lo.Filter == nil {
			n := r.Remaining
			lm.SetRemainingItemCount(&n)
		}
	}
	return list, nil
}

const nameChars = "bcdfghjklmnpqrstvwxz2456789"

// generateName appends 5 random characters, as upstream does.
func generateName(base string) string {
	const maxBase = 63 - 5
	if len(base) > maxBase {
		base = base[:maxBase]
	}
	b := make([]byte, 5)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(nameChars))))
		b[i] = nameChars[n.Int64()]
	}
	return base + string(b)
}

func isDryRun(r *http.Request) bool {
	for _, v := range r.URL.Query()["dryRun"] {
		if v == metav1.DryRunAll {
			return true
		}
	}
	return false
}

func (s *Server) create(w http.ResponseWriter, req *request) error {
	obj, warnings, err := s.decodeBody(req.Request, req.res.gvk(), req.res.newObj())
	if err != nil {
		return err
	}
	if err := s.createObject(req.Context(), req.res, req.namespace, obj, req.user, isDryRun(req.Request)); err != nil {
		return err
	}
	addWarnings(w, warnings)
	return s.respond(w, req, http.StatusCreated, obj)
}

// checkNamespace checks an object's namespace against the URL's and sets
// it when the object has none.
func checkNamespace(res *resource, m metav1.Object, namespace string) error {
	if !res.namespaced {
		m.SetNamespace("")
		return nil
	}
	switch m.GetNamespace() {
	case "":
		m.SetNamespace(namespace)
	case namespace:
	default:
		return apierrors.NewBadRequest(fmt.Sprintf("the namespace of the object (%s) does not match the namespace on the request (%s): fix metadata.namespace or the -n flag", m.GetNamespace(), namespace))
	}
	return nil
}

// createObject defaults, validates and stores a new object (not when
// dryRun); obj receives what was stored.
func (s *Server) createObject(ctx context.Context, res *resource, namespace string, obj runtime.Object, u *user, dryRun bool) error {
	m := accessor(obj)
	if err := checkNamespace(res, m, namespace); err != nil {
		return err
	}
	if m.GetName() == "" && m.GetGenerateName() == "" {
		return apierrors.NewInvalid(res.gvk().GroupKind(), "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if m.GetResourceVersion() != "" {
		return apierrors.NewBadRequest("metadata.resourceVersion: must be empty when creating an object: leave it out")
	}
	if res.namespaced {
		if err := s.namespaceAcceptsContent(ctx, m.GetNamespace()); err != nil {
			return err
		}
	}
	generated := m.GetName() == ""
	if generated {
		m.SetName(generateName(m.GetGenerateName()))
	}
	m.SetUID(uuid.NewUUID())
	m.SetCreationTimestamp(metav1.Now())
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetManagedFields(nil)
	m.SetSelfLink("")
	if res.generation {
		m.SetGeneration(1)
	} else {
		m.SetGeneration(0)
	}
	if res.defaults != nil {
		res.defaults(obj)
	}
	if err := s.validate(res, obj, nil); err != nil {
		return err
	}
	if err := nodeRestriction(u, res, "", obj, nil); err != nil {
		return err
	}
	if dryRun {
		return nil
	}
	if res.prepareCreate != nil {
		if err := res.prepareCreate(ctx, s, obj); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		err := s.store.Create(ctx, res.key(m.GetNamespace(), m.GetName()), obj)
		if errors.Is(err, store.ErrExists) && generated && attempt < 8 {
			m.SetName(generateName(m.GetGenerateName()))
			continue
		}
		if err != nil {
			if res.released != nil {
				res.released(context.WithoutCancel(ctx), s, obj)
			}
			return storeError(err, res.gr(), m.GetName())
		}
		if res.created != nil {
			res.created(ctx, s, obj)
		}
		return nil
	}
}

// validate runs metadata and the resource's own validation: 422 with
// every field error.
func (s *Server) validate(res *resource, obj, old runtime.Object) error {
	m := accessor(obj)
	nameFn := apivalidation.NameIsDNSSubdomain
	switch res.name {
	case "namespaces":
		nameFn = apivalidation.ValidateNamespaceName
	case "services":
		nameFn = apivalidation.NameIsDNS1035Label
	}
	errs := apivalidation.ValidateObjectMetaAccessor(m, res.namespaced, nameFn, field.NewPath("metadata"))
	if res.validate != nil {
		errs = append(errs, res.validate(obj, old)...)
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(res.gvk().GroupKind(), m.GetName(), errs)
	}
	return nil
}

func (s *Server) update(w http.ResponseWriter, req *request) error {
	obj, warnings, err := s.decodeBody(req.Request, req.res.gvk(), req.res.newObj())
	if err != nil {
		return err
	}
	m := accessor(obj)
	if m.GetName() != req.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), req.name))
	}
	if err := checkNamespace(req.res, m, req.namespace); err != nil {
		return err
	}
	want, err := store.ParseRevision(m.GetResourceVersion())
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	out, created, err := s.updateObject(req.Context(), req, want, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	})
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	return s.respond(w, req, code, out)
}

// updateObject reads the stored object, has next compute the new one from
// it, checks and stores it, retrying when someone else wrote in between
// unless the client asked for a revision (want), which then conflicts.
func (s *Server) updateObject(ctx context.Context, req *request, want int64, next func(cur runtime.Object) (runtime.Object, error)) (runtime.Object, bool, error) {
	res := req.res
	key := res.key(req.namespace, req.name)
	for attempt := 0; ; attempt++ {
		old := res.newObj()
		err := s.store.Get(ctx, key, 0, old)
		if errors.Is(err, store.ErrNotFound) && res.allowCreateOnUpdate && req.sub == "" && req.verb == "update" {
			obj, err := next(nil)
			if err != nil {
				return nil, false, err
			}
			accessor(obj).SetResourceVersion("")
			if err := s.createObject(ctx, res, req.namespace, obj, req.user, isDryRun(req.Request)); err != nil {
				return nil, false, err
			}
			return obj, true, nil
		}
		if err != nil {
			return nil, false, storeError(err, res.gr(), req.name)
		}
		rev, _ := store.Revision(old)
		if want != 0 && want != rev {
			return nil, false, conflict(res.gr(), req.name)
		}
		obj, err := next(old.DeepCopyObject())
		if err != nil {
			return nil, false, err
		}
		if err := s.prepareUpdate(ctx, req, obj, old); err != nil {
			return nil, false, err
		}
		if isDryRun(req.Request) {
			return obj, false, nil
		}
		if equality.Semantic.DeepEqual(obj, old) {
			// Nothing changes: no write and no watch event, as upstream.
			// A client writing what it read would otherwise wake every
			// watcher, whose reactions may write again.
			return obj, false, nil
		}
		err = s.store.Update(ctx, key, obj, rev)
		if err != nil && req.sub == "" && res.abandonUpdate != nil {
			res.abandonUpdate(context.WithoutCancel(ctx), s, obj, old)
		}
		if errors.Is(err, store.ErrConflict) && want == 0 && attempt < 20 {
			continue
		}
		if err != nil {
			return nil, false, storeError(err, res.gr(), req.name)
		}
		if req.sub == "" && res.updated != nil {
			res.updated(context.WithoutCancel(ctx), s, obj, old)
		}
		if err := s.finishDeletion(ctx, res, key, obj); err != nil {
			return nil, false, err
		}
		return obj, false, nil
	}
}

// prepareUpdate makes obj a valid successor of old: the system fields
// stay, a main-resource write keeps the status, a status write changes
// only the status; then defaults, validation and the node restriction.
func (s *Server) prepareUpdate(ctx context.Context, req *request, obj, old runtime.Object) error {
	res := req.res
	m, om := accessor(obj), accessor(old)
	if uid := m.GetUID(); uid != "" && uid != om.GetUID() {
		return apierrors.NewConflict(res.gr(), req.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, om.GetUID()))
	}
	m.SetName(om.GetName())
	m.SetNamespace(om.GetNamespace())
	m.SetUID(om.GetUID())
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	m.SetGeneration(om.GetGeneration())
	m.SetManagedFields(nil)
	m.SetSelfLink("")
	m.SetResourceVersion(om.GetResourceVersion())
	if req.sub == "status" {
		// Only the status changes: start again from the stored object.
		status := structField(obj, "Status")
		if !status.IsValid() {
			return apierrors.NewBadRequest(res.name + " have no status")
		}
		fresh := old.DeepCopyObject()
		copyField(fresh, obj, "Status")
		reflectSet(obj, fresh)
	} else {
		if res.hasSub("status") {
			copyField(obj, old, "Status")
		}
		if res.generation && !equality.Semantic.DeepEqual(structField(obj, "Spec").Interface(), structField(old, "Spec").Interface()) {
			m.SetGeneration(om.GetGeneration() + 1)
		}
		if om.GetDeletionTimestamp() != nil && len(m.GetFinalizers()) > len(om.GetFinalizers()) {
			return apierrors.NewForbidden(res.gr(), req.name, errors.New("no new finalizers can be added if the object is being deleted"))
		}
		if res.carryOver != nil {
			res.carryOver(obj, old)
		}
		if res.defaults != nil {
			res.defaults(obj)
		}
	}
	if err := s.validate(res, obj, old); err != nil {
		return err
	}
	if err := nodeRestriction(req.user, res, req.sub, obj, old); err != nil {
		return err
	}
	if req.sub == "" && res.prepareUpdate != nil {
		return res.prepareUpdate(ctx, s, obj, old)
	}
	return nil
}

// finishDeletion deletes an object that is being deleted once nothing
// holds it any longer: no finalizers, no grace period left to wait for.
func (s *Server) finishDeletion(ctx context.Context, res *resource, key string, obj runtime.Object) error {
	m := accessor(obj)
	if m.GetDeletionTimestamp() == nil || len(m.GetFinalizers()) > 0 {
		return nil
	}
	if g := m.GetDeletionGracePeriodSeconds(); g != nil && *g > 0 {
		return nil
	}
	rev, _ := store.Revision(obj)
	err := s.store.Delete(ctx, key, rev, nil)
	if err == nil && res.released != nil {
		res.released(ctx, s, obj)
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		return nil
	}
	return storeError(err, res.gr(), m.GetName())
}

// deleteOptions reads DeleteOptions from the body, or the query.
func (s *Server) deleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	o := &metav1.DeleteOptions{}
	body, err := s.readBody(r)
	if err != nil {
		return nil, err
	}
	// Clients send DeleteOptions of any group version: the fields are
	// the same.
	switch {
	case len(body) == 0:
	case mediaTypeOf(r.Header.Get("Content-Type")) == mediaProtobuf:
		obj, _, err := protoSerializer.Decode(body, nil, o)
		if err != nil {
			return nil, apierrors.NewBadRequest("the body is not valid DeleteOptions: " + err.Error())
		}
		if d, ok := obj.(*metav1.DeleteOptions); ok {
			o = d
		}
	default:
		if err := yaml.Unmarshal(body, o); err != nil {
			return nil, apierrors.NewBadRequest("the body is not valid DeleteOptions: " + err.Error())
		}
	}
	q := r.URL.Query()
	if g := q.Get("gracePeriodSeconds"); g != "" && o.GracePeriodSeconds == nil {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest("gracePeriodSeconds: " + err.Error())
		}
		o.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" && o.PropagationPolicy == nil {
		pp := metav1.DeletionPropagation(p)
		o.PropagationPolicy = &pp
	}
	if o.GracePeriodSeconds != nil && *o.GracePeriodSeconds < 0 {
		return nil, apierrors.NewBadRequest("gracePeriodSeconds: must be 0 or more")
	}
	if p := o.PropagationPolicy; p != nil && *p != metav1.DeletePropagationBackground && *p != metav1.DeletePropagationForeground && *p != metav1.DeletePropagationOrphan {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy %q: use Background, Foreground or Orphan", *p))
	}
	o.DryRun = append(o.DryRun, q["dryRun"]...)
	return o, nil
}

func (s *Server) delete(w http.ResponseWriter, req *request) error {
	o, err := s.deleteOptions(req.Request)
	if err != nil {
		return err
	}
	if req.res.name == "namespaces" {
		return s.deleteNamespace(w, req, o)
	}
	obj, gone, err := s.deleteObject(req.Context(), req.res, req.namespace, req.name, o, req.user)
	if err != nil {
		return err
	}
	if !gone {
		return s.respond(w, req, http.StatusOK, obj)
	}
	m := accessor(obj)
	return s.respond(w, req, http.StatusOK, &metav1.Status{
		Status:  metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Name: m.GetName(), Group: req.res.gv.Group, Kind: req.res.name, UID: m.GetUID()},
	})
}

// deleteObject deletes an object, or starts its deletion: a pod bound to
// a node gets a grace period (its node's agent stops it and deletes it
// for good), an object with finalizers waits for them. gone tells whether
// the object is gone now.
func (s *Server) deleteObject(ctx context.Context, res *resource, namespace, name string, o *metav1.DeleteOptions, u *user) (runtime.Object, bool, error) {
	key := res.key(namespace, name)
	dryRun := len(o.DryRun) > 0 && o.DryRun[0] == metav1.DryRunAll
	for attempt := 0; ; attempt++ {
		old := res.newObj()
		if err := s.store.Get(ctx, key, 0, old); err != nil {
			return nil, false, storeError(err, res.gr(), name)
		}
		m := accessor(old)
		if p := o.Preconditions; p != nil {
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, false, apierrors.NewConflict(res.gr(), name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, m.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(res.gr(), name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, m.GetResourceVersion()))
			}
		}
		if err := nodeRestriction(u, res, "", nil, old); err != nil {
			return nil, false, err
		}
		rev, _ := store.Revision(old)
		pending := s.deletionPending(res, old, o)
		if dryRun {
			return old, !pending, nil
		}
		if pending {
			err := s.store.Update(ctx, key, old, rev)
			if errors.Is(err, store.ErrConflict) && attempt < 20 {
				continue
			}
			if err != nil {
				return nil, false, storeError(err, res.gr(), name)
			}
			return old, false, nil
		}
		err := s.store.Delete(ctx, key, rev, old)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return nil, false, storeError(err, res.gr(), name)
		}
		if res.released != nil {
			res.released(ctx, s, old)
		}
		return old, true, nil
	}
}

// deletionPending marks obj as being deleted when it cannot go at once,
// and reports whether so: finalizers (with Foreground or Orphan
// propagation, the garbage collector's) hold it, or it is a pod bound to
// a node with a grace period left.
func (s *Server) deletionPending(res *resource, obj runtime.Object, o *metav1.DeleteOptions) bool {
	m := accessor(obj)
	now := metav1.Now()
	if p := o.PropagationPolicy; p != nil && m.GetDeletionTimestamp() == nil {
		switch *p {
		case metav1.DeletePropagationForeground:
			m.SetFinalizers(appendUnique(m.GetFinalizers(), metav1.FinalizerDeleteDependents))
		case metav1.DeletePropagationOrphan:
			m.SetFinalizers(appendUnique(m.GetFinalizers(), metav1.FinalizerOrphanDependents))
		}
	}
	grace, isPod := podGracePeriod(obj, o)
	if isPod && grace > 0 {
		at := metav1.NewTime(now.Add(time.Duration(grace) * time.Second))
		if cur := m.GetDeletionTimestamp(); cur == nil || at.Before(cur) {
			m.SetDeletionTimestamp(&at)
			m.SetDeletionGracePeriodSeconds(&grace)
		}
		return true
	}
	if isPod && m.GetDeletionTimestamp() != nil {
		// Grace 0 (the agent's final delete): only finalizers may hold it now.
		m.SetDeletionGracePeriodSeconds(&grace)
	}
	if len(m.GetFinalizers()) > 0 {
		if m.GetDeletionTimestamp() == nil {
			m.SetDeletionTimestamp(&now)
			zero := int64(0)
			m.SetDeletionGracePeriodSeconds(&zero)
		}
		return true
	}
	return false
}

func appendUnique(list []string, v string) []string {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

func (s *Server) deleteCollection(w http.ResponseWriter, req *request) error {
	o, err := s.deleteOptions(req.Request)
	if err != nil {
		return err
	}
	lo, err := listOptions(req.Request)
	if err != nil {
		return err
	}
	sel, err := s.selector(req.res, lo)
	if err != nil {
		return err
	}
	if req.res.name == "namespaces" {
		return apierrors.NewMethodNotSupported(req.res.gr(), "deletecollection (delete namespaces one by one)")
	}
	list, err := s.listObjects(req.Context(), req.res, req.namespace, &metav1.ListOptions{}, sel)
	if err != nil {
		return err
	}
	items, _ := meta.ExtractList(list)
	for _, it := range items {
		m := accessor(it)
		if _, _, err := s.deleteObject(req.Context(), req.res, m.GetNamespace(), m.GetName(), o, req.user); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return s.respond(w, req, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Group: req.res.gv.Group, Kind: req.res.name}})
}

// patch applies a JSON patch, JSON merge patch or strategic merge patch
// to the stored object and updates it.
func (s *Server) patch(w http.ResponseWriter, req *request) error {
	pt := types.PatchType(mediaTypeOf(req.Header.Get("Content-Type")))
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
	case types.ApplyYAMLPatchType, types.ApplyCBORPatchType:
		return unsupportedMedia("server-side apply is not supported: use kubectl apply without --server-side (client-side apply)")
	default:
		return unsupportedMedia(fmt.Sprintf("unsupported patch type %q: use application/json-patch+json, application/merge-patch+json or application/strategic-merge-patch+json", pt))
	}
	if pt == types.StrategicMergePatchType && req.res.noStrategicMerge {
		return unsupportedMedia(fmt.Sprintf("strategic merge patch is not supported for %s (a klab type): use a JSON merge patch (kubectl patch --type merge) or a JSON patch", req.res.gr()))
	}
	body, err := s.readBody(req.Request)
	if err != nil {
		return err
	}
	validation := req.URL.Query().Get("fieldValidation")
	var warnings []string
	out, _, err := s.updateObject(req.Context(), req, 0, func(cur runtime.Object) (runtime.Object, error) {
		curRV := accessor(cur).GetResourceVersion()
		patched, err := applyPatch(pt, cur, body)
		if err != nil {
			return nil, err
		}
		obj, w, err := decodeObject(patched, mediaJSON, validation, req.res.gvk(), req.res.newObj())
		if err != nil {
			return nil, err
		}
		warnings = w
		if rv := accessor(obj).GetResourceVersion(); rv != curRV {
			// The patch named a resourceVersion: a precondition.
			return nil, conflict(req.res.gr(), req.name)
		}
		return obj, nil
	})
	if err != nil {
		return err
	}
	addWarnings(w, warnings)
	return s.respond(w, req, http.StatusOK, out)
}

func unsupportedMedia(msg string) error {
	return statusError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, msg)
}

// statusError is an error answered as a Status with code, reason and msg.
func statusError(code int32, reason metav1.StatusReason, msg string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
}

// reflectSet sets *dst to *src; both are pointers to the same type.
func reflectSet(dst, src runtime.Object) {
	reflect.ValueOf(dst).Elem().Set(reflect.ValueOf(src).Elem())
}

func mediaTypeOf(contentType string) string {
	t, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return contentType
	}
	return t
}
