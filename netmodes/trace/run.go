package trace

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/klab-dev/klab/netmodes"
)

// Request is what to trace.
type Request struct {
	Src, Dst Endpoint
	Proto    string
	// Port is the destination port (tcp, udp); a Service's port.
	Port int
	// Size is the payload after the ICMP/TCP/UDP header.
	Size int
	// Count is how many probes to send, one after the other.
	Count int
	// Timeout bounds one probe's trace; HopTimeout is how long to wait
	// for the next hop after the last one that saw the packet.
	Timeout    time.Duration
	HopTimeout time.Duration
	Lang       Lang
	// SeparateClocks says the nodes are separate machines (VMs), so the
	// times of hops on different nodes compare different clocks.
	SeparateClocks bool
}

// Defaults of a Request.
const (
	DefaultTimeout    = 3 * time.Second
	DefaultHopTimeout = 300 * time.Millisecond
	// readyTimeout bounds the wait for every capture to be open.
	readyTimeout = 3 * time.Second
	// grace is how long the other captures may take to report once the
	// destination saw the packet (their streams travel separately, and a
	// loaded machine delays some). Only a trace with a hop that did not
	// see the packet waits for it all.
	grace = 250 * time.Millisecond
)

// Backend reaches the node agents: their captures (node "" is this host,
// LocalCapture) and their probes.
type Backend interface {
	Capture(ctx context.Context, node string, req CaptureRequest) (Stream, error)
	Probe(ctx context.Context, node string, req ProbeRequest) (*ProbeResult, error)
}

// StateReader is what a Backend may also do: read a node's network state
// again after a loss, to see the neighbour entries the probe left.
type StateReader interface {
	NodeState(ctx context.Context, node string) (*netmodes.State, error)
}

// PolicyReader is what a Backend may also do: read the per-rule drop
// counters of the network policies on a node.
type PolicyReader interface {
	PolicyDrops(ctx context.Context, node string) ([]PolicyDrop, error)
}

// PolicyDrop is a network policy rule's drop counter on a node.
type PolicyDrop struct {
	Policy string // namespace/name
	Rule   string // which rule, in words
	Drops  uint64
}

// Run traces req on the cluster t through b: it plans the path, captures
// on every hop, sends the probes and reports.
func Run(ctx context.Context, t *Topology, req Request, b Backend) (*Result, error) {
	if req.Count < 1 {
		req.Count = 1
	}
	if req.Timeout <= 0 {
		req.Timeout = DefaultTimeout
	}
	if req.HopTimeout <= 0 || req.HopTimeout > req.Timeout {
		req.HopTimeout = min(DefaultHopTimeout, req.Timeout)
	}
	if req.Lang == "" {
		req.Lang = English
	}
	l := req.Lang
	res := &Result{Src: req.Src, Dst: req.Dst, Mode: t.Mode.String(), Proto: req.Proto, Port: req.Port, Size: req.Size, Lang: string(l), Hops: []Hop{}}
	if n, ok := t.node(srcNode(t, req.Src)); ok {
		res.Implementation = n.Implementation
		if t.Mode.Mode == netmodes.IPIP && n.Implementation == netmodes.Userspace {
			res.Notes = append(res.Notes, l.f(noteUserspace))
		}
	}
	dstIP := req.Dst.IP
	targets := []netip.Addr{dstIP}
	if req.Dst.Kind == KindService {
		if req.Proto == ICMP {
			return nil, fmt.Errorf("Service %s answers tcp and udp, not ICMP: use --proto tcp or udp", req.Dst.Name)
		}
		eps, err := t.serviceEndpoints(req.Dst)
		if err != nil {
			return nil, err
		}
		if len(eps) == 0 {
			res.LostAt = &LostAt{Node: srcNode(t, req.Src)}
			res.Cause, res.Reason = CauseNoEndpoint, l.f(lossNoEndpoint, req.Dst.Name)
			return res, nil
		}
		targets = eps
	}
	var plans []*Plan
	for _, to := range targets {
		p, err := t.PlanPath(l, req.Src, req.Dst, to)
		if err != nil {
			return nil, err
		}
		plans = append(plans, p)
	}
	var outs []*outcome
	for i := range req.Count {
		probe, err := NewProbe(req.Proto, dstIP, req.Port, req.Size, i+1)
		if err != nil {
			return nil, err
		}
		o, err := runProbe(ctx, t, req, b, plans, probe)
		if err != nil {
			return nil, err
		}
		outs = append(outs, o)
	}
	shown := outs[0]
	for _, o := range outs {
		if !o.delivered {
			shown = o
			break
		}
	}
	shown.fill(res)
	for _, o := range outs {
		if o.plan == shown.plan {
			for i := range res.Hops {
				if i < len(o.frames) {
					res.frames[i] = appendUnique(res.frames[i], o.frames[i])
				}
			}
		}
	}
	if req.Count > 1 {
		for i, o := range outs {
			res.Probes = append(res.Probes, ProbeSummary{Seq: i + 1, Delivered: o.delivered, TUS: o.tus, Seen: o.seen})
		}
	}
	if req.SeparateClocks && seenOnMachines(res.Hops) > 1 {
		res.Notes = append(res.Notes, l.f(noteClocks))
	}
	if res.Dst.Kind == KindService && res.Delivered {
		if pod := t.podByAddr(shown.plan.To); pod != nil {
			res.Dst.Endpoint = pod.Key()
		}
	}
	return res, nil
}

