package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/klab-dev/klab/cluster/proxy"
)

// serviceProxy is the agent's kube-proxy: it watches Services and
// Endpoints and keeps the node's proxy table in step with them.
type serviceProxy struct {
	p        *proxy.Proxier
	services corelisters.ServiceLister
	eps      corelisters.EndpointsLister
	loop     *loop
	log      *slog.Logger
	// err is why the proxy did not start (it then has nothing else).
	err error
}

// startProxy starts the proxy once its caches are filled and the table
// was written for the first time.
func startProxy(ctx context.Context, cfg *Config, cs kubernetes.Interface, log *slog.Logger) (*serviceProxy, error) {
	ip, err := netip.ParseAddr(cfg.NodeIP)
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(proxy.Config{Node: cfg.NodeName, NodeIP: ip}, "")
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	s := &serviceProxy{
		p:        p,
		services: factory.Core().V1().Services().Lister(),
		eps:      factory.Core().V1().Endpoints().Lister(),
		log:      log.With("part", "proxy"),
	}
	s.loop = newLoop(time.Second, s.log)
	for _, inf := range []cache.SharedIndexInformer{factory.Core().V1().Services().Informer(), factory.Core().V1().Endpoints().Informer()} {
		inf.AddEventHandler(s.loop.handler())
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			p.Close()
			return nil, fmt.Errorf("proxy: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	if err := s.sync(); err != nil {
		s.log.Warn("first sync", "err", err)
	}
	go func() {
		defer factory.Shutdown()
		defer p.Close()
		s.loop.run(ctx, s.sync)
	}()
	return s, nil
}

func (s *serviceProxy) sync() error {
	svcs, err := s.services.List(labels.Everything())
	if err != nil {
		return err
	}
	eps, err := s.eps.List(labels.Everything())
	if err != nil {
		return err
	}
	start := time.Now()
	ch, err := s.p.Sync(proxy.Build(svcs, eps))
	if err != nil {
		return err
	}
	if len(ch.Written)+len(ch.Removed) > 0 || ch.FlushedFlows > 0 {
		s.log.Info("rules synced", "written", len(ch.Written), "removed", len(ch.Removed), "udpFlowsFlushed", ch.FlushedFlows, "took", time.Since(start))
	}
	if ch.FlowsErr != nil {
		s.log.Warn("stale UDP flows left to time out", "err", ch.FlowsErr)
	}
	return nil
}

func (s *server) servicesReport(w http.ResponseWriter, r *http.Request) {
	sp := s.proxy.Load()
	switch {
	case sp == nil:
		http.Error(w, "the proxy has not started yet", http.StatusServiceUnavailable)
		return
	case sp.err != nil:
		http.Error(w, "the proxy is not running on this node: "+sp.err.Error(), http.StatusServiceUnavailable)
		return
	}
	rep, err := sp.p.Report()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, rep)
}

// Services asks the agent at ip for its proxy's report.
func (c *Client) Services(ctx context.Context, ip string) (*proxy.Report, error) {
	var rep proxy.Report
	if err := c.get(ctx, ip, "/services", &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// startServicePlane starts the proxy and the network policy. Either can
// fail (a kernel without nf_tables): the node then runs pods without it,
// and its API says why.
func startServicePlane(ctx context.Context, cfg *Config, cs kubernetes.Interface, srv *server, log *slog.Logger) {
	sp, err := startProxy(ctx, cfg, cs, log)
	if err != nil {
		log.Error("the proxy is not running: services will not work on this node", "err", err)
		sp = &serviceProxy{err: err}
	}
	srv.proxy.Store(sp)
	pa, err := startPolicy(ctx, cfg, cs, log)
	if err != nil {
		log.Error("network policy is not enforced on this node", "err", err)
		pa = &policyAgent{err: err}
	}
	srv.policy.Store(pa)
}
