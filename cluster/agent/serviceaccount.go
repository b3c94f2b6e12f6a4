package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/klab-dev/klab/cluster/runtime"
)

// The service account volume: what lets a pod's processes reach the API
// server from inside the cluster (client-go's rest.InClusterConfig, through
// the kubernetes Service): a token of the pod's service account from the
// TokenRequest API, the cluster CA and the pod's namespace, mounted
// read-only in every container, as the kubelet mounts kube-api-access-*.
const (
	saVolume    = "kube-api-access"
	saMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// saTokenTTL is how long a token is valid; the agent replaces it once
	// 80% of that has gone by, as the kubelet does.
	saTokenTTL = time.Hour
)

// tokenManager writes and renews the service account volumes of the
// node's pods. A nil *tokenManager gives pods none.
type tokenManager struct {
	cs     kubernetes.Interface
	caFile string
	log    *slog.Logger

	mu   sync.Mutex
	pods map[types.UID]*podToken
	kick chan struct{}
}

// podToken is a pod's service account volume.
type podToken struct {
	mount     bool // false: automountServiceAccountToken is off
	namespace string
	account   string
	dir       string
	renew     time.Time
}

func newTokenManager(cs kubernetes.Interface, caFile string, log *slog.Logger) *tokenManager {
	return &tokenManager{cs: cs, caFile: caFile, log: log.With("part", "tokens"), pods: map[types.UID]*podToken{}, kick: make(chan struct{}, 1)}
}

// ensure decides whether the pod gets the volume and, the first time,
// writes it into volumeDir. The pod's automountServiceAccountToken wins
// over its service account's; both default to true.
func (m *tokenManager) ensure(ctx context.Context, pod *corev1.Pod, volumeDir string) error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	_, known := m.pods[pod.UID]
	m.mu.Unlock()
	if known {
		return nil
	}
	account := pod.Spec.ServiceAccountName
	if account == "" {
		account = "default"
	}
	pt := &podToken{namespace: pod.Namespace, account: account, dir: filepath.Join(volumeDir, saVolume)}
	if a := pod.Spec.AutomountServiceAccountToken; a != nil {
		pt.mount = *a
	} else {
		sa, err := m.cs.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, account, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("service account %s/%s: %w", pod.Namespace, account, err)
		}
		pt.mount = sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken
	}
	if pt.mount {
		if err := os.MkdirAll(pt.dir, 0o755); err != nil {
			return err
		}
		if err := m.write(ctx, pt); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.pods[pod.UID] = pt
	m.mu.Unlock()
	m.poke()
	return nil
}

// write requests a token and writes the volume's three files into its
// directory, each replaced by a rename so that a reader never sees half a
// file. A pod torn down meanwhile has no directory: the write fails.
func (m *tokenManager) write(ctx context.Context, pt *podToken) error {
	ca, err := os.ReadFile(m.caFile)
	if err != nil {
		return fmt.Errorf("cluster CA for the service account volume: %w", err)
	}
	ttl := int64(saTokenTTL / time.Second)
	tr, err := m.cs.CoreV1().ServiceAccounts(pt.namespace).CreateToken(ctx, pt.account,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token for service account %s/%s: %w", pt.namespace, pt.account, err)
	}
	for name, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(pt.namespace)} {
		tmp := filepath.Join(pt.dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(pt.dir, name)); err != nil {
			return err
		}
	}
	issued := time.Now()
	expires := tr.Status.ExpirationTimestamp.Time
	if expires.IsZero() || expires.Before(issued) {
		expires = issued.Add(saTokenTTL)
	}
	pt.renew = issued.Add(expires.Sub(issued) * 8 / 10)
	return nil
}

// forget stops renewing a pod's token (its files go with its volumes).
func (m *tokenManager) forget(uid types.UID) {
	if m == nil {
		return
	}
	m.mu.Lock()
	delete(m.pods, uid)
	m.mu.Unlock()
}

func (m *tokenManager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// volumes is the service account volume of the pod's sandbox, if it has
// one.
func (m *tokenManager) volumes(pod *corev1.Pod) []runtime.Volume {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	pt := m.pods[pod.UID]
	m.mu.Unlock()
	if pt == nil || !pt.mount {
		return nil
	}
	return []runtime.Volume{{Name: saVolume, HostPath: &runtime.HostPathVolume{Path: pt.dir, Type: "Directory"}}}
}

// mounts puts the volume into a container, unless the container mounts
// something else there.
func (m *tokenManager) mounts(pod *corev1.Pod, c *corev1.Container) []runtime.Mount {
	if len(m.volumes(pod)) == 0 || slices.ContainsFunc(c.VolumeMounts, func(v corev1.VolumeMount) bool { return v.MountPath == saMountPath }) {
		return nil
	}
	return []runtime.Mount{{Volume: saVolume, Path: saMountPath, ReadOnly: true}}
}

// run renews tokens as they come due, until ctx ends. A failed renewal
// is tried again a few seconds later.
func (m *tokenManager) run(ctx context.Context) {
	timer := time.NewTimer(time.Minute)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-timer.C:
		}
		next := time.Now().Add(10 * time.Minute)
		m.mu.Lock()
		var due []*podToken
		for _, pt := range m.pods {
			if !pt.mount {
				continue
			}
			if !pt.renew.After(time.Now()) {
				due = append(due, pt)
			} else if pt.renew.Before(next) {
				next = pt.renew
			}
		}
		m.mu.Unlock()
		for _, pt := range due {
			if err := m.write(ctx, pt); err != nil {
				m.log.Warn("renew service account token", "account", pt.namespace+"/"+pt.account, "err", err)
				next = time.Now().Add(5 * time.Second)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(time.Until(next), time.Second))
	}
}
