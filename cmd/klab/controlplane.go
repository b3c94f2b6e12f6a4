package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/apiserver"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/etcd"
	"github.com/klab-dev/klab/cluster/install"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/provision"
)

// addControlPlane adds the control plane's components (etcd, apiserver)
// and "klab kubeconfig".
func (a *app) addControlPlane(root *cobra.Command) {
	for _, c := range []*cobra.Command{a.etcdCmd(), a.apiserverCmd()} {
		c.GroupID = "components"
		root.AddCommand(c)
	}
	k := a.kubeconfigCmd()
	k.GroupID = "cluster"
	root.AddCommand(k)
}

func (a *app) etcdCmd() *cobra.Command {
	c := etcd.Config{
		DataDir:  "/var/lib/klab/etcd",
		CertFile: apiserver.PKIDir + "/etcd.crt",
		KeyFile:  apiserver.PKIDir + "/etcd.key",
		CAFile:   apiserver.DefaultCAFile,
	}
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Run an etcd member, embedded in klab (runs on masters)",
		Long: `Run one member of the cluster's etcd: the real etcd server, embedded in the
klab binary, serving clients and peers over TLS with client certificates from
the cluster CA. "klab up" starts one on every master under its supervisor.`,
		Example: `  klab node exec master -- klab supervise logs etcd
  klab etcd --member master --data-dir /var/lib/klab/etcd \
    --listen-client-urls https://192.168.34.10:2379,https://127.0.0.1:2379 \
    --listen-peer-urls https://192.168.34.10:2380`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return etcd.Run(cmd.Context(), c, func(s *etcd.Server) {
				a.log.Info("etcd member ready", "member", c.Name, "clients", strings.Join(s.ClientURLs(), ","))
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Name, "member", "", "this member's name in --initial-cluster")
	f.StringVar(&c.DataDir, "data-dir", c.DataDir, "where the member keeps its data")
	f.StringSliceVar(&c.ListenClientURLs, "listen-client-urls", nil, "URLs to serve clients on")
	f.StringSliceVar(&c.AdvertiseClientURLs, "advertise-client-urls", nil, "client URLs to tell the other members (default: the listen URLs)")
	f.StringSliceVar(&c.ListenPeerURLs, "listen-peer-urls", nil, "URLs to serve peers on")
	f.StringSliceVar(&c.AdvertisePeerURLs, "initial-advertise-peer-urls", nil, "peer URLs to tell the other members (default: the listen URLs)")
	f.StringVar(&c.InitialCluster, "initial-cluster", "", "every member: NAME=PEER-URL,… (default: this member alone)")
	f.StringVar(&c.ClusterToken, "initial-cluster-token", "", "keeps members of different clusters apart")
	f.StringVar(&c.CertFile, "cert-file", c.CertFile, "the member's certificate (serves clients and peers)")
	f.StringVar(&c.KeyFile, "key-file", c.KeyFile, "the member's key")
	f.StringVar(&c.CAFile, "trusted-ca-file", c.CAFile, "the CA client and peer certificates must come from")
	f.StringVar(&c.LogLevel, "log-level", "warn", "etcd's log level: debug, info, warn or error")
	cmd.MarkFlagRequired("member")
	cmd.MarkFlagRequired("listen-client-urls")
	cmd.MarkFlagRequired("listen-peer-urls")
	cmd.AddCommand(a.etcdGetCmd())
	return cmd
}

func (a *app) etcdGetCmd() *cobra.Command {
	var o etcd.GetOptions
	var endpoints []string
	opts := apiserver.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print keys and values stored in etcd, as etcdctl get does (run on a master)",
		Long: `Print what the API server stored: every object is a key under /registry
(/registry/pods/default/web-1) whose value is the object's JSON; secrets are
AES-GCM ciphertext. It connects with the API server's etcd client certificate.`,
		Example: `  klab node exec master -- klab etcd get --prefix --keys-only /registry/pods/
  klab node exec master -- klab etcd get /registry/network.klab.dev/clusternetworks/default
  klab node exec master -- klab etcd get --prefix /registry/secrets/default/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tc, err := pki.ClientTLS(opts.EtcdCertFile, opts.EtcdKey, opts.EtcdCAFile)
			if err != nil {
				return fmt.Errorf("%w: run it on a master (klab node exec master -- klab etcd get …)", err)
			}
			return etcd.Get(cmd.Context(), endpoints, tc, args[0], o, a.stdout)
		},
	}
	cmd.Flags().BoolVar(&o.Prefix, "prefix", false, "every key that starts with KEY")
	cmd.Flags().BoolVar(&o.KeysOnly, "keys-only", false, "print the keys only")
	cmd.Flags().StringSliceVar(&endpoints, "endpoints", opts.EtcdServers, "etcd client URLs")
	cmd.Flags().StringVar(&opts.EtcdCertFile, "cert", opts.EtcdCertFile, "client certificate")
	cmd.Flags().StringVar(&opts.EtcdKey, "key", opts.EtcdKey, "client key")
	cmd.Flags().StringVar(&opts.EtcdCAFile, "cacert", opts.EtcdCAFile, "the CA of etcd's certificate")
	return cmd
}

func (a *app) apiserverCmd() *cobra.Command {
	o := apiserver.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "apiserver",
		Short: "Run the API server (runs on masters)",
		Long: `Run klab's API server: the Kubernetes REST API over HTTPS for the resources klab
serves, stored in etcd. Clients authenticate with certificates from the cluster
CA; "klab up" starts one on every master under its supervisor.`,
		Example: `  klab node exec master -- klab supervise logs apiserver
  klab apiserver --etcd-servers https://127.0.0.1:2379 --advertise-address 192.168.34.10`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return apiserver.Run(cmd.Context(), o, a.log)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.EtcdServers, "etcd-servers", o.EtcdServers, "etcd client URLs")
	f.StringVar(&o.EtcdCAFile, "etcd-cafile", o.EtcdCAFile, "the CA of etcd's certificates")
	f.StringVar(&o.EtcdCertFile, "etcd-certfile", o.EtcdCertFile, "client certificate for etcd")
	f.StringVar(&o.EtcdKey, "etcd-keyfile", o.EtcdKey, "client key for etcd")
	f.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "serving certificate")
	f.StringVar(&o.TLSKeyFile, "tls-private-key-file", o.TLSKeyFile, "serving key")
	f.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "the CA client certificates must come from")
	f.StringVar(&o.KubeletCertFile, "kubelet-client-certificate", o.KubeletCertFile, "client certificate for the node agents (logs, exec)")
	f.StringVar(&o.KubeletKeyFile, "kubelet-client-key", o.KubeletKeyFile, "client key for the node agents")
	f.StringVar(&o.EncryptionKeyFile, "encryption-key-file", o.EncryptionKeyFile, "AES key that encrypts secrets in etcd (empty: stored in clear)")
	f.StringVar(&o.ServiceAccountKeyFile, "service-account-key-file", o.ServiceAccountKeyFile, "key that signs service account tokens (empty: no bearer tokens)")
	f.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "address to listen on")
	f.IntVar(&o.SecurePort, "secure-port", o.SecurePort, "HTTPS port")
	f.StringVar(&o.AdvertiseAddress, "advertise-address", "", "this server's address in the kubernetes service's endpoints")
	f.StringVar(&o.ServiceCIDR, "service-cluster-ip-range", o.ServiceCIDR, "range of service cluster IPs")
	f.StringVar(&o.NodePortRange, "service-node-port-range", o.NodePortRange, "range of NodePorts")
	f.StringVar(&o.PodCIDR, "pod-cidr", o.PodCIDR, "pod network of the default ClusterNetwork")
	f.StringVar(&o.NetworkMode, "network-mode", o.NetworkMode, "mode of the default ClusterNetwork: bgp, vxlan or ipip")
	f.IntVar(&o.PodMTU, "pod-mtu", o.PodMTU, "pods' MTU in the default ClusterNetwork: the underlay's less 50 (VXLAN)")
	f.Int64Var(&o.TolerationSeconds, "default-not-ready-toleration-seconds", o.TolerationSeconds, "how long pods stay on a not-ready or unreachable node")
	f.Int64Var(&o.MaxRequestBytes, "max-request-bytes", o.MaxRequestBytes, "largest request body (413 beyond)")
	return cmd
}

