package install

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klab-dev/klab/cluster/apiserver"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/cluster/store"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/provision"
)

// Ports of the control plane on a master.
const (
	EtcdClientPort = 2379
	EtcdPeerPort   = 2380
)

// Files on the machines, where the components look for them.
const (
	pkiDir                = apiserver.PKIDir
	AgentKubeconfig       = provision.NodeConfigDir + "/agent.kubeconfig"
	SchedulerKubeconfig   = provision.NodeConfigDir + "/scheduler.kubeconfig"
	ControllersKubeconfig = provision.NodeConfigDir + "/controller-manager.kubeconfig"
	etcdDataDir           = provision.NodeStateDir + "/etcd"
)

// readyTimeout bounds each of up's waits after the supervisors' start
// (API servers, nodes Ready, the network's mode, DNS) on machines as fast
// as the host; see Slow.
const readyTimeout = 2 * time.Minute

// PKIDir is where a cluster's CA lives on the host.
func PKIDir(cluster string) string { return filepath.Join(provision.Dir(cluster), "pki") }

// KubeconfigPath is where up writes the cluster's admin kubeconfig.
func KubeconfigPath(cluster string) string { return client.KubeconfigPath(cluster) }

// controlPlane is what up installs for the control plane: the CA, the
// certificates of etcd, the API server, the components and the nodes,
// and on every master an etcd member and an API server.
type controlPlane struct {
	c       *provision.Cluster
	ca      *pki.CA
	admin   *pki.KeyPair
	bundles map[string]Bundle
	clients int
}

// prepareControlPlane makes the CA (or loads the one a previous attempt
// left) and every certificate, and the bundle of every machine.
func prepareControlPlane(c *provision.Cluster) (*controlPlane, error) {
	masters := c.Masters()
	if len(masters) == 0 {
		return nil, errors.New("the cluster has no master to run the control plane")
	}
	ca, _, err := pki.LoadOrCreateCA(PKIDir(c.Name), "klab-"+c.Name)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	cp := &controlPlane{c: c, ca: ca, bundles: map[string]Bundle{}}
	issue := func(s pki.Spec) (*pki.KeyPair, error) {
		if s.Usage&pki.ClientAuth != 0 {
			cp.clients++
		}
		return ca.Issue(s)
	}
	var ips []netip.Addr
	for _, m := range masters {
		ips = append(ips, m.IP)
	}
	kubernetesIP := c.ServiceCIDR.Masked().Addr().Next()
	shared := map[string]pki.Spec{
		"apiserver":          pki.APIServerSpec(ips, c.HostIP.Addr(), kubernetesIP),
		"etcd-client":        pki.EtcdClientSpec(),
		"kubelet-client":     pki.KubeletClientSpec(),
		"scheduler":          pki.ComponentSpec(pki.UserScheduler),
		"controller-manager": pki.ComponentSpec(pki.UserControllers),
	}
	pairs := map[string]*pki.KeyPair{}
	for name, spec := range shared {
		if pairs[name], err = issue(spec); err != nil {
			return nil, err
		}
	}
	if cp.admin, err = issue(pki.AdminSpec()); err != nil {
		return nil, err
	}
	if err := cp.admin.Save(PKIDir(c.Name), "admin"); err != nil {
		return nil, err
	}
	key, err := store.GenerateKey()
	if err != nil {
		return nil, err
	}
	saKey, err := pki.NewSigningKey()
	if err != nil {
		return nil, err
	}
	var initial []string
	for _, m := range masters {
		initial = append(initial, m.Name+"="+url(m.IP, EtcdPeerPort))
	}
	caFile := File{Path: apiserver.DefaultCAFile, Data: ca.CertPEM(), Mode: 0o644}
	for _, n := range c.Members() {
		b := Bundle{Files: []File{caFile}}
		node, err := issue(pki.NodeSpec(n.Name, n.IP))
		if err != nil {
			return nil, err
		}
		b.Files = append(b.Files, pairFiles("node", node)...)
		// An agent on a master talks to its own API server; the others to
		// the first master.
		server := url(masters[0].IP, apiserver.DefaultPort)
		if n.Role == provision.RoleMaster {
			server = url(netip.MustParseAddr("127.0.0.1"), apiserver.DefaultPort)
		}
		kc, err := apiserver.KubeconfigFiles(cp.clusterName(), server, apiserver.DefaultCAFile, pkiDir+"/node.crt", pkiDir+"/node.key", pki.NodeUserPrefix+n.Name)
		if err != nil {
			return nil, err
		}
		b.Files = append(b.Files, File{Path: AgentKubeconfig, Data: kc, Mode: 0o600})
		if n.Role == provision.RoleMaster {
			etcdPair, err := ca.Issue(pki.EtcdSpec(n.Name, n.IP))
			if err != nil {
				return nil, err
			}
			b.Files = append(b.Files, pairFiles("etcd", etcdPair)...)
			for name, kp := range pairs {
				b.Files = append(b.Files, pairFiles(name, kp)...)
			}
			b.Files = append(b.Files, File{Path: apiserver.EncryptionKeyFile, Data: key, Mode: 0o600},
				File{Path: pkiDir + "/sa.key", Data: saKey, Mode: 0o600})
			for _, comp := range []struct{ path, cert, user string }{
				{SchedulerKubeconfig, "scheduler", pki.UserScheduler},
				{ControllersKubeconfig, "controller-manager", pki.UserControllers},
			} {
				kc, err := apiserver.KubeconfigFiles(cp.clusterName(), url(netip.MustParseAddr("127.0.0.1"), apiserver.DefaultPort),
					apiserver.DefaultCAFile, pkiDir+"/"+comp.cert+".crt", pkiDir+"/"+comp.cert+".key", comp.user)
				if err != nil {
					return nil, err
				}
				b.Files = append(b.Files, File{Path: comp.path, Data: kc, Mode: 0o600})
			}
			b.Components = cp.masterComponents(n, initial)
		}
		cp.bundles[n.Name] = b
	}
	return cp, nil
}

