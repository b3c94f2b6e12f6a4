package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// GCResource is one kind of object the garbage collector watches.
type GCResource struct {
	Resource   schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// gcIgnored are resources whose objects never own or are owned in a way
// worth watching (upstream ignores events too).
var gcIgnored = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:                    true,
	{Group: "events.k8s.io", Resource: "events"}:       true,
	{Group: "coordination.k8s.io", Resource: "leases"}: true,
}

// GCResources lists, from the server's discovery, every resource the
// garbage collector can watch and delete (list, watch and delete verbs),
// one version per group and resource.
func GCResources(d discovery.DiscoveryInterface) ([]GCResource, error) {
	_, lists, err := d.ServerGroupsAndResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discover resources for garbage collection: %w", err)
	}
	seen := map[schema.GroupResource]bool{}
	var out []GCResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			gr := schema.GroupResource{Group: gv.Group, Resource: r.Name}
			if strings.Contains(r.Name, "/") || seen[gr] || gcIgnored[gr] ||
				!slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			seen[gr] = true
			out = append(out, GCResource{Resource: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced})
		}
	}
	return out, nil
}

// gcObject is what the collector remembers of one object.
type gcObject struct {
	res        GCResource
	namespace  string
	name       string
	uid        types.UID
	owners     []metav1.OwnerReference
	finalizers []string
	deleting   bool
	rv         string
}

// garbageCollector deletes objects whose owners are all gone (background
// propagation: the owner went first), deletes the dependents of an owner
// deleted in the foreground (finalizer foregroundDeletion) before letting
// it go, and orphans the dependents of an owner deleted with
// propagationPolicy Orphan (finalizer orphan) by removing their owner
// references.
type garbageCollector struct {
	dyn      dynamic.Interface
	byKind   map[schema.GroupKind]GCResource
	factory  dynamicinformer.DynamicSharedInformerFactory
	handlers []cache.InformerSynced
	loop     *loop
	log      *slog.Logger

	mu         sync.Mutex
	objects    map[types.UID]*gcObject
	dependents map[types.UID]map[types.UID]bool
}

func newGarbageCollector(m *manager, resources []GCResource) (*garbageCollector, error) {
	c := &garbageCollector{
		dyn:        m.dyn,
		byKind:     map[schema.GroupKind]GCResource{},
		factory:    dynamicinformer.NewDynamicSharedInformerFactory(m.dyn, m.o.Resync),
		log:        m.log.With("controller", "garbagecollector"),
		objects:    map[types.UID]*gcObject{},
		dependents: map[types.UID]map[types.UID]bool{},
	}
	c.loop = newLoop("garbagecollector", m.log, c.sync)
	for _, r := range resources {
		c.byKind[schema.GroupKind{Group: r.Resource.Group, Kind: r.Kind}] = r
		reg, err := c.factory.ForResource(r.Resource).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.observe(r, obj) },
			UpdateFunc: func(_, obj any) { c.observe(r, obj) },
			DeleteFunc: func(obj any) { c.forget(deleted(obj)) },
		})
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", r.Resource, err)
		}
		c.handlers = append(c.handlers, reg.HasSynced)
	}
	return c, nil
}

func (c *garbageCollector) start(ctx context.Context) { c.factory.Start(ctx.Done()) }

// synced waits until the handlers have seen every informer's first
// listing, so the graph holds every object before the collector acts.
func (c *garbageCollector) synced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), c.handlers...)
}

func (c *garbageCollector) observe(r GCResource, obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	o := &gcObject{
		res: r, namespace: m.GetNamespace(), name: m.GetName(), uid: m.GetUID(),
		owners: m.GetOwnerReferences(), finalizers: m.GetFinalizers(),
		deleting: m.GetDeletionTimestamp() != nil, rv: m.GetResourceVersion(),
	}
	c.mu.Lock()
	if old, ok := c.objects[o.uid]; ok {
		for _, ref := range old.owners {
			delete(c.dependents[ref.UID], o.uid)
		}
	}
	c.objects[o.uid] = o
	for _, ref := range o.owners {
		if c.dependents[ref.UID] == nil {
			c.dependents[ref.UID] = map[types.UID]bool{}
		}
		c.dependents[ref.UID][o.uid] = true
	}
	c.mu.Unlock()
	if len(o.owners) > 0 || o.deleting {
		c.loop.queue.Add(string(o.uid))
	}
}

func (c *garbageCollector) forget(obj any) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	uid := m.GetUID()
	c.mu.Lock()
	var owners []types.UID
	if old, ok := c.objects[uid]; ok {
		for _, ref := range old.owners {
			delete(c.dependents[ref.UID], uid)
			owners = append(owners, ref.UID)
		}
	}
	delete(c.objects, uid)
	deps := make([]types.UID, 0, len(c.dependents[uid]))
	for d := range c.dependents[uid] {
		deps = append(deps, d)
	}
	c.mu.Unlock()
	// Its dependents lost an owner; an owner deleted in the foreground
	// may be free to go now.
	for _, d := range append(deps, owners...) {
		c.loop.queue.Add(string(d))
	}
}

func (c *garbageCollector) get(uid types.UID) (*gcObject, []*gcObject) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.objects[uid]
	var deps []*gcObject
	for d := range c.dependents[uid] {
		if do, ok := c.objects[d]; ok {
			deps = append(deps, do)
		}
	}
	return o, deps
}

func (c *garbageCollector) client(o *gcObject) dynamic.ResourceInterface {
	if o.res.Namespaced {
		return c.dyn.Resource(o.res.Resource).Namespace(o.namespace)
	}
	return c.dyn.Resource(o.res.Resource)
}

