// Package pki is a cluster's certificate authority: an ECDSA P-256 CA kept
// in the cluster's state directory on the host, and the certificates it
// issues to etcd, the API server, the components, the nodes and the admin.
// Users and groups come from a certificate's subject: the API server reads
// the common name as the user and the organizations as the groups.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// Users and groups that klab's certificates carry and the API server's
// authorizer knows.
const (
	GroupMasters    = "system:masters" // admin: may do anything
	GroupNodes      = "system:nodes"   // node agents
	GroupView       = "klab:view"      // read-only
	NodeUserPrefix  = "system:node:"   // a node agent's user is system:node:NAME
	UserScheduler   = "system:kube-scheduler"
	UserControllers = "system:kube-controller-manager"
	UserAdmin       = "klab-admin"
	UserAPIServer   = "klab:apiserver" // the API server as a client of etcd and the agents
)

// Validity of what NewCA and Issue make unless a Spec says otherwise.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
)

// File names in a PKI directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CA is a certificate authority: its certificate and private key.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	certPEM []byte
}

// NewCA makes a self-signed CA named commonName.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"klab"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, certPEM: pemBlock("CERTIFICATE", der)}, nil
}

// LoadCA reads a CA from dir (ca.crt and ca.key).
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA in %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA in %s: the key is not an ECDSA key", dir)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("CA in %s: %s is not a CA certificate", dir, CACertFile)
	}
	return &CA{Cert: cert, Key: key, certPEM: certPEM}, nil
}

// LoadOrCreateCA loads the CA in dir, or makes one and saves it there when
// there is none. created tells which.
func LoadOrCreateCA(dir, commonName string) (ca *CA, created bool, err error) {
	ca, err = LoadCA(dir)
	if err == nil {
		return ca, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if ca, err = NewCA(commonName); err != nil {
		return nil, false, err
	}
	if err := ca.Save(dir); err != nil {
		return nil, false, err
	}
	return ca, true, nil
}

// Save writes the CA to dir: the certificate readable by all, the key by
// its owner only.
func (ca *CA) Save(dir string) error {
	key, err := marshalKey(ca.Key)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), key, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, CACertFile), ca.certPEM, 0o644)
}

// CertPEM is the CA certificate in PEM, what clients and servers trust.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Pool is a pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Usage says what a certificate is for.
type Usage int

// Usages; a certificate may have both.
const (
	ServerAuth Usage = 1 << iota
	ClientAuth
)

// Spec describes a certificate to issue.
type Spec struct {
	// CommonName is the user a client certificate authenticates as.
	CommonName string
	// Organization holds the user's groups.
	Organization []string
	// DNSNames and IPs are the names a server certificate is valid for.
	DNSNames []string
	IPs      []netip.Addr
	Usage    Usage
	// Validity defaults to CertValidity.
	Validity time.Duration
}

// Validate checks that a spec can be issued.
func (s Spec) Validate() error {
	switch {
	case s.CommonName == "":
		return errors.New("certificate spec: common name is empty")
	case s.Usage&(ServerAuth|ClientAuth) == 0:
		return fmt.Errorf("certificate %q: no usage: set ServerAuth, ClientAuth or both", s.CommonName)
	case s.Usage&ServerAuth != 0 && len(s.DNSNames) == 0 && len(s.IPs) == 0:
		return fmt.Errorf("certificate %q: a server certificate needs at least one DNS name or IP", s.CommonName)
	case s.Validity < 0:
		return fmt.Errorf("certificate %q: negative validity", s.CommonName)
	}
	for _, ip := range s.IPs {
		if !ip.IsValid() {
			return fmt.Errorf("certificate %q: invalid IP address in the SANs", s.CommonName)
		}
	}
	return nil
}

// KeyPair is an issued certificate and its private key.
type KeyPair struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Issue makes a new key and a certificate for it signed by the CA.
func (ca *CA) Issue(s Spec) (*KeyPair, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %q: %w", s.CommonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	validity := s.Validity
	if validity == 0 {
		validity = CertValidity
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: s.Organization},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     s.DNSNames,
	}
	for _, ip := range s.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.Unmap().AsSlice()))
	}
	if s.Usage&ServerAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.Usage&ClientAuth != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", s.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: keyPEM}, nil
}

// TLSCertificate returns the pair for a tls.Config.
func (kp *KeyPair) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
}

// Save writes the pair to dir as NAME.crt and NAME.key (0600).
func (kp *KeyPair) Save(dir, name string) error {
	if err := writeFile(filepath.Join(dir, name+".key"), kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, name+".crt"), kp.CertPEM, 0o644)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial number: %w", err)
	}
	return serial, nil
}

func marshalKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile writes a file atomically with mode, creating dir (0700).
func writeFile(path string, data []byte, mode fs.FileMode) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
