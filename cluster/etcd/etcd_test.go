package etcd

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		c    Config
		want string
	}{
		{Config{DataDir: "/x", ListenClientURLs: []string{"http://a"}, ListenPeerURLs: []string{"http://a"}}, "needs a name"},
		{Config{Name: "m", ListenClientURLs: []string{"http://a"}, ListenPeerURLs: []string{"http://a"}}, "data directory"},
		{Config{Name: "m", DataDir: "/x"}, "URLs to listen on"},
		{Config{Name: "m", DataDir: "/x", ListenClientURLs: []string{"http://a"}, ListenPeerURLs: []string{"::bad"}}, "peer URL"},
	}
	for _, tt := range tests {
		if _, err := tt.c.embedConfig(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("embedConfig(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
	cfg, err := Config{Name: "m", DataDir: "/x", ListenClientURLs: []string{"http://127.0.0.1:2379"}, ListenPeerURLs: []string{"http://127.0.0.1:2380"}}.embedConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InitialCluster != "m=http://127.0.0.1:2380" {
		t.Errorf("initial cluster %q", cfg.InitialCluster)
	}
}

// TestStartRestart starts a member on loopback, writes, restarts it on the
// same data directory and reads back what it wrote.
func TestStartRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cfg := Config{Name: "t", DataDir: dir, ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}, StartTimeout: time.Minute}
	start := time.Now()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("member ready in %s", time.Since(start))
	put := func(s *Server, k, v string) {
		c, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if v != "" {
			if _, err := c.Put(ctx, k, v); err != nil {
				t.Fatal(err)
			}
			return
		}
		r, err := c.Get(ctx, k)
		if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "kept" {
			t.Fatalf("after restart: %v %v", r, err)
		}
	}
	put(s, "/k", "kept")
	s.Close()
	s, err = Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put(s, "/k", "")
}

func TestGet(t *testing.T) {
	s, err := Start(context.Background(), Config{Name: "g", DataDir: t.TempDir(), ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	c.Put(ctx, "/registry/pods/default/a", `{"kind":"Pod"}`)
	c.Put(ctx, "/registry/secrets/default/s", "k8s:enc:aesgcm:v1:klab:\x00\xff")
	var out strings.Builder
	if err := Get(ctx, s.ClientURLs(), nil, "/registry/", GetOptions{Prefix: true}, &out); err != nil {
		t.Fatal(err)
	}
	want := "/registry/pods/default/a\n{\"kind\":\"Pod\"}\n/registry/secrets/default/s\n\"k8s:enc:aesgcm:v1:klab:\\x00\\xff\"\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	out.Reset()
	Get(ctx, s.ClientURLs(), nil, "/registry/pods/", GetOptions{Prefix: true, KeysOnly: true}, &out)
	if out.String() != "/registry/pods/default/a\n" {
		t.Errorf("keys only: %q", out.String())
	}
}
