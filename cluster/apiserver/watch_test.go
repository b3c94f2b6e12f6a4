package apiserver_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/store"
	"github.com/klab-dev/klab/internal/testutil"
)

func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch ended")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no watch event in 20s")
	}
	return watch.Event{}
}

func TestWatchResume(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	cms := cs.CoreV1().ConfigMaps("default")
	a, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// While nobody watches: a change, a create, a delete.
	a.Data = map[string]string{"k": "v"}
	if _, err := cms.Update(ctx, a, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{})
	cms.Delete(ctx, "b", metav1.DeleteOptions{})

	// Resumed from a's first version, the watch replays them in order.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: a.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, want := range []struct {
		typ  watch.EventType
		name string
	}{{watch.Modified, "a"}, {watch.Added, "b"}, {watch.Deleted, "b"}} {
		ev := nextEvent(t, w)
		if cm, ok := ev.Object.(*corev1.ConfigMap); !ok || ev.Type != want.typ || cm.Name != want.name {
			t.Fatalf("event %s %v, want %s %s", ev.Type, ev.Object, want.typ, want.name)
		}
	}
	// After a compaction the old revision is gone: 410 Gone, as an ERROR event.
	rev, _ := c.Store.CurrentRevision(ctx)
	if err := c.Store.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	old, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: a.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Stop()
	ev := nextEvent(t, old)
	if st, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || st.Code != 410 {
		t.Fatalf("watch from a compacted revision: %s %v", ev.Type, ev.Object)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: a.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact}); !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("list at a compacted revision: %v", err)
	}
}

func TestWatchSelectorsAndBookmarks(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	pods := cs.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: "app=web", AllowWatchBookmarks: true, ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	other := pod("other")
	other.Labels = map[string]string{"app": "db"}
	pods.Create(ctx, other, metav1.CreateOptions{})
	p, err := pods.Create(ctx, pod("web"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Skip the bootstrap's events (namespaces…): none are pods with app=web.
	var ev watch.Event
	for ev = nextEvent(t, w); ev.Type == watch.Bookmark; ev = nextEvent(t, w) {
	}
	if ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "web" {
		t.Fatalf("first event %s %v", ev.Type, ev.Object)
	}
	// Relabelled out of the selector: DELETED for this watch.
	p.Labels["app"] = "old"
	if _, err := pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ev = nextEvent(t, w); ev.Type == watch.Bookmark; ev = nextEvent(t, w) {
	}
	if ev.Type != watch.Deleted {
		t.Fatalf("relabelled: %s", ev.Type)
	}
	// Idle: a bookmark with a revision.
	for ev = nextEvent(t, w); ev.Type != watch.Bookmark; ev = nextEvent(t, w) {
	}
	if ev.Object.(*corev1.Pod).ResourceVersion == "" {
		t.Error("bookmark without a resourceVersion")
	}

	// Field selectors on list.
	sched := c.Clientset(t, pki.ComponentSpec(pki.UserScheduler))
	cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{})
	sched.CoreV1().Pods("default").Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Target: corev1.ObjectReference{Name: "n1"}}, metav1.CreateOptions{})
	for sel, want := range map[string]int{
		"spec.nodeName=n1": 1, "spec.nodeName=": 1, "status.phase=Pending": 2, "metadata.name=web": 1,
		"metadata.namespace=default,metadata.name!=web": 1, "status.phase=Running": 0,
	} {
		l, err := pods.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil || len(l.Items) != want {
			t.Errorf("fieldSelector %s: %v, %d items, want %d", sel, err, len(l.Items), want)
		}
	}
	for sel, want := range map[string]int{"app=db": 1, "app in (db,old)": 2, "app,app!=db": 1, "!app": 0} {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil || len(l.Items) != want {
			t.Errorf("labelSelector %s: %v, %d items, want %d", sel, err, len(l.Items), want)
		}
	}
}

// TestInformer: client-go's shared informers (list, then watch) see every
// create, update and delete, in order.
func TestInformer(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	cms := cs.CoreV1().ConfigMaps("default")
	cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{})

	var mu sync.Mutex
	var seen []string
	record := func(s string) {
		mu.Lock()
		seen = append(seen, s)
		mu.Unlock()
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().ConfigMaps().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { record("add " + o.(*corev1.ConfigMap).Name) },
		UpdateFunc: func(_, o any) {
			record(fmt.Sprintf("update %s %s", o.(*corev1.ConfigMap).Name, o.(*corev1.ConfigMap).Data["n"]))
		},
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			record("delete " + o.(*corev1.ConfigMap).Name)
		},
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	x, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		x.Data = map[string]string{"n": fmt.Sprint(i)}
		if x, err = cms.Update(ctx, x, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cms.Delete(ctx, "x", metav1.DeleteOptions{})
	want := []string{"add before", "add x", "update x 1", "update x 2", "update x 3", "delete x"}
	testutil.Poll(t, 20*time.Second, "the informer's events", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("events %v, want %v", seen, want)
		}
	}
}

func TestSecretsEncryptedAtRest(t *testing.T) {
	c := apiservertest.Start(t)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "hunter2"}}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Etcd.Get(ctx, "/registry/secrets/default/db")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("etcd: %v", err)
	}
	raw := r.Kvs[0].Value
	if !store.IsEncrypted(raw) || containsAny(raw, "hunter2", "aHVudGVyMg", "password") {
		t.Fatalf("secret readable in etcd: %q", raw)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, "db", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != "hunter2" {
		t.Fatalf("read back: %v %v", err, got.Data)
	}
	// Other objects stay plain JSON.
	r, _ = c.Etcd.Get(ctx, "/registry/namespaces/default")
	if store.IsEncrypted(r.Kvs[0].Value) {
		t.Error("a namespace is encrypted")
	}
}

func containsAny(b []byte, subs ...string) bool {
	for _, s := range subs {
		if strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}
