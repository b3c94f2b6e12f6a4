// Package netctl is the cluster-wide side of the pod network: switching
// the ClusterNetwork's mode and waiting until every node has converged (or
// putting the old mode back), and asking node agents what their network
// looks like.
package netctl

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/pki"
	"github.com/klab-dev/klab/provision"
)

// switchTimeout bounds the wait for nodes to converge after a change that
// is not a mode switch (router peering).
const switchTimeout = 60 * time.Second

// Client reaches a cluster's API and its node agents.
type Client struct {
	Kube   kubernetes.Interface
	API    *api.Client
	Agents *agent.Client
}

// New makes a client from the admin's rest.Config; pkiDir holds the
// admin certificate and the CA (the cluster's state directory on the host).
func New(cfg *rest.Config, pkiDir string) (*Client, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ac, err := api.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	tlsConf, err := pki.ClientTLS(filepath.Join(pkiDir, "admin.crt"), filepath.Join(pkiDir, "admin.key"), filepath.Join(pkiDir, pki.CACertFile))
	if err != nil {
		return nil, err
	}
	tlsConf.MinVersion = tls.VersionTLS12
	return &Client{Kube: kc, API: ac, Agents: agent.NewClient(tlsConf)}, nil
}

// Network returns the ClusterNetwork.
func (c *Client) Network(ctx context.Context) (*api.ClusterNetwork, error) {
	cn, err := c.API.ClusterNetworks().Get(ctx, api.ClusterNetworkName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, errors.New("the cluster has no ClusterNetwork \"default\": is it up? (klab status)")
	}
	return cn, err
}

// NodeResult is how one node went through a switch.
type NodeResult struct {
	Node           string             `json:"node"`
	Converged      bool               `json:"converged"`
	Mode           api.NetworkMode    `json:"mode"`
	Implementation string             `json:"implementation,omitempty"`
	Changes        api.NetworkChanges `json:"changes"`
	Took           time.Duration      `json:"tookNs"`
	Message        string             `json:"message,omitempty"`
}

// SwitchResult is a whole switch.
type SwitchResult struct {
	From  string        `json:"from"`
	To    string        `json:"to"`
	Nodes []NodeResult  `json:"nodes"`
	Took  time.Duration `json:"tookNs"`
}

// Spec describes a ClusterNetwork spec in the CLI's words.
func Spec(s api.ClusterNetworkSpec) string {
	out := string(s.Mode)
	if s.CrossSubnet {
		out += " cross-subnet"
	}
	return out
}

// Switch sets the cluster's mode and waits until every node with a pod
// block reports it converged. When one does not within timeout, the
// previous spec goes back (and is waited for) and the error names the
// nodes that did not make it.
func (c *Client) Switch(ctx context.Context, mode api.NetworkMode, crossSubnet bool, timeout time.Duration) (*SwitchResult, error) {
	if !slices.Contains(api.Modes, mode) {
		return nil, fmt.Errorf("unknown network mode %q: use bgp, vxlan or ipip", mode)
	}
	if crossSubnet && mode == api.ModeBGP {
		return nil, errors.New("--cross-subnet applies to vxlan and ipip: bgp never encapsulates")
	}
	start := time.Now()
	cn, prev, err := c.setSpec(ctx, func(s *api.ClusterNetworkSpec) { s.Mode, s.CrossSubnet = mode, crossSubnet })
	if err != nil {
		return nil, err
	}
	res := &SwitchResult{From: Spec(prev), To: Spec(cn.Spec)}
	nodes, err := c.waitConverged(ctx, cn.Generation, mode, timeout, true)
	res.Nodes, res.Took = nodes, time.Since(start)
	if err == nil || cn.Spec == prev {
		return res, err
	}
	// Put the previous mode back, so that no node is left half-switched.
	back, _, rerr := c.setSpec(context.WithoutCancel(ctx), func(s *api.ClusterNetworkSpec) { *s = prev })
	if rerr == nil {
		_, rerr = c.waitConverged(context.WithoutCancel(ctx), back.Generation, prev.Mode, timeout, true)
	}
	if rerr != nil {
		return res, fmt.Errorf("%w; restoring %s also failed: %v", err, Spec(prev), rerr)
	}
	return res, fmt.Errorf("%w; %s is restored", err, Spec(prev))
}

