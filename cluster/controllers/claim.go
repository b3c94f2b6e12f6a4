package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// claimer decides which objects (pods of a ReplicaSet, ReplicaSets of a
// Deployment) an owner controls: those whose controller reference names it
// and that its selector matches. It adopts orphans the selector matches
// and releases objects it controls that the selector no longer matches.
type claimer struct {
	owner    metav1.Object
	kind     schema.GroupVersionKind
	selector labels.Selector
	// fresh re-reads the owner from the API before an adoption: an owner
	// being deleted (or deleted and recreated) must not adopt.
	fresh func(ctx context.Context) (metav1.Object, error)
	// patch applies a JSON merge patch to the named object.
	patch func(ctx context.Context, name string, patch []byte) error

	checked  bool
	checkErr error
}

func controllerRef(owner metav1.Object, kind schema.GroupVersionKind) *metav1.OwnerReference {
	return metav1.NewControllerRef(owner, kind)
}

// claim returns the objects the owner controls after adopting and
// releasing.
func claim[T metav1.Object](ctx context.Context, c *claimer, objs []T) ([]T, error) {
	var owned []T
	var errs []error
	for _, o := range objs {
		ref := metav1.GetControllerOf(o)
		matches := c.selector.Matches(labels.Set(o.GetLabels()))
		switch {
		case ref != nil && ref.UID != c.owner.GetUID():
			// another controller's
		case ref != nil && matches:
			owned = append(owned, o)
		case ref != nil:
			if c.owner.GetDeletionTimestamp() == nil {
				if err := c.release(ctx, o); err != nil {
					errs = append(errs, err)
				}
			}
		case matches && o.GetDeletionTimestamp() == nil && c.owner.GetDeletionTimestamp() == nil:
			if err := c.adopt(ctx, o); err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			owned = append(owned, o)
		}
	}
	if len(errs) > 0 {
		return owned, fmt.Errorf("claim objects of %s %s/%s: %v", c.kind.Kind, c.owner.GetNamespace(), c.owner.GetName(), errs)
	}
	return owned, nil
}

func (c *claimer) canAdopt(ctx context.Context) error {
	if c.checked {
		return c.checkErr
	}
	c.checked = true
	cur, err := c.fresh(ctx)
	switch {
	case err != nil:
		c.checkErr = err
	case cur.GetUID() != c.owner.GetUID():
		c.checkErr = fmt.Errorf("%s %s/%s was recreated (uid %s, not %s)", c.kind.Kind, cur.GetNamespace(), cur.GetName(), cur.GetUID(), c.owner.GetUID())
	case cur.GetDeletionTimestamp() != nil:
		c.checkErr = fmt.Errorf("%s %s/%s is being deleted", c.kind.Kind, cur.GetNamespace(), cur.GetName())
	}
	return c.checkErr
}

// ownerPatch replaces an object's ownerReferences, guarded by its
// resourceVersion so a concurrent change fails with a conflict and is
// retried rather than lost.
func ownerPatch(o metav1.Object, refs []metav1.OwnerReference) ([]byte, error) {
	meta := map[string]any{"ownerReferences": refs, "uid": o.GetUID()}
	if rv := o.GetResourceVersion(); rv != "" {
		meta["resourceVersion"] = rv
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

func (c *claimer) adopt(ctx context.Context, o metav1.Object) error {
	if err := c.canAdopt(ctx); err != nil {
		return err
	}
	refs := append(o.GetOwnerReferences(), *controllerRef(c.owner, c.kind))
	p, err := ownerPatch(o, refs)
	if err != nil {
		return err
	}
	if err := c.patch(ctx, o.GetName(), p); err != nil {
		return fmt.Errorf("adopt %s: %w", o.GetName(), err)
	}
	return nil
}

func (c *claimer) release(ctx context.Context, o metav1.Object) error {
	var refs []metav1.OwnerReference
	for _, r := range o.GetOwnerReferences() {
		if r.UID != c.owner.GetUID() {
			refs = append(refs, r)
		}
	}
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	p, err := ownerPatch(o, refs)
	if err != nil {
		return err
	}
	if err := c.patch(ctx, o.GetName(), p); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release %s: %w", o.GetName(), err)
	}
	return nil
}

// mergePatch is the patch type claimers use.
const mergePatch = types.MergePatchType
