package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("KLAB_STATE_DIR", dir)
	good := filepath.Join(dir, "lab", "kubeconfig")
	if err := os.MkdirAll(filepath.Dir(good), 0o700); err != nil {
		t.Fatal(err)
	}
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://192.0.2.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(good, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cluster, path, wantHost, wantErr string
	}{
		{"lab", "", "https://192.0.2.1:6443", ""},
		{"other", good, "https://192.0.2.1:6443", ""},
		{"missing", "", "", `cluster "missing" has no kubeconfig at ` + filepath.Join(dir, "missing", "kubeconfig") + `: start it with 'sudo klab up --name missing' or pass --kubeconfig`},
		{"lab", filepath.Join(dir, "nope"), "", "kubeconfig " + filepath.Join(dir, "nope") + " does not exist: check --kubeconfig"},
	}
	for _, tt := range tests {
		cfg, err := Config(tt.cluster, tt.path)
		switch {
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("Config(%s, %s) error %v\nwant %s", tt.cluster, tt.path, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || cfg.Host != tt.wantHost):
			t.Errorf("Config(%s, %s) = %v, %v", tt.cluster, tt.path, cfg, err)
		}
	}
	c := ForComponent(&rest.Config{Host: "https://192.0.2.1:6443"}, "scheduler")
	if c.UserAgent != "klab-scheduler" || c.QPS < 100 || !strings.HasPrefix(c.Host, "https://") {
		t.Errorf("ForComponent = %+v", c)
	}
}