func appendUnique(dst, src []Frame) []Frame {
	for _, f := range src {
		if !slices.ContainsFunc(dst, func(g Frame) bool { return g.Time.Equal(f.Time) && g.Length == f.Length }) {
			dst = append(dst, f)
		}
	}
	return dst
}

// srcNode is the node a probe from src leaves from.
func srcNode(t *Topology, src Endpoint) string {
	if src.Kind == KindPod {
		if p, ok := t.pod(src.Name); ok {
			return p.Node
		}
	}
	return src.Name
}

// serviceEndpoints are the addresses a Service's port DNATs to.
func (t *Topology) serviceEndpoints(dst Endpoint) ([]netip.Addr, error) {
	for _, s := range t.Services {
		if s.Key() != dst.Name {
			continue
		}
		for _, p := range s.Ports {
			if p.Port == dst.Port {
				return p.Endpoints, nil
			}
		}
		return nil, fmt.Errorf("Service %s has no port %d", dst.Name, dst.Port)
	}
	return nil, fmt.Errorf("no Service %s", dst.Name)
}

// outcome is one probe's trace.
type outcome struct {
	l         Lang
	plan      *Plan
	points    []Point // the plan's points, and its final point when seen apart
	frames    [][]Frame
	decoded   []*Decoded
	errs      []string
	delivered bool
	tus       int64
	seen      int
	probe     *ProbeResult
	req       ProbeRequest
	loss      *Loss
	lostHop   int // index into points of the last hop that saw it; -1: none
	notes     []string
}

// capKey names one capture target of one capturer.
type capKey struct {
	capturer string
	target   CaptureTarget
}

type streamEvent struct {
	capturer string
	ev       CaptureEvent
	err      error
}

