package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// endpoints keeps, for every Service with a selector, an Endpoints object
// of the same name listing the IPs of the pods it selects: ready pods under
// addresses, the others under notReadyAddresses (all under addresses when
// the Service publishes not-ready addresses). Each Service port is resolved
// per pod: a number as is, a name through the pod's named container ports
// (a pod without that name is left out of that port's subset).
type endpoints struct {
	cs        kubernetes.Interface
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	loop      *loop
}

func newEndpoints(m *manager, f informers.SharedInformerFactory) (*endpoints, error) {
	c := &endpoints{
		cs:        m.cs,
		services:  f.Core().V1().Services().Lister(),
		pods:      f.Core().V1().Pods().Lister(),
		endpoints: f.Core().V1().Endpoints().Lister(),
	}
	c.loop = newLoop("endpoints", m.log, c.sync)
	if _, err := f.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.enqueue,
		UpdateFunc: func(_, obj any) { c.loop.enqueue(obj) },
		DeleteFunc: c.loop.enqueue,
	}); err != nil {
		return nil, err
	}
	if _, err := f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.podChanged(nil, obj.(*v1.Pod)) },
		UpdateFunc: func(oldObj, obj any) {
			old, p := oldObj.(*v1.Pod), obj.(*v1.Pod)
			if old.ResourceVersion != p.ResourceVersion || old.ResourceVersion == "" {
				c.podChanged(old, p)
			}
		},
		DeleteFunc: func(obj any) {
			if p, ok := deleted(obj).(*v1.Pod); ok {
				c.podChanged(nil, p)
			}
		},
	}); err != nil {
		return nil, err
	}
	// An Endpoints edited or deleted by someone else is put back.
	if _, err := f.Core().V1().Endpoints().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { c.loop.enqueue(obj) },
		DeleteFunc: c.loop.enqueue,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// podChanged queues the Services selecting the pod, before or after.
func (c *endpoints) podChanged(old, p *v1.Pod) {
	svcs, err := c.services.Services(p.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if s.Spec.Selector == nil {
			continue
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		if sel.Matches(labels.Set(p.Labels)) || old != nil && sel.Matches(labels.Set(old.Labels)) {
			c.loop.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
}

func (c *endpoints) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The Service is gone: so are its endpoints.
		err := c.cs.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete endpoints %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil {
		return nil // endpoints of a selector-less Service are the user's
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	subsets := buildSubsets(svc, pods)

	cur, err := c.endpoints.Endpoints(ns).Get(name)
	if apierrors.IsNotFound(err) {
		ep := &v1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: maps.Clone(svc.Labels)},
			Subsets:    subsets,
		}
		// AlreadyExists too is an error: our cache is behind, try again.
		if _, err := c.cs.CoreV1().Endpoints(ns).Create(ctx, ep, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create endpoints %s: %w", key, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(cur.Subsets, subsets) && equality.Semantic.DeepEqual(cur.Labels, svc.Labels) {
		return nil
	}
	upd := cur.DeepCopy()
	upd.Subsets = subsets
	upd.Labels = maps.Clone(svc.Labels)
	if _, err := c.cs.CoreV1().Endpoints(ns).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update endpoints %s: %w", key, err)
	}
	return nil
}

// servable: the pod has an IP and is neither finished nor terminating.
func servable(p *v1.Pod, publishNotReady bool) bool {
	if p.Status.PodIP == "" || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return false
	}
	return p.DeletionTimestamp == nil || publishNotReady
}

// buildSubsets groups the pods by their resolved ports: one subset per
// distinct port set, addresses sorted by IP, subsets by their ports.
func buildSubsets(svc *v1.Service, pods []*v1.Pod) []v1.EndpointSubset {
	type group struct {
		ports           []v1.EndpointPort
		ready, notReady []v1.EndpointAddress
	}
	groups := map[string]*group{}
	for _, p := range pods {
		if !servable(p, svc.Spec.PublishNotReadyAddresses) {
			continue
		}
		var ports []v1.EndpointPort
		for _, sp := range svc.Spec.Ports {
			port, ok := resolvePort(p, sp.TargetPort, sp.Port)
			if !ok {
				continue
			}
			proto := sp.Protocol
			if proto == "" {
				proto = v1.ProtocolTCP
			}
			ports = append(ports, v1.EndpointPort{Name: sp.Name, Port: port, Protocol: proto, AppProtocol: sp.AppProtocol})
		}
		if len(svc.Spec.Ports) > 0 && len(ports) == 0 {
			continue
		}
		k := portsKey(ports)
		g, ok := groups[k]
		if !ok {
			g = &group{ports: ports}
			groups[k] = g
		}
		addr := v1.EndpointAddress{
			IP:        p.Status.PodIP,
			NodeName:  nonEmpty(p.Spec.NodeName),
			TargetRef: &v1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		if podReady(p) || svc.Spec.PublishNotReadyAddresses {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	keys := slices.Sorted(maps.Keys(groups))
	subsets := []v1.EndpointSubset{}
	for _, k := range keys {
		g := groups[k]
		byIP := func(a, b v1.EndpointAddress) int { return strings.Compare(a.IP, b.IP) }
		slices.SortFunc(g.ready, byIP)
		slices.SortFunc(g.notReady, byIP)
		subsets = append(subsets, v1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	if len(subsets) == 0 {
		return nil
	}
	return subsets
}

// resolvePort finds the pod port a service port's targetPort means.
func resolvePort(p *v1.Pod, target intstr.IntOrString, servicePort int32) (int32, bool) {
	switch {
	case target.Type == intstr.String && target.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == target.StrVal {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case target.Type == intstr.Int && target.IntVal != 0:
		return target.IntVal, true
	}
	return servicePort, true // targetPort defaults to port
}

func portsKey(ports []v1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(p.Name + "/" + string(p.Protocol) + "/" + strconv.Itoa(int(p.Port)) + ";")
	}
	return b.String()
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
