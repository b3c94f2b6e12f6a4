// Package fakeclient is client-go's fake clientset with the API server
// behaviour klab's components rely on and the plain fake lacks: names from
// metadata.generateName, the pods/binding subresource setting
// spec.nodeName, UIDs and creation times, and a way for a test to wait until informers watch.
package fakeclient

import (
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Client is a fake clientset that records which resources are watched.
type Client struct {
	*fake.Clientset

	mu      sync.Mutex
	watched map[string]int
}

// watchBuffer is the fake watchers' channel size. The tracker panics
// ("channel full") when a watcher falls that far behind, which a burst of
// thousands of writes in a benchmark does with the default of 100.
const watchBuffer = 100_000

var bufferOnce sync.Once

// New returns a fake clientset holding objects.
func New(objects ...runtime.Object) *Client {
	bufferOnce.Do(func() { watch.DefaultChanSize = watchBuffer })
	// The simple tracker, not NewClientset's field-managed one: that one
	// builds a REST mapper on every write, which makes a 3,000-pod
	// benchmark measure the fake instead of the code under test.
	//nolint:staticcheck // deprecated only in favour of the slow tracker
	c := &Client{Clientset: fake.NewSimpleClientset(objects...), watched: map[string]int{}}
	c.PrependReactor("create", "*", c.generateName)
	c.PrependReactor("create", "pods", c.bind)
	c.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		c.mu.Lock()
		c.watched[action.GetResource().Resource]++
		c.mu.Unlock()
		return false, nil, nil
	})
	return c
}

// Watching reports whether every resource (plural, "pods") has a watch.
func (c *Client) Watching(resources ...string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range resources {
		if c.watched[r] == 0 {
			return false
		}
	}
	return true
}

// WaitWatching waits up to timeout until every resource has a watch: with
// the fake, objects created before then would be missed by informers.
func (c *Client) WaitWatching(timeout time.Duration, resources ...string) error {
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; !c.Watching(resources...); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no watch on %v after %s", resources, timeout)
		}
		time.Sleep(wait)
	}
	return nil
}

func (c *Client) generateName(action k8stesting.Action) (bool, runtime.Object, error) {
	create, ok := action.(k8stesting.CreateAction)
	if !ok || create.GetSubresource() != "" {
		return false, nil, nil
	}
	m, err := meta.Accessor(create.GetObject())
	if err != nil {
		return false, nil, nil
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + rand.String(5))
	}
	if m.GetUID() == "" {
		m.SetUID(uuid.NewUUID())
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(metav1.Now())
	}
	return false, nil, nil // the tracker stores it
}

// bind implements pods/binding: the pod gets spec.nodeName, once.
func (c *Client) bind(action k8stesting.Action) (bool, runtime.Object, error) {
	create, ok := action.(k8stesting.CreateAction)
	if !ok || create.GetSubresource() != "binding" {
		return false, nil, nil
	}
	b, ok := create.GetObject().(*v1.Binding)
	if !ok {
		return true, nil, fmt.Errorf("binding: unexpected %T", create.GetObject())
	}
	gvr := v1.SchemeGroupVersion.WithResource("pods")
	obj, err := c.Tracker().Get(gvr, b.Namespace, b.Name)
	if err != nil {
		return true, nil, err
	}
	pod := obj.(*v1.Pod).DeepCopy()
	if b.UID != "" && pod.UID != b.UID {
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), b.Name, fmt.Errorf("UID mismatch"))
	}
	if pod.Spec.NodeName != "" {
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), b.Name,
			fmt.Errorf("pod %s is already assigned to node %q", b.Name, pod.Spec.NodeName))
	}
	pod.Spec.NodeName = b.Target.Name
	pod.Status.Conditions = append(pod.Status.Conditions, v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue})
	return true, b, c.Tracker().Update(gvr, pod, b.Namespace)
}
