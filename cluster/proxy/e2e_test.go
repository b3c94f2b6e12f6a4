package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/client/podio"
	"github.com/klab-dev/klab/internal/e2etest"
	"github.com/klab-dev/klab/internal/testutil"
)

// web is a Deployment of busybox httpd pods that say their name, behind
// the NodePort Service web. A pod being deleted keeps serving for a few
// seconds (preStop), as a real server drains, so that no request is lost
// while the endpoint leaves the rules; replacements join once ready.
func web(replicas int32) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": "web"}
	c := e2etest.HTTPD()
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "3"}}}}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](10)},
			},
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	return d, s
}

// hits fetches url n times from pod and counts the answers by pod name.
func hits(k *e2etest.Cluster, pod, url string, n int) map[string]int {
	k.T.Helper()
	out := k.MustExec(pod, "sh", "-c", fmt.Sprintf("for i in $(seq %d); do wget -qO- %s || echo FAILED; done", n, url))
	got := map[string]int{}
	for _, l := range strings.Fields(out) {
		got[l]++
	}
	return got
}

func balanced(t *testing.T, what string, got map[string]int, pods []string, n int) {
	t.Helper()
	total := 0
	for _, p := range pods {
		total += got[p]
		if got[p] < n/5 {
			t.Errorf("%s: %s got %d of %d requests, want at least 20%%: %v", what, p, got[p], n, got)
		}
	}
	if total != n {
		t.Errorf("%s: %d of %d requests answered by the service's pods: %v", what, total, n, got)
	}
}

