package agent

import (
	"context"
	"log/slog"
	"time"

	"k8s.io/client-go/tools/cache"
)

// loop runs a sync whenever it is poked — a burst of pokes is one run —
// and again after retry when the sync fails: how the agent's proxy,
// policy and network halves follow what they watch.
type loop struct {
	kick  chan struct{}
	retry time.Duration
	log   *slog.Logger // logs failed syncs; nil when the sync logs itself
}

func newLoop(retry time.Duration, log *slog.Logger) *loop {
	return &loop{kick: make(chan struct{}, 1), retry: retry, log: log}
}

func (l *loop) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// handler pokes the loop on every change an informer sees.
func (l *loop) handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { l.poke() },
		UpdateFunc: func(any, any) { l.poke() },
		DeleteFunc: func(any) { l.poke() },
	}
}

// run calls sync on every poke until ctx ends.
func (l *loop) run(ctx context.Context, sync func() error) {
	retry := time.NewTimer(l.retry)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-retry.C:
		}
		if err := sync(); err != nil {
			if l.log != nil {
				l.log.Warn("sync", "err", err)
			}
			retry.Reset(l.retry)
		}
	}
}
