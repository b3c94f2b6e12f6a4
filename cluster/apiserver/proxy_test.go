package apiserver_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/apiserver"
	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

// fakeAgent is a node agent's TLS endpoint: it records who called what,
// serves logs, and for exec switches protocols and echoes.
func fakeAgent(t *testing.T, c *apiservertest.Cluster, ln net.Listener) chan string {
	seen := make(chan string, 10)
	kp, err := c.CA.Issue(pki.NodeSpec("node1", netip.MustParseAddr("127.0.0.1")))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := kp.TLSCertificate()
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		seen <- fmt.Sprintf("%s %s?%s", r.TLS.PeerCertificates[0].Subject.CommonName, r.URL.Path, r.URL.RawQuery)
		fmt.Fprintln(w, "line 1")
		w.(http.Flusher).Flush()
		fmt.Fprintln(w, "line 2")
	})
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", func(w http.ResponseWriter, r *http.Request) {
		seen <- fmt.Sprintf("%s %s?%s upgrade=%s", r.TLS.PeerCertificates[0].Subject.CommonName, r.URL.Path, r.URL.RawQuery, r.Header.Get("Upgrade"))
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
		rw.Flush()
		io.Copy(conn, rw) // echo the stream
	})
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: c.CA.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"http/1.1"},
	}}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return seen
}

func TestLogAndExecProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	c := apiservertest.Start(t, func(cfg *apiserver.Config) { cfg.KubeletPort = port })
	seen := fakeAgent(t, c, ln)
	cs := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := pod("p")
	p.Spec.NodeName = "node1"
	if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Logs, through client-go: the container is the pod's only one.
	tail := int64(5)
	b, err := cs.CoreV1().Pods("default").GetLogs("p", &corev1.PodLogOptions{Follow: true, TailLines: &tail}).DoRaw(ctx)
	if err != nil || string(b) != "line 1\nline 2\n" {
		t.Fatalf("logs: %v %q", err, b)
	}
	if got := <-seen; got != "klab:apiserver-kubelet-client /containerLogs/default/p/c?follow=true&tailLines=5" {
		t.Errorf("agent saw %q", got)
	}

	// Exec: an upgrade, passed through both ways.
	kp, _ := c.CA.Issue(pki.AdminSpec())
	cert, _ := kp.TLSCertificate()
	u, _ := url.Parse(c.URL)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: c.CA.Pool(), Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/namespaces/default/pods/p/exec?command=sh&stdin=true&stdout=true HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n", u.Host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "SPDY/3.1" {
		t.Fatalf("exec answer %s %v", resp.Status, resp.Header)
	}
	fmt.Fprint(conn, "hello through the stream\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "hello through the stream\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	if got := <-seen; !strings.HasPrefix(got, "klab:apiserver-kubelet-client /exec/default/p/c?command=sh") || !strings.HasSuffix(got, "upgrade=SPDY/3.1") {
		t.Errorf("agent saw %q", got)
	}

	// A pod with two containers needs one named.
	two := pod("two")
	two.Spec.NodeName = "node1"
	two.Spec.Containers = append(two.Spec.Containers, corev1.Container{Name: "d", Image: "busybox"})
	cs.CoreV1().Pods("default").Create(ctx, two, metav1.CreateOptions{})
	_, err = cs.CoreV1().Pods("default").GetLogs("two", &corev1.PodLogOptions{}).Stream(ctx)
	if err == nil || !strings.Contains(err.Error(), "choose one of: [c d]") {
		t.Fatalf("logs of a two-container pod: %v", err)
	}
}
