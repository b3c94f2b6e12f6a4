package netmodes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Reconciler keeps a node's namespace in the configured mode: it applies
// the mode on every change of configuration or peers, and switches modes
// make-before-break: the new mode's Apply creates its devices and replaces
// every route, and only then are the old mode's devices released, so a
// switch costs a node about a millisecond of traffic. It is safe for
// concurrent use (the agent calls it from its API watch and from BGP).
type Reconciler struct {
	ctx   context.Context
	ns    *Netns
	modes map[Kind]Factory

	mu    sync.Mutex
	cur   Mode
	cfg   Config
	stale []Mode // modes switched away from and not yet released
	swept bool   // what other modes left from before this process is gone
}

// Result is what one reconcile did.
type Result struct {
	Mode           Kind          `json:"mode"`
	Previous       Kind          `json:"previous,omitempty"` // set when the mode switched
	Implementation string        `json:"implementation"`
	Changes        Changes       `json:"changes"`
	Took           time.Duration `json:"took"`
}

// NewReconciler makes a reconciler for the namespace ns with the given
// modes (usually bgp.NewMode, vxlan.New and ipip.New under their kinds).
// Background work of the modes stops when ctx ends.
func NewReconciler(ctx context.Context, ns *Netns, modes map[Kind]Factory) *Reconciler {
	return &Reconciler{ctx: ctx, ns: ns, modes: modes}
}

// Apply brings the namespace to cfg for self and peers. After its first
// success it also releases whatever other modes an earlier process left
// behind. A switch whose Apply fails keeps the old mode's devices, so
// that applying the previous configuration goes back cleanly.
func (r *Reconciler) Apply(ctx context.Context, cfg Config, self Node, peers []Node) (Result, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	f, ok := r.modes[cfg.Mode]
	if !ok {
		return Result{}, fmt.Errorf("network mode %s is not available here (have %s)", cfg.Mode, r.kinds())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	res := Result{Mode: cfg.Mode}
	if r.cur != nil && r.cur.Kind() != cfg.Mode {
		res.Previous = r.cur.Kind()
		r.stale = append(r.stale, r.cur)
		r.cur = nil
		// Going back to a mode not yet released: take it up again.
		for i, m := range r.stale {
			if m.Kind() == cfg.Mode {
				r.cur = m
				r.stale = slices.Delete(r.stale, i, i+1)
				break
			}
		}
	}
	if r.cur == nil {
		r.cur = f(r.ctx, r.ns)
	}
	r.cfg = cfg
	ch, err := r.cur.Apply(ctx, cfg, self, peers)
	res.Changes.Merge(ch)
	res.Implementation = r.cur.Implementation()
	if err != nil {
		return r.done(res, start), fmt.Errorf("apply %s mode: %w", cfg, err)
	}
	var errs []error
	for len(r.stale) > 0 {
		m := r.stale[0]
		ch, err := m.Release(ctx)
		res.Changes.Merge(ch)
		if err != nil {
			errs = append(errs, fmt.Errorf("release %s mode: %w", m.Kind(), err))
			break
		}
		r.stale = r.stale[1:]
	}
	if !r.swept && len(errs) == 0 {
		for _, k := range r.sortedKinds() {
			if k == cfg.Mode {
				continue
			}
			ch, err := r.modes[k](ctx, r.ns).Release(ctx)
			res.Changes.Merge(ch)
			if err != nil {
				errs = append(errs, fmt.Errorf("clean up %s mode left from before: %w", k, err))
			}
		}
		r.swept = len(errs) == 0
	}
	return r.done(res, start), errors.Join(errs...)
}

// Remove deletes what every mode made in the namespace.
func (r *Reconciler) Remove(ctx context.Context) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	var res Result
	var errs []error
	ch, err := DeleteRoutes(r.ns.Netlink())
	res.Changes.Merge(ch)
	if err != nil {
		return r.done(res, start), err
	}
	held := slices.Clone(r.stale)
	if r.cur != nil {
		res.Previous = r.cur.Kind()
		held = append(held, r.cur)
	}
	for _, k := range r.sortedKinds() {
		if !slices.ContainsFunc(held, func(m Mode) bool { return m.Kind() == k }) {
			held = append(held, r.modes[k](ctx, r.ns))
		}
	}
	var kept []Mode
	for _, m := range held {
		ch, err := m.Release(ctx)
		res.Changes.Merge(ch)
		if err != nil {
			errs = append(errs, fmt.Errorf("remove %s mode: %w", m.Kind(), err))
			kept = append(kept, m)
		}
	}
	r.cur, r.cfg, r.stale = nil, Config{}, kept
	return r.done(res, start), errors.Join(errs...)
}

// Current is the mode in place, its implementation and configuration; an
// empty kind before the first Apply.
func (r *Reconciler) Current() (Kind, string, Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return "", "", Config{}
	}
	return r.cur.Kind(), r.cur.Implementation(), r.cfg
}

func (r *Reconciler) done(res Result, start time.Time) Result {
	res.Took = time.Since(start)
	return res
}

func (r *Reconciler) sortedKinds() []Kind {
	ks := make([]Kind, 0, len(r.modes))
	for k := range r.modes {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (r *Reconciler) kinds() string {
	ks := r.sortedKinds()
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}
