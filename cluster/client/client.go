// Package client connects klab's components and CLI to a cluster's API
// server: it loads a kubeconfig into a rest.Config (the cluster's admin
// kubeconfig by default), runs a component under leader election, and routes
// client-go's logging into slog.
package client

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/klab-dev/klab/provision"
)

// KubeconfigPath is where `klab up` writes a cluster's admin kubeconfig.
func KubeconfigPath(cluster string) string {
	return filepath.Join(provision.Dir(cluster), "kubeconfig")
}

// Config loads the kubeconfig at path, or the admin kubeconfig of cluster
// when path is empty, into a rest.Config for its current context.
func Config(cluster, path string) (*rest.Config, error) {
	explicit := path != ""
	if !explicit {
		path = KubeconfigPath(cluster)
	}
	if _, err := os.Stat(path); err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist) && explicit:
			return nil, fmt.Errorf("kubeconfig %s does not exist: check --kubeconfig", path)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("cluster %q has no kubeconfig at %s: start it with 'sudo klab up --name %s' or pass --kubeconfig", cluster, path, cluster)
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("cannot read kubeconfig %s: permission denied: run with sudo or pass a readable --kubeconfig", path)
		}
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("cannot read kubeconfig %s: permission denied: run with sudo or pass a readable --kubeconfig", path)
		}
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// ForComponent tunes a rest.Config for a long-running component: a user
// agent naming it and client-side rate limits high enough that a scheduler
// binding hundreds of pods a second is not throttled by its own client.
func ForComponent(cfg *rest.Config, component string) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "klab-" + component
	cfg.QPS = 200
	cfg.Burst = 400
	return cfg
}

var klogOnce sync.Once

// RouteKlog sends client-go's own log lines (reflector errors, leader
// election transitions) to log, so a component has one log format. klog's
// logger is global and must not change while it logs: only the first call
// of a process counts.
func RouteKlog(log *slog.Logger) {
	klogOnce.Do(func() { klog.SetSlogLogger(log) })
}
