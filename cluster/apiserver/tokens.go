package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Service account tokens are JWTs signed by the cluster's service account
// key (ES256), as upstream's bound tokens: the subject is
// system:serviceaccount:NS:NAME, and a token stops working when its
// service account is deleted (the UID must still match).
const (
	tokenIssuer        = "https://kubernetes.default.svc.cluster.local"
	saUserPrefix       = "system:serviceaccount:"
	saGroup            = "system:serviceaccounts"
	defaultTokenExpiry = time.Hour
	minTokenExpiry     = 10 * time.Minute
	maxTokenExpiry     = 48 * time.Hour
)

// tokenClaims are a token's claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// createToken is POST serviceaccounts/NAME/token: a TokenRequest answered
// with a signed token.
func (s *Server) createToken(w http.ResponseWriter, req *request) error {
	if req.verb != "create" {
		return apierrors.NewMethodNotSupported(req.res.gr(), req.Method+" on serviceaccounts/token (POST a TokenRequest)")
	}
	if s.cfg.ServiceAccountKey == nil {
		return apierrors.NewServiceUnavailable("this API server has no service account signing key: start it with --service-account-key-file")
	}
	gvk := authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")
	obj, _, err := s.decodeBody(req.Request, gvk, &authenticationv1.TokenRequest{})
	if err != nil {
		return err
	}
	tr := obj.(*authenticationv1.TokenRequest)
	var sa corev1.ServiceAccount
	if err := s.store.Get(req.Context(), req.res.key(req.namespace, req.name), 0, &sa); err != nil {
		return storeError(err, req.res.gr(), req.name)
	}
	expiry := defaultTokenExpiry
	if e := tr.Spec.ExpirationSeconds; e != nil {
		expiry = time.Duration(*e) * time.Second
		if expiry < minTokenExpiry || expiry > maxTokenExpiry {
			return apierrors.NewInvalid(gvk.GroupKind(), req.name, field.ErrorList{field.Invalid(field.NewPath("spec", "expirationSeconds"), *e,
				fmt.Sprintf("must be between %d and %d seconds", int(minTokenExpiry.Seconds()), int(maxTokenExpiry.Seconds())))})
		}
	}
	audiences := tr.Spec.Audiences
	if len(audiences) == 0 {
		audiences = []string{tokenIssuer}
	}
	now := time.Now()
	claims := tokenClaims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: tokenIssuer, Subject: saUserPrefix + sa.Namespace + ":" + sa.Name, Audience: audiences,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(expiry)),
	}}
	claims.Kubernetes.Namespace = sa.Namespace
	claims.Kubernetes.ServiceAccount.Name = sa.Name
	claims.Kubernetes.ServiceAccount.UID = string(sa.UID)
	token, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(s.cfg.ServiceAccountKey)
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("sign token: %w", err))
	}
	tr.Namespace, tr.Name = sa.Namespace, sa.Name
	tr.Spec.Audiences = audiences
	tr.Spec.ExpirationSeconds = ptrInt64(int64(expiry.Seconds()))
	tr.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(now.Add(expiry))}
	return s.respond(w, req, http.StatusCreated, tr)
}

func ptrInt64(v int64) *int64 { return &v }

// authenticateToken checks a bearer token: the signature, the time, the
// audience, and that its service account still exists.
func (s *Server) authenticateToken(ctx context.Context, token string) (*user, error) {
	if s.cfg.ServiceAccountKey == nil {
		return nil, errors.New("this server accepts no bearer tokens")
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return s.cfg.ServiceAccountKey.Public(), nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}), jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(tokenIssuer), jwt.WithExpirationRequired())
	if err != nil {
		return nil, err
	}
	k := claims.Kubernetes
	if claims.Subject != saUserPrefix+k.Namespace+":"+k.ServiceAccount.Name {
		return nil, errors.New("the subject does not name the token's service account")
	}
	res := s.reg.lookup(corev1.SchemeGroupVersion, "serviceaccounts")
	var sa corev1.ServiceAccount
	if err := s.store.Get(ctx, res.key(k.Namespace, k.ServiceAccount.Name), 0, &sa); err != nil {
		return nil, fmt.Errorf("service account %s/%s: %w", k.Namespace, k.ServiceAccount.Name, err)
	}
	if string(sa.UID) != k.ServiceAccount.UID {
		return nil, fmt.Errorf("service account %s/%s was deleted and made again since the token was issued", k.Namespace, k.ServiceAccount.Name)
	}
	return &user{name: claims.Subject, groups: []string{saGroup, saGroup + ":" + k.Namespace, "system:authenticated"}}, nil
}

// bearerToken is the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	t, ok := strings.CutPrefix(h, "Bearer ")
	return strings.TrimSpace(t), ok && strings.TrimSpace(t) != ""
}

// serviceAccountNamespace is the namespace of a service account user.
func serviceAccountNamespace(u *user) (string, bool) {
	if !slices.Contains(u.groups, saGroup) {
		return "", false
	}
	rest, ok := strings.CutPrefix(u.name, saUserPrefix)
	if !ok {
		return "", false
	}
	ns, _, ok := strings.Cut(rest, ":")
	return ns, ok
}

// createDefaultServiceAccount gives a new namespace its "default" service
// account, which pods use unless they name another.
func createDefaultServiceAccount(ctx context.Context, s *Server, obj runtime.Object) {
	ns := accessor(obj).GetName()
	res := s.reg.lookup(corev1.SchemeGroupVersion, "serviceaccounts")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if err := s.createObject(ctx, res, ns, sa, internalUser, false); err != nil && !apierrors.IsAlreadyExists(err) {
		s.log.Warn("default service account", "namespace", ns, "err", err)
	}
}