// runProbe captures on every point of every plan, sends one probe and
// collects what the captures saw.
func runProbe(ctx context.Context, t *Topology, req Request, b Backend, plans []*Plan, probe ProbeRequest) (*outcome, error) {
	// One capture request per capturer, one target per interface.
	reqs := map[string]*CaptureRequest{}
	index := map[capKey]int{}
	var capturers []string
	for _, p := range plans {
		for _, pt := range allPoints(p) {
			k := capKey{pt.Capturer, pt.Target}
			if _, ok := index[k]; ok {
				continue
			}
			cr, ok := reqs[pt.Capturer]
			if !ok {
				cr = &CaptureRequest{Marker: probe.Marker, Timeout: req.Timeout + readyTimeout}
				reqs[pt.Capturer] = cr
				capturers = append(capturers, pt.Capturer)
			}
			index[k] = len(cr.Targets)
			cr.Targets = append(cr.Targets, pt.Target)
		}
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, req.Timeout+readyTimeout)
	defer cancel()
	events := make(chan streamEvent)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, c := range capturers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send := func(se streamEvent) bool {
				select {
				case events <- se:
					return true
				case <-cctx.Done():
					return false
				}
			}
			st, err := b.Capture(cctx, c, *reqs[c])
			if err != nil {
				send(streamEvent{capturer: c, err: err})
				return
			}
			// Closing the stream ends a Next that waits.
			stop := context.AfterFunc(cctx, func() { st.Close() })
			defer func() {
				stop()
				st.Close()
			}()
			for {
				ev, err := st.Next()
				if err != nil {
					send(streamEvent{capturer: c, err: err})
					return
				}
				if !send(streamEvent{capturer: c, ev: ev}) {
					return
				}
			}
		}()
	}

	frames := map[capKey][]Frame{}
	targetErr := map[capKey]string{}
	failed := map[string]string{}
	ready := map[string]bool{}
	key := keyOf(probe)
	handle := func(se streamEvent) (newFrame bool) {
		switch {
		case se.err != nil:
			if !ready[se.capturer] {
				failed[se.capturer] = se.err.Error()
				ready[se.capturer] = true
			}
		case se.ev.Ready:
			ready[se.capturer] = true
		case se.ev.Error != "":
			if tg := reqs[se.capturer].Targets; se.ev.Target < len(tg) {
				targetErr[capKey{se.capturer, tg[se.ev.Target]}] = se.ev.Error
			}
		case se.ev.Frame != nil:
			tg := reqs[se.capturer].Targets
			if se.ev.Target >= len(tg) {
				return false
			}
			d, ok := Decode(se.ev.Frame.Data, layers.LinkType(se.ev.Frame.LinkType))
			if !ok || !key.forward(d) {
				return false
			}
			k := capKey{se.capturer, tg[se.ev.Target]}
			frames[k] = append(frames[k], *se.ev.Frame)
			return true
		}
		return false
	}

	// Every capture open (or failed), then the probe.
	readyBy := time.NewTimer(readyTimeout)
	defer readyBy.Stop()
	for len(ready) < len(capturers) {
		select {
		case se := <-events:
			handle(se)
		case <-readyBy.C:
			for _, c := range capturers {
				if !ready[c] {
					failed[c] = "the capture did not start in time"
					ready[c] = true
				}
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	src := srcNode(t, req.Src)
	preq := probe
	if req.Src.Kind == KindPod {
		if p, ok := t.pod(req.Src.Name); ok {
			preq.Pod = p.UID
		}
	}
	readyAt := time.Now()
	drops := policySnapshot(ctx, b, plans)
	pres, err := b.Probe(cctx, src, preq)
	if err != nil {
		return nil, fmt.Errorf("send the probe from %s: %w", src, err)
	}
	sent := time.Now()

	if pres.Code == "" {
		deadline := time.NewTimer(req.Timeout)
		defer deadline.Stop()
		hop := time.NewTimer(req.HopTimeout)
		defer hop.Stop()
		var graceC <-chan time.Time
	collect:
		for {
			select {
			case se := <-events:
				if !handle(se) {
					continue
				}
				hop.Reset(req.HopTimeout)
				if allSeen(plans, frames) {
					break collect
				}
				if graceC == nil && finalSeen(plans, frames) {
					graceC = time.After(grace)
				}
			case <-hop.C:
				break collect
			case <-deadline.C:
				break collect
			case <-graceC:
				break collect
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	slog.Debug("trace probe", "captures", len(capturers), "ready", readyAt.Sub(start), "sent", sent.Sub(readyAt), "collected", time.Since(sent))
	cancel()
	go func() { // let the readers go
		for range events {
		}
	}()
	wg.Wait()
	close(events)

	// The plan the packet followed: the one whose points saw it most (a
	// Service's DNAT picked its endpoint).
	best, bestSeen := plans[0], -1
	for _, p := range plans {
		n := 0
		for _, pt := range allPoints(p) {
			if len(pick(frames[capKey{pt.Capturer, pt.Target}], pt.Hop.Direction)) > 0 {
				n++
			}
		}
		if n > bestSeen {
			best, bestSeen = p, n
		}
	}
	o := &outcome{l: req.Lang, plan: best, probe: pres, req: probe, notes: slices.Clone(best.Notes)}
	o.points = slices.Clone(best.Points)
	if best.Final != nil && len(pick(frames[capKey{best.Final.Capturer, best.Final.Target}], best.Final.Hop.Direction)) > 0 {
		o.points = append(o.points, *best.Final)
	}
	for _, pt := range o.points {
		k := capKey{pt.Capturer, pt.Target}
		fs := pick(frames[k], pt.Hop.Direction)
		o.frames = append(o.frames, fs)
		var d *Decoded
		if len(fs) > 0 {
			d, _ = Decode(fs[0].Data, layers.LinkType(fs[0].LinkType))
		}
		o.decoded = append(o.decoded, d)
		e := targetErr[k]
		if msg, ok := failed[pt.Capturer]; ok {
			e = msg
		}
		o.errs = append(o.errs, e)
	}
	o.analyse(ctx, t, b, drops)
	return o, nil
}

// allPoints is a plan's points and its final point.
func allPoints(p *Plan) []Point {
	if p.Final == nil {
		return p.Points
	}
	return append(slices.Clone(p.Points), *p.Final)
}

// pick keeps the frames that went the point's way: sent (out) or
// received (in).
func pick(fs []Frame, dir string) []Frame {
	var out []Frame
	for _, f := range fs {
		if f.Outgoing == (dir == "out") {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b Frame) int { return a.Time.Compare(b.Time) })
	return out
}

// finalSeen reports whether some plan's destination saw the packet.
func finalSeen(plans []*Plan, frames map[capKey][]Frame) bool {
	for _, p := range plans {
		for _, pt := range allPoints(p) {
			if pt.Final && len(pick(frames[capKey{pt.Capturer, pt.Target}], pt.Hop.Direction)) > 0 {
				return true
			}
		}
	}
	return false
}

// allSeen reports whether every point of some plan that reaches its
// destination saw the packet: nothing more will come.
func allSeen(plans []*Plan, frames map[capKey][]Frame) bool {
	for _, p := range plans {
		if !p.Reached {
			continue
		}
		all := true
		for _, pt := range p.Points {
			if len(pick(frames[capKey{pt.Capturer, pt.Target}], pt.Hop.Direction)) == 0 {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// policySnapshot reads the policy drop counters, when the backend can,
// of the nodes where a pod on the paths has its veth: policy is enforced
// there.
func policySnapshot(ctx context.Context, b Backend, plans []*Plan) map[string][]PolicyDrop {
	pr, ok := b.(PolicyReader)
	if !ok {
		return nil
	}
	out := map[string][]PolicyDrop{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range plans {
		for _, pt := range allPoints(p) {
			if pt.Hop.Kind != HopPod {
				continue
			}
			node := pt.Capturer
			mu.Lock()
			_, done := out[node]
			out[node] = nil
			mu.Unlock()
			if done {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := pr.PolicyDrops(ctx, node)
				if err != nil {
					return
				}
				mu.Lock()
				out[node] = d
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

// analyse decides whether the probe arrived and, when it did not, where
// and why it was lost.
func (o *outcome) analyse(ctx context.Context, t *Topology, b Backend, before map[string][]PolicyDrop) {
	l := o.l
	o.lostHop = -1
	var first time.Time
	for i, fs := range o.frames {
		if len(fs) == 0 {
			continue
		}
		o.seen++
		o.lostHop = i
		if first.IsZero() || fs[0].Time.Before(first) {
			first = fs[0].Time
		}
		if o.points[i].Final {
			o.delivered = true
		}
	}
	if o.lostHop >= 0 {
		o.tus = o.frames[o.lostHop][0].Time.Sub(first).Microseconds()
	}
	if o.delivered {
		o.lostHop = -1
		return
	}
	srcName := srcNode(t, o.plan.Src)
	switch o.probe.Code {
	case ProbeMTU:
		o.loss = &Loss{After: -1, Node: srcName, Cause: CauseMTU, Reason: l.f(lossMTUSend, o.plan.Src.Name, o.probe.Length, o.probe.Error)}
		return
	case ProbeNoRoute:
		if o.plan.Loss != nil && o.plan.Loss.After < 0 {
			o.loss = o.plan.Loss
		} else {
			o.loss = &Loss{After: -1, Node: srcName, Cause: CauseNoRoute, Reason: l.f(lossNoRoute, srcName, o.plan.To)}
		}
		return
	}
	// The last hop on the path (not a stray) that saw it.
	last := -1
	for i, fs := range o.frames {
		if len(fs) > 0 && !o.points[i].Hop.Stray {
			last = i
		}
	}
	if pl := o.plan.Loss; pl != nil && pl.After <= last {
		o.loss, o.lostHop = pl, pl.After
		return
	}
	o.lostHop = last
	if last < 0 {
		o.loss = &Loss{After: -1, Node: srcName, Cause: CauseUnknown, Reason: l.f(lossNoHop)}
		return
	}
	at := o.points[last].Hop
	o.loss = &Loss{After: last, Node: at.Node, Cause: CauseUnknown, Reason: l.f(lossUnknown, last+1)}
	if last+1 >= len(o.points) {
		return
	}
	next := o.points[last+1]
	if e := o.errs[last+1]; e != "" {
		o.loss = &Loss{After: last, Node: at.Node, Cause: CauseCaptureError, Reason: l.f(lossCapture, last+2, next.Hop.Node+" · "+next.Hop.Interface, e)}
		return
	}
	if d := o.decoded[last]; d != nil && next.Hop.Direction == "out" {
		if n, ok := t.node(next.Hop.Node); ok && n.State != nil {
			size := int(d.Inner().Length)
			switch {
			case next.Hop.Kind == HopNIC && next.Hop.Encap == EncapVXLAN:
				size += netmodes.VXLANOverhead
			case next.Hop.Kind == HopNIC && next.Hop.Encap == EncapIPIP:
				size += netmodes.IPIPOverhead
			}
			for _, dev := range n.State.Devices {
				if dev.Name == next.Hop.Interface && dev.MTU > 0 && size > dev.MTU {
					o.loss = &Loss{After: last, Node: n.Name, Cause: CauseMTU, Reason: l.f(lossMTU, size, dev.Name, n.Name, dev.MTU)}
					return
				}
			}
		}
	}
	if pr, ok := b.(PolicyReader); ok && before != nil {
		for _, node := range []string{at.Node, next.Hop.Node} {
			if _, ok := before[node]; !ok {
				continue
			}
			after, err := pr.PolicyDrops(ctx, node)
			if err != nil {
				continue
			}
			for _, d := range after {
				if d.Drops > dropsOf(before[node], d) {
					o.loss = &Loss{After: last, Node: node, Cause: CausePolicy, Reason: l.f(lossPolicy, d.Policy, node, d.Rule)}
					return
				}
			}
		}
	}
	if sr, ok := b.(StateReader); ok && next.Hop.Kind == HopNIC && next.Hop.Direction == "out" {
		if n, ok := t.node(next.Hop.Node); ok && n.State != nil {
			if r, ok := lookup(n.State, o.plan.To); ok && r.Dev == next.Hop.Interface {
				gw := o.plan.To
				if r.Via.IsValid() {
					gw = r.Via
				}
				if st, err := sr.NodeState(ctx, n.Name); err == nil {
					if _, ok := neighbour(st, gw, r.Dev); !ok {
						o.loss = &Loss{After: last, Node: n.Name, Cause: CauseNeighbour, Reason: l.f(lossARP, n.Name, gw, r.Dev)}
					}
				}
			}
		}
	}
}

// seenOnMachines counts the machines whose hops saw the packet.
func seenOnMachines(hops []Hop) int {
	machines := map[string]bool{}
	for _, h := range hops {
		if h.Seen {
			machines[h.Node] = true
		}
	}
	return len(machines)
}

func dropsOf(ds []PolicyDrop, d PolicyDrop) uint64 {
	for _, x := range ds {
		if x.Policy == d.Policy && x.Rule == d.Rule {
			return x.Drops
		}
	}
	return 0
}

// fill writes the outcome into a Result.
func (o *outcome) fill(res *Result) {
	l := o.l
	res.Delivered = o.delivered
	res.TUS = o.tus
	res.Notes = append(res.Notes, o.notes...)
	res.frames = make([][]Frame, len(o.points))
	var first time.Time
	for _, fs := range o.frames {
		if len(fs) > 0 && (first.IsZero() || fs[0].Time.Before(first)) {
			first = fs[0].Time
		}
	}
	var prev *Decoded
	for i, pt := range o.points {
		h := pt.Hop
		h.Index = i + 1
		h.Layers = []Layer{}
		if d := o.decoded[i]; d != nil {
			f := o.frames[i][0]
			h.Seen = true
			h.TUS = f.Time.Sub(first).Microseconds()
			h.Length = f.Length
			h.Layers = d.Layers
			h.Encap = d.Encap
			h.Change = Change(l, prev, d)
			res.Overhead = max(res.Overhead, d.overhead())
			prev = d
		}
		if e := o.errs[i]; e != "" {
			h.Error = e
			res.Notes = append(res.Notes, l.f(noteCaptureFailed, h.Node+" · "+h.Interface, e))
		}
		res.Hops = append(res.Hops, h)
		res.frames[i] = o.frames[i]
	}
	if o.delivered {
		return
	}
	if o.loss == nil {
		o.loss = &Loss{After: o.lostHop, Cause: CauseUnknown, Reason: l.f(lossUnknown, o.lostHop+1)}
	}
	res.Cause, res.Reason, res.MissingRoute = o.loss.Cause, o.loss.Reason, o.loss.MissingRoute
	res.LostAt = &LostAt{Node: o.loss.Node}
	if i := o.lostHop; i >= 0 && i < len(res.Hops) {
		res.LostAt = &LostAt{Hop: i + 1, Node: res.Hops[i].Node, Interface: res.Hops[i].Interface}
	}
	if res.LostAt.Node == "" {
		res.LostAt.Node = srcNodeOf(res)
	}
}

func srcNodeOf(res *Result) string {
	if res.Src.Node != "" {
		return res.Src.Node
	}
	return res.Src.Name
}
