package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/cni/plugin"
	"github.com/klab-dev/klab/netmodes/policy"
)

// policyAgent is the felix ACL half of the network agent: it watches the
// NetworkPolicies, the pods and the namespaces, and keeps the chains of
// the node's pods in step with them.
type policyAgent struct {
	e          *policy.Enforcer
	node       string
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	policies   networkinglisters.NetworkPolicyLister
	loop       *loop
	log        *slog.Logger
	// err is why enforcing did not start (it then has nothing else).
	err error
}

// startPolicy starts enforcing once its caches are filled and the table
// was written for the first time.
func startPolicy(ctx context.Context, cfg *Config, cs kubernetes.Interface, log *slog.Logger) (*policyAgent, error) {
	e, err := policy.New(cfg.NodeName, "")
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	pa := &policyAgent{
		e:          e,
		node:       cfg.NodeName,
		pods:       factory.Core().V1().Pods().Lister(),
		namespaces: factory.Core().V1().Namespaces().Lister(),
		policies:   factory.Networking().V1().NetworkPolicies().Lister(),
		log:        log.With("part", "policy"),
	}
	pa.loop = newLoop(time.Second, pa.log)
	for _, inf := range []cache.SharedIndexInformer{
		factory.Core().V1().Pods().Informer(), factory.Core().V1().Namespaces().Informer(), factory.Networking().V1().NetworkPolicies().Informer(),
	} {
		inf.AddEventHandler(pa.loop.handler())
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			e.Close()
			return nil, fmt.Errorf("policy: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	if err := pa.sync(); err != nil {
		pa.log.Warn("first sync", "err", err)
	}
	go func() {
		defer factory.Shutdown()
		defer e.Close()
		pa.loop.run(ctx, pa.sync)
	}()
	return pa, nil
}

// policyPod is a pod as policies see it; pods of this node get their
// veth's name (the CNI plugin names it after the sandbox, the pod's UID).
func policyPod(p *corev1.Pod, node string) (policy.Pod, bool) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return policy.Pod{}, false
	}
	pp := policy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels}
	if ip, err := netip.ParseAddr(p.Status.PodIP); err == nil {
		pp.IP = ip
	}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name != "" {
				pp.Ports = append(pp.Ports, policy.NamedPort{Name: port.Name, Protocol: string(port.Protocol), Port: uint16(port.ContainerPort)})
			}
		}
	}
	if p.Spec.NodeName == node {
		pp.Veth = plugin.HostVethName(string(p.UID))
	}
	return pp, true
}

func (pa *policyAgent) sync() error {
	pods, err := pa.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	nss, err := pa.namespaces.List(labels.Everything())
	if err != nil {
		return err
	}
	nps, err := pa.policies.List(labels.Everything())
	if err != nil {
		return err
	}
	var in policy.Input
	for _, p := range pods {
		if pp, ok := policyPod(p, pa.node); ok {
			in.Pods = append(in.Pods, pp)
		}
	}
	for _, ns := range nss {
		in.Namespaces = append(in.Namespaces, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	in.Policies = nps
	start := time.Now()
	ch, err := pa.e.Sync(policy.Compile(in))
	if err != nil {
		return err
	}
	if len(ch.Written)+len(ch.Removed) > 0 {
		pa.log.Info("policy chains synced", "written", len(ch.Written), "removed", len(ch.Removed), "took", time.Since(start))
	}
	return nil
}

func (s *server) policyReport(w http.ResponseWriter, r *http.Request) {
	pa := s.policy.Load()
	switch {
	case pa == nil:
		http.Error(w, "network policy has not started yet", http.StatusServiceUnavailable)
		return
	case pa.err != nil:
		http.Error(w, "network policy is not enforced on this node: "+pa.err.Error(), http.StatusServiceUnavailable)
		return
	}
	rep, err := pa.e.Report()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, rep)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// Policy asks the agent at ip for the network policy its node enforces,
// with the per-rule counters (policy.Drops tells what two reports differ
// by).
func (c *Client) Policy(ctx context.Context, ip string) (*policy.Report, error) {
	var rep policy.Report
	if err := c.get(ctx, ip, "/policy", &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
