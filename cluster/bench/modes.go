package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/netmodes"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/transport"
)

// Ports the bench servers listen on.
const (
	podPort      = 5201
	underlayPort = 5202
)

// ModesOptions configure Modes.
type ModesOptions struct {
	Net *netctl.Client
	// From and To are the nodes of the two pods; their transports start
	// the bench server (on To) and run the client (on From).
	From, To    provision.Node
	FromT, ToT  transport.Transport
	Modes       []api.NetworkMode
	Rounds      int
	Duration    time.Duration
	Progress    func(string)
	ModeTimeout time.Duration
	// Control also measures the underlay against itself, an A/A test: its
	// ratio would be 1 on a quiet machine, and how far it strays says how
	// much of the modes' ratios is noise.
	Control bool
}

// ModeResult is one mode's pod-to-pod figures next to the underlay's.
type ModeResult struct {
	Mode           api.NetworkMode     `json:"mode"`
	Implementation string              `json:"implementation"`
	Result         netmodes.Comparison `json:"result"`
}

// ModesResult is every mode measured in one run.
type ModesResult struct {
	From    string       `json:"from"`
	To      string       `json:"to"`
	Results []ModeResult `json:"results"`
	// Control is the underlay measured against itself (with Control).
	Control *netmodes.Comparison `json:"control,omitempty"`
}

// Modes measures pod-to-pod TCP throughput and round-trip time in each
// mode, alternating with node-to-node over the raw underlay in the same
// run, between a pod on From and one on To; then puts the cluster's mode
// back.
func Modes(ctx context.Context, o ModesOptions) (res *ModesResult, err error) {
	cn, err := o.Net.Network(ctx)
	if err != nil {
		return nil, err
	}
	orig := cn.Spec
	defer func() {
		if _, rerr := o.Net.Switch(context.WithoutCancel(ctx), orig.Mode, orig.CrossSubnet, o.ModeTimeout); rerr != nil && err == nil {
			err = fmt.Errorf("restore mode %s: %w", netctl.Spec(orig), rerr)
		}
	}()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	pods := o.Net.Kube.CoreV1().Pods(metav1.NamespaceDefault)
	sel := "klab-bench=" + run
	defer pods.DeleteCollection(context.WithoutCancel(ctx), metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: sel})
	a, b := benchPod(run, 0, o.From.Name), benchPod(run, 1, o.To.Name)
	for _, p := range []*corev1.Pod{a, b} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	if o.Progress != nil {
		o.Progress("starting the bench pods")
	}
	pa, err := waitReady(ctx, o.Net, a.Name)
	if err != nil {
		return nil, err
	}
	pb, err := waitReady(ctx, o.Net, b.Name)
	if err != nil {
		return nil, err
	}
	// Servers: one in pod b's network namespace, one in node To's own. A
	// server an earlier run left on To (if it was killed before it could
	// stop them) would hold the underlay port, and this run's client would
	// talk to it until its --for ran out.
	deadline := strconv.Itoa(int((10 * time.Minute).Seconds()))
	under := net.JoinHostPort(o.To.IP.String(), strconv.Itoa(underlayPort))
	if err := o.ToT.Run(ctx, transport.Cmd{Args: []string{provision.NodeBinary, "internal", "bench-stop", "--listen", under}}); err != nil {
		return nil, fmt.Errorf("stop an earlier bench server on %s: %w", o.To.Name, err)
	}
	for _, s := range [][]string{
		{"--netns", "/run/netns/" + string(pb.UID), "--listen", net.JoinHostPort("0.0.0.0", strconv.Itoa(podPort))},
		{"--listen", under},
	} {
		args := append([]string{provision.NodeBinary, "internal", "bench-serve", "--run", run, "--for", deadline + "s"}, s...)
		if err := o.ToT.Start(ctx, transport.Cmd{Args: args}, provision.NodeLogDir+"/bench.log"); err != nil {
			return nil, err
		}
	}
	defer func() {
		serr := o.ToT.Run(context.WithoutCancel(ctx), transport.Cmd{Args: []string{provision.NodeBinary, "internal", "bench-stop", "--run", run}})
		if serr != nil && err == nil {
			err = fmt.Errorf("stop the bench servers on %s: %w", o.To.Name, serr)
		}
	}()

	res = &ModesResult{From: o.From.Name, To: o.To.Name}
	for _, m := range o.Modes {
		if o.Progress != nil {
			o.Progress("mode " + string(m))
		}
		sw, err := o.Net.Switch(ctx, m, false, o.ModeTimeout)
		if err != nil {
			return nil, err
		}
		impl := ""
		for _, n := range sw.Nodes {
			if n.Node == o.From.Name {
				impl = n.Implementation
			}
		}
		c, err := compare(ctx, o, "--netns", "/run/netns/"+string(pa.UID), "--to", net.JoinHostPort(pb.Status.PodIP, strconv.Itoa(podPort)), "--underlay", under)
		if err != nil {
			return nil, fmt.Errorf("mode %s: %w", m, err)
		}
		res.Results = append(res.Results, ModeResult{Mode: m, Implementation: impl, Result: c})
	}
	if o.Control {
		if o.Progress != nil {
			o.Progress("control: the underlay against itself")
		}
		c, err := compare(ctx, o, "--to", under, "--underlay", under)
		if err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		res.Control = &c
	}
	return res, nil
}

// compare runs the bench client on From: the path given by args next to
// the underlay, rounds times.
func compare(ctx context.Context, o ModesOptions, args ...string) (netmodes.Comparison, error) {
	args = append([]string{provision.NodeBinary, "internal", "bench-run", "--rounds", strconv.Itoa(o.Rounds), "--duration", o.Duration.String()}, args...)
	out, err := transport.Output(ctx, o.FromT, args...)
	if err != nil {
		return netmodes.Comparison{}, err
	}
	var c netmodes.Comparison
	err = json.Unmarshal(out, &c)
	return c, err
}

func waitReady(ctx context.Context, nc *netctl.Client, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		p, err := nc.Kube.CoreV1().Pods(metav1.NamespaceDefault).Get(ctx, name, metav1.GetOptions{})
		if err == nil && podReady(p) {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bench pod %s did not start: %w", name, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
