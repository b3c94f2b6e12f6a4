// Package store keeps API objects in etcd v3, the way the Kubernetes API
// server does: one key per object (/registry/pods/default/web-1), the
// value the object's JSON (readable with etcdctl), the object's
// resourceVersion the key's mod revision. Writes are compare-and-swap
// transactions on that revision; watches start at a revision and can be
// resumed; a revision that was compacted away is ErrCompacted (the API's
// 410 Gone).
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
)

// Errors; callers test them with errors.Is.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrConflict  = errors.New("the object has been modified")
	ErrCompacted = errors.New("resource version too old: it was compacted")
	ErrFuture    = errors.New("resource version is newer than the store's")
)

// Config says how to reach etcd.
type Config struct {
	Endpoints   []string
	TLS         *tls.Config
	DialTimeout time.Duration
}

// Store is a connection to etcd that reads and writes API objects.
type Store struct {
	client *clientv3.Client
	codec  Codec
	mu     sync.RWMutex
	// transformers encrypt the values of keys under a prefix.
	transformers map[string]Transformer
	own          bool
}

// New connects to etcd. Objects are encoded with codec.
func New(c Config, codec Codec) (*Store, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("store: no etcd endpoints")
	}
	dt := c.DialTimeout
	if dt == 0 {
		dt = 5 * time.Second
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		TLS:                  c.TLS,
		DialTimeout:          dt,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Logger:               zap.NewNop(),
		// Reconnect quickly: the API server often starts before its etcd
		// member answers, and gRPC's default first retry is after a second.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(c.Endpoints, ","), err)
	}
	s := NewFromClient(client, codec)
	s.own = true
	return s, nil
}

// NewFromClient uses an existing etcd client; Close leaves it open.
func NewFromClient(c *clientv3.Client, codec Codec) *Store {
	return &Store{client: c, codec: codec, transformers: map[string]Transformer{}}
}

// Close closes the connection New made.
func (s *Store) Close() error {
	if s.own {
		return s.client.Close()
	}
	return nil
}

// Client is the etcd client, for health checks and maintenance.
func (s *Store) Client() *clientv3.Client { return s.client }

// Encrypt makes the store encrypt the values of every key under prefix
// with t (and decrypt them on reads).
func (s *Store) Encrypt(prefix string, t Transformer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transformers[prefix] = t
}

func (s *Store) transformer(key string) Transformer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for p, t := range s.transformers {
		if strings.HasPrefix(key, p) {
			return t
		}
	}
	return nil
}

func (s *Store) toStorage(key string, obj runtime.Object) ([]byte, error) {
	a, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	// The revision is the key's, not part of the value.
	rv := a.GetResourceVersion()
	a.SetResourceVersion("")
	data, err := s.codec.Encode(obj)
	a.SetResourceVersion(rv)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", key, err)
	}
	if t := s.transformer(key); t != nil {
		return t.Encrypt(key, data)
	}
	return data, nil
}

func (s *Store) fromStorage(key string, value []byte, rev int64, into runtime.Object) error {
	if t := s.transformer(key); t != nil {
		var err error
		if value, err = t.Decrypt(key, value); err != nil {
			return fmt.Errorf("decrypt %s: %w", key, err)
		}
	}
	if err := s.codec.Decode(value, into); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return SetRevision(into, rev)
}

// SetRevision sets an object's resourceVersion to rev.
func SetRevision(obj runtime.Object, rev int64) error {
	a, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	a.SetResourceVersion(strconv.FormatInt(rev, 10))
	return nil
}

// Revision returns an object's resourceVersion as a revision: 0 when unset.
func Revision(obj runtime.Object) (int64, error) {
	a, err := meta.Accessor(obj)
	if err != nil {
		return 0, err
	}
	return ParseRevision(a.GetResourceVersion())
}

// ParseRevision parses a resourceVersion: "" is 0.
func ParseRevision(rv string) (int64, error) {
	if rv == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid resourceVersion %q: it is a number from a previous response", rv)
	}
	return n, nil
}

// mapErr turns etcd's errors into the store's.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrCompacted):
		return ErrCompacted
	case errors.Is(err, rpctypes.ErrFutureRev):
		return ErrFuture
	}
	return err
}

// Get reads the object at key into into. rev 0 reads the newest version;
// another reads the version current at that revision.
func (s *Store) Get(ctx context.Context, key string, rev int64, into runtime.Object) error {
	var opts []clientv3.OpOption
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.client.Get(ctx, key, opts...)
	if err != nil {
		return mapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return ErrNotFound
	}
	kv := resp.Kvs[0]
	return s.fromStorage(key, kv.Value, kv.ModRevision, into)
}

// Create writes a new object; ErrExists when key is taken. On success the
// object's resourceVersion is set.
func (s *Store) Create(ctx context.Context, key string, obj runtime.Object) error {
	data, err := s.toStorage(key, obj)
	if err != nil {
		return err
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(data))).
		Commit()
	if err != nil {
		return mapErr(err)
	}
	if !resp.Succeeded {
		return ErrExists
	}
	return SetRevision(obj, resp.Header.Revision)
}

// Update writes obj over the object at key if the object's revision is
// still rev (ErrConflict otherwise, ErrNotFound when it is gone). On
// success the object's resourceVersion is set.
func (s *Store) Update(ctx context.Context, key string, obj runtime.Object, rev int64) error {
	data, err := s.toStorage(key, obj)
	if err != nil {
		return err
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(data))).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return mapErr(err)
	}
	if !resp.Succeeded {
		if len(resp.Responses) > 0 && len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return ErrNotFound
		}
		return ErrConflict
	}
	return SetRevision(obj, resp.Header.Revision)
}

