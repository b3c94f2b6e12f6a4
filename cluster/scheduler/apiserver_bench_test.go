package scheduler_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/scheduler"
)

// latencies collects the durations of one kind of API call.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) quantile(q float64) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
}

// BenchmarkScheduleThroughputAPIServer is the same run as
// BenchmarkScheduleThroughput through a real klab API server (embedded
// etcd, TLS, authorization): 100 nodes registered through the API, 3,000
// pending pods created through it, then the scheduler binds them. It
// reports pods bound per second and the p50/p99 latency (ms) of get, list
// and create calls made while the scheduler runs.
//
//	go test -run - -bench ScheduleThroughputAPIServer -benchtime 1x ./cluster/scheduler
func BenchmarkScheduleThroughputAPIServer(b *testing.B) {
	const nodes, pods, owners = 100, 3000, 30
	for b.Loop() {
		b.StopTimer()
		client.RouteKlog(slog.New(slog.DiscardHandler)) // before anything logs
		api := apiservertest.Start(b)
		admin := api.Clientset(b, pki.AdminSpec())
		ctx, cancel := context.WithCancel(context.Background())

		for i := range nodes {
			n, err := admin.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node%03d", i)}}, metav1.CreateOptions{})
			if err != nil {
				b.Fatal(err)
			}
			list := v1.ResourceList{v1.ResourceCPU: resource.MustParse("32"), v1.ResourceMemory: resource.MustParse("64Gi"), v1.ResourcePods: resource.MustParse("110")}
			n.Status = v1.NodeStatus{Capacity: list, Allocatable: list,
				Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}}
			if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		var createLat latencies
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < pods; i = next.Add(1) - 1 {
					yes := true
					p := &v1.Pod{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: "default",
							Labels: map[string]string{"rs": fmt.Sprintf("rs%d", i%owners)},
							OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
								Name: fmt.Sprintf("rs%d", i%owners), UID: types.UID(fmt.Sprintf("uid-rs%d", i%owners)), Controller: &yes}}},
						Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "img", Resources: v1.ResourceRequirements{
							Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m"), v1.ResourceMemory: resource.MustParse("128Mi")}}}}},
					}
					t0 := time.Now()
					if _, err := admin.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
						b.Error(err)
						return
					}
					createLat.add(time.Since(t0))
				}
			})
		}
		wg.Wait()

		// Count bindings as the API reports them.
		var bound atomic.Int64
		f := informers.NewSharedInformerFactory(admin, 0)
		f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(o, n any) {
				if o.(*v1.Pod).Spec.NodeName == "" && n.(*v1.Pod).Spec.NodeName != "" {
					bound.Add(1)
				}
			},
		})
		f.Start(ctx.Done())
		f.WaitForCacheSync(ctx.Done())

		schedCS := api.Clientset(b, pki.ComponentSpec(pki.UserScheduler))
		s, err := scheduler.New(schedCS, scheduler.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var get, list, create latencies
		probeDone := make(chan struct{})
		b.StartTimer()
		t0 := time.Now()
		var run sync.WaitGroup
		run.Go(func() { s.Run(ctx) })
		run.Go(func() { probe(ctx, admin, probeDone, &get, &list, &create) })
		for bound.Load() < pods {
			time.Sleep(5 * time.Millisecond)
		}
		elapsed := time.Since(t0)
		b.StopTimer()
		close(probeDone)
		cancel()
		run.Wait()
		f.Shutdown()
		b.ReportMetric(pods/elapsed.Seconds(), "pods/s")
		b.ReportMetric(get.quantile(0.5), "get-p50-ms")
		b.ReportMetric(get.quantile(0.99), "get-p99-ms")
		b.ReportMetric(list.quantile(0.5), "list-p50-ms")
		b.ReportMetric(list.quantile(0.99), "list-p99-ms")
		b.ReportMetric(create.quantile(0.5), "create-p50-ms")
		b.ReportMetric(create.quantile(0.99), "create-p99-ms")
		b.ReportMetric(createLat.quantile(0.99), "setup-create-p99-ms")
		b.StartTimer()
	}
}

// probe makes get, list (one ReplicaSet's 100 pods) and create calls every
// 10ms while the scheduler runs. Its pods name a scheduler nobody runs.
func probe(ctx context.Context, cs kubernetes.Interface, stop <-chan struct{}, get, list, create *latencies) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t0 := time.Now()
		if _, err := cs.CoreV1().Pods("default").Get(ctx, fmt.Sprintf("p%04d", i%3000), metav1.GetOptions{}); err == nil {
			get.add(time.Since(t0))
		}
		t0 = time.Now()
		if _, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("rs=rs%d", i%30)}); err == nil {
			list.add(time.Since(t0))
		}
		t0 = time.Now()
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("probe-%d", i), Namespace: "kube-system"},
			Spec: v1.PodSpec{SchedulerName: "nobody", Containers: []v1.Container{{Name: "c", Image: "img"}}}}
		if _, err := cs.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{}); err == nil {
			create.add(time.Since(t0))
		}
	}
}
