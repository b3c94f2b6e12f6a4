package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/klab-dev/klab/cluster/etcd/etcdtest"
	"github.com/klab-dev/klab/cluster/store"
)

func newStore(t *testing.T) *store.Store {
	srv := etcdtest.Start(t)
	return store.NewFromClient(etcdtest.Client(t, srv), store.JSONCodec(scheme.Scheme))
}

func cm(name, v string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string]string{"v": v}}
}

func newCM() runtime.Object { return &corev1.ConfigMap{} }

func TestCRUD(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	key := "/registry/configmaps/default/a"
	obj := cm("a", "1")
	if err := s.Create(ctx, key, obj); err != nil {
		t.Fatal(err)
	}
	rv1, _ := store.Revision(obj)
	if rv1 == 0 {
		t.Fatal("create set no resourceVersion")
	}
	if err := s.Create(ctx, key, cm("a", "x")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	var got corev1.ConfigMap
	if err := s.Get(ctx, key, 0, &got); err != nil || got.Data["v"] != "1" || got.ResourceVersion != obj.ResourceVersion {
		t.Fatalf("get: %v %+v", err, got)
	}
	// A write with the revision read succeeds; a second with the same (now stale) one conflicts.
	if err := s.Update(ctx, key, cm("a", "2"), rv1); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, key, cm("a", "3"), rv1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	// The old version is still readable at its revision.
	if err := s.Get(ctx, key, rv1, &got); err != nil || got.Data["v"] != "1" {
		t.Fatalf("get at %d: %v %v", rv1, err, got.Data)
	}
	out, err := s.GuaranteedUpdate(ctx, key, &corev1.ConfigMap{}, func(cur runtime.Object) (runtime.Object, error) {
		c := cur.(*corev1.ConfigMap)
		c.Data["v"] += "+"
		return c, nil
	})
	if err != nil || out.(*corev1.ConfigMap).Data["v"] != "2+" {
		t.Fatalf("guaranteed update: %v %v", err, out)
	}
	if err := s.Update(ctx, "/registry/configmaps/default/none", cm("none", ""), 5); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a missing key: %v", err)
	}
	var deleted corev1.ConfigMap
	if err := s.Delete(ctx, key, 0, &deleted); err != nil || deleted.Data["v"] != "2+" {
		t.Fatalf("delete: %v %v", err, deleted.Data)
	}
	if err := s.Get(ctx, key, 0, &got); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := s.Delete(ctx, key, 0, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestStoredValueIsJSON(t *testing.T) {
	srv := etcdtest.Start(t)
	c := etcdtest.Client(t, srv)
	s := store.NewFromClient(c, store.JSONCodec(scheme.Scheme))
	ctx := context.Background()
	if err := s.Create(ctx, "/registry/configmaps/default/j", cm("j", "hello")); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, "/registry/configmaps/default/j")
	if err != nil {
		t.Fatal(err)
	}
	v := string(r.Kvs[0].Value)
	for _, want := range []string{`"kind":"ConfigMap"`, `"apiVersion":"v1"`, `"v":"hello"`} {
		if !strings.Contains(v, want) {
			t.Errorf("stored value %s lacks %s", v, want)
		}
	}
	if strings.Contains(v, "resourceVersion") {
		t.Errorf("stored value keeps the resourceVersion: %s", v)
	}
}

func TestEncryption(t *testing.T) {
	srv := etcdtest.Start(t)
	c := etcdtest.Client(t, srv)
	s := store.NewFromClient(c, store.JSONCodec(scheme.Scheme))
	keyFile, err := store.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/key"
	if err := writeFile(path, keyFile); err != nil {
		t.Fatal(err)
	}
	key, err := store.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := store.NewAESGCM(key)
	if err != nil {
		t.Fatal(err)
	}
	s.Encrypt("/registry/secrets/", tr)
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"}, StringData: map[string]string{"password": "hunter2"}}
	if err := s.Create(ctx, "/registry/secrets/default/s", sec); err != nil {
		t.Fatal(err)
	}
	r, _ := c.Get(ctx, "/registry/secrets/default/s")
	raw := r.Kvs[0].Value
	if !store.IsEncrypted(raw) || strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "Secret") {
		t.Fatalf("secret stored in clear: %q", raw)
	}
	var got corev1.Secret
	if err := s.Get(ctx, "/registry/secrets/default/s", 0, &got); err != nil || got.StringData["password"] != "hunter2" {
		t.Fatalf("read back: %v %v", err, got.StringData)
	}
	// The ciphertext is bound to its key: copied elsewhere, it does not decrypt.
	c.Put(ctx, "/registry/secrets/default/copy", string(raw))
	if err := s.Get(ctx, "/registry/secrets/default/copy", 0, &got); err == nil {
		t.Fatal("ciphertext moved to another key decrypted")
	}
}

