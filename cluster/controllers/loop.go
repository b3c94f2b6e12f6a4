package controllers

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// maxRetryDelay caps the backoff of a key that keeps failing (upstream:
// 1000s). Conflicts with a busy API server are the usual failure; a lab
// should not stall for minutes after a burst of them.
const maxRetryDelay = 30 * time.Second

// loop is a controller's work queue and workers: keys go in from informer
// handlers, each is synced by one worker at a time, failures are retried
// with a per-key exponential backoff (5ms to 30s) under an overall rate
// limit.
type loop struct {
	name  string
	queue workqueue.TypedRateLimitingInterface[string]
	sync  func(ctx context.Context, key string) error
	log   *slog.Logger
}

func newLoop(name string, log *slog.Logger, sync func(ctx context.Context, key string) error) *loop {
	return &loop{
		name: name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](5*time.Millisecond, maxRetryDelay),
				&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(50), 300)},
			),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
		sync: sync,
		log:  log.With("controller", name),
	}
}

// enqueue adds an object's namespace/name key.
func (l *loop) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	l.queue.Add(key)
}

// enqueueAfter adds a key after d, for work that is due later (a pod
// becoming available, an eviction deadline).
func (l *loop) enqueueAfter(key string, d time.Duration) { l.queue.AddAfter(key, d) }

// run runs workers until ctx ends, then waits for them.
func (l *loop) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	l.queue.ShutDown()
	wg.Wait()
}

func (l *loop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if err := l.sync(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		l.log.Warn("sync failed, will retry", "key", key, "err", err, "retries", l.queue.NumRequeues(key))
		l.queue.AddRateLimited(key)
		return true
	}
	l.queue.Forget(key)
	return true
}

// deleted unwraps the tombstone an informer hands to a delete handler
// when it missed the deletion itself.
func deleted(obj any) any {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return obj
}
