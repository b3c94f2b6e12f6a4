package apiserver_test

import (
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/apiserver/apiservertest"
	"github.com/klab-dev/klab/cluster/pki"
)

func TestServiceAccountTokens(t *testing.T) {
	c := apiservertest.Start(t)
	admin := c.Clientset(t, pki.AdminSpec())
	ctx := ctxT(t)
	// Every namespace has a default service account, new ones too.
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "kube-system", "team"} {
		if _, err := admin.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Errorf("%s/default: %v", ns, err)
		}
	}
	tokenClient := func(ns string) *kubernetes.Clientset {
		t.Helper()
		tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil || tr.Status.Token == "" || tr.Status.ExpirationTimestamp.IsZero() {
			t.Fatalf("token for %s/default: %v %+v", ns, err, tr.Status)
		}
		cs, err := kubernetes.NewForConfig(&rest.Config{Host: c.URL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM()}})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	team := tokenClient("team")
	if _, err := team.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("a service account reads: %v", err)
	}
	if _, err := team.CoreV1().ConfigMaps("team").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a service account writes: %v", err)
	}
	system := tokenClient("kube-system")
	if _, err := system.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("kube-system's service account writes: %v", err)
	}
	// Deleting the service account revokes its tokens.
	if err := admin.CoreV1().ServiceAccounts("team").Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := team.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("token of a deleted service account: %v", err)
	}
	bogus, _ := kubernetes.NewForConfig(&rest.Config{Host: c.URL, BearerToken: "not.a.token", TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.CertPEM()}})
	if _, err := bogus.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("a bogus token: %v", err)
	}
	// Views may not mint tokens.
	view := c.Clientset(t, pki.ViewSpec("student"))
	if _, err := view.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("view minting a token: %v", err)
	}
}