func TestList(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for i := range 25 {
		if err := s.Create(ctx, fmt.Sprintf("/registry/configmaps/default/c%02d", i), cm(fmt.Sprintf("c%02d", i), fmt.Sprint(i%2))); err != nil {
			t.Fatal(err)
		}
	}
	// Not under the prefix: a neighbour whose name starts alike.
	s.Create(ctx, "/registry/configmapsx/default/z", cm("z", "0"))
	all, err := s.List(ctx, "/registry/configmaps/", store.ListOptions{}, newCM)
	if err != nil || len(all.Items) != 25 || all.Next != "" {
		t.Fatalf("list all: %v %d %q", err, len(all.Items), all.Next)
	}
	var names []string
	o := store.ListOptions{Limit: 4, Filter: func(o runtime.Object) bool { return o.(*corev1.ConfigMap).Data["v"] == "1" }}
	pages := 0
	for {
		page, err := s.List(ctx, "/registry/configmaps/", o, newCM)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page.Items {
			names = append(names, it.(*corev1.ConfigMap).Name)
		}
		if page.Next == "" {
			break
		}
		o.Continue, o.Revision = page.Next, page.Revision
	}
	if len(names) != 12 || pages < 3 || names[0] != "c01" || names[11] != "c23" {
		t.Fatalf("filtered pages: %d pages, %v", pages, names)
	}
}

func TestWatchResumeAndCompaction(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := cm("a", "1")
	s.Create(ctx, "/registry/configmaps/default/a", a)
	start, _ := store.Revision(a)
	b := cm("b", "1")
	s.Create(ctx, "/registry/configmaps/default/b", b)
	rb, _ := store.Revision(b)
	s.Update(ctx, "/registry/configmaps/default/a", cm("a", "2"), start)
	s.Delete(ctx, "/registry/configmaps/default/b", 0, nil)

	// Resuming from the first write replays everything after it, in order.
	ch := s.Watch(ctx, "/registry/configmaps/", store.WatchOptions{After: start, Prev: true}, newCM)
	want := []struct {
		typ  watch.EventType
		name string
	}{{watch.Added, "b"}, {watch.Modified, "a"}, {watch.Deleted, "b"}}
	for _, w := range want {
		ev := <-ch
		if ev.Type != w.typ || ev.Object.(*corev1.ConfigMap).Name != w.name {
			t.Fatalf("event %v %v, want %v %s", ev.Type, ev.Object, w.typ, w.name)
		}
		if ev.Type == watch.Modified && ev.Prev.(*corev1.ConfigMap).Data["v"] != "1" {
			t.Errorf("modified without its previous version")
		}
		if ev.Type == watch.Deleted {
			if rv, _ := store.Revision(ev.Object); rv <= rb {
				t.Errorf("deleted object has revision %d, not the delete's", rv)
			}
		}
	}
	// Live events follow.
	s.Create(ctx, "/registry/configmaps/default/c", cm("c", "1"))
	if ev := <-ch; ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "c" {
		t.Fatalf("live event %v", ev)
	}
	// Idle: bookmarks carry the current revision.
	wb := s.Watch(ctx, "/registry/configmaps/", store.WatchOptions{Progress: true}, newCM)
	if ev := <-wb; ev.Type != watch.Bookmark || ev.Revision == 0 {
		t.Fatalf("progress: %v", ev)
	}
	// After a compaction the old revision is gone: 410.
	cur, _ := s.CurrentRevision(ctx)
	if err := s.Compact(ctx, cur); err != nil {
		t.Fatal(err)
	}
	old := s.Watch(ctx, "/registry/configmaps/", store.WatchOptions{After: start}, newCM)
	if ev := <-old; ev.Type != watch.Error || !errors.Is(ev.Err, store.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: %v", ev)
	}
	if _, err := s.List(ctx, "/registry/configmaps/", store.ListOptions{Revision: start}, newCM); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("list at a compacted revision: %v", err)
	}
	cancel()
	for range ch {
	}
}
