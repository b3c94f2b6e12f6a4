package apiserver_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

// BenchmarkAPILatency creates b.N pods from 8 clients at once, gets each
// from 8 clients, then lists them all 20 times from one, and reports p50
// and p99 of each verb (the upstream SLO: p99 of a single-object call at
// most 1 s, of a list of all objects in the cluster at most 30 s).
func BenchmarkAPILatency(b *testing.B) {
	c := apiservertest.Start(b)
	cs := c.Clientset(b, pki.AdminSpec())
	ctx := context.Background()
	timed := func(n, workers int, op func(i int) error) []time.Duration {
		out := make([]time.Duration, n)
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					start := time.Now()
					if err := op(i); err != nil {
						b.Error(err)
					}
					out[i] = time.Since(start)
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		return out
	}
	report := func(verb string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, verb+"-p50-ms")
		b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, verb+"-p99-ms")
	}
	b.ResetTimer()
	create := timed(b.N, 8, func(i int) error {
		_, err := cs.CoreV1().Pods("default").Create(ctx, pod(fmt.Sprintf("p-%d", i)), metav1.CreateOptions{})
		return err
	})
	get := timed(b.N, 8, func(i int) error {
		_, err := cs.CoreV1().Pods("default").Get(ctx, fmt.Sprintf("p-%d", i), metav1.GetOptions{})
		return err
	})
	list := timed(20, 1, func(int) error {
		l, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil && len(l.Items) != b.N {
			err = fmt.Errorf("listed %d pods, want %d", len(l.Items), b.N)
		}
		return err
	})
	b.StopTimer()
	report("create", create)
	report("get", get)
	report("list", list)
}
