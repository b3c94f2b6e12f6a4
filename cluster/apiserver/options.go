package apiserver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/store"
)

// Default file locations on a master, where "klab up" puts them.
const (
	PKIDir            = "/etc/klab/pki"
	DefaultCAFile     = PKIDir + "/ca.crt"
	EncryptionKeyFile = PKIDir + "/encryption.key"
)

// Options are "klab apiserver"'s flags: file paths and addresses.
type Options struct {
	EtcdServers                       []string
	EtcdCAFile, EtcdCertFile, EtcdKey string
	TLSCertFile, TLSKeyFile           string
	ClientCAFile                      string
	KubeletCertFile, KubeletKeyFile   string
	EncryptionKeyFile                 string
	ServiceAccountKeyFile             string
	BindAddress                       string
	SecurePort                        int
	AdvertiseAddress                  string
	ServiceCIDR                       string
	NodePortRange                     string
	PodCIDR                           string
	NetworkMode                       string
	PodMTU                            int
	TolerationSeconds                 int64
	MaxRequestBytes                   int64
}

// DefaultOptions are the paths "klab up" installs.
func DefaultOptions() Options {
	return Options{
		EtcdServers:  []string{"https://127.0.0.1:2379"},
		EtcdCAFile:   DefaultCAFile,
		EtcdCertFile: PKIDir + "/etcd-client.crt", EtcdKey: PKIDir + "/etcd-client.key",
		TLSCertFile: PKIDir + "/apiserver.crt", TLSKeyFile: PKIDir + "/apiserver.key",
		ClientCAFile:    DefaultCAFile,
		KubeletCertFile: PKIDir + "/kubelet-client.crt", KubeletKeyFile: PKIDir + "/kubelet-client.key",
		EncryptionKeyFile:     EncryptionKeyFile,
		ServiceAccountKeyFile: PKIDir + "/sa.key",
		BindAddress:           "0.0.0.0",
		SecurePort:            DefaultPort,
		ServiceCIDR:           "10.96.0.0/16",
		NodePortRange:         "30000-32767",
		PodCIDR:               "10.42.0.0/16",
		NetworkMode:           string(api.ModeBGP),
		PodMTU:                api.DefaultPodMTU,
		TolerationSeconds:     DefaultTolerationSecs,
		MaxRequestBytes:       DefaultMaxRequestBytes,
	}
}

// Config turns the options into a server configuration: it reads the
// certificates and the key and connects to etcd. Close the store when done.
func (o Options) Config(log *slog.Logger) (Config, error) {
	var c Config
	var err error
	if c.ServiceCIDR, err = netip.ParsePrefix(o.ServiceCIDR); err != nil {
		return c, fmt.Errorf("--service-cluster-ip-range %q: %v", o.ServiceCIDR, err)
	}
	if c.PodCIDR, err = netip.ParsePrefix(o.PodCIDR); err != nil {
		return c, fmt.Errorf("--pod-cidr %q: %v", o.PodCIDR, err)
	}
	lo, hi, ok := strings.Cut(o.NodePortRange, "-")
	if c.NodePortMin, err = strconv.Atoi(lo); !ok || err != nil {
		return c, fmt.Errorf("--service-node-port-range %q: want MIN-MAX, like 30000-32767", o.NodePortRange)
	}
	if c.NodePortMax, err = strconv.Atoi(hi); err != nil || c.NodePortMax < c.NodePortMin {
		return c, fmt.Errorf("--service-node-port-range %q: want MIN-MAX, like 30000-32767", o.NodePortRange)
	}
	if o.AdvertiseAddress != "" {
		if c.AdvertiseAddress, err = netip.ParseAddr(o.AdvertiseAddress); err != nil {
			return c, fmt.Errorf("--advertise-address %q: %v", o.AdvertiseAddress, err)
		}
	}
	c.NetworkMode = api.NetworkMode(o.NetworkMode)
	c.PodMTU = int32(o.PodMTU)
	c.Port = o.SecurePort
	c.BindAddress = net.JoinHostPort(o.BindAddress, strconv.Itoa(o.SecurePort))
	c.DefaultTolerationSeconds = o.TolerationSeconds
	c.MaxRequestBytes = o.MaxRequestBytes
	c.Log = log
	if c.TLS, err = pki.ServerTLS(o.TLSCertFile, o.TLSKeyFile, o.ClientCAFile, false); err != nil {
		return c, err
	}
	if o.KubeletCertFile != "" {
		if c.KubeletTLS, err = pki.ClientTLS(o.KubeletCertFile, o.KubeletKeyFile, o.ClientCAFile); err != nil {
			return c, err
		}
	}
	if o.EncryptionKeyFile != "" {
		if c.EncryptionKey, err = store.LoadKey(o.EncryptionKeyFile); err != nil {
			return c, err
		}
	}
	if o.ServiceAccountKeyFile != "" {
		if c.ServiceAccountKey, err = pki.LoadSigningKey(o.ServiceAccountKeyFile); err != nil {
			return c, err
		}
	}
	etcdTLS, err := pki.ClientTLS(o.EtcdCertFile, o.EtcdKey, o.EtcdCAFile)
	if err != nil {
		return c, fmt.Errorf("etcd client: %w", err)
	}
	if c.Store, err = store.New(store.Config{Endpoints: o.EtcdServers, TLS: etcdTLS}, StorageCodec()); err != nil {
		return c, err
	}
	return c, nil
}

// Run runs a server from options until ctx ends.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	cfg, err := o.Config(log)
	if err != nil {
		return err
	}
	defer cfg.Store.Close()
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}
