package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// Event is a change under a watched prefix.
type Event struct {
	// Type is Added, Modified or Deleted; Bookmark when nothing changed
	// but the store is at Revision; Error (with Err) when the watch ends
	// because of a failure.
	Type watch.EventType
	// Object is the new version (the last one for Deleted), its
	// resourceVersion set to Revision.
	Object runtime.Object
	// Prev is the version before the change (Deleted, and Modified when
	// the watch asked for it).
	Prev     runtime.Object
	Revision int64
	Err      error
}

// WatchOptions configure a watch.
type WatchOptions struct {
	// After is the revision to watch from: the watch delivers every
	// change after it. 0 starts from now.
	After int64
	// Progress asks for Bookmark events while nothing changes.
	Progress bool
	// Prev asks for Modified events' previous version too (a watcher
	// with a selector needs it, to tell an object entering or leaving
	// the selection); decoding it costs as much as the new one.
	Prev bool
}

// Watch delivers the changes under prefix on the returned channel until
// ctx ends (then the channel is closed) or a failure ends it with an
// Error event (ErrCompacted when After is older than the store's history).
func (s *Store) Watch(ctx context.Context, prefix string, o WatchOptions, newObj func() runtime.Object) <-chan Event {
	out := make(chan Event, 100)
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if o.After > 0 {
		opts = append(opts, clientv3.WithRev(o.After+1))
	}
	if o.Progress {
		opts = append(opts, clientv3.WithProgressNotify())
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.client.Watch(ctx, prefix, opts...)
	go func() {
		defer close(out)
		defer cancel()
		send := func(ev Event) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for resp := range wch {
			if resp.CompactRevision != 0 {
				send(Event{Type: watch.Error, Err: fmt.Errorf("%w: the oldest revision kept is %d", ErrCompacted, resp.CompactRevision), Revision: resp.CompactRevision})
				return
			}
			if err := resp.Err(); err != nil {
				send(Event{Type: watch.Error, Err: mapErr(err)})
				return
			}
			if resp.IsProgressNotify() {
				if o.Progress && !send(Event{Type: watch.Bookmark, Revision: resp.Header.Revision}) {
					return
				}
				continue
			}
			for _, e := range resp.Events {
				ev, err := s.event(e, newObj, o.Prev)
				if err != nil {
					send(Event{Type: watch.Error, Err: err})
					return
				}
				if !send(ev) {
					return
				}
			}
		}
		if ctx.Err() == nil {
			send(Event{Type: watch.Error, Err: fmt.Errorf("etcd watch on %s ended", prefix)})
		}
	}()
	return out
}

func (s *Store) event(e *clientv3.Event, newObj func() runtime.Object, prev bool) (Event, error) {
	key := string(e.Kv.Key)
	ev := Event{Revision: e.Kv.ModRevision}
	if e.PrevKv != nil && (prev || e.Type == clientv3.EventTypeDelete) {
		ev.Prev = newObj()
		if err := s.fromStorage(key, e.PrevKv.Value, e.PrevKv.ModRevision, ev.Prev); err != nil {
			return ev, err
		}
	}
	switch {
	case e.Type == clientv3.EventTypeDelete:
		ev.Type = watch.Deleted
		if ev.Prev == nil {
			return ev, fmt.Errorf("delete of %s without its previous value", key)
		}
		ev.Object = ev.Prev.DeepCopyObject()
		if err := SetRevision(ev.Object, ev.Revision); err != nil {
			return ev, err
		}
		return ev, nil
	case e.IsCreate():
		ev.Type = watch.Added
	default:
		ev.Type = watch.Modified
	}
	ev.Object = newObj()
	return ev, s.fromStorage(key, e.Kv.Value, e.Kv.ModRevision, ev.Object)
}
