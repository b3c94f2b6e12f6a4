// Package apiservertest runs a real klab API server for tests: an
// embedded etcd on loopback, a fresh cluster CA, the server on a random
// loopback port over TLS. No root needed. Clients get a rest.Config for
// any certificate the CA issues.
package apiservertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/apiserver"
	"github.com/klab-dev/klab/cluster/etcd/etcdtest"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/store"
)

// Cluster is a running test API server.
type Cluster struct {
	URL    string
	CA     *pki.CA
	Server *apiserver.Server
	Store  *store.Store
	// Etcd is a raw client of the server's etcd, to look at what is stored.
	Etcd *clientv3.Client
	// EncryptionKey encrypts secrets at rest.
	EncryptionKey []byte
	http          *httptest.Server
}

// Options change the server's configuration before it starts.
type Options func(*apiserver.Config)

// Start starts etcd and an API server; the test's cleanup stops both.
func Start(t testing.TB, opts ...Options) *Cluster {
	t.Helper()
	e := etcdtest.Start(t)
	ec := etcdtest.Client(t, e)
	st := store.NewFromClient(ec, apiserver.StorageCodec())
	ca, err := pki.NewCA("klab-test")
	if err != nil {
		t.Fatal(err)
	}
	keyFile, _ := store.GenerateKey()
	kf := filepath.Join(t.TempDir(), "encryption.key")
	if err := os.WriteFile(kf, keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := store.LoadKey(kf)
	if err != nil {
		t.Fatal(err)
	}
	kubelet, err := ca.Issue(pki.KubeletClientSpec())
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kubelet.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := apiserver.Config{
		Store:             st,
		ServiceAccountKey: saKey,
		AdvertiseAddress:  netip.MustParseAddr("127.0.0.1"),
		EncryptionKey:     key,
		KubeletTLS:        clientTLS(ca, kc),
		Log:               slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := apiserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(pki.APIServerSpec(nil, netip.MustParseAddr("127.0.0.1"), netip.Addr{}))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := serving.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.EnableHTTP2 = true
	hs.TLS = serverTLS(ca, sc)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	return &Cluster{URL: hs.URL, CA: ca, Server: srv, Store: st, Etcd: ec, EncryptionKey: key, http: hs}
}

// Config is a client configuration for a certificate issued from spec
// (pki.AdminSpec(), pki.NodeSpec(…), pki.ViewSpec(…)).
func (c *Cluster) Config(t testing.TB, spec pki.Spec) *rest.Config {
	t.Helper()
	kp, err := c.CA.Issue(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: c.CA.CertPEM(), CertData: kp.CertPEM, KeyData: kp.KeyPEM,
		},
		QPS:   1000,
		Burst: 1000,
	}
}

// Admin is a client configuration in system:masters.
func (c *Cluster) Admin(t testing.TB) *rest.Config { return c.Config(t, pki.AdminSpec()) }

// Clientset is a client-go clientset for spec's certificate.
func (c *Cluster) Clientset(t testing.TB, spec pki.Spec) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config(t, spec))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// HTTPClient is a plain HTTPS client trusting the CA, with spec's
// certificate (none when spec is nil).
func (c *Cluster) HTTPClient(t testing.TB, spec *pki.Spec) *http.Client {
	t.Helper()
	cfg := &rest.Config{Host: c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM()}}
	if spec != nil {
		cfg = c.Config(t, *spec)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// Kubeconfig writes an admin kubeconfig into a temporary directory and
// returns its path.
func (c *Cluster) Kubeconfig(t testing.TB) string {
	t.Helper()
	kp, err := c.CA.Issue(pki.AdminSpec())
	if err != nil {
		t.Fatal(err)
	}
	b, err := apiserver.Kubeconfig("klab-test", c.URL, c.CA.CertPEM(), kp.CertPEM, kp.KeyPEM, pki.UserAdmin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
