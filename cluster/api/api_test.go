package api_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

func TestDeepCopy(t *testing.T) {
	cn := &api.ClusterNetwork{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"a": "b"}},
		Spec:       api.ClusterNetworkSpec{Mode: api.ModeVXLAN, PodCIDR: "10.42.0.0/16"},
		Status:     api.ClusterNetworkStatus{Nodes: map[string]api.NodeNetworkStatus{"node1": {Mode: api.ModeBGP}}},
	}
	cp := cn.DeepCopyObject().(*api.ClusterNetwork)
	cp.Labels["a"] = "c"
	cp.Status.Nodes["node1"] = api.NodeNetworkStatus{Mode: api.ModeIPIP}
	if cn.Labels["a"] != "b" || cn.Status.Nodes["node1"].Mode != api.ModeBGP {
		t.Error("the copy shares maps with the original")
	}
	p := &api.BGPPeer{Spec: api.BGPPeerSpec{PeerIP: "192.168.34.1", ASN: 64513, NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "1"}}}}
	pc := p.DeepCopyObject().(*api.BGPPeer)
	pc.Spec.NodeSelector.MatchLabels["rack"] = "2"
	if p.Spec.NodeSelector.MatchLabels["rack"] != "1" {
		t.Error("the copy shares the node selector")
	}
	l := &api.BGPPeerList{Items: []api.BGPPeer{*p}}
	if lc := l.DeepCopyObject().(*api.BGPPeerList); lc.Items[0].Spec.NodeSelector == p.Spec.NodeSelector {
		t.Error("the list copy shares items")
	}
	gvks, _, err := api.Scheme.ObjectKinds(&api.ClusterNetwork{})
	if err != nil || gvks[0].GroupVersion() != api.SchemeGroupVersion || gvks[0].Kind != "ClusterNetwork" {
		t.Errorf("scheme: %v %v", gvks, err)
	}
}

// TestClient drives the typed client against a real API server: what the
// network agent and the CLI do.
func TestClient(t *testing.T) {
	c := apiservertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := api.NewForConfig(c.Admin(t))
	if err != nil {
		t.Fatal(err)
	}
	cn, err := admin.ClusterNetworks().Get(ctx, "default", metav1.GetOptions{})
	if err != nil || cn.Spec.Mode != api.ModeBGP || cn.Spec.PodCIDR != "10.42.0.0/16" || cn.Spec.MTU != api.DefaultPodMTU {
		t.Fatalf("the default ClusterNetwork: %v %+v", err, cn)
	}
	w, err := admin.ClusterNetworks().Watch(ctx, metav1.ListOptions{ResourceVersion: cn.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	cn.Spec.Mode, cn.Spec.MTU = api.ModeVXLAN, 0
	up, err := admin.ClusterNetworks().Update(ctx, cn, metav1.UpdateOptions{})
	if err != nil || up.Spec.MTU != api.DefaultPodMTU || up.Generation != 2 {
		t.Fatalf("switch to vxlan: %v %+v", err, up)
	}
	ev := <-w.ResultChan()
	if got, ok := ev.Object.(*api.ClusterNetwork); ev.Type != watch.Modified || !ok || got.Spec.Mode != api.ModeVXLAN {
		t.Fatalf("watch: %s %v", ev.Type, ev.Object)
	}
	node, err := api.NewForConfig(c.Config(t, pki.NodeSpec("node1", netip.MustParseAddr("192.168.34.11"))))
	if err != nil {
		t.Fatal(err)
	}
	patch := `{"status":{"nodes":{"node1":{"mode":"vxlan","converged":true,"observedGeneration":2,"implementation":"vxlan kernel"}}}}`
	st, err := node.ClusterNetworks().Patch(ctx, "default", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	if err != nil || !st.Status.Nodes["node1"].Converged || st.Generation != 2 {
		t.Fatalf("node status: %v %+v", err, st.Status)
	}
	bad := up.DeepCopy()
	bad.Spec.Mode = "gre"
	if _, err := admin.ClusterNetworks().Update(ctx, bad, metav1.UpdateOptions{}); err == nil {
		t.Error("mode gre accepted")
	}
	peer := &api.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: api.BGPPeerSpec{PeerIP: "192.168.34.1", ASN: 64513}}
	if _, err := admin.BGPPeers().Create(ctx, peer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	peers, err := admin.BGPPeers().List(ctx, metav1.ListOptions{})
	if err != nil || len(peers.Items) != 1 || peers.Items[0].Spec.ASN != 64513 {
		t.Fatalf("peers: %v %v", err, peers)
	}
	if err := admin.BGPPeers().Delete(ctx, "router", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}
