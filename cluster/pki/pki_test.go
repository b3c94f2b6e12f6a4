package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, created, err := LoadOrCreateCA(dir, "klab-test")
	if err != nil || !created {
		t.Fatalf("create: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %o, want 600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateCA(dir, "klab-test")
	if err != nil || created {
		t.Fatalf("load: created=%v err=%v", created, err)
	}
	if !again.Cert.Equal(ca.Cert) || !again.Key.Equal(ca.Key) {
		t.Error("loaded CA differs from the saved one")
	}
	if ca.Cert.PublicKeyAlgorithm != x509.ECDSA || !ca.Cert.IsCA {
		t.Errorf("CA: algorithm %v, IsCA %v", ca.Cert.PublicKeyAlgorithm, ca.Cert.IsCA)
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadCA(dir); err == nil {
		t.Fatal("LoadCA of an empty directory succeeded")
	}
	ca, _ := NewCA("a")
	leaf, err := ca.Issue(AdminSpec())
	if err != nil {
		t.Fatal(err)
	}
	// A leaf certificate is not a CA.
	os.WriteFile(filepath.Join(dir, CACertFile), leaf.CertPEM, 0o644)
	os.WriteFile(filepath.Join(dir, CAKeyFile), leaf.KeyPEM, 0o600)
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("LoadCA of a leaf: %v", err)
	}
}

func TestIssue(t *testing.T) {
	ca, err := NewCA("klab-test")
	if err != nil {
		t.Fatal(err)
	}
	master := netip.MustParseAddr("192.168.34.10")
	host := netip.MustParseAddr("192.168.34.254")
	svc := netip.MustParseAddr("10.96.0.1")
	tests := []struct {
		name       string
		spec       Spec
		wantCN     string
		wantOrg    []string
		wantServer bool
		wantClient bool
		wantIPs    []string
		wantDNS    []string
	}{
		{"etcd", EtcdSpec("master", master), "etcd-master", nil, true, true, []string{"192.168.34.10", "127.0.0.1"}, []string{"master", "localhost"}},
		{"etcd client", EtcdClientSpec(), "klab:apiserver-etcd-client", nil, false, true, nil, nil},
		{"apiserver", APIServerSpec([]netip.Addr{master, netip.MustParseAddr("192.168.34.11")}, host, svc), "kube-apiserver", nil, true, false,
			[]string{"192.168.34.10", "192.168.34.11", "192.168.34.254", "127.0.0.1", "10.96.0.1"},
			[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}},
		{"kubelet client", KubeletClientSpec(), "klab:apiserver-kubelet-client", []string{GroupMasters}, false, true, nil, nil},
		{"scheduler", ComponentSpec(UserScheduler), "system:kube-scheduler", nil, false, true, nil, nil},
		{"controller manager", ComponentSpec(UserControllers), "system:kube-controller-manager", nil, false, true, nil, nil},
		{"node", NodeSpec("node1", netip.MustParseAddr("192.168.34.11")), "system:node:node1", []string{GroupNodes}, true, true, []string{"192.168.34.11", "127.0.0.1"}, []string{"node1", "localhost"}},
		{"admin", AdminSpec(), "klab-admin", []string{GroupMasters}, false, true, nil, nil},
		{"view", ViewSpec("student"), "student", []string{GroupView}, false, true, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.Issue(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			c := kp.Cert
			if c.Subject.CommonName != tt.wantCN || !slices.Equal(c.Subject.Organization, tt.wantOrg) {
				t.Errorf("subject = %q %v, want %q %v", c.Subject.CommonName, c.Subject.Organization, tt.wantCN, tt.wantOrg)
			}
			if got := slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth); got != tt.wantServer {
				t.Errorf("server auth = %v", got)
			}
			if got := slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth); got != tt.wantClient {
				t.Errorf("client auth = %v", got)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) || !slices.Equal(c.DNSNames, tt.wantDNS) {
				t.Errorf("SANs = %v %v, want %v %v", ips, c.DNSNames, tt.wantIPs, tt.wantDNS)
			}
			usage := x509.ExtKeyUsageClientAuth
			if tt.wantServer {
				usage = x509.ExtKeyUsageServerAuth
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("verify against the CA: %v", err)
			}
			if _, err := kp.TLSCertificate(); err != nil {
				t.Errorf("key pair: %v", err)
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		spec Spec
		want string
	}{
		{Spec{Usage: ClientAuth}, "common name is empty"},
		{Spec{CommonName: "x"}, "no usage"},
		{Spec{CommonName: "x", Usage: ServerAuth}, "needs at least one DNS name or IP"},
		{Spec{CommonName: "x", Usage: ServerAuth, IPs: []netip.Addr{{}}}, "invalid IP"},
		{Spec{CommonName: "x", Usage: ClientAuth}, ""},
	}
	for _, tt := range tests {
		err := tt.spec.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.spec, err, tt.want)
		}
	}
}

// TestTLSHandshake checks that the files Save writes make a working mutual
// TLS pair through ServerTLS and ClientTLS.
func TestTLSHandshake(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := LoadOrCreateCA(dir, "klab-test")
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := ca.Issue(APIServerSpec(nil, netip.Addr{}, netip.Addr{}))
	cli, _ := ca.Issue(AdminSpec())
	if err := srv.Save(dir, "server"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Save(dir, "admin"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "admin.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %o", fi.Mode().Perm())
	}
	scfg, err := ServerTLS(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, CACertFile), true)
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := ClientTLS(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"), filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- err.Error()
			return
		}
		got <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	ccfg.ServerName = "localhost"
	c, err := tls.Dial("tcp", ln.Addr().String(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if cn := <-got; cn != UserAdmin {
		t.Errorf("server saw client %q", cn)
	}
}

func TestSigningKey(t *testing.T) {
	b, err := NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "sa.key")
	os.WriteFile(p, b, 0o600)
	k, err := LoadSigningKey(p)
	if err != nil || k.Curve.Params().Name != "P-256" {
		t.Fatalf("load: %v", err)
	}
	os.WriteFile(p, []byte("nonsense"), 0o600)
	if _, err := LoadSigningKey(p); err == nil {
		t.Fatal("loaded nonsense")
	}
}