// setSpec changes the spec, retrying on conflicts, and returns the new
// object with the previous spec.
func (c *Client) setSpec(ctx context.Context, change func(*api.ClusterNetworkSpec)) (*api.ClusterNetwork, api.ClusterNetworkSpec, error) {
	for {
		cn, err := c.Network(ctx)
		if err != nil {
			return nil, api.ClusterNetworkSpec{}, err
		}
		prev := cn.Spec
		change(&cn.Spec)
		if cn.Spec == prev {
			return cn, prev, nil
		}
		updated, err := c.API.ClusterNetworks().Update(ctx, cn, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, prev, fmt.Errorf("update the ClusterNetwork: %w", err)
		}
		return updated, prev, nil
	}
}

// expectedNodes are the nodes whose agents reconcile the network: those
// that have a pod block.
func (c *Client) expectedNodes(ctx context.Context) ([]string, error) {
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes.Items {
		if n.Spec.PodCIDR != "" && ready(&n) {
			out = append(out, n.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitConverged watches the ClusterNetwork until every expected node
// reports generation gen converged in mode. With failFast it returns as
// soon as every node has either converged or failed; without, failed
// nodes count as still on their way (their peers are changing).
func (c *Client) waitConverged(ctx context.Context, gen int64, mode api.NetworkMode, timeout time.Duration, failFast bool) ([]NodeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	want, err := c.expectedNodes(ctx)
	if err != nil {
		return nil, err
	}
	// results says how far every node is; failed lists the nodes that
	// reported they cannot get there.
	var failed []string
	results := func(cn *api.ClusterNetwork) ([]NodeResult, []string) {
		var out []NodeResult
		var pending []string
		failed = nil
		for _, name := range want {
			st, ok := cn.Status.Nodes[name]
			r := NodeResult{Node: name, Mode: st.Mode, Implementation: st.Implementation, Changes: st.Changes, Took: st.Took.Duration, Message: st.Message}
			r.Converged = ok && st.ObservedGeneration >= gen && st.Converged && st.Mode == mode
			if failFast && ok && st.ObservedGeneration >= gen && st.Failed {
				failed = append(failed, name+" ("+st.Message+")")
			} else if !r.Converged {
				pending = append(pending, name)
				if ok && st.ObservedGeneration < gen {
					r.Message = "has not seen the change yet"
				}
			}
			out = append(out, r)
		}
		return out, pending
	}
	for {
		cn, err := c.Network(ctx)
		if err != nil {
			return nil, err
		}
		res, pending := results(cn)
		if len(pending) == 0 {
			return res, failure(failed, mode)
		}
		w, err := c.API.ClusterNetworks().Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", api.ClusterNetworkName).String(),
			ResourceVersion: cn.ResourceVersion,
		})
		if err != nil {
			return res, err
		}
		for ev := range w.ResultChan() {
			cn, ok := ev.Object.(*api.ClusterNetwork)
			if !ok {
				continue
			}
			if res, pending = results(cn); len(pending) == 0 {
				w.Stop()
				return res, failure(failed, mode)
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			var why []string
			for _, r := range res {
				if !r.Converged {
					msg := r.Message
					if msg == "" {
						msg = "no report"
					}
					why = append(why, r.Node+" ("+msg+")")
				}
			}
			return res, fmt.Errorf("not converged to %s within %s: %s", mode, timeout, strings.Join(why, "; "))
		}
	}
}

// failure is the error of nodes that cannot converge, or nil.
func failure(failed []string, mode api.NetworkMode) error {
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("cannot converge to %s: %s", mode, strings.Join(failed, "; "))
}

// Reports asks every member's agent for its network report, in parallel.
func (c *Client) Reports(ctx context.Context, cl *provision.Cluster, only string) ([]*agent.NetworkReport, error) {
	var nodes []provision.Node
	for _, n := range cl.Members() {
		if only == "" || n.Name == only {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("no node %q in cluster %q: its nodes are %s", only, cl.Name, strings.Join(memberNames(cl), ", "))
	}
	out := make([]*agent.NetworkReport, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = c.Agents.Network(ctx, n.IP.String())
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s: %w", n.Name, errs[i])
			}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func memberNames(c *provision.Cluster) []string {
	var out []string
	for _, n := range c.Members() {
		out = append(out, n.Name)
	}
	return out
}
