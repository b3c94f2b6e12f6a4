package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/klab-dev/klab/cluster/client/fakeclient"
)

// BenchmarkScheduleThroughput measures pods bound per second: 100 nodes,
// 3,000 pending pods of 30 ReplicaSets, through the fake clientset (so it
// measures the scheduler, not an API server). Run it with
//
//	go test -run - -bench ScheduleThroughput -benchtime 1x ./cluster/scheduler
func BenchmarkScheduleThroughput(b *testing.B) {
	const nodes, pods = 100, 3000
	for b.Loop() {
		b.StopTimer()
		objs := make([]runtime.Object, 0, nodes+pods)
		for i := range nodes {
			objs = append(objs, makeNode(fmt.Sprintf("node%03d", i), "32", "64Gi"))
		}
		for i := range pods {
			objs = append(objs, makePod(fmt.Sprintf("p%04d", i), "100m", "128Mi", ownedBy(fmt.Sprintf("rs%d", i%30))))
		}
		cs := fakeclient.New(objs...)
		var bound atomic.Int64
		cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() == "binding" {
				bound.Add(1)
			}
			return false, nil, nil
		})
		s, err := New(cs, Options{Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		t0 := time.Now()
		go func() { done <- s.Run(ctx) }()
		for bound.Load() < pods {
			time.Sleep(time.Millisecond)
		}
		elapsed := time.Since(t0)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(pods/elapsed.Seconds(), "pods/s")
		list, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		perNode := map[string]int{}
		for _, p := range list.Items {
			perNode[p.Spec.NodeName]++
		}
		busiest := 0
		for _, n := range perNode {
			busiest = max(busiest, n)
		}
		b.ReportMetric(float64(busiest), "max-pods/node")
		b.StartTimer()
	}
}
