package apiserver_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

// TestOtherClients: what the garbage collector (metadata client, in
// protobuf), kubectl's dynamic client and discovery use.
func TestOtherClients(t *testing.T) {
	c := apiservertest.Start(t)
	ctx := ctxT(t)
	cfg := c.Admin(t)
	cs := c.Clientset(t, pki.AdminSpec())
	cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "m", Labels: map[string]string{"x": "y"}}}, metav1.CreateOptions{})
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ml, err := mc.Resource(gvr).Namespace("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(ml.Items) != 1 || ml.Items[0].Labels["x"] != "y" {
		t.Fatalf("metadata list: %v %v", err, ml)
	}
	mw, err := mc.Resource(gvr).Namespace("default").Watch(ctx, metav1.ListOptions{ResourceVersion: ml.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer mw.Stop()
	cs.CoreV1().ConfigMaps("default").Delete(ctx, "m", metav1.DeleteOptions{})
	if ev := nextEvent(t, mw); ev.Type != watch.Deleted || ev.Object.(*metav1.PartialObjectMetadata).Name != "m" {
		t.Fatalf("metadata watch: %s %v", ev.Type, ev.Object)
	}

	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cn, err := dc.Resource(schema.GroupVersionResource{Group: "network.klab.dev", Version: "v1", Resource: "clusternetworks"}).Get(ctx, "default", metav1.GetOptions{})
	if err != nil || cn.GetKind() != "ClusterNetwork" {
		t.Fatalf("dynamic get: %v %v", err, cn)
	}

	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	groups, resources, err := disc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, g := range groups {
		names[g.Name] = true
	}
	for _, g := range []string{"", "apps", "networking.k8s.io", "coordination.k8s.io", "network.klab.dev"} {
		if !names[g] {
			t.Errorf("discovery lacks group %q", g)
		}
	}
	found := false
	for _, rl := range resources {
		for _, r := range rl.APIResources {
			if rl.GroupVersion == "apps/v1" && r.Name == "deployments/scale" && r.Kind == "Scale" && r.Group == "autoscaling" {
				found = true
			}
		}
	}
	if !found {
		t.Error("discovery lacks deployments/scale (autoscaling/v1 Scale)")
	}

	// The watch-list protocol: initial events, then a bookmark that ends them.
	w, err := cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{SendInitialEvents: ptr.To(true), AllowWatchBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	added := 0
	for {
		ev := nextEvent(t, w)
		if ev.Type == watch.Added {
			added++
			continue
		}
		if ev.Type != watch.Bookmark || ev.Object.(*corev1.Namespace).Annotations[metav1.InitialEventsAnnotationKey] != "true" {
			t.Fatalf("after the initial events: %s %v", ev.Type, ev.Object)
		}
		break
	}
	if added != 4 {
		t.Errorf("initial events: %d namespaces", added)
	}
}