// clusterName names the cluster in kubeconfigs.
func (cp *controlPlane) clusterName() string { return "klab-" + cp.c.Name }

func url(ip netip.Addr, port int) string {
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

func pairFiles(name string, kp *pki.KeyPair) []File {
	return []File{
		{Path: pkiDir + "/" + name + ".crt", Data: kp.CertPEM, Mode: 0o644},
		{Path: pkiDir + "/" + name + ".key", Data: kp.KeyPEM, Mode: 0o600},
	}
}

// masterComponents are the supervisor's etcd and apiserver on master m.
func (cp *controlPlane) masterComponents(m provision.Node, initialCluster []string) []supervisor.Component {
	loopback := netip.MustParseAddr("127.0.0.1")
	etcdServers := []string{url(loopback, EtcdClientPort)}
	for _, o := range cp.c.Masters() {
		if o.Name != m.Name {
			etcdServers = append(etcdServers, url(o.IP, EtcdClientPort))
		}
	}
	return []supervisor.Component{
		{Name: "etcd", Args: []string{provision.NodeBinary, "etcd",
			"--member", m.Name,
			"--data-dir", etcdDataDir,
			"--listen-client-urls", url(m.IP, EtcdClientPort) + "," + url(loopback, EtcdClientPort),
			"--advertise-client-urls", url(m.IP, EtcdClientPort),
			"--listen-peer-urls", url(m.IP, EtcdPeerPort),
			"--initial-cluster", strings.Join(initialCluster, ","),
			"--initial-cluster-token", "klab-" + cp.c.Name,
		}},
		{Name: "apiserver", Args: []string{provision.NodeBinary, "apiserver",
			"--etcd-servers", strings.Join(etcdServers, ","),
			"--advertise-address", m.IP.String(),
			"--service-cluster-ip-range", cp.c.ServiceCIDR.String(),
			"--pod-cidr", cp.c.PodCIDR.String(),
			// The pods' MTU: what VXLAN, the largest encapsulation,
			// leaves of the underlay's.
			"--pod-mtu", strconv.Itoa(cp.c.MTU - netmodes.VXLANOverhead),
		}},
	}
}

// bundle is what machine node gets from the control plane.
func (cp *controlPlane) bundle(node string) Bundle { return cp.bundles[node] }

// waitReady waits until every master's API server answers /readyz over
// TLS from the host.
func (cp *controlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cert, err := cp.admin.TLSCertificate()
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cp.ca.Pool(), Certificates: []tls.Certificate{cert}},
	}}
	defer hc.CloseIdleConnections()
	masters := cp.c.Masters()
	errs := make([]error, len(masters))
	var wg sync.WaitGroup
	for i, m := range masters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pollReady(ctx, hc, url(m.IP, apiserver.DefaultPort)+"/readyz")
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: the API server is not ready: %w (see klab logs --node %s apiserver, and etcd)", m.Name, errs[i], m.Name)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pollReady polls u until it answers 200, with a short backoff.
func pollReady(ctx context.Context, hc *http.Client, u string) error {
	wait := 5 * time.Millisecond
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: last answer: %v", ctx.Err(), last)
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// writeKubeconfig writes the admin kubeconfig (0600: it holds an admin
// key), pointing at the first master.
func (cp *controlPlane) writeKubeconfig() (string, error) {
	server := url(cp.c.Masters()[0].IP, apiserver.DefaultPort)
	b, err := apiserver.Kubeconfig(cp.clusterName(), server, cp.ca.CertPEM(), cp.admin.CertPEM, cp.admin.KeyPEM, pki.UserAdmin)
	if err != nil {
		return "", err
	}
	p := KubeconfigPath(cp.c.Name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}

// installControlPlane is up's part for the control plane, around the
// supervisors' start: certificates before, readiness and the kubeconfig
// after.
func installControlPlane(c *provision.Cluster, pr *progress.Printer) (*controlPlane, error) {
	var cp *controlPlane
	err := pr.Do("certificates", func(s *progress.Step) error {
		var err error
		if cp, err = prepareControlPlane(c); err != nil {
			return err
		}
		s.Rename(fmt.Sprintf("certificates (CA, %d client certs)", cp.clients))
		return nil
	})
	return cp, err
}

// started waits for the API servers and writes the kubeconfig.
func (cp *controlPlane) started(ctx context.Context, pr *progress.Printer, timeout time.Duration) error {
	var names []string
	for _, m := range cp.c.Masters() {
		names = append(names, m.Name)
	}
	what := "master: etcd, apiserver"
	if len(names) > 1 {
		what = "masters " + strings.Join(names, ", ") + ": etcd, apiserver"
	}
	if err := pr.Do(what, func(*progress.Step) error { return cp.waitReady(ctx, timeout) }); err != nil {
		return err
	}
	return pr.Do("kubeconfig "+KubeconfigPath(cp.c.Name), func(*progress.Step) error {
		_, err := cp.writeKubeconfig()
		return err
	})
}

// waitGone waits until no live process of the cluster is left on this
// host (a last check after the provider killed every machine's cgroup).
func waitGone(ctx context.Context, cluster string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	mark := "/klab/" + cluster + "/"
	wait := 5 * time.Millisecond
	for {
		pids := clusterPIDs(mark)
		if len(pids) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v of cluster %s are still running", pids, cluster)
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// clusterPIDs lists the live processes whose cgroup path contains mark.
// Zombies are not counted: they hold nothing but their PID, and reaping
// them is their parent's job (the host's init, for processes whose parent
// was killed with the node).
func clusterPIDs(mark string) []string {
	files, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	var pids []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), mark) && !zombie(filepath.Dir(f)) {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids
}

// zombie reports whether the process at /proc/PID has exited and waits
// to be reaped.
func zombie(procDir string) bool {
	b, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return true // gone
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// UserKubeconfig issues a client certificate from the cluster's CA for
// user in groups (pki.GroupView for a read-only user) and renders a
// kubeconfig with it for the first master's API server.
func UserKubeconfig(c *provision.Cluster, user string, groups []string) ([]byte, error) {
	ca, err := pki.LoadCA(PKIDir(c.Name))
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w (is it up? only root reads its CA)", c.Name, err)
	}
	masters := c.Masters()
	if len(masters) == 0 {
		return nil, fmt.Errorf("cluster %q has no master", c.Name)
	}
	kp, err := ca.Issue(pki.Spec{CommonName: user, Organization: groups, Usage: pki.ClientAuth})
	if err != nil {
		return nil, err
	}
	return apiserver.Kubeconfig("klab-"+c.Name, url(masters[0].IP, apiserver.DefaultPort), ca.CertPEM(), kp.CertPEM, kp.KeyPEM, user)
}
