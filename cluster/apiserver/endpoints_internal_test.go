package apiserver

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/klab-dev/klab/cluster/etcd/etcdtest"
	"github.com/klab-dev/klab/cluster/store"
)

// TestKubernetesEndpoints: every server lists itself in the kubernetes
// endpoints, and a server whose lease runs out drops out of them.
func TestKubernetesEndpoints(t *testing.T) {
	e := etcdtest.Start(t)
	st := store.NewFromClient(etcdtest.Client(t, e), StorageCodec())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	servers := map[string]*Server{}
	for _, ip := range []string{"192.168.34.10", "192.168.34.11"} {
		s, err := New(Config{Store: st, AdvertiseAddress: netip.MustParseAddr(ip)})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		servers[ip] = s
	}
	endpoints := func() []string {
		var ep corev1.Endpoints
		if err := st.Get(ctx, "/registry/endpoints/default/kubernetes", 0, &ep); err != nil {
			t.Fatal(err)
		}
		var ips []string
		for _, a := range ep.Subsets[0].Addresses {
			ips = append(ips, a.IP)
		}
		return ips
	}
	if got := endpoints(); !slices.Equal(got, []string{"192.168.34.10", "192.168.34.11"}) {
		t.Fatalf("endpoints %v", got)
	}
	// Later, only .10 renews: .11 drops out.
	later := time.Now().Add(apiserverLeaseDuration + time.Second)
	if err := servers["192.168.34.10"].advertise(ctx, later); err != nil {
		t.Fatal(err)
	}
	if got := endpoints(); !slices.Equal(got, []string{"192.168.34.10"}) {
		t.Fatalf("endpoints after .11 stopped %v", got)
	}
}
