package live

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
	"github.com/klab-dev/klab/tui"
)

// Feed history: how many recent events and CNI calls (per node) the feed
// starts with.
const (
	historyEvents = 100
	historyCNI    = 20
)

// Feed implements tui.Cluster: events (the scheduler's decisions, the
// agents' sandboxes, the controllers' work) from an informer, every CNI
// call from each node's call log as it is written, and the route changes
// each node reports in the ClusterNetwork's status.
func (c *Cluster) Feed(ctx context.Context, out chan<- tui.FeedItem) error {
	cn, err := c.connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	send := func(it tui.FeedItem) {
		select {
		case out <- it:
		case <-ctx.Done():
		}
	}

	// A node's CNI log appears with its first pod: an event tells the
	// followers waiting for it to look again.
	members := cn.state.Members()
	nudges := make([]chan struct{}, len(members))
	for i := range nudges {
		nudges[i] = make(chan struct{}, 1)
	}
	nudge := func() {
		for _, n := range nudges {
			select {
			case n <- struct{}{}:
			default:
			}
		}
	}

	// Events: the informer's first list is history; send its latest, in
	// time order, then every event as it comes.
	factory := informers.NewSharedInformerFactory(cn.net.Kube, 0)
	events := factory.Core().V1().Events().Informer()
	var mu sync.Mutex
	synced := false
	if _, err := events.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			mu.Lock()
			live := synced
			mu.Unlock()
			if e, ok := obj.(*corev1.Event); ok && live {
				send(eventItem(e))
				nudge()
			}
		},
		UpdateFunc: func(old, obj any) {
			// A repeated event: its count and last time changed.
			if e, ok := obj.(*corev1.Event); ok {
				if o, ok := old.(*corev1.Event); !ok || o.Count != e.Count {
					send(eventItem(e))
				}
			}
		},
	}); err != nil {
		return err
	}

	// The ClusterNetwork: each update says which nodes converged and what
	// they changed.
	networks := cache.NewSharedIndexInformer(clusterNetworks(cn.net.API), &api.ClusterNetwork{}, 0, cache.Indexers{})
	if _, err := networks.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) {
			o, _ := old.(*api.ClusterNetwork)
			n, ok := obj.(*api.ClusterNetwork)
			if !ok {
				return
			}
			for _, it := range networkItems(o, n, time.Now()) {
				send(it)
			}
		},
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go networks.Run(ctx.Done())

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.followCNI(ctx, cn, m.Name, send, nudges[i])
		}()
	}

	if cache.WaitForCacheSync(ctx.Done(), events.HasSynced) {
		var history []*corev1.Event
		for _, obj := range events.GetStore().List() {
			if e, ok := obj.(*corev1.Event); ok {
				history = append(history, e)
			}
		}
		items := make([]tui.FeedItem, 0, len(history))
		for _, e := range history {
			items = append(items, eventItem(e))
		}
		slices.SortStableFunc(items, func(a, b tui.FeedItem) int { return a.Time.Compare(b.Time) })
		if len(items) > historyEvents {
			items = items[len(items)-historyEvents:]
		}
		for _, it := range items {
			send(it)
		}
		mu.Lock()
		synced = true
		mu.Unlock()
	}
	<-ctx.Done()
	return nil
}

// followCNI sends the CNI calls of a node's log — the last few, then each
// as the agent makes it — reading the log through the node's transport as
// `klab node exec NODE -- klab cni log -f -o json` does. When the log
// cannot be read (no pod yet, the node down), it tries again after a
// backoff, or at once when nudged.
func (c *Cluster) followCNI(ctx context.Context, cn *conn, node string, send func(tui.FeedItem), nudged <-chan struct{}) {
	backoff := time.Second
	for ctx.Err() == nil {
		t, err := cn.prov.Transport(cn.state, node)
		if err == nil {
			pr, pw := io.Pipe()
			go func() {
				err := t.Run(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "cni", "log", "-o", "json", "-f", "--tail", strconv.Itoa(historyCNI)}, Stdout: pw})
				pw.CloseWithError(err)
			}()
			scanLines(pr, func(line string) {
				var call cni.Call
				if json.Unmarshal([]byte(line), &call) == nil {
					send(cniItem(node, call))
					backoff = time.Second
				}
			})
			pr.Close()
			t.Close()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		case <-nudged:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
