package live

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
	"github.com/klab-dev/klab/tui"
)

// coalesce is how long a change waits for others before a snapshot goes
// out: a deployment of 200 pods is a few snapshots, not a thousand.
const coalesce = 100 * time.Millisecond

// syncTimeout is how long the first snapshot waits for the API's lists.
const syncTimeout = 10 * time.Second

// watcher holds what Watch knows, from the informers and the supervisors.
type watcher struct {
	cn    *conn
	dirty chan struct{}

	mu         sync.Mutex
	machines   map[string]string // provider state of every machine
	components map[string][]tui.Component
	compErr    map[string]string
	apiErr     string
}

func (w *watcher) mark() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// clusterNetworks is a ListWatch of the ClusterNetwork.
func clusterNetworks(ac *api.Client) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return ac.ClusterNetworks().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return ac.ClusterNetworks().Watch(ctx, o)
		},
	}
}

// Watch implements tui.Cluster: informers on nodes, pods and the
// ClusterNetwork, and each machine's supervisor followed through its log
// (a line there is a component that started or exited); every change
// sends a new snapshot, coalesced.
func (c *Cluster) Watch(ctx context.Context, out chan<- *tui.Snapshot) error {
	cn, err := c.connect()
	if err != nil {
		return err
	}
	w := &watcher{cn: cn, dirty: make(chan struct{}, 1), machines: map[string]string{}, components: map[string][]tui.Component{}, compErr: map[string]string{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	factory := informers.NewSharedInformerFactory(cn.net.Kube, 0)
	nodes := factory.Core().V1().Nodes()
	pods := factory.Core().V1().Pods()
	cnInf := cache.NewSharedIndexInformer(clusterNetworks(cn.net.API), &api.ClusterNetwork{}, 0, cache.Indexers{})
	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.apiOK(); w.mark() },
		UpdateFunc: func(any, any) { w.apiOK(); w.mark() },
		DeleteFunc: func(any) { w.mark() },
	}
	for _, inf := range []cache.SharedIndexInformer{nodes.Informer(), pods.Informer(), cnInf} {
		if _, err := inf.AddEventHandler(onChange); err != nil {
			return err
		}
		inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
			w.apiFailed(err)
		})
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	go cnInf.Run(ctx.Done())

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	w.refreshMachines(ctx)
	for _, m := range cn.state.Nodes {
		if m.Role == provision.RoleRouter {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.followSupervisor(ctx, m.Name)
		}()
	}

	syncCtx, syncCancel := context.WithTimeout(ctx, syncTimeout)
	synced := cache.WaitForCacheSync(syncCtx.Done(), nodes.Informer().HasSynced, pods.Informer().HasSynced, cnInf.HasSynced)
	syncCancel()
	if ctx.Err() != nil {
		return nil
	}
	if !synced {
		w.apiFailed(fmt.Errorf("the API server at %s does not answer", cn.cfg.Host))
	}
	build := func() *tui.Snapshot {
		return w.snapshot(nodes.Lister().List, pods.Lister().List, cnInf.GetStore())
	}
	send := func() bool {
		select {
		case out <- build():
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send() {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.dirty:
		}
		// Let a burst of changes land, then send them as one.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(coalesce):
		}
		select {
		case <-w.dirty:
		default:
		}
		if !send() {
			return nil
		}
	}
}

func (w *watcher) apiOK() {
	w.mu.Lock()
	w.apiErr = ""
	w.mu.Unlock()
}

func (w *watcher) apiFailed(err error) {
	w.mu.Lock()
	w.apiErr = "API: " + err.Error()
	w.mu.Unlock()
	w.mark()
}

// refreshMachines asks the provider for the machines' states.
func (w *watcher) refreshMachines(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	states, err := w.cn.prov.Nodes(ctx, w.cn.state)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range states {
		w.machines[s.Name] = s.State
	}
	if err != nil {
		for _, n := range w.cn.state.Nodes {
			w.compErr[n.Name] = err.Error()
		}
	}
}

// followSupervisor keeps a machine's components up to date: it reads the
// supervisor's status, then again after every line of its log, until ctx
// ends. When the machine cannot be reached it says so, and tries again
// with a backoff.
func (w *watcher) followSupervisor(ctx context.Context, node string) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := w.followOnce(ctx, node)
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		if err != nil {
			w.compErr[node] = err.Error()
		}
		w.mu.Unlock()
		w.refreshMachines(ctx)
		w.mark()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (w *watcher) followOnce(ctx context.Context, node string) error {
	t, err := w.cn.prov.Transport(w.cn.state, node)
	if err != nil {
		return err
	}
	defer t.Close()
	if err := w.readStatus(ctx, t, node); err != nil {
		return err
	}
	// The supervisor logs every start and exit of a component.
	pr, pw := io.Pipe()
	defer pr.Close()
	lines := make(chan struct{}, 1)
	go func() {
		scanLines(pr, func(string) {
			select {
			case lines <- struct{}{}:
			default:
			}
		})
		close(lines)
	}()
	done := make(chan error, 1)
	go func() {
		err := t.Run(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "supervise", "logs", "supervise", "-f", "--tail", "0"}, Stdout: pw})
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	for {
		select {
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("the supervisor's log ended")
			}
			return err
		case _, ok := <-lines:
			if !ok {
				lines = nil // the log ended; done says how
				continue
			}
			if err := w.readStatus(ctx, t, node); err != nil {
				return err
			}
		}
	}
}

// readStatus asks a machine's supervisor for its components.
func (w *watcher) readStatus(ctx context.Context, t transport.Transport, node string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := transport.Output(ctx, t, provision.NodeBinary, "supervise", "status", "-o", "json")
	if err != nil {
		return err
	}
	var st supervisor.Status
	if err := json.Unmarshal(out, &st); err != nil {
		return fmt.Errorf("the supervisor's status: %w", err)
	}
	w.mu.Lock()
	w.components[node] = components(&st)
	delete(w.compErr, node)
	w.machines[node] = "running"
	w.mu.Unlock()
	w.mark()
	return nil
}

// snapshot builds a snapshot from the listers and what the supervisors
// said.
func (w *watcher) snapshot(listNodes func(labels.Selector) ([]*corev1.Node, error), listPods func(labels.Selector) ([]*corev1.Pod, error), networks cache.Store) *tui.Snapshot {
	st := w.cn.state
	s := &tui.Snapshot{Cluster: clusterInfo(st)}
	apiNodes, _ := listNodes(labels.Everything())
	apiPods, _ := listPods(labels.Everything())
	byName := map[string]*corev1.Node{}
	for _, n := range apiNodes {
		byName[n.Name] = n
	}
	w.mu.Lock()
	for _, m := range st.Nodes {
		n := machine(m)
		n.Machine = w.machines[m.Name]
		n.Components = w.components[m.Name]
		n.ComponentsErr = w.compErr[m.Name]
		withNode(&n, byName[m.Name], apiPods)
		s.Nodes = append(s.Nodes, n)
	}
	s.Err = w.apiErr
	w.mu.Unlock()
	s.Pods = make([]tui.Pod, 0, len(apiPods))
	for _, p := range apiPods {
		s.Pods = append(s.Pods, pod(p))
	}
	slices.SortFunc(s.Pods, func(a, b tui.Pod) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if obj, ok, _ := networks.GetByKey(api.ClusterNetworkName); ok {
		s.Network = network(obj.(*api.ClusterNetwork))
	}
	return s
}
