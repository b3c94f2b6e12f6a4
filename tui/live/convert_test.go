package live

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	cnitypes "github.com/containernetworking/cni/pkg/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/netmodes/bgp"
	"github.com/klab-dev/klab/tui"
)

func TestPodStatus(t *testing.T) {
	now := metav1.Now()
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"running", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, "Running"},
		{"no phase yet", corev1.Pod{}, "Pending"},
		{"deleting", corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}, "Terminating"},
		{"creating", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{waiting("ContainerCreating")}}}, "ContainerCreating"},
		{"crash loop", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{waiting("CrashLoopBackOff")}}}, "CrashLoopBackOff"},
		{"evicted", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted"}}, "Evicted"},
		{"init", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, InitContainerStatuses: []corev1.ContainerStatus{waiting("ImagePullBackOff")}}}, "Init:ImagePullBackOff"},
		{"exited", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}}}}}}, "Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := podStatus(&tc.pod); got != tc.want {
				t.Errorf("podStatus = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWithNode(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node1"},
		Spec:       corev1.NodeSpec{PodCIDR: "10.42.1.0/24"},
		Status: corev1.NodeStatus{
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady", Message: "no heartbeat"}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		},
	}
	req := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")}}
	pods := []*corev1.Pod{
		{Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Resources: req}, {Resources: req}}}},
		{Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Resources: req}}}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		{Spec: corev1.PodSpec{NodeName: "node2", Containers: []corev1.Container{{Resources: req}}}},
	}
	var got tui.Node
	withNode(&got, n, pods)
	want := tui.Node{Registered: true, PodCIDR: "10.42.1.0/24", NotReady: "KubeletNotReady no heartbeat", Pods: 1,
		CPU: tui.Resource{Requested: 500, Allocatable: 2000}, Memory: tui.Resource{Requested: 128 << 20, Allocatable: 1 << 30}}
	if got.Registered != want.Registered || got.Ready || got.NotReady != want.NotReady || got.Pods != want.Pods || got.CPU != want.CPU || got.Memory != want.Memory || got.PodCIDR != want.PodCIDR {
		t.Errorf("withNode = %+v, want %+v", got, want)
	}
}

func TestEventItem(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		ev   corev1.Event
		want tui.FeedItem
	}{
		{"scheduler", corev1.Event{
			Source: corev1.EventSource{Component: "default-scheduler"}, Reason: "Scheduled", Message: "Successfully assigned default/a to node1",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "a"}, LastTimestamp: metav1.NewTime(at), Type: "Normal",
		}, tui.FeedItem{Time: at, Source: "scheduler", Reason: "Scheduled", Object: "default/a", Message: "Successfully assigned default/a to node1"}},
		{"agent", corev1.Event{
			Source: corev1.EventSource{Component: "klab-agent", Host: "node2"}, Reason: "SandboxReady", Message: "pause pid 7",
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "b"}, EventTime: metav1.NewMicroTime(at),
		}, tui.FeedItem{Time: at, Source: "agent", Node: "node2", Reason: "SandboxReady", Object: "default/b", Message: "pause pid 7"}},
		{"controller, repeated warning", corev1.Event{
			Source: corev1.EventSource{Component: "replicaset-controller"}, Reason: "FailedCreate", Message: "quota", Count: 3, Type: "Warning",
			InvolvedObject: corev1.ObjectReference{Kind: "ReplicaSet", Namespace: "default", Name: "web"}, ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(at)},
		}, tui.FeedItem{Time: at, Source: "controllers", Reason: "FailedCreate", Object: "replicaset/web", Message: "quota (×3)", Warning: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := eventItem(&tc.ev); got != tc.want {
				t.Errorf("eventItem =\n%+v, want\n%+v", got, tc.want)
			}
		})
	}
}

func TestCNIItem(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_NETNS": "/run/netns/x", "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1"}
	result := json.RawMessage(`{"cniVersion":"1.1.0","interfaces":[{"name":"cali1"},{"name":"eth0","sandbox":"/run/netns/x"}],"ips":[{"address":"10.42.0.2/32","gateway":"169.254.1.1","interface":1}]}`)
	for _, tc := range []struct {
		name        string
		call        cni.Call
		wantMessage string
		warning     bool
	}{
		{"add", cni.Call{Time: at, Command: "ADD", Plugin: "klab", Env: env, Result: result, DurationMS: 12.34}, "eth0 10.42.0.2/32 via 169.254.1.1, host side cali1 (12.3ms)", false},
		{"del", cni.Call{Time: at, Command: "DEL", Plugin: "klab", Env: env, DurationMS: 2}, "eth0 in /run/netns/x (2.0ms)", false},
		{"error", cni.Call{Time: at, Command: "ADD", Plugin: "klab", Env: env, Error: &cnitypes.Error{Code: 11, Msg: "no IP left"}, DurationMS: 1}, "error 11: no IP left (1.0ms)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := cniItem("node1", tc.call)
			if it.Message != tc.wantMessage || it.Warning != tc.warning || it.Object != "default/web-1" || it.Node != "node1" || it.Source != "cni" || it.Reason != tc.call.Command {
				t.Errorf("cniItem = %+v", it)
			}
			if !strings.Contains(it.Detail, "CNI_NETNS=/run/netns/x") {
				t.Errorf("the detail lacks the call's environment:\n%s", it.Detail)
			}
		})
	}
}

