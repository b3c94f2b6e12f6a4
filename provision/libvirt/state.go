package libvirt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"sigs.k8s.io/yaml"

	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// state is what the provider records about a cluster beside the cluster's
// own state, so that later commands (status, ssh, down) reach the same
// libvirt and know how the machines were made.
type state struct {
	URI      string `json:"uri"`
	Accel    string `json:"accel,omitempty"`    // kvm or tcg
	AccelWhy string `json:"accelWhy,omitempty"` // how it was chosen
	// NodeImage is the hash of klab's node image the machines boot, or
	// empty with a cloud image.
	NodeImage string `json:"nodeImage,omitempty"`
	// CloudImage is the cloud image the machines' disks are based on.
	CloudImage string `json:"cloudImage,omitempty"`
}

func statePath(cluster string) string { return filepath.Join(provision.Dir(cluster), "libvirt.yaml") }

func loadState(cluster string) (*state, error) {
	b, err := os.ReadFile(statePath(cluster))
	if err != nil {
		return nil, err
	}
	var s state
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(cluster), err)
	}
	return &s, nil
}

func saveState(cluster string, s *state) error {
	b, err := yaml.Marshal(s)
	if err != nil {
		return err
	}
	return os.WriteFile(statePath(cluster), b, 0o600)
}

// Files of a cluster's SSH identity, in its state directory.
func sshDir(cluster string) string         { return filepath.Join(provision.Dir(cluster), "ssh") }
func userKeyPath(cluster string) string    { return filepath.Join(sshDir(cluster), "id_ed25519") }
func knownHostsPath(cluster string) string { return filepath.Join(sshDir(cluster), "known_hosts") }

// nodeDir holds a machine's local files (its serial log).
func nodeDir(cluster, node string) string {
	return filepath.Join(provision.Dir(cluster), "nodes", node)
}

// ensureUserKey makes the cluster's ed25519 user key once and returns its
// public half.
func ensureUserKey(cluster string) (string, error) {
	if err := os.MkdirAll(sshDir(cluster), 0o700); err != nil {
		return "", err
	}
	if b, err := os.ReadFile(userKeyPath(cluster) + ".pub"); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	priv, pub, err := transport.NewKey("klab@" + cluster)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(userKeyPath(cluster), priv, 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(userKeyPath(cluster)+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return "", err
	}
	return pub, nil
}

func userSigner(cluster string) (ssh.Signer, error) {
	b, err := os.ReadFile(userKeyPath(cluster))
	if err != nil {
		return nil, fmt.Errorf("cluster %s has no SSH key (%w): was it made by the libvirt provider?", cluster, err)
	}
	return ssh.ParsePrivateKey(b)
}

var knownHostsMu sync.Mutex

// pinHostKey records a machine's host key in the cluster's known_hosts,
// replacing what was pinned for its addresses before.
func pinHostKey(cluster string, addrs []string, public string) error {
	line, err := transport.KnownHostsLine(addrs, public)
	if err != nil {
		return err
	}
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	path := knownHostsPath(cluster)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(old))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == strings.Fields(line)[0] {
			continue
		}
		out.WriteString(sc.Text() + "\n")
	}
	out.WriteString(line + "\n")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
