// Package etcd runs klab's etcd: a real etcd server embedded in the klab
// binary (go.etcd.io/etcd/server/v3/embed), one member of a 1-, 3- or
// 5-member cluster, with client and peer TLS and client certificates
// required on both.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config of one member.
type Config struct {
	// Name is the member's name in InitialCluster ("master", "master1"…).
	Name    string
	DataDir string
	// ListenClientURLs and ListenPeerURLs are where the member listens;
	// the Advertise lists are what it tells others (default: the listen
	// URLs).
	ListenClientURLs    []string
	AdvertiseClientURLs []string
	ListenPeerURLs      []string
	AdvertisePeerURLs   []string
	// InitialCluster lists every member: "master1=https://192.168.34.10:2380,…".
	// Empty means a cluster of this member alone.
	InitialCluster string
	// ClusterToken keeps members of different clusters apart.
	ClusterToken string
	// TLS: the member's certificate (server and peer) and the CA that
	// client and peer certificates must be signed by.
	CertFile, KeyFile, CAFile string
	// ProgressNotify is how often idle watchers hear the current revision
	// (the API server turns it into watch bookmarks); default a minute, the
	// upstream API server's bookmark frequency. Every informer holds a
	// watch, and each notification is a message through etcd, the API
	// server and the client: at 5 s, on an idle cluster of three emulated
	// VMs, they were four in five of etcd's messages.
	ProgressNotify time.Duration
	// LogLevel of etcd's own log: debug, info, warn or error.
	LogLevel string
	// Logger, when set, receives etcd's log instead of standard error.
	Logger *zap.Logger
	// StartTimeout bounds the wait for the member to join a quorum.
	StartTimeout time.Duration
}

// Server is a running member.
type Server struct {
	e *embed.Etcd
}

// Start starts a member and returns once it serves clients: it has joined
// a quorum and applied what it had. It fails when ctx ends or StartTimeout
// passes first.
func Start(ctx context.Context, c Config) (*Server, error) {
	cfg, err := c.embedConfig()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("etcd data directory: %w", err)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd member %s: %w", c.Name, err)
	}
	timeout := c.StartTimeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	select {
	case <-e.Server.ReadyNotify():
		return &Server{e: e}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd member %s: %w", c.Name, err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(timeout):
		e.Close()
		return nil, fmt.Errorf("etcd member %s did not join a quorum in %s: are the other members up? (initial cluster %s)", c.Name, timeout, c.InitialCluster)
	}
}

// ClientURLs are the URLs the member serves clients on (with the real
// ports when a listen URL asked for port 0).
func (s *Server) ClientURLs() []string {
	var out []string
	for _, l := range s.e.Clients {
		scheme := "http"
		if !s.e.Config().ClientTLSInfo.Empty() {
			scheme = "https"
		}
		out = append(out, scheme+"://"+l.Addr().String())
	}
	return out
}

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.e.Err() }

// Close stops the member gracefully.
func (s *Server) Close() { s.e.Close() }

// Run runs a member until ctx ends or it fails.
func Run(ctx context.Context, c Config, ready func(*Server)) error {
	s, err := Start(ctx, c)
	if err != nil {
		return err
	}
	defer s.Close()
	if ready != nil {
		ready(s)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.Err():
		return fmt.Errorf("etcd member %s: %w", c.Name, err)
	}
}

func parseURLs(what string, in []string) ([]url.URL, error) {
	var out []url.URL
	for _, s := range in {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, s, err)
		}
		out = append(out, *u)
	}
	return out, nil
}

func (c Config) embedConfig() (*embed.Config, error) {
	switch {
	case c.Name == "":
		return nil, errors.New("etcd: the member needs a name (--name)")
	case c.DataDir == "":
		return nil, errors.New("etcd: the member needs a data directory (--data-dir)")
	case len(c.ListenClientURLs) == 0 || len(c.ListenPeerURLs) == 0:
		return nil, errors.New("etcd: the member needs client and peer URLs to listen on")
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	var err error
	if cfg.ListenClientUrls, err = parseURLs("client URL", c.ListenClientURLs); err != nil {
		return nil, err
	}
	if cfg.ListenPeerUrls, err = parseURLs("peer URL", c.ListenPeerURLs); err != nil {
		return nil, err
	}
	adv := c.AdvertiseClientURLs
	if len(adv) == 0 {
		adv = c.ListenClientURLs
	}
	if cfg.AdvertiseClientUrls, err = parseURLs("advertised client URL", adv); err != nil {
		return nil, err
	}
	adv = c.AdvertisePeerURLs
	if len(adv) == 0 {
		adv = c.ListenPeerURLs
	}
	if cfg.AdvertisePeerUrls, err = parseURLs("advertised peer URL", adv); err != nil {
		return nil, err
	}
	cfg.InitialCluster = c.InitialCluster
	if cfg.InitialCluster == "" {
		var parts []string
		for _, u := range adv {
			parts = append(parts, c.Name+"="+u)
		}
		cfg.InitialCluster = strings.Join(parts, ",")
	}
	if c.ClusterToken != "" {
		cfg.InitialClusterToken = c.ClusterToken
	}
	cfg.ClusterState = embed.ClusterStateFlagNew
	if c.CertFile != "" {
		tls := transport.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: c.CAFile, ClientCertAuth: true}
		cfg.ClientTLSInfo = tls
		cfg.PeerTLSInfo = tls
	}
	cfg.WatchProgressNotifyInterval = c.ProgressNotify
	if cfg.WatchProgressNotifyInterval == 0 {
		cfg.WatchProgressNotifyInterval = time.Minute
	}
	// History for resumed watches; the API server answers 410 Gone for
	// older revisions.
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.Logger = "zap"
	cfg.LogLevel = c.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	cfg.LogOutputs = []string{embed.StdErrLogOutput}
	if c.Logger != nil {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(c.Logger)
	}
	return cfg, nil
}
