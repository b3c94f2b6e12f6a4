package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection configures how replicas of a component agree on one
// leader through a coordination.k8s.io/v1 Lease.
type LeaderElection struct {
	// Enabled turns election on; when off the component runs at once.
	Enabled bool
	// Namespace and Name locate the Lease (kube-system/klab-scheduler …).
	Namespace, Name string
	// Identity names this replica in the Lease; default hostname_uuid.
	Identity string
	// LeaseDuration is how long a leader's claim is valid without renewal,
	// RenewDeadline how long the leader keeps trying to renew before it
	// gives up, RetryPeriod how often candidates try.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// DefaultLeaderElection returns lab timings for a lease: a lease and
// renew deadline shorter than upstream's 15s/10s, so that a failover is
// visible within seconds, and upstream's 2s retry period, since the leader
// reads and writes its Lease every period (the largest share of etcd's
// writes on an idle cluster).
func DefaultLeaderElection(name string) LeaderElection {
	return LeaderElection{
		Enabled:       true,
		Namespace:     "kube-system",
		Name:          name,
		LeaseDuration: 8 * time.Second,
		RenewDeadline: 6 * time.Second,
		RetryPeriod:   2 * time.Second,
	}
}

// ErrLostLeadership is returned by RunLeader when this replica stopped
// being the leader while ctx was still live: the process should exit so
// that its supervisor restarts it as a candidate with fresh caches.
var ErrLostLeadership = errors.New("lost leadership")

// RunLeader runs fn once this replica holds the lease (at once when
// election is disabled) and returns when ctx ends or leadership is lost.
// The lease is released on a clean shutdown so another replica takes over
// without waiting for it to expire.
func RunLeader(ctx context.Context, cs kubernetes.Interface, le LeaderElection, log *slog.Logger, fn func(context.Context) error) error {
	if !le.Enabled {
		return fn(ctx)
	}
	if le.Identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("leader election identity: %w", err)
		}
		le.Identity = host + "_" + uuid.NewString()
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, le.Namespace, le.Name,
		cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: le.Identity})
	if err != nil {
		return fmt.Errorf("leader election lock %s/%s: %w", le.Namespace, le.Name, err)
	}
	// The elector's context outlives ctx until fn has returned: the lease
	// is released only then, so a successor never runs beside us.
	electorCtx, stopElector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElector()
	fnCtx, stopFn := context.WithCancel(ctx)
	defer stopFn()
	// The elector calls OnStartedLeading on a goroutine of its own; mu
	// orders it with shutdown so that fn either never starts or is waited
	// for.
	var (
		mu               sync.Mutex
		started, stopped bool
		runErr           error
	)
	done := make(chan struct{})
	waitFn := func() bool {
		mu.Lock()
		stopped = true
		led := started
		mu.Unlock()
		if led {
			<-done
		}
		return led
	}
	go func() {
		select {
		case <-ctx.Done():
			waitFn() // fn sees fnCtx end, returns
			stopElector()
		case <-electorCtx.Done():
		}
	}()
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				mu.Lock()
				if stopped {
					mu.Unlock()
					return
				}
				started = true
				mu.Unlock()
				log.Info("became leader", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
				go func() {
					select {
					case <-leading.Done(): // leadership lost
						stopFn()
					case <-done:
					}
				}()
				runErr = fn(fnCtx)
				close(done)
				stopElector()
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if id != le.Identity {
					log.Info("another replica leads", "lease", le.Namespace+"/"+le.Name, "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election %s/%s: %w", le.Namespace, le.Name, err)
	}
	log.Info("waiting for leadership", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
	elector.Run(electorCtx)
	stopFn()
	led := waitFn()
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return nil
	case led:
		return fmt.Errorf("%s/%s: %w", le.Namespace, le.Name, ErrLostLeadership)
	}
	return nil
}