// TestIntegrationServices is issue 10's acceptance for Services and DNS:
// 3 httpd pods behind a Service, reached by cluster IP and by name from a
// client pod (each pod gets at least 20%), by node port from another
// node; scaling down takes the endpoint out of the rules within 1s; a
// rolling update loses no request.
func TestIntegrationServices(t *testing.T) {
	k := e2etest.Up(t, "ts-svc")
	ctx := context.Background()
	phase := time.Now()
	logPhase := func(what string) {
		t.Logf("%s: %s", what, time.Since(phase).Round(time.Millisecond))
		phase = time.Now()
	}
	d, s := web(3)
	k.Create(d, s, e2etest.Busybox("client", "node2", nil, "sleep", "3600"))
	k.Ready("client")
	addrs := k.Endpoints("web", 3)
	var pods []string
	for _, a := range addrs {
		pods = append(pods, a.TargetRef.Name)
	}
	svc, err := k.CS.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logPhase("3 web pods ready")

	balanced(t, "cluster IP", hits(k, "client", "http://"+svc.Spec.ClusterIP+"/", 300), pods, 300)
	balanced(t, "DNS name", hits(k, "client", "http://web/", 300), pods, 300)
	logPhase("600 requests by cluster IP and name")
	if got := k.MustExec("client", "nslookup", "web.default.svc.cluster.local"); !strings.Contains(got, svc.Spec.ClusterIP) {
		t.Errorf("nslookup web.default.svc.cluster.local:\n%s", got)
	}
	if got := k.MustExec("client", "nslookup", "-type=srv", "_http._tcp.web.default.svc.cluster.local"); !strings.Contains(got, "0 100 80 web.default.svc.cluster.local") {
		t.Errorf("SRV of the named port:\n%s", got)
	}
	if out, code := k.Exec("client", "nslookup", "nothing.default.svc.cluster.local"); code == 0 || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("a name that does not exist: code %d\n%s", code, out)
	}

	// The node port, on node1's address, from the master (another node).
	np := svc.Spec.Ports[0].NodePort
	for range 10 {
		got, err := k.OnNode("master", "busybox", "wget", "-qO-", fmt.Sprintf("http://%s:%d/", k.NodeIP("node1"), np))
		if err != nil || !slices.Contains(pods, got) {
			t.Fatalf("node port %d of node1 from the master: %q, %v", np, got, err)
		}
	}
	// Hairpin: a web pod reaches the service, and so sometimes itself.
	self := map[string]int{}
	for p, n := range hits(k, pods[0], "http://web/", 30) {
		self[p] = n
	}
	if self[pods[0]] == 0 || self["FAILED"] > 0 {
		t.Errorf("hairpin: %s through its own service got %v", pods[0], self)
	}

	logPhase("DNS, node port, hairpin")
	rep, err := k.NC.Agents.Services(ctx, k.NodeIP("node2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range rep.Services {
		if st.Name() == "default/web:http" && (len(st.Endpoints) != 3 || st.Connections < 600) {
			t.Errorf("node2's proxy report of web: %+v", st)
		}
	}

	// Scale to 2: the pod that goes leaves node2's rules within a second
	// (it still answers, for 3s, so traffic alone would not tell). Watches
	// say where the time goes: the controllers, then the proxy.
	podGone, epGone := watchFor(t, func(ctx context.Context) (watch.Interface, error) {
		return k.CS.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	}, func(o any) bool {
		p, ok := o.(*corev1.Pod)
		return ok && p.DeletionTimestamp != nil
	}), watchFor(t, func(ctx context.Context) (watch.Interface, error) {
		return k.CS.CoreV1().Endpoints("default").Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=web"})
	}, func(o any) bool {
		e, ok := o.(*corev1.Endpoints)
		return ok && len(e.Subsets) == 1 && len(e.Subsets[0].Addresses) == 2
	})
	start := time.Now()
	if _, err := k.CS.AppsV1().Deployments("default").Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":2}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "an endpoint of web out of node2's rules", func() bool {
		rep, err := k.NC.Agents.Services(ctx, k.NodeIP("node2"))
		if err != nil {
			return false
		}
		for _, st := range rep.Services {
			if st.Name() == "default/web:http" {
				return len(st.Endpoints) == 2
			}
		}
		return false
	})
	took := time.Since(start)
	deleted, updated := (<-podGone).Sub(start), (<-epGone).Sub(start)
	t.Logf("scale 3 → 2: a pod terminating after %s, the Endpoints updated after %s, the endpoint out of node2's rules after %s",
		deleted.Round(time.Millisecond), updated.Round(time.Millisecond), took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("the endpoint left the rules %s after the scale request, want within 1s (the proxy's part: %s)", took, took-updated)
	}
	left := k.Endpoints("web", 2)
	var remaining []string
	for _, a := range left {
		remaining = append(remaining, a.TargetRef.Name)
	}
	got := hits(k, "client", "http://web/", 60)
	for p := range got {
		if !slices.Contains(remaining, p) {
			t.Errorf("after the scale down, %s still got requests: %v", p, got)
		}
	}

	logPhase("scale down")
	// A rolling update while a client keeps asking: no request fails.
	loop := "while [ ! -e /tmp/stop ]; do if wget -qO- http://web/ >/dev/null 2>&1; then echo ok; else echo FAILED; fi; done"
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := podio.Exec(ctx, k.Cfg, "default", "client", podio.ExecOptions{Command: []string{"sh", "-c", loop}, Stdout: &out, Stderr: io.Discard})
		done <- err
	}()
	testutil.Poll(t, 10*time.Second, "the client's loop under way", func() bool {
		o, _ := k.Exec("client", "sh", "-c", "ps | grep -c '[w]hile'")
		return o != "0"
	})
	patch := `{"spec":{"template":{"metadata":{"annotations":{"klab.dev/restartedAt":"` + time.Now().Format(time.RFC3339Nano) + `"}}}}}`
	if _, err := k.CS.AppsV1().Deployments("default").Patch(ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 3*time.Minute, "the rollout to finish", func() bool {
		dep, err := k.CS.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil || dep.Status.ObservedGeneration < dep.Generation {
			return false
		}
		st := dep.Status
		return st.UpdatedReplicas == 2 && st.Replicas == 2 && st.AvailableReplicas == 2 && len(k.Endpoints("web", 2)) == 2 && !oldPodsLeft(k, dep)
	})
	logPhase("rolling update")
	k.MustExec("client", "touch", "/tmp/stop")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		switch sc.Text() {
		case "ok":
			ok++
		case "FAILED":
			failed++
		}
	}
	t.Logf("rolling update: %d requests answered, %d failed", ok, failed)
	if failed != 0 || ok < 50 {
		t.Errorf("rolling update: %d requests answered, %d failed; want none failed", ok, failed)
	}
}

