package apiserver

import (
	"fmt"
	"net/http"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podGracePeriod is the grace period a pod's deletion gets: ok is false
// for objects that are not pods, and for pods that can go at once (not
// bound to a node, or finished).
func podGracePeriod(obj runtime.Object, o *metav1.DeleteOptions) (int64, bool) {
	p, isPod := obj.(*corev1.Pod)
	if !isPod || p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return 0, false
	}
	switch {
	case o.GracePeriodSeconds != nil:
		return *o.GracePeriodSeconds, true
	case p.DeletionGracePeriodSeconds != nil:
		return *p.DeletionGracePeriodSeconds, true
	case p.Spec.TerminationGracePeriodSeconds != nil:
		return *p.Spec.TerminationGracePeriodSeconds, true
	}
	return corev1.DefaultTerminationGracePeriodSeconds, true
}

// bind is POST pods/NAME/binding: the scheduler's decision. A pod is
// bound once.
func (s *Server) bind(w http.ResponseWriter, req *request) error {
	if req.verb != "create" {
		return apierrors.NewMethodNotSupported(req.res.gr(), req.Method+" on pods/binding (POST a Binding)")
	}
	gvk := corev1.SchemeGroupVersion.WithKind("Binding")
	obj, _, err := s.decodeBody(req.Request, gvk, &corev1.Binding{})
	if err != nil {
		return err
	}
	b := obj.(*corev1.Binding)
	if b.Name != "" && b.Name != req.name {
		return apierrors.NewBadRequest(fmt.Sprintf("the binding's name (%s) must be the pod's (%s)", b.Name, req.name))
	}
	if b.Target.Name == "" {
		return apierrors.NewInvalid(gvk.GroupKind(), req.name, field.ErrorList{field.Required(field.NewPath("target", "name"), "the node to bind the pod to")})
	}
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		return apierrors.NewInvalid(gvk.GroupKind(), req.name, field.ErrorList{field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node"})})
	}
	gr := req.res.gr()
	_, err = s.store.GuaranteedUpdate(req.Context(), req.res.key(req.namespace, req.name), &corev1.Pod{}, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod)
		if b.UID != "" && b.UID != p.UID {
			return nil, apierrors.NewConflict(gr, req.name, fmt.Errorf("the binding is for pod UID %s but the pod is %s", b.UID, p.UID))
		}
		if p.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(gr, req.name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", req.name))
		}
		if p.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(gr, req.name, fmt.Errorf("pod %s is already assigned to node %q", req.name, p.Spec.NodeName))
		}
		p.Spec.NodeName = b.Target.Name
		setPodCondition(&p.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
		return p, nil
	})
	if err != nil {
		return storeError(err, gr, req.name)
	}
	return s.respond(w, req, http.StatusCreated, &metav1.Status{Status: metav1.StatusSuccess})
}

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i].Status, st.Conditions[i].Reason, st.Conditions[i].Message = c.Status, c.Reason, c.Message
			st.Conditions[i].LastTransitionTime = c.LastTransitionTime
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// scaleOf is the Scale view of a deployment or replica set.
func scaleOf(obj runtime.Object) (*autoscalingv1.Scale, error) {
	var m metav1.ObjectMeta
	var replicas, current int32
	var sel *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m, sel, current = o.ObjectMeta, o.Spec.Selector, o.Status.Replicas
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
	case *appsv1.ReplicaSet:
		m, sel, current = o.ObjectMeta, o.Spec.Selector, o.Status.Replicas
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
	default:
		return nil, fmt.Errorf("%T has no scale", obj)
	}
	s := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, CreationTimestamp: m.CreationTimestamp},
		Spec:       autoscalingv1.ScaleSpec{Replicas: replicas},
		Status:     autoscalingv1.ScaleStatus{Replicas: current, Selector: selectorString(sel)},
	}
	if s.Status.Selector == "<none>" {
		s.Status.Selector = ""
	}
	return s, nil
}

func setReplicas(obj runtime.Object, n int32) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = &n
	case *appsv1.ReplicaSet:
		o.Spec.Replicas = &n
	}
}

// scale serves deployments/scale and replicasets/scale (autoscaling/v1
// Scale): get, update and patch.
func (s *Server) scale(w http.ResponseWriter, req *request) error {
	gvk := autoscalingv1.SchemeGroupVersion.WithKind("Scale")
	key := req.res.key(req.namespace, req.name)
	switch req.verb {
	case "get":
		obj := req.res.newObj()
		if err := s.store.Get(req.Context(), key, 0, obj); err != nil {
			return storeError(err, req.res.gr(), req.name)
		}
		sc, err := scaleOf(obj)
		if err != nil {
			return err
		}
		return s.respond(w, req, http.StatusOK, sc)
	case "update", "patch":
	default:
		return apierrors.NewMethodNotSupported(req.res.gr(), req.verb+" on scale")
	}
	var want *autoscalingv1.Scale
	var patchBody []byte
	var pt types.PatchType
	if req.verb == "update" {
		obj, _, err := s.decodeBody(req.Request, gvk, &autoscalingv1.Scale{})
		if err != nil {
			return err
		}
		want = obj.(*autoscalingv1.Scale)
	} else {
		pt = types.PatchType(mediaTypeOf(req.Header.Get("Content-Type")))
		var err error
		if patchBody, err = s.readBody(req.Request); err != nil {
			return err
		}
	}
	var out runtime.Object
	_, err := s.store.GuaranteedUpdate(req.Context(), key, req.res.newObj(), func(cur runtime.Object) (runtime.Object, error) {
		sc, err := scaleOf(cur)
		if err != nil {
			return nil, err
		}
		next := want
		if patchBody != nil {
			patched, err := applyPatch(pt, sc, patchBody)
			if err != nil {
				return nil, err
			}
			obj, _, err := decodeObject(patched, mediaJSON, "", gvk, &autoscalingv1.Scale{})
			if err != nil {
				return nil, err
			}
			next = obj.(*autoscalingv1.Scale)
		}
		if next.ResourceVersion != "" && next.ResourceVersion != sc.ResourceVersion {
			return nil, conflict(req.res.gr(), req.name)
		}
		if next.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(gvk.GroupKind(), req.name, field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), next.Spec.Replicas, "must be 0 or more")})
		}
		if r, _ := scaleOf(cur); r.Spec.Replicas != next.Spec.Replicas {
			setReplicas(cur, next.Spec.Replicas)
			m := accessor(cur)
			m.SetGeneration(m.GetGeneration() + 1)
		}
		out = cur
		return cur, nil
	})
	if err != nil {
		return storeError(err, req.res.gr(), req.name)
	}
	sc, err := scaleOf(out)
	if err != nil {
		return err
	}
	return s.respond(w, req, http.StatusOK, sc)
}
