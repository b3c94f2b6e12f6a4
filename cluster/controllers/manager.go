// Package controllers is klab's controller manager: the control loops that
// turn what users ask for into what the cluster runs, each watching the API
// through informers and acting through any Kubernetes-compatible API
// server.
//
//   - replicaset: pods to match a ReplicaSet's replicas (adopt, release,
//     status counts)
//   - deployment: rollouts through ReplicaSets (RollingUpdate within
//     maxSurge/maxUnavailable, Recreate, revisions, history limit, status
//     conditions)
//   - nodelifecycle: NotReady/Unknown after the grace period without a
//     heartbeat, taints, eviction after the toleration period
//   - endpoints: Endpoints of every Service with a selector
//   - garbagecollector: cascading deletion by ownerReferences
//   - podcidr: a pod CIDR block per node
package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Names of the controllers, in the order they start.
const (
	ReplicaSet       = "replicaset"
	Deployment       = "deployment"
	NodeLifecycle    = "nodelifecycle"
	Endpoints        = "endpoints"
	GarbageCollector = "garbagecollector"
	PodCIDR          = "podcidr"
)

// All lists every controller.
var All = []string{ReplicaSet, Deployment, NodeLifecycle, Endpoints, GarbageCollector, PodCIDR}

// Options configures the controller manager. Zero values take the lab
// defaults.
type Options struct {
	// Controllers to run (default: All).
	Controllers []string
	// Workers per queue-driven controller (default 4).
	Workers int
	// NodeMonitorPeriod is how often node heartbeats are checked (default
	// 2s), NodeMonitorGracePeriod how long a node may go without one
	// before it is Unknown and tainted unreachable (default 20s; upstream
	// 40s), PodEvictionTimeout how long a pod without its own toleration
	// stays on such a node (default 30s; upstream 300s).
	NodeMonitorPeriod, NodeMonitorGracePeriod, PodEvictionTimeout time.Duration
	// ClusterCIDR is the pod network (default 10.42.0.0/16) and
	// NodeCIDRMaskSize the prefix length of each node's block (default 24).
	ClusterCIDR      string
	NodeCIDRMaskSize int
	// Resync re-delivers every cached object this often (default 10m), a
	// safety net for a missed event.
	Resync time.Duration
	// GCResources are what the garbage collector watches (default:
	// discovered from the server with GCResources).
	GCResources []GCResource
	// Log receives what the controllers do (default: discard).
	Log *slog.Logger
}

func (o *Options) defaults() {
	if len(o.Controllers) == 0 {
		o.Controllers = All
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.NodeMonitorPeriod <= 0 {
		o.NodeMonitorPeriod = 2 * time.Second
	}
	if o.NodeMonitorGracePeriod <= 0 {
		o.NodeMonitorGracePeriod = 20 * time.Second
	}
	if o.PodEvictionTimeout <= 0 {
		o.PodEvictionTimeout = 30 * time.Second
	}
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = "10.42.0.0/16"
	}
	if o.NodeCIDRMaskSize == 0 {
		o.NodeCIDRMaskSize = 24
	}
	if o.Resync <= 0 {
		o.Resync = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate checks the options a user can set.
func (o Options) Validate() error {
	for _, c := range o.Controllers {
		if !slices.Contains(All, c) {
			return fmt.Errorf("unknown controller %q: choose from %s", c, strings.Join(All, ", "))
		}
	}
	if o.ClusterCIDR != "" || o.NodeCIDRMaskSize != 0 {
		o.defaults()
		if _, err := newCIDRSet(o.ClusterCIDR, o.NodeCIDRMaskSize); err != nil {
			return err
		}
	}
	return nil
}

type manager struct {
	cs          kubernetes.Interface
	dyn         dynamic.Interface
	o           Options
	log         *slog.Logger
	broadcaster record.EventBroadcaster
}

func (m *manager) recorder(component string) record.EventRecorder {
	return m.broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: component})
}

// Run runs the chosen controllers until ctx ends. cs is the typed client;
// dyn the dynamic one, which the garbage collector uses to watch every
// kind of object.
func Run(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	o.defaults()
	m := &manager{cs: cs, dyn: dyn, o: o, log: o.Log, broadcaster: record.NewBroadcaster()}
	m.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer m.broadcaster.Shutdown()

	f := informers.NewSharedInformerFactory(cs, o.Resync)
	leases := informers.NewSharedInformerFactoryWithOptions(cs, o.Resync, informers.WithNamespace(v1.NamespaceNodeLease))
	defer f.Shutdown()
	defer leases.Shutdown()

	var loops []*loop
	var lifecycle *nodeLifecycle
	var gc *garbageCollector
	for _, name := range o.Controllers {
		var err error
		switch name {
		case ReplicaSet:
			var c *replicaSets
			if c, err = newReplicaSets(m, f); err == nil {
				loops = append(loops, c.loop)
			}
		case Deployment:
			var c *deployments
			if c, err = newDeployments(m, f); err == nil {
				loops = append(loops, c.loop)
			}
		case NodeLifecycle:
			lifecycle, err = newNodeLifecycle(m, f, leases)
		case Endpoints:
			var c *endpoints
			if c, err = newEndpoints(m, f); err == nil {
				loops = append(loops, c.loop)
			}
		case GarbageCollector:
			resources := o.GCResources
			if resources == nil {
				if resources, err = GCResources(cs.Discovery()); err != nil {
					return err
				}
			}
			if gc, err = newGarbageCollector(m, resources); err == nil {
				loops = append(loops, gc.loop)
			}
		case PodCIDR:
			var c *podCIDRs
			if c, err = newPodCIDRs(m, f); err == nil {
				// One worker: blocks are handed out one at a time.
				loops = append(loops, c.loop)
			}
		}
		if err != nil {
			return fmt.Errorf("start %s controller: %w", name, err)
		}
	}

	f.Start(ctx.Done())
	leases.Start(ctx.Done())
	if gc != nil {
		gc.start(ctx)
	}
	if !synced(ctx, f) || !synced(ctx, leases) || gc != nil && !gc.synced(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("controller manager: informers did not sync")
	}
	m.log.Info("controller manager started", "controllers", o.Controllers)

	var wg sync.WaitGroup
	for _, l := range loops {
		workers := o.Workers
		if l.name == "podcidr" {
			workers = 1
		}
		wg.Go(func() { l.run(ctx, workers) })
	}
	if lifecycle != nil {
		wg.Go(func() { lifecycle.run(ctx) })
	}
	wg.Wait()
	return nil
}

func synced(ctx context.Context, f informers.SharedInformerFactory) bool {
	for _, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return false
		}
	}
	return true
}
