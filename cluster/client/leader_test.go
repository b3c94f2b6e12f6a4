package client

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klab-dev/klab/cluster/client/fakeclient"
	"github.com/klab-dev/klab/internal/testutil"
)

func TestRunLeaderFailover(t *testing.T) {
	cs := fakeclient.New()
	le := DefaultLeaderElection("klab-test")
	le.LeaseDuration, le.RenewDeadline, le.RetryPeriod = 2*time.Second, time.Second, 50*time.Millisecond
	log := slog.New(slog.DiscardHandler)
	RouteKlog(log)

	var leading atomic.Int32
	var ran [2]atomic.Bool
	ctxs := [2]context.Context{}
	cancels := [2]context.CancelFunc{}
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		ctxs[i], cancels[i] = context.WithCancel(context.Background())
		l := le
		l.Identity = []string{"a", "b"}[i]
		wg.Go(func() {
			errs[i] = RunLeader(ctxs[i], cs, l, log, func(ctx context.Context) error {
				if leading.Add(1) != 1 {
					t.Error("two leaders at once")
				}
				ran[i].Store(true)
				<-ctx.Done()
				leading.Add(-1)
				return nil
			})
		})
		if i == 0 {
			testutil.Poll(t, 10*time.Second, "a leads", ran[0].Load)
		}
	}
	cancels[0]() // a steps down and releases the lease: b takes over
	testutil.Poll(t, 10*time.Second, "b leads after a stopped", ran[1].Load)
	cancels[1]()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

func TestRunLeaderDisabled(t *testing.T) {
	want := errors.New("done")
	err := RunLeader(context.Background(), nil, LeaderElection{}, slog.New(slog.DiscardHandler), func(context.Context) error { return want })
	if !errors.Is(err, want) {
		t.Errorf("RunLeader without election = %v, want fn's error", err)
	}
}
