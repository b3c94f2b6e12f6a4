package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/dns"
)

func (a *app) dnsCmd() *cobra.Command {
	var (
		kubeconfig string
		cfg        dns.Config
	)
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Run the cluster DNS server (runs as a pod behind the Service 10.96.0.10)",
		Long: `Run klab's cluster DNS: it watches Services, Endpoints and Pods and answers for
the cluster domain — A records of Services (web.default.svc.cluster.local: the
cluster IP; the endpoints for a headless Service) and pods
(10-42-1-3.default.pod.cluster.local), SRV records of named ports
(_http._tcp.web.default.svc.cluster.local), reverse names of cluster IPs, and
NXDOMAIN for names that do not exist — and for every name outside the cluster
domain: there is no internet here to forward them to.

"klab up" runs it as the Deployment kube-system/klab-dns behind the Service
kube-system/kube-dns (10.96.0.10), from the built-in image "klab". Inside a
pod it reaches the API server with the pod's service account token through
the kubernetes Service (10.96.0.1).`,
		Example: `  klab get pods -n kube-system -l k8s-app=kube-dns -o wide
  klab exec client -- nslookup web.default.svc.cluster.local
  klab dns --listen 127.0.0.1:5353 --kubeconfig /etc/klab/admin.kubeconfig   # outside a pod`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var rc *rest.Config
			var err error
			if kubeconfig == "" {
				if rc, err = rest.InClusterConfig(); err != nil {
					return fmt.Errorf("not in a pod (%v): pass --kubeconfig", err)
				}
			} else if rc, err = client.Config(a.cluster, kubeconfig); err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(client.ForComponent(rc, "klab-dns"))
			if err != nil {
				return err
			}
			return dns.Run(cmd.Context(), cfg, cs, a.log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default: the pod's service account, in-cluster)")
	f.StringVar(&cfg.Domain, "domain", dns.DefaultDomain, "the cluster domain")
	f.StringVar(&cfg.Listen, "listen", ":53", "address to serve DNS on (UDP and TCP)")
	f.StringVar(&cfg.Health, "health", ":8080", "address of the HTTP /health and /ready endpoints (empty: none)")
	return cmd
}
