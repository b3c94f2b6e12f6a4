package etcd

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// GetOptions select what Get prints.
type GetOptions struct {
	Prefix   bool // every key under the key
	KeysOnly bool
}

// Get prints keys and values from etcd, as "etcdctl get" does: the key on
// one line, the value on the next. A value that is not text (an encrypted
// secret, say) is printed quoted, with its bytes escaped.
func Get(ctx context.Context, endpoints []string, tc *tls.Config, key string, o GetOptions, w io.Writer) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("connect to etcd: %w", err)
	}
	defer c.Close()
	var opts []clientv3.OpOption
	if o.Prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	if o.KeysOnly {
		opts = append(opts, clientv3.WithKeysOnly())
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key, opts...)
	if err != nil {
		return fmt.Errorf("etcd get %s: %w", key, err)
	}
	for _, kv := range resp.Kvs {
		fmt.Fprintln(w, string(kv.Key))
		if o.KeysOnly {
			continue
		}
		if utf8.Valid(kv.Value) {
			fmt.Fprintln(w, string(kv.Value))
		} else {
			fmt.Fprintln(w, strconv.QuoteToASCII(string(kv.Value)))
		}
	}
	return nil
}