func (a *app) kubeconfigCmd() *cobra.Command {
	var path bool
	var view string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the cluster's admin kubeconfig (or its path)",
		Long: `Print the admin kubeconfig that "klab up" wrote: the API server's address, the
cluster CA and an admin client certificate. kubectl and client-go use it.
With --view, print a new kubeconfig for a read-only user instead: its
certificate, issued from the cluster CA, puts it in the group klab:view.`,
		Example: `  sudo klab kubeconfig > ~/.kube/klab.yaml
  export KUBECONFIG=$(sudo klab kubeconfig --path)
  sudo klab kubeconfig --view student > student.yaml   # may read, not write`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if view != "" {
				c, err := provision.Load(a.cluster)
				if err != nil {
					return err
				}
				b, err := install.UserKubeconfig(c, view, []string{pki.GroupView})
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(b)
				return err
			}
			p := client.KubeconfigPath(a.cluster)
			if path {
				fmt.Fprintln(a.stdout, p)
				return nil
			}
			b, err := os.ReadFile(p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("cluster %q has no kubeconfig at %s: create the cluster with 'sudo klab up --name %s'", a.cluster, p, a.cluster)
			case errors.Is(err, fs.ErrPermission):
				return fmt.Errorf("cannot read %s: it holds an admin key and only root may read it: run with sudo", p)
			case err != nil:
				return err
			}
			_, err = a.stdout.Write(b)
			return err
		},
	}
	cmd.Flags().BoolVar(&path, "path", false, "print the file's path instead")
	cmd.Flags().StringVar(&view, "view", "", "print a kubeconfig for a new read-only user of this name")
	cmd.MarkFlagsMutuallyExclusive("path", "view")
	return cmd
}
