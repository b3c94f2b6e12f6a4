// Package apiserver is klab's API server: the Kubernetes REST dialect over
// HTTPS for the resources klab serves (core/v1 pods, nodes, services, …,
// apps/v1 deployments and replicasets, networking, coordination, and
// klab's network.klab.dev/v1), stored in etcd through cluster/store. It
// authenticates clients by their certificate from the cluster CA,
// authorizes them by role (admin, view, node), defaults and validates
// what they write, and proxies logs and exec to the node agents.
package apiserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/store"
)

// Defaults of Config.
const (
	DefaultPort            = 6443
	DefaultKubeletPort     = 10250
	DefaultMaxRequestBytes = 3 << 20
	DefaultTolerationSecs  = 30
)

// Version is the Kubernetes version the API speaks (that of the
// k8s.io/api types it serves).
var Version = struct{ Major, Minor, GitVersion string }{"1", "37", "v1.37.2-klab"}

// Config configures a server.
type Config struct {
	// Store holds the objects.
	Store *store.Store
	// TLS is the serving configuration (certificate, client CA); Run needs it.
	TLS *tls.Config
	// BindAddress is where Run listens (":6443").
	BindAddress string
	// AdvertiseAddress is this server's address in the kubernetes
	// service's endpoints.
	AdvertiseAddress netip.Addr
	// Port is the port advertised with AdvertiseAddress.
	Port int
	// ServiceCIDR is where service cluster IPs come from; its first
	// address is the kubernetes service's.
	ServiceCIDR netip.Prefix
	// NodePortMin and NodePortMax bound NodePort allocation.
	NodePortMin, NodePortMax int
	// PodCIDR, NetworkMode and PodMTU seed the default ClusterNetwork.
	PodCIDR     netip.Prefix
	NetworkMode api.NetworkMode
	PodMTU      int32
	// EncryptionKey, when set, encrypts secrets in etcd with AES-GCM.
	EncryptionKey []byte
	// KubeletTLS is the client configuration for the node agents: the
	// server's client certificate and the CA their certificates come from.
	KubeletTLS  *tls.Config
	KubeletPort int
	// ServiceAccountKey signs and checks service account tokens; nil
	// turns bearer tokens off.
	ServiceAccountKey *ecdsa.PrivateKey
	// DefaultTolerationSeconds is how long pods tolerate a not-ready or
	// unreachable node unless they say otherwise.
	DefaultTolerationSeconds int64
	// MaxRequestBytes bounds request bodies (413 beyond).
	MaxRequestBytes int64
	Log             *slog.Logger
}

// Server is an API server.
type Server struct {
	cfg   Config
	log   *slog.Logger
	store *store.Store
	reg   *registry
	ready atomic.Bool
	// kubelet is the transport to the node agents.
	kubelet *http.Transport
	handler http.Handler
	alloc   *allocator
	disc    *discovery
}

// New makes a server. It does not touch etcd until Bootstrap or Run.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("apiserver: no store")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if !cfg.ServiceCIDR.IsValid() {
		cfg.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
	}
	if !cfg.PodCIDR.IsValid() {
		cfg.PodCIDR = netip.MustParsePrefix("10.42.0.0/16")
	}
	if cfg.NetworkMode == "" {
		cfg.NetworkMode = api.ModeBGP
	}
	if cfg.NodePortMin == 0 {
		cfg.NodePortMin, cfg.NodePortMax = 30000, 32767
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.KubeletPort == 0 {
		cfg.KubeletPort = DefaultKubeletPort
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.DefaultTolerationSeconds == 0 {
		cfg.DefaultTolerationSeconds = DefaultTolerationSecs
	}
	if cfg.BindAddress == "" {
		cfg.BindAddress = fmt.Sprintf(":%d", DefaultPort)
	}
	if cfg.EncryptionKey != nil {
		t, err := store.NewAESGCM(cfg.EncryptionKey)
		if err != nil {
			return nil, err
		}
		cfg.Store.Encrypt("/registry/secrets/", t)
	}
	s := &Server{cfg: cfg, log: cfg.Log, store: cfg.Store, reg: newRegistry()}
	s.alloc = newAllocator(s.store, cfg.ServiceCIDR, cfg.NodePortMin, cfg.NodePortMax)
	s.disc = newDiscovery(s.reg)
	if cfg.KubeletTLS != nil {
		tc := cfg.KubeletTLS.Clone()
		tc.NextProtos = []string{"http/1.1"} // exec upgrades need HTTP/1.1
		s.kubelet = &http.Transport{
			TLSClientConfig:     tc,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     time.Minute,
		}
	}
	s.handler = s.buildHandler()
	return s, nil
}

// Handler serves the API. Requests must come over TLS for clients to be
// authenticated.
func (s *Server) Handler() http.Handler { return s.handler }

// Run bootstraps the cluster's objects and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.TLS == nil {
		return errors.New("apiserver: no TLS configuration")
	}
	ln, err := net.Listen("tcp", s.cfg.BindAddress)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.BindAddress, err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.cfg.TLS,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	s.log.Info("serving", "address", ln.Addr().String())
	// Serve health checks at once; the API is ready after bootstrap.
	if err := s.Bootstrap(ctx); err != nil {
		srv.Close()
		return err
	}
	go s.finalizeNamespaces(ctx, 2*time.Second)
	if s.cfg.AdvertiseAddress.IsValid() {
		go s.advertiseLoop(ctx)
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

// Bootstrap creates what every cluster has (the four namespaces, the
// kubernetes service and its endpoints, the default ClusterNetwork) and
// marks the server ready. It retries while etcd is unreachable.
func (s *Server) Bootstrap(ctx context.Context) error {
	wait := 10 * time.Millisecond
	for {
		err := s.bootstrap(ctx)
		if err == nil {
			s.ready.Store(true)
			return nil
		}
		s.log.Warn("bootstrap: will retry", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("bootstrap: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