// BenchmarkIntegrationClusterIP measures, in one run, new TCP connections
// (connect, one byte there and back, close) from a pod on node2 to a pod
// on node1, alternately to its pod IP and through a cluster IP whose only
// endpoint it is: connections per second each way, their ratio, and the
// latency the DNAT adds (difference of the medians).
func BenchmarkIntegrationClusterIP(b *testing.B) {
	k := e2etest.Up(b, "ts-bench")
	ctx := context.Background()
	const port = 9000
	k.Create(
		e2etest.Busybox("server", "node1", map[string]string{"app": "bench"}, "sleep", "3600"),
		e2etest.Busybox("client", "node2", nil, "sleep", "3600"),
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "bench"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(port)}}}})
	server, client := k.Ready("server"), k.Ready("client")
	k.Endpoints("bench", 1)
	svc, err := k.CS.CoreV1().Services("default").Get(ctx, "bench", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := k.PodNetns(server).Listen(ctx, "tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			}()
		}
	}()
	from := k.PodNetns(client)
	podAddr := fmt.Sprintf("%s:%d", server.Status.PodIP, port)
	svcAddr := fmt.Sprintf("%s:80", svc.Spec.ClusterIP)
	// once runs on a thread inside the client pod's namespace (from.Do),
	// where the sockets it opens live.
	once := func(addr string) (time.Duration, error) {
		start := time.Now()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{1}); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	var direct, viaService []time.Duration
	const batch = 200
	for b.Loop() {
		err := from.Do(func() error {
			for range batch {
				for _, to := range []struct {
					addr string
					ds   *[]time.Duration
				}{{podAddr, &direct}, {svcAddr, &viaService}} {
					d, err := once(to.addr)
					if err != nil {
						return fmt.Errorf("connection to %s: %w", to.addr, err)
					}
					*to.ds = append(*to.ds, d)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	rate := func(ds []time.Duration) float64 {
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return float64(len(ds)) / sum.Seconds()
	}
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	b.ReportMetric(rate(direct), "podIP-conn/s")
	b.ReportMetric(rate(viaService), "clusterIP-conn/s")
	b.ReportMetric(rate(viaService)/rate(direct), "ratio")
	b.ReportMetric(float64(median(direct).Microseconds()), "podIP-p50-µs")
	b.ReportMetric(float64(median(viaService).Microseconds()), "clusterIP-p50-µs")
	b.ReportMetric(float64((median(viaService) - median(direct)).Microseconds()), "added-p50-µs")
	b.Logf("%d connections each way from %s (node2) to %s (node1): pod IP %.0f/s, p50 %s; cluster IP %.0f/s, p50 %s; ratio %.2f",
		len(direct), client.Name, server.Name, rate(direct), median(direct), rate(viaService), median(viaService), rate(viaService)/rate(direct))
}

// watchFor watches from now and sends the time of the first event whose
// object matches (or, if none comes within 10s, the time it gave up).
func watchFor(t *testing.T, start func(context.Context) (watch.Interface, error), match func(any) bool) <-chan time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	w, err := start(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	at := make(chan time.Time, 1)
	go func() {
		defer cancel()
		defer w.Stop()
		for ev := range w.ResultChan() {
			if match(ev.Object) {
				at <- time.Now()
				return
			}
		}
		at <- time.Now()
	}()
	return at
}

// oldPodsLeft reports whether a pod of the Deployment's previous template
// still exists (it may still be draining).
func oldPodsLeft(k *e2etest.Cluster, dep *appsv1.Deployment) bool {
	pods, err := k.CS.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return true
	}
	hash := ""
	rss, err := k.CS.AppsV1().ReplicaSets("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		return true
	}
	for _, rs := range rss.Items {
		if rs.Annotations["deployment.kubernetes.io/revision"] == dep.Annotations["deployment.kubernetes.io/revision"] {
			hash = rs.Labels["pod-template-hash"]
		}
	}
	for _, p := range pods.Items {
		if p.Labels["pod-template-hash"] != hash {
			return true
		}
	}
	return false
}
