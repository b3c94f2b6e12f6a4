package netctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
	"github.com/klab-dev/klab/templates"
)

// Where BIRD's files go on the router.
const (
	birdConf   = provision.NodeConfigDir + "/bird.conf"
	BirdSocket = provision.NodeRunDir + "/bird.ctl"
)

// routerPeerName names the BGPPeer of a subnet's side of the router.
func routerPeerName(subnet string) string { return "router-" + subnet }

// PeerRouter makes the cluster's router a BGP route reflector (BIRD, under
// the router's supervisor) and peers every node with the router's address
// in its own subnet (a BGPPeer per subnet). The nodes then keep their
// full mesh only within their subnet: the router brings them the other
// subnets' blocks with itself as the next hop, on-link for everyone — what
// pure BGP across a routed hop needs. It waits until the nodes converge.
func (c *Client) PeerRouter(ctx context.Context, cl *provision.Cluster, t transport.Transport, asn uint32) error {
	router, ok := cl.Node("router")
	if !ok {
		return errors.New("the cluster has no router: create it with --subnets 2 (sudo klab up --subnets 2)")
	}
	if err := t.Run(ctx, transport.Cmd{Args: []string{"sh", "-c", "command -v bird"}}); err != nil {
		return fmt.Errorf("BIRD is not installed for the router: sudo apt-get install bird2 (or sudo make deps)")
	}
	type node struct{ Name, IP, Local, Subnet string }
	data := struct {
		Cluster, RouterID   string
		ASN                 uint32
		HoldTime, Keepalive int
		Nodes               []node
	}{Cluster: cl.Name, RouterID: router.IP.String(), ASN: asn, HoldTime: 9, Keepalive: 3}
	for _, n := range cl.Members() {
		s := cl.Subnets[n.Subnet]
		data.Nodes = append(data.Nodes, node{Name: strings.ReplaceAll(n.Name, "-", "_"), IP: n.IP.String(), Local: s.Gateway.String(), Subnet: s.CIDR.String()})
	}
	conf, err := templates.Render("bird/router.conf", data)
	if err != nil {
		return err
	}
	if err := t.WriteFile(ctx, birdConf, bytes.NewReader(conf), 0o644); err != nil {
		return err
	}
	if err := setComponent(ctx, t, &supervisor.Component{Name: "bird", Args: []string{"bird", "-f", "-c", birdConf, "-s", BirdSocket}}, "bird"); err != nil {
		return err
	}
	// A BIRD that ran already reads its new configuration.
	if err := t.Run(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "supervise", "restart", "bird"}}); err != nil {
		return err
	}
	for _, s := range cl.Subnets {
		p := &api.BGPPeer{
			ObjectMeta: metav1.ObjectMeta{Name: routerPeerName(s.Name)},
			Spec: api.BGPPeerSpec{PeerIP: s.Gateway.String(), ASN: asn,
				NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{agent.LabelSubnet: s.Name}}},
		}
		if _, err := c.API.BGPPeers().Create(ctx, p, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("BGPPeer %s: %w", p.Name, err)
		}
	}
	return c.waitCurrent(ctx)
}

// UnpeerRouter undoes PeerRouter: it removes the BGPPeers and stops BIRD.
func (c *Client) UnpeerRouter(ctx context.Context, cl *provision.Cluster, t transport.Transport) error {
	for _, s := range cl.Subnets {
		if err := c.API.BGPPeers().Delete(ctx, routerPeerName(s.Name), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	// The nodes go back to their full mesh; what that gives (across the
	// router in plain BGP: nothing) shows in klab net status.
	return setComponent(ctx, t, nil, "bird")
}

// waitCurrent waits until every node has converged to the current mode
// after a change of BGP peers.
func (c *Client) waitCurrent(ctx context.Context) error {
	cn, err := c.Network(ctx)
	if err != nil {
		return err
	}
	_, err = c.waitConverged(ctx, cn.Generation, cn.Spec.Mode, switchTimeout, false)
	return err
}

// setComponent adds (or with comp nil removes) a component in a machine's
// supervise.yaml and has its supervisor reload.
func setComponent(ctx context.Context, t transport.Transport, comp *supervisor.Component, name string) error {
	b, err := transport.Output(ctx, t, "cat", supervisor.DefaultConfig)
	if err != nil {
		return err
	}
	var cfg supervisor.Config
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", supervisor.DefaultConfig, err)
	}
	var comps []supervisor.Component
	for _, c := range cfg.Components {
		if c.Name != name {
			comps = append(comps, c)
		}
	}
	if comp != nil {
		comps = append(comps, *comp)
	}
	cfg.Components = comps
	if cfg.Components == nil {
		cfg.Components = []supervisor.Component{}
	}
	out, err := cfg.Marshal()
	if err != nil {
		return err
	}
	if err := t.WriteFile(ctx, supervisor.DefaultConfig, bytes.NewReader(out), 0o644); err != nil {
		return err
	}
	return t.Run(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "supervise", "reload"}})
}
