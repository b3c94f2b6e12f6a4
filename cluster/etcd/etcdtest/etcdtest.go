// Package etcdtest runs an embedded etcd member for tests: in-process, on
// random loopback ports, in a temporary directory, no root needed.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klab-dev/klab/cluster/etcd"
)

// Start starts a member that the test's cleanup stops.
func Start(t testing.TB) *etcd.Server {
	t.Helper()
	s, err := etcd.Start(context.Background(), etcd.Config{
		Name:             "test",
		DataDir:          t.TempDir(),
		ListenClientURLs: []string{"http://127.0.0.1:0"},
		ListenPeerURLs:   []string{"http://127.0.0.1:0"},
		ProgressNotify:   200 * time.Millisecond,
		Logger:           zap.NewNop(),
		StartTimeout:     time.Minute,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Client connects to a member; the test's cleanup closes it.
func Client(t testing.TB, s *etcd.Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