// UpdateFunc computes the new version of an object from the current one
// (whose resourceVersion is set). It may modify cur and return it.
type UpdateFunc func(cur runtime.Object) (runtime.Object, error)

// GuaranteedUpdate reads the object at key into cur, calls fn and writes
// what it returns, retrying with a fresh read when someone else wrote in
// between. fn returning an error stops it with that error. It returns
// the object written, with its new resourceVersion.
func (s *Store) GuaranteedUpdate(ctx context.Context, key string, cur runtime.Object, fn UpdateFunc) (runtime.Object, error) {
	for {
		if err := s.Get(ctx, key, 0, cur); err != nil {
			return nil, err
		}
		rev, err := Revision(cur)
		if err != nil {
			return nil, err
		}
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		err = s.Update(ctx, key, next, rev)
		if errors.Is(err, ErrConflict) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		return next, nil
	}
}

// Delete deletes the object at key if its revision is still rev (any
// revision when rev is 0). into receives the deleted object.
func (s *Store) Delete(ctx context.Context, key string, rev int64, into runtime.Object) error {
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if rev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := s.client.Txn(ctx).
		If(cmp).
		Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return mapErr(err)
	}
	if !resp.Succeeded {
		if len(resp.Responses) > 0 && len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return ErrNotFound
		}
		return ErrConflict
	}
	prev := resp.Responses[0].GetResponseDeleteRange().PrevKvs
	if len(prev) == 0 {
		return ErrNotFound
	}
	if into == nil {
		return nil
	}
	return s.fromStorage(key, prev[0].Value, resp.Header.Revision, into)
}

// ListOptions select a page of a list.
type ListOptions struct {
	// Revision 0 lists the newest versions; another lists the versions
	// current at that revision (ErrCompacted when it is gone).
	Revision int64
	// Limit is the most items to return (0: all).
	Limit int64
	// Continue is the key to start at (from a previous page).
	Continue string
	// Filter, when set, keeps only the objects it returns true for.
	Filter func(runtime.Object) bool
}

// ListResult is a page of a list.
type ListResult struct {
	Items []runtime.Object
	// Revision the list was read at.
	Revision int64
	// Next is the key the next page starts at; empty on the last page.
	Next string
	// Remaining counts keys after this page (before filtering), when known.
	Remaining int64
}

// List reads the objects under prefix (which ends in "/"). newItem makes
// an object to decode one item into.
func (s *Store) List(ctx context.Context, prefix string, o ListOptions, newItem func() runtime.Object) (*ListResult, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	start := prefix
	if o.Continue != "" {
		if !strings.HasPrefix(o.Continue, prefix) {
			return nil, fmt.Errorf("continue key %q is not under %s", o.Continue, prefix)
		}
		start = o.Continue
	}
	res := &ListResult{Revision: o.Revision}
	batch := o.Limit
	if batch > 0 && o.Filter != nil {
		batch = max(batch, 100) // read ahead: the filter drops some
	}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end)}
		if res.Revision > 0 {
			opts = append(opts, clientv3.WithRev(res.Revision))
		}
		if batch > 0 {
			opts = append(opts, clientv3.WithLimit(batch))
		}
		resp, err := s.client.Get(ctx, start, opts...)
		if err != nil {
			return nil, mapErr(err)
		}
		if res.Revision == 0 {
			res.Revision = resp.Header.Revision
		}
		for i, kv := range resp.Kvs {
			obj := newItem()
			if err := s.fromStorage(string(kv.Key), kv.Value, kv.ModRevision, obj); err != nil {
				return nil, err
			}
			if o.Filter != nil && !o.Filter(obj) {
				continue
			}
			res.Items = append(res.Items, obj)
			if o.Limit > 0 && int64(len(res.Items)) == o.Limit {
				if i < len(resp.Kvs)-1 || resp.More {
					res.Next = string(kv.Key) + "\x00"
					res.Remaining = resp.Count - int64(i) - 1
				}
				return res, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return res, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Count counts the keys under prefix.
func (s *Store) Count(ctx context.Context, prefix string) (int64, error) {
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, mapErr(err)
	}
	return resp.Count, nil
}

// CurrentRevision is etcd's newest revision.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, "/registry/health-revision", clientv3.WithCountOnly())
	if err != nil {
		return 0, mapErr(err)
	}
	return resp.Header.Revision, nil
}

// Compact discards the history before rev; watches and reads older than
// that fail with ErrCompacted.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	_, err := s.client.Compact(ctx, rev, clientv3.WithCompactPhysical())
	return mapErr(err)
}

// Claim creates key with value unless it exists: an atomic reservation
// (of a service IP, say). It reports whether the key was free.
func (s *Store) Claim(ctx context.Context, key, value string) (bool, error) {
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value)).
		Commit()
	if err != nil {
		return false, mapErr(err)
	}
	return resp.Succeeded, nil
}

// Release deletes a key made by Claim.
func (s *Store) Release(ctx context.Context, key string) error {
	_, err := s.client.Delete(ctx, key)
	return mapErr(err)
}

// Keys lists the keys under prefix.
func (s *Store) Keys(ctx context.Context, prefix string) ([]string, error) {
	resp, err := s.client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, mapErr(err)
	}
	out := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = string(kv.Key)
	}
	return out, nil
}
