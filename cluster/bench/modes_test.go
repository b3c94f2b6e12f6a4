package bench_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/bench"
	"github.com/klab-dev/klab/internal/e2etest"
)

// TestIntegrationModes runs klab bench modes' measurement on a netns
// cluster in one mode other than the cluster's, with the A/A control: it
// reports figures whose median lies within their range, puts the mode
// back, and deletes its pods.
func TestIntegrationModes(t *testing.T) {
	k := e2etest.Up(t, "tb-bench")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	from, _ := k.C.Node("node1")
	to, _ := k.C.Node("node2")
	ft, err := k.P.Transport(k.C, from.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	tt, err := k.P.Transport(k.C, to.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer tt.Close()
	r, err := bench.Modes(ctx, bench.ModesOptions{
		Net: k.NC, From: from, To: to, FromT: ft, ToT: tt, Modes: []api.NetworkMode{api.ModeVXLAN},
		Rounds: 3, Duration: 300 * time.Millisecond, ModeTimeout: 30 * time.Second, Control: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 1 || r.Results[0].Mode != api.ModeVXLAN || r.Results[0].Implementation == "" {
		t.Fatalf("results %+v, want one for vxlan with its implementation", r.Results)
	}
	if r.Control == nil {
		t.Fatal("no control measurement")
	}
	for name, c := range map[string]struct{ ratio, lo, hi, path, under float64 }{
		"vxlan":   {r.Results[0].Result.Ratio, r.Results[0].Result.RatioMin, r.Results[0].Result.RatioMax, r.Results[0].Result.Path.BitsPerSecond, r.Results[0].Result.Underlay.BitsPerSecond},
		"control": {r.Control.Ratio, r.Control.RatioMin, r.Control.RatioMax, r.Control.Path.BitsPerSecond, r.Control.Underlay.BitsPerSecond},
	} {
		if c.path <= 0 || c.under <= 0 || c.lo <= 0 || c.lo > c.ratio || c.ratio > c.hi {
			t.Errorf("%s: ratio %.2f (%.2f–%.2f), path %.0f bit/s, underlay %.0f bit/s", name, c.ratio, c.lo, c.hi, c.path, c.under)
		}
		t.Logf("%s: ratio %.2f (%.2f–%.2f)", name, c.ratio, c.lo, c.hi)
	}
	cn, err := k.NC.Network(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cn.Spec.Mode != api.ModeBGP {
		t.Errorf("mode after the bench: %s, want bgp back", cn.Spec.Mode)
	}
	pods, err := k.CS.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "klab-bench"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			t.Errorf("bench pod %s left behind", p.Name)
		}
	}
}
