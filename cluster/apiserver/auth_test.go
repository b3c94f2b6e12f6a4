package apiserver_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

// status decodes a Status answer.
func status(t *testing.T, resp *http.Response) metav1.Status {
	t.Helper()
	defer resp.Body.Close()
	var st metav1.Status
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("not a Status (%d): %s", resp.StatusCode, b)
	}
	return st
}

func TestHTTPErrors(t *testing.T) {
	c := apiservertest.Start(t)
	admin := pki.AdminSpec()
	tests := []struct {
		name        string
		spec        *pki.Spec
		method      string
		path        string
		contentType string
		body        []byte
		code        int
		reason      metav1.StatusReason
		msg         string
	}{
		{"no certificate", nil, "GET", "/api/v1/pods", "", nil, 401, metav1.StatusReasonUnauthorized, "client certificate"},
		{"health without one", nil, "GET", "/readyz", "", nil, 200, "", ""},
		{"malformed JSON", &admin, "POST", "/api/v1/namespaces/default/configmaps", "application/json", []byte(`{"metadata": {"name": "x",}}`), 400, metav1.StatusReasonBadRequest, "not a valid ConfigMap object in JSON"},
		{"malformed YAML", &admin, "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", []byte("metadata:\n  name: [x\n"), 400, metav1.StatusReasonBadRequest, "in YAML"},
		{"wrong kind", &admin, "POST", "/api/v1/namespaces/default/configmaps", "application/json", []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`), 400, metav1.StatusReasonBadRequest, "is a Secret"},
		{"10 MiB body", &admin, "POST", "/api/v1/namespaces/default/configmaps", "application/json", bytes.Repeat([]byte(" "), 10<<20), 413, metav1.StatusReasonRequestEntityTooLarge, "larger than 3 MiB"},
		{"invalid", &admin, "POST", "/api/v1/namespaces/default/pods", "application/json", []byte(`{"metadata":{"name":"p"},"spec":{"containers":[{"image":"busybox"}]}}`), 422, metav1.StatusReasonInvalid, "spec.containers[0].name: Required value"},
		{"unknown resource", &admin, "GET", "/api/v1/widgets", "", nil, 404, metav1.StatusReasonNotFound, `no resource "widgets"`},
		{"strict field validation", &admin, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", []byte(`{"metadata":{"name":"x"},"dta":{}}`), 400, metav1.StatusReasonBadRequest, `unknown field "dta"`},
		{"bad label selector", &admin, "GET", "/api/v1/pods?labelSelector=a%20in%20(", "", nil, 400, metav1.StatusReasonBadRequest, "labelSelector"},
		{"unsupported field selector", &admin, "GET", "/api/v1/pods?fieldSelector=spec.image%3Dx", "", nil, 400, metav1.StatusReasonBadRequest, "field label not supported: spec.image"},
		{"server-side apply", &admin, "PATCH", "/api/v1/namespaces/default/configmaps/x", "application/apply-patch+yaml", []byte("{}"), 415, metav1.StatusReasonUnsupportedMediaType, "server-side apply"},
		{"delete a system namespace", &admin, "DELETE", "/api/v1/namespaces/kube-system", "", nil, 403, metav1.StatusReasonForbidden, "may not be deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, c.URL+tt.path, bytes.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := c.HTTPClient(t, tt.spec).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.code {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("code %d, want %d: %s", resp.StatusCode, tt.code, b)
			}
			if tt.code == 200 {
				resp.Body.Close()
				return
			}
			st := status(t, resp)
			if st.Reason != tt.reason || !strings.Contains(st.Message, tt.msg) {
				t.Errorf("status %s %q, want %s containing %q", st.Reason, st.Message, tt.reason, tt.msg)
			}
		})
	}
}

func TestRoles(t *testing.T) {
	c := apiservertest.Start(t)
	ctx := ctxT(t)
	admin := c.Clientset(t, pki.AdminSpec())
	view := c.Clientset(t, pki.ViewSpec("student"))
	stranger := c.Clientset(t, pki.Spec{CommonName: "nobody", Usage: pki.ClientAuth})
	node1 := c.Clientset(t, pki.NodeSpec("node1", netip.MustParseAddr("192.168.34.11")))
	sched := c.Clientset(t, pki.ComponentSpec(pki.UserScheduler))

	if _, err := view.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("view list: %v", err)
	}
	if _, err := view.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "v"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("view write: %v", err)
	}
	if _, err := view.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("view reading secrets: %v", err)
	}
	if _, err := stranger.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("no role: %v", err)
	}

	// Nodes register themselves and nothing else.
	for _, name := range []string{"node1", "node2"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := node1.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node3"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 creating node3: %v", err)
	}
	n2, _ := admin.CoreV1().Nodes().Get(ctx, "node2", metav1.GetOptions{})
	n2.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}
	if _, err := node1.CoreV1().Nodes().UpdateStatus(ctx, n2, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 writing node2's status: %v", err)
	}
	n1, _ := node1.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
	n1.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := node1.CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Errorf("node1 writing its own status: %v", err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}
	if _, err := node1.CoordinationV1().Leases("kube-node-lease").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Errorf("node1 lease: %v", err)
	}
	lease.Name = "node2"
	if _, err := node1.CoordinationV1().Leases("kube-node-lease").Create(ctx, lease, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 writing node2's lease: %v", err)
	}

	// Pods: the scheduler binds; a node writes the status of its own pods only.
	for _, name := range []string{"a", "b"} {
		if _, err := admin.CoreV1().Pods("default").Create(ctx, pod(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind := func(pod, node string) error {
		return sched.CoreV1().Pods("default").Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}, metav1.CreateOptions{})
	}
	if err := bind("a", "node1"); err != nil {
		t.Fatal(err)
	}
	if err := bind("b", "node2"); err != nil {
		t.Fatal(err)
	}
	if err := bind("a", "node2"); !apierrors.IsConflict(err) {
		t.Errorf("second binding: %v", err)
	}
	if err := node1.CoreV1().Pods("default").Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Target: corev1.ObjectReference{Name: "node1"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a node binding: %v", err)
	}
	pa, _ := node1.CoreV1().Pods("default").Get(ctx, "a", metav1.GetOptions{})
	pa.Status.Phase = corev1.PodRunning
	if _, err := node1.CoreV1().Pods("default").UpdateStatus(ctx, pa, metav1.UpdateOptions{}); err != nil {
		t.Errorf("node1 writing its pod's status: %v", err)
	}
	pb, _ := node1.CoreV1().Pods("default").Get(ctx, "b", metav1.GetOptions{})
	pb.Status.Phase = corev1.PodRunning
	_, err := node1.CoreV1().Pods("default").UpdateStatus(ctx, pb, metav1.UpdateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "bound to node node2") {
		t.Errorf("node1 writing node2's pod status: %v", err)
	}
	if _, err := node1.CoreV1().Pods("default").Patch(ctx, "b", types.MergePatchType, []byte(`{"status":{"phase":"Failed"}}`), metav1.PatchOptions{}, "status"); !apierrors.IsForbidden(err) {
		t.Errorf("node1 patching node2's pod status: %v", err)
	}
	if _, err := node1.CoreV1().Pods("default").Update(ctx, pa, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 updating a pod's spec: %v", err)
	}

	// The network status: a node writes its own entry only.
	cn, err := api.NewForConfig(c.Config(t, pki.NodeSpec("node1", netip.MustParseAddr("192.168.34.11"))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cn.ClusterNetworks().Patch(ctx, "default", types.MergePatchType, []byte(`{"status":{"nodes":{"node1":{"mode":"bgp","converged":true}}}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("node1 reporting its network status: %v", err)
	}
	if _, err := cn.ClusterNetworks().Patch(ctx, "default", types.MergePatchType, []byte(`{"status":{"nodes":{"node2":{"mode":"bgp","converged":true}}}}`), metav1.PatchOptions{}, "status"); !apierrors.IsForbidden(err) {
		t.Errorf("node1 reporting node2's network status: %v", err)
	}
	if _, err := cn.ClusterNetworks().Patch(ctx, "default", types.MergePatchType, []byte(`{"spec":{"mode":"vxlan"}}`), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("node1 changing the network mode: %v", err)
	}
}
