package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Config configures "klab dns".
type Config struct {
	// Domain is the cluster domain (cluster.local).
	Domain string
	// Listen is where DNS is served, over UDP and TCP (":53").
	Listen string
	// Health is where /health (the process runs) and /ready (the zone is
	// loaded) are served over HTTP (":8080"); empty: nowhere.
	Health string
}

// Server answers DNS queries from the latest zone.
type Server struct {
	zone atomic.Pointer[Zone]
	log  *slog.Logger
}

// NewServer makes a server that answers from zone (SetZone replaces it).
func NewServer(zone *Zone, log *slog.Logger) *Server {
	s := &Server{log: log}
	s.zone.Store(zone)
	return s
}

// SetZone replaces the zone the server answers from.
func (s *Server) SetZone(z *Zone) { s.zone.Store(z) }

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Compress = true
	z := s.zone.Load()
	switch {
	case r.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
	case len(r.Question) != 1:
		m.Rcode = dns.RcodeFormatError
	case z == nil:
		m.Rcode = dns.RcodeServerFailure
	default:
		q := r.Question[0]
		m.Rcode, m.Answer, m.Ns = z.Answer(q)
		m.Authoritative = z.Serves(q.Name)
		s.log.Debug("query", "name", q.Name, "type", dns.TypeToString[q.Qtype], "rcode", dns.RcodeToString[m.Rcode], "answers", len(m.Answer))
	}
	size := dns.MinMsgSize
	if o := r.IsEdns0(); o != nil {
		size = max(int(o.UDPSize()), dns.MinMsgSize)
		m.SetEdns0(uint16(size), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write answer", "err", err)
	}
}

// Run serves the cluster domain from the objects it watches through cs,
// until ctx ends.
func Run(ctx context.Context, cfg Config, cs kubernetes.Interface, log *slog.Logger) error {
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	pc, err := net.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("dns: listen on udp %s: %w", cfg.Listen, err)
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("dns: listen on tcp %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	s := NewServer(nil, log)
	var ready atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Health != "" {
		hl, err := net.Listen("tcp", cfg.Health)
		if err != nil {
			return fmt.Errorf("dns: health endpoint %s: %w", cfg.Health, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
		mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() {
				http.Error(w, "the zone is not loaded yet", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		})
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			hs.Close()
		}()
		go hs.Serve(hl)
	}

	factory := informers.NewSharedInformerFactory(cs, 0)
	svcs := factory.Core().V1().Services()
	eps := factory.Core().V1().Endpoints()
	pods := factory.Core().V1().Pods()
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { poke() }, UpdateFunc: func(any, any) { poke() }, DeleteFunc: func(any) { poke() }}
	for _, inf := range []cache.SharedIndexInformer{svcs.Informer(), eps.Informer(), pods.Informer()} {
		inf.AddEventHandler(handler)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("dns: %v cache did not sync: %w", typ, context.Cause(ctx))
		}
	}
	build := func() error {
		sl, err := svcs.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		el, err := eps.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		pl, err := pods.Lister().List(labels.Everything())
		if err != nil {
			return err
		}
		s.SetZone(Build(cfg.Domain, sl, el, pl))
		return nil
	}
	if err := build(); err != nil {
		return err
	}
	ready.Store(true)

	udp := &dns.Server{PacketConn: pc, Handler: s}
	tcp := &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second}
	errs := make(chan error, 2)
	for _, srv := range []*dns.Server{udp, tcp} {
		go func() { errs <- srv.ActivateAndServe() }()
	}
	log.Info("serving", "domain", cfg.Domain, "listen", cfg.Listen, "names", s.zone.Load().Len())
	for {
		select {
		case <-ctx.Done():
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			udp.ShutdownContext(sctx)
			tcp.ShutdownContext(sctx)
			scancel()
			return nil
		case err := <-errs:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("dns: %w", err)
			}
		case <-kick:
			if err := build(); err != nil {
				log.Warn("rebuild the zone", "err", err)
			}
		}
	}
}
