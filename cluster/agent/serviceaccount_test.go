package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/internal/testutil"
)

func TestServiceAccountVolume(t *testing.T) {
	noMount := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "quiet"}, AutomountServiceAccountToken: ptr.To(false)}
	cs := fake.NewSimpleClientset(
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "default"}}, noMount)
	issued := 0
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		issued++
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		if tr.Spec.ExpirationSeconds == nil || *tr.Spec.ExpirationSeconds != 3600 {
			t.Errorf("token requested for %v seconds", tr.Spec.ExpirationSeconds)
		}
		tr.Status = authenticationv1.TokenRequestStatus{Token: "token-" + string(rune('0'+issued)), ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour))}
		return true, tr, nil
	})
	ca := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(ca, []byte("CA"), 0o644)
	m := newTokenManager(cs, ca, slog.New(slog.DiscardHandler))
	root := t.TempDir()
	ctx := context.Background()
	pod := func(uid, account string, automount *bool) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: uid, UID: types.UID(uid)},
			Spec: corev1.PodSpec{ServiceAccountName: account, AutomountServiceAccountToken: automount}}
	}

	p := pod("a", "default", nil)
	if err := m.ensure(ctx, p, filepath.Join(root, "a")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"token": "token-1", "ca.crt": "CA", "namespace": "default"} {
		if b, err := os.ReadFile(filepath.Join(root, "a", saVolume, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	if v := m.volumes(p); len(v) != 1 || v[0].HostPath.Path != filepath.Join(root, "a", saVolume) {
		t.Errorf("volumes %+v", v)
	}
	c := &corev1.Container{Name: "app"}
	if mt := m.mounts(p, c); len(mt) != 1 || mt[0].Path != saMountPath || !mt[0].ReadOnly {
		t.Errorf("mounts %+v", mt)
	}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: saMountPath}}
	if mt := m.mounts(p, c); len(mt) != 0 {
		t.Errorf("a container with its own mount there got %+v", mt)
	}
	if err := m.ensure(ctx, p, filepath.Join(root, "a")); err != nil || issued != 1 {
		t.Errorf("a second ensure asked for a token again (%d tokens): %v", issued, err)
	}

	// Renewal: a token that is due is replaced.
	m.mu.Lock()
	m.pods["a"].renew = time.Now().Add(-time.Second)
	m.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.run(rctx); close(done) }()
	m.poke()
	testutil.Poll(t, 5*time.Second, "the due token renewed", func() bool {
		b, _ := os.ReadFile(filepath.Join(root, "a", saVolume, "token"))
		return string(b) == "token-2"
	})
	cancel()
	<-done

	// The service account says no; the pod's own field wins over it.
	for _, tc := range []struct {
		uid, account string
		automount    *bool
		want         bool
	}{{"b", "quiet", nil, false}, {"c", "quiet", ptr.To(true), true}, {"d", "default", ptr.To(false), false}} {
		p := pod(tc.uid, tc.account, tc.automount)
		if err := m.ensure(ctx, p, filepath.Join(root, tc.uid)); err != nil {
			t.Fatal(err)
		}
		if got := len(m.volumes(p)) == 1; got != tc.want {
			t.Errorf("pod %s (account %s, automount %v): volume %v, want %v", tc.uid, tc.account, tc.automount, got, tc.want)
		}
	}
	if err := m.ensure(ctx, pod("e", "missing", nil), filepath.Join(root, "e")); err == nil {
		t.Error("a pod of a missing service account got through")
	}
	m.forget("a")
	if v := m.volumes(p); v != nil {
		t.Errorf("a forgotten pod still has %+v", v)
	}
}
