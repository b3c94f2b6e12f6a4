package install

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/internal/progress"
	"github.com/klab-dev/klab/provision"
)

// addNodeComponents adds to every member's bundle its agent, and to every
// master's the scheduler and the controller manager (each elects a leader,
// so one of each works at a time).
func addNodeComponents(c *provision.Cluster, cp *controlPlane) error {
	for _, n := range c.Members() {
		cfg := agent.Config{
			Cluster:      c.Name,
			NodeName:     n.Name,
			NodeIP:       n.IP.String(),
			Subnet:       c.Subnets[n.Subnet].Name,
			UnderlayCIDR: c.Subnets[n.Subnet].CIDR.String(),
			Master:       n.Role == provision.RoleMaster,
			Kubeconfig:   AgentKubeconfig,
			CgroupParent: filepath.Join("klab", c.Name, n.Name, "pods"),
		}
		data, err := yaml.Marshal(cfg)
		if err != nil {
			return err
		}
		b := cp.bundles[n.Name]
		b.Files = append(b.Files, File{Path: agent.DefaultConfig, Data: data, Mode: 0o644})
		if n.Role == provision.RoleMaster {
			b.Components = append(b.Components,
				supervisor.Component{Name: "scheduler", Args: []string{provision.NodeBinary, "scheduler", "--kubeconfig", SchedulerKubeconfig}},
				supervisor.Component{Name: "controller-manager", Args: []string{provision.NodeBinary, "controller-manager",
					"--kubeconfig", ControllersKubeconfig, "--cluster-cidr", c.PodCIDR.String()}},
			)
		}
		b.Components = append(b.Components, supervisor.Component{Name: "agent", Args: []string{provision.NodeBinary, "agent"}})
		cp.bundles[n.Name] = b
	}
	return nil
}

// startNodes waits for the agents and the network: every node registered
// and Ready (it has its pod block and CNI configuration), and every node's
// network agent converged to the cluster's mode, each within timeout.
func startNodes(ctx context.Context, c *provision.Cluster, mode api.NetworkMode, pr *progress.Printer, timeout time.Duration) error {
	cfg, err := client.Config(c.Name, "")
	if err != nil {
		return err
	}
	nc, err := netctl.New(cfg, PKIDir(c.Name))
	if err != nil {
		return err
	}
	// The API server made the ClusterNetwork before it was ready (from
	// --pod-cidr and --pod-mtu); the mode is switched to below.
	members := c.Members()
	if err := pr.Do(fmt.Sprintf("agents on %d nodes registered and Ready", len(members)), func(*progress.Step) error {
		return waitNodesReady(ctx, nc, members, timeout)
	}); err != nil {
		return err
	}
	crossSubnet := false
	err = pr.Do(fmt.Sprintf("network: %s mode", mode), func(s *progress.Step) error {
		if _, err := nc.Switch(ctx, mode, false, timeout); err != nil {
			// Plain BGP across the router cannot work: that is a lesson,
			// not a failure of up.
			if mode == api.ModeBGP && len(c.Subnets) > 1 && strings.Contains(err.Error(), "not on-link") {
				crossSubnet = true
				s.Rename(fmt.Sprintf("network: %s mode within each subnet; between them it cannot route (see below)", mode))
				return nil
			}
			return err
		}
		if mode == api.ModeVXLAN {
			return nil
		}
		reps, err := nc.Reports(ctx, c, "")
		if err != nil {
			return err
		}
		up, all := 0, 0
		for _, r := range reps {
			if r.BGP == nil {
				continue
			}
			for _, ses := range r.BGP.Sessions {
				all++
				if ses.State == "Established" {
					up++
				}
			}
		}
		s.Rename(fmt.Sprintf("network: %s mode, %d of %d BGP sessions Established", mode, up, all))
		return nil
	})
	if err == nil && crossSubnet {
		pr.Printf("note: plain BGP cannot route between the subnets: the next hops across the router are not on-link\n" +
			"      (klab net status shows it). Fix it with: sudo klab net peer router, or klab net mode vxlan --cross-subnet\n")
	}
	if err != nil {
		return err
	}
	return deployDNS(ctx, nc.Kube, pr, !crossSubnet, timeout)
}

// waitNodesReady polls until every member is a Ready node.
func waitNodesReady(ctx context.Context, nc *netctl.Client, members []provision.Node, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 20 * time.Millisecond
	for {
		list, err := nc.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		var missing []string
		if err == nil {
			ready := map[string]bool{}
			why := map[string]string{}
			for _, n := range list.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady {
						ready[n.Name] = cond.Status == corev1.ConditionTrue
						why[n.Name] = cond.Message
					}
				}
			}
			for _, m := range members {
				if !ready[m.Name] {
					w := why[m.Name]
					if w == "" {
						w = "not registered"
					}
					missing = append(missing, m.Name+" ("+w+")")
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("nodes not Ready: %w", err)
			}
			return fmt.Errorf("nodes not Ready within %s: %s (see klab logs --node NODE agent)", timeout, strings.Join(missing, "; "))
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}