func TestNetworkItems(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	prev := &api.ClusterNetwork{Spec: api.ClusterNetworkSpec{Mode: api.ModeBGP}, Status: api.ClusterNetworkStatus{Nodes: map[string]api.NodeNetworkStatus{
		"node1": {Mode: api.ModeBGP, Converged: true, ObservedGeneration: 1},
		"node2": {Mode: api.ModeBGP, Converged: true, ObservedGeneration: 1},
	}}}
	cur := prev.DeepCopy()
	cur.Spec.Mode, cur.Generation = api.ModeVXLAN, 2
	// The spec changed; no node has converged yet.
	got := networkItems(prev, cur, now)
	if len(got) != 1 || got[0].Reason != "mode" || got[0].Message != "mode bgp → vxlan (generation 2): every agent reconciles" {
		t.Fatalf("spec change: %+v", got)
	}
	// node1 converged with its changes; node2 did not move.
	next := cur.DeepCopy()
	next.Status.Nodes["node1"] = api.NodeNetworkStatus{Mode: api.ModeVXLAN, Converged: true, ObservedGeneration: 2,
		Changes: api.NetworkChanges{Removed: []string{"route a"}, Added: []string{"device vxlan.calico", "route b"}}, Took: metav1.Duration{Duration: 3 * time.Millisecond}}
	got = networkItems(cur, next, now)
	if len(got) != 1 || got[0].Node != "node1" || got[0].Message != "vxlan converged: 1 removed, 2 added in 3ms" || got[0].Detail != "- route a\n+ device vxlan.calico\n+ route b" {
		t.Fatalf("node1 converged: %+v", got)
	}
	// The same status again says nothing.
	if got := networkItems(next, next.DeepCopy(), now); len(got) != 0 {
		t.Fatalf("no change: %+v", got)
	}
}

func TestReport(t *testing.T) {
	r := &agent.NetworkReport{Node: "node1", Mode: "vxlan", Implementation: "kernel",
		State: &netmodes.State{
			Devices: []netmodes.Device{{Name: "vxlan.calico", Kind: "vxlan", MTU: 1450, VNI: 4096, Port: 4789, Up: true}},
			Routes: []netmodes.RouteInfo{
				{Route: netmodes.Route{Dst: netip.MustParsePrefix("10.42.2.0/24"), Via: netip.MustParseAddr("10.42.2.0"), Dev: "vxlan.calico", OnLink: true}, Proto: "klab"},
				{Route: netmodes.Route{Dst: netip.MustParsePrefix("192.168.34.0/24"), Dev: "eth0"}, Proto: "kernel", Scope: "link"},
			},
			FDB: []netmodes.FDBEntry{{MAC: "66:00:00:00:00:12", Dst: "192.168.34.12", Dev: "vxlan.calico"}},
		},
		BGP: &bgp.Status{AS: 64512, RouterID: netip.MustParseAddr("192.168.34.11"), Sessions: []bgp.Session{{Peer: "node2", Address: netip.MustParseAddr("192.168.34.12"), AS: 64512, State: "Established"}}},
	}
	got := report(r)
	if len(got.Routes) != 2 || got.Routes[0].Via != "10.42.2.0" || !got.Routes[0].OnLink || got.Routes[1].Via != "" || got.Routes[1].Scope != "link" {
		t.Errorf("routes %+v", got.Routes)
	}
	if len(got.Devices) != 1 || got.Devices[0].VNI != 4096 || len(got.FDB) != 1 || got.FDB[0].Dst != "192.168.34.12" {
		t.Errorf("devices %+v fdb %+v", got.Devices, got.FDB)
	}
	if got.BGP == nil || got.BGP.RouterID != "192.168.34.11" || !slices.ContainsFunc(got.BGP.Sessions, func(s tui.BGPSession) bool { return s.Peer == "node2" && s.State == "Established" }) {
		t.Errorf("bgp %+v", got.BGP)
	}
}

// TestTraceJSON reads the JSON klab trace prints into the TUI's types.
func TestTraceJSON(t *testing.T) {
	const js = `{"src":{"kind":"pod","name":"default/a","ip":"10.42.1.2","node":"node1"},"dst":{"kind":"pod","name":"default/b","ip":"10.42.2.2","node":"node2"},
"mode":"vxlan","proto":"icmp","size":56,"delivered":false,
"hops":[{"index":0,"node":"node1","pod":"default/a","interface":"eth0","netns":"/run/netns/u","kind":"pod","direction":"out","seen":true,"t_us":0,
  "length":98,"layers":[{"type":"Ethernet","src":"7a:00:00:00:00:01","dst":"ee:ee:ee:ee:ee:ee"},{"type":"IPv4","src":"10.42.1.2","dst":"10.42.2.2","ttl":64,"protocol":1,"length":84,"id":7,"df":true}],
  "encap":"none","change":"","explain":"leaves a"}],
"lost_at":{"hop":0,"node":"node1","interface":"eth0"},"reason":"no route to 10.42.2.0/24 on node1","cause":"no-route","missing_route":"10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink","t_us":0,"overhead_bytes":0,"lang":"en"}`
	var r tui.TraceResult
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	if r.Src.Name != "default/a" || r.Src.Node != "node1" || r.Dst.IP != "10.42.2.2" || r.Delivered || r.LostAt == nil || r.LostAt.Node != "node1" || r.Cause != "no-route" {
		t.Errorf("result %+v", r)
	}
	h := r.Hops[0]
	if h.Pod != "default/a" || !h.Seen || h.Where() != "default/a · eth0 out" || len(h.Layers) != 2 {
		t.Fatalf("hop %+v", h)
	}
	ip := h.Layers[1]
	var keys []string
	for _, f := range ip.Fields {
		keys = append(keys, f.Key)
	}
	if ip.Type != "IPv4" || !slices.Equal(keys, []string{"src", "dst", "ttl", "protocol", "length", "id", "df"}) || ip.Get("ttl") != "64" || ip.Get("df") != "true" {
		t.Errorf("IPv4 layer %+v", ip)
	}
}