func (c *garbageCollector) sync(ctx context.Context, key string) error {
	o, deps := c.get(types.UID(key))
	if o == nil {
		return nil
	}
	if o.deleting {
		switch {
		case slices.Contains(o.finalizers, metav1.FinalizerOrphanDependents):
			return c.orphan(ctx, o, deps)
		case slices.Contains(o.finalizers, metav1.FinalizerDeleteDependents):
			return c.deleteForeground(ctx, o, deps)
		}
	}
	if len(o.owners) == 0 {
		return nil
	}
	var dangling []types.UID
	foreground := false
	for _, ref := range o.owners {
		exists, owner, err := c.ownerExists(ctx, o, ref)
		if err != nil {
			return err
		}
		if !exists {
			dangling = append(dangling, ref.UID)
		} else if owner != nil && owner.deleting && slices.Contains(owner.finalizers, metav1.FinalizerDeleteDependents) {
			foreground = true
		}
	}
	switch {
	case len(dangling) == len(o.owners) && !o.deleting:
		policy := metav1.DeletePropagationBackground
		if foreground {
			policy = metav1.DeletePropagationForeground
		}
		err := c.client(o).Delete(ctx, o.name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &o.uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete %s %s: %w", o.res.Kind, o.ident(), err)
		}
		c.log.Info("deleted object whose owners are gone", "kind", o.res.Kind, "object", o.ident())
	case len(dangling) > 0 && len(dangling) < len(o.owners):
		return c.dropOwners(ctx, o, dangling)
	}
	return nil
}

func (o *gcObject) ident() string {
	if o.namespace == "" {
		return o.name
	}
	return o.namespace + "/" + o.name
}

// ownerExists checks the collector's cache, then the API (the owner's
// informer may be behind its dependents').
func (c *garbageCollector) ownerExists(ctx context.Context, o *gcObject, ref metav1.OwnerReference) (bool, *gcObject, error) {
	if owner, _ := c.get(ref.UID); owner != nil {
		return true, owner, nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return false, nil, nil // a reference that can never resolve
	}
	r, ok := c.byKind[schema.GroupKind{Group: gv.Group, Kind: ref.Kind}]
	if !ok {
		return true, nil, nil // a kind we do not know: leave it alone
	}
	var ri dynamic.ResourceInterface = c.dyn.Resource(r.Resource)
	if r.Namespaced {
		ri = c.dyn.Resource(r.Resource).Namespace(o.namespace)
	}
	got, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil, nil
	case err != nil:
		return false, nil, fmt.Errorf("look up owner %s %s of %s: %w", ref.Kind, ref.Name, o.ident(), err)
	}
	return got.GetUID() == ref.UID, nil, nil
}

// patchMeta applies a merge patch of metadata fields, guarded by the
// object's resourceVersion.
func (c *garbageCollector) patchMeta(ctx context.Context, o *gcObject, fields map[string]any) error {
	if o.rv != "" {
		fields["resourceVersion"] = o.rv
	}
	b, err := json.Marshal(map[string]any{"metadata": fields})
	if err != nil {
		return err
	}
	_, err = c.client(o).Patch(ctx, o.name, types.MergePatchType, b, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (c *garbageCollector) dropOwners(ctx context.Context, o *gcObject, gone []types.UID) error {
	refs := slices.DeleteFunc(slices.Clone(o.owners), func(r metav1.OwnerReference) bool { return slices.Contains(gone, r.UID) })
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	if err := c.patchMeta(ctx, o, map[string]any{"ownerReferences": refs}); err != nil {
		return fmt.Errorf("remove dangling owners of %s %s: %w", o.res.Kind, o.ident(), err)
	}
	return nil
}

// orphan removes the owner from its dependents, then its orphan finalizer.
func (c *garbageCollector) orphan(ctx context.Context, owner *gcObject, deps []*gcObject) error {
	for _, d := range deps {
		if err := c.dropOwners(ctx, d, []types.UID{owner.uid}); err != nil {
			return err
		}
	}
	fin := slices.DeleteFunc(slices.Clone(owner.finalizers), func(f string) bool { return f == metav1.FinalizerOrphanDependents })
	if err := c.patchMeta(ctx, owner, map[string]any{"finalizers": fin}); err != nil {
		return fmt.Errorf("remove orphan finalizer of %s %s: %w", owner.res.Kind, owner.ident(), err)
	}
	c.log.Info("orphaned dependents", "kind", owner.res.Kind, "object", owner.ident(), "dependents", len(deps))
	return nil
}

// deleteForeground deletes the owner's dependents; once none is left it
// removes the foregroundDeletion finalizer, and the owner goes.
func (c *garbageCollector) deleteForeground(ctx context.Context, owner *gcObject, deps []*gcObject) error {
	if len(deps) == 0 {
		fin := slices.DeleteFunc(slices.Clone(owner.finalizers), func(f string) bool { return f == metav1.FinalizerDeleteDependents })
		if err := c.patchMeta(ctx, owner, map[string]any{"finalizers": fin}); err != nil {
			return fmt.Errorf("remove foregroundDeletion finalizer of %s %s: %w", owner.res.Kind, owner.ident(), err)
		}
		return nil
	}
	policy := metav1.DeletePropagationForeground
	for _, d := range deps {
		if d.deleting {
			continue
		}
		err := c.client(d).Delete(ctx, d.name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &d.uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete %s %s (dependent of %s): %w", d.res.Kind, d.ident(), owner.ident(), err)
		}
	}
	return nil // the dependents' deletions requeue the owner
}
