package labs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/jsonpath"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/provision"
)

// checker is one kind of check.
type checker interface {
	// kind is its key in a lab file.
	kind() string
	validate(v *validator, p string, line int)
	// subject says briefly what it looks at ("fdb on node1").
	subject() string
	// eval returns nil when the check holds, or what it saw instead.
	eval(ctx context.Context, e *Env) error
}

// checkKinds are the keys of the kinds, as lab files write them.
var checkKinds = []string{"nodeReady", "pod", "object", "network", "route", "device", "fdb", "bgp", "trace", "reach", "output", "etcd", "event", "script"}

func (c *Check) kinds() []checker {
	var out []checker
	for _, k := range []checker{c.NodeReady, c.Pod, c.Object, c.Network, c.Route, c.Device, c.FDB, c.BGP, c.Trace, c.Reach, c.Output, c.Etcd, c.Event, c.Script} {
		if !isNil(k) {
			out = append(out, k)
		}
	}
	return out
}

func (c *Check) checker() checker { return c.kinds()[0] }

// Subject says what the check looks at, for the "check:" column.
func (c *Check) Subject() string {
	s := c.checker().subject()
	if out, err := expand(s, placeholders{}); err == nil {
		return out
	}
	return s
}

// isNil tells a nil pointer inside an interface.
func isNil(k any) bool {
	v := reflect.ValueOf(k)
	return !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil()
}

// DefaultCheckTimeout is how long a check is retried when it says nothing.
const DefaultCheckTimeout = 30 * time.Second

// Eval runs the check until it holds or its timeout (capped by limit,
// when limit is not zero) passes; it returns nil, or the last thing seen.
func (c *Check) Eval(ctx context.Context, e *Env, limit time.Duration) error {
	timeout := c.Timeout.Or(DefaultCheckTimeout)
	if limit > 0 && limit < timeout {
		timeout = limit
	}
	deadline := time.Now().Add(timeout)
	k := c.checker()
	wait := 100 * time.Millisecond
	for {
		// An attempt gets what is left, and at least 30s: on a loaded
		// machine one exec through the API server can take that long.
		actx, cancel := context.WithTimeout(ctx, max(time.Until(deadline), 30*time.Second))
		err := k.eval(actx, e)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// want turns an optional boolean into its value, def when it is not given.
func want(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// NodeReadyCheck: a node (or every node) is Ready — or, with ready:
// false, is not.
type NodeReadyCheck struct {
	Node  string `yaml:"node"`
	Ready *bool  `yaml:"ready"`
}

func (c *NodeReadyCheck) kind() string { return "nodeReady" }

func (c *NodeReadyCheck) validate(v *validator, p string, line int) {
	if c.Node != "" {
		v.node(line, p+".node", c.Node)
	}
}

func (c *NodeReadyCheck) subject() string {
	if c.Node == "" {
		return "every node's Ready condition"
	}
	return c.Node + "'s Ready condition"
}

func (c *NodeReadyCheck) eval(ctx context.Context, e *Env) error {
	wantReady := want(c.Ready, true)
	names := []string{c.Node}
	if c.Node == "" {
		names = nil
		for _, n := range e.Cluster.Members() {
			names = append(names, n.Name)
		}
	}
	for _, name := range names {
		n, err := e.Net.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		status, reason := corev1.ConditionUnknown, "no Ready condition yet"
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				status, reason = cond.Status, cond.Reason+": "+cond.Message
			}
		}
		if ready := status == corev1.ConditionTrue; ready != wantReady {
			if wantReady {
				return fmt.Errorf("node %s is not Ready (Ready=%s, %s)", name, status, reason)
			}
			return fmt.Errorf("node %s is still Ready", name)
		}
	}
	return nil
}

// PodCheck: a pod (by name), or the pods a selector matches, are in a
// phase (Running by default), Ready, and on (or off) a node.
type PodCheck struct {
	Name      string `yaml:"name"`
	Selector  string `yaml:"selector"`
	Namespace string `yaml:"namespace"`
	Phase     string `yaml:"phase"`
	Ready     *bool  `yaml:"ready"`
	// Count is how many pods the selector must match, not counting those
	// being deleted — except that count 0 means none at all is left.
	Count   *int   `yaml:"count"`
	Node    string `yaml:"node"`
	NotNode string `yaml:"notNode"`
}

func (c *PodCheck) kind() string { return "pod" }

func (c *PodCheck) validate(v *validator, p string, line int) {
	v.oneOf(line, p, map[string]string{"name": c.Name, "selector": c.Selector})
	if c.Phase == "" {
		c.Phase = string(corev1.PodRunning)
	}
	switch corev1.PodPhase(c.Phase) {
	case corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed:
	default:
		v.errorf(line, p+".phase", "%q: use Pending, Running, Succeeded or Failed", c.Phase)
	}
	if c.Count != nil && (c.Name != "" || *c.Count < 0) {
		v.errorf(line, p+".count", "goes with a selector, and is 0 or more")
	}
	if c.Node != "" {
		v.node(line, p+".node", c.Node)
	}
	if c.NotNode != "" {
		v.node(line, p+".notNode", c.NotNode)
	}
}

func (c *PodCheck) subject() string {
	if c.Name != "" {
		return "pod " + c.Name
	}
	return "pods " + c.Selector
}

func (c *PodCheck) ns() string {
	if c.Namespace == "" {
		return "default"
	}
	return c.Namespace
}

// problem says what is wrong with one pod, or "".
func (c *PodCheck) problem(p *corev1.Pod) string {
	if string(p.Status.Phase) != c.Phase {
		return fmt.Sprintf("pod %s is %s%s, not %s", p.Name, p.Status.Phase, podWhy(p), c.Phase)
	}
	wantReady := c.Ready
	if wantReady == nil && c.Phase == string(corev1.PodRunning) {
		wantReady = new(true)
	}
	if wantReady != nil && podReady(p) != *wantReady {
		if podReady(p) {
			return fmt.Sprintf("pod %s is Ready", p.Name)
		}
		return fmt.Sprintf("pod %s is not Ready%s", p.Name, podWhy(p))
	}
	if c.Node != "" && p.Spec.NodeName != c.Node {
		return fmt.Sprintf("pod %s is on %q, not %s", p.Name, p.Spec.NodeName, c.Node)
	}
	if c.NotNode != "" && p.Spec.NodeName == c.NotNode {
		return fmt.Sprintf("pod %s is still on %s", p.Name, c.NotNode)
	}
	return ""
}

func (c *PodCheck) eval(ctx context.Context, e *Env) error {
	pods := e.Net.Kube.CoreV1().Pods(c.ns())
	if c.Name != "" {
		p, err := pods.Get(ctx, c.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no pod %s/%s", c.ns(), c.Name)
		}
		if err != nil {
			return err
		}
		if why := c.problem(p); why != "" {
			return errors.New(why)
		}
		return nil
	}
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: c.Selector})
	if err != nil {
		return err
	}
	n := 0
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp != nil {
			if c.Count != nil && *c.Count == 0 {
				return fmt.Errorf("pod %s is still being deleted", p.Name)
			}
			continue
		}
		if why := c.problem(p); why != "" {
			return errors.New(why)
		}
		n++
	}
	switch {
	case c.Count != nil && n != *c.Count:
		return fmt.Errorf("%d pods match %s in %s, want %d", n, c.Selector, c.ns(), *c.Count)
	case c.Count == nil && n == 0:
		return fmt.Errorf("no pod matches %s in %s", c.Selector, c.ns())
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podWhy is the reason a container is waiting, if any: " (ErrImageNeverPull)".
func podWhy(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return " (" + w.Reason + ")"
		}
	}
	return ""
}

// ObjectCheck: an object exists (or not), with fields of given values.
// Fields map a JSONPath (.status.readyReplicas) to the value it must
// print; Matches to a regular expression it must match.
type ObjectCheck struct {
	Kind      string            `yaml:"kind"`
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Exists    *bool             `yaml:"exists"`
	Fields    map[string]string `yaml:"fields"`
	Matches   map[string]string `yaml:"matches"`
}

func (c *ObjectCheck) kind() string { return "object" }

func (c *ObjectCheck) validate(v *validator, p string, line int) {
	v.required(line, p+".kind", c.Kind)
	v.required(line, p+".name", c.Name)
	v.template(line, p+".name", c.Name)
	for expr, val := range c.Fields {
		v.jsonPath(line, p+".fields."+expr, expr)
		v.template(line, p+".fields."+expr, val)
	}
	for expr, re := range c.Matches {
		v.jsonPath(line, p+".matches."+expr, expr)
		v.regexp(line, p+".matches."+expr, re)
	}
	if !want(c.Exists, true) && len(c.Fields)+len(c.Matches) > 0 {
		v.errorf(line, p, "an object that must not exist has no fields to check")
	}
}

func (c *ObjectCheck) subject() string { return c.Kind + " " + c.Name }

// jsonPathTemplate turns ".status.phase" into client-go's "{.status.phase}".
func jsonPathTemplate(expr string) string {
	if strings.HasPrefix(expr, "{") {
		return expr
	}
	return "{" + expr + "}"
}

func (c *ObjectCheck) eval(ctx context.Context, e *Env) error {
	name, err := expand(c.Name, live{ctx: ctx, env: e})
	if err != nil {
		return err
	}
	m, err := e.Objects.Mapping(c.Kind)
	if err != nil {
		return err
	}
	ns := c.Namespace
	if ns == "" {
		ns = "default"
	}
	r := e.Objects.Dynamic.Resource(m.Resource)
	var get func() (map[string]any, error)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		get = func() (map[string]any, error) {
			u, err := r.Namespace(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return u.Object, nil
		}
	} else {
		ns = ""
		get = func() (map[string]any, error) {
			u, err := r.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return u.Object, nil
		}
	}
	ref := strings.TrimPrefix(ns+"/"+name, "/")
	obj, err := get()
	exists := want(c.Exists, true)
	switch {
	case apierrors.IsNotFound(err) && exists:
		return fmt.Errorf("%s %s does not exist", m.Resource.Resource, ref)
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case !exists:
		return fmt.Errorf("%s %s still exists", m.Resource.Resource, ref)
	}
	for _, expr := range sortedKeys(c.Fields) {
		got, err := jsonPathValue(obj, expr)
		if err != nil {
			return err
		}
		wantVal, err := expand(c.Fields[expr], live{ctx: ctx, env: e})
		if err != nil {
			return err
		}
		if got != wantVal {
			return fmt.Errorf("%s %s: %s is %q, want %q", m.Resource.Resource, ref, expr, got, wantVal)
		}
	}
	for _, expr := range sortedKeys(c.Matches) {
		got, err := jsonPathValue(obj, expr)
		if err != nil {
			return err
		}
		if !regexp.MustCompile(c.Matches[expr]).MatchString(got) {
			return fmt.Errorf("%s %s: %s is %q, which does not match %s", m.Resource.Resource, ref, expr, got, c.Matches[expr])
		}
	}
	return nil
}

func jsonPathValue(obj map[string]any, expr string) (string, error) {
	jp := jsonpath.New("field")
	jp.AllowMissingKeys(true)
	if err := jp.Parse(jsonPathTemplate(expr)); err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := jp.Execute(&b, obj); err != nil {
		return "", fmt.Errorf("%s: %w", expr, err)
	}
	return b.String(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// NetworkCheck: the ClusterNetwork is in a mode and every node's agent
// reports it converged.
type NetworkCheck struct {
	Mode        string `yaml:"mode"`
	CrossSubnet *bool  `yaml:"crossSubnet"`
}

func (c *NetworkCheck) kind() string { return "network" }

func (c *NetworkCheck) validate(v *validator, p string, line int) {
	switch c.Mode {
	case "bgp", "vxlan", "ipip":
	default:
		v.errorf(line, p+".mode", "%q: use bgp, vxlan or ipip", c.Mode)
	}
}

func (c *NetworkCheck) subject() string { return "ClusterNetwork mode" }

func (c *NetworkCheck) eval(ctx context.Context, e *Env) error {
	cn, err := e.Net.Network(ctx)
	if err != nil {
		return err
	}
	if string(cn.Spec.Mode) != c.Mode {
		return fmt.Errorf("the ClusterNetwork's mode is %s, not %s", cn.Spec.Mode, c.Mode)
	}
	if c.CrossSubnet != nil && cn.Spec.CrossSubnet != *c.CrossSubnet {
		return fmt.Errorf("the ClusterNetwork's crossSubnet is %t, not %t", cn.Spec.CrossSubnet, *c.CrossSubnet)
	}
	nodes, err := e.Net.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		if n.Spec.PodCIDR == "" {
			continue
		}
		st, ok := cn.Status.Nodes[n.Name]
		switch {
		case !ok:
			return fmt.Errorf("node %s has not reported its network", n.Name)
		case st.ObservedGeneration < cn.Generation:
			return fmt.Errorf("node %s has not seen the change to %s yet", n.Name, c.Mode)
		case st.Mode != api.NetworkMode(c.Mode):
			return fmt.Errorf("node %s runs %s", n.Name, st.Mode)
		case !st.Converged:
			return fmt.Errorf("node %s has not converged: %s", n.Name, st.Message)
		}
	}
	return nil
}

// RouteCheck: a route to a destination is on a node (or, with present:
// false, is not); via and dev (a pattern such as cali*) narrow it down.
type RouteCheck struct {
	Node    string `yaml:"node"`
	Dst     string `yaml:"dst"`
	Via     string `yaml:"via"`
	Dev     string `yaml:"dev"`
	Present *bool  `yaml:"present"`
}

func (c *RouteCheck) kind() string { return "route" }

func (c *RouteCheck) validate(v *validator, p string, line int) {
	v.node(line, p+".node", c.Node)
	if v.required(line, p+".dst", c.Dst) {
		v.prefix(line, p+".dst", c.Dst)
	}
	if c.Via != "" {
		v.addr(line, p+".via", c.Via)
	}
	v.glob(line, p+".dev", c.Dev)
}

func (c *RouteCheck) subject() string { return "route on " + c.Node }

func (c *RouteCheck) eval(ctx context.Context, e *Env) error {
	r := live{ctx: ctx, env: e}
	dstS, err := expand(c.Dst, r)
	if err != nil {
		return err
	}
	dst, err := netip.ParsePrefix(dstS)
	if err != nil {
		return fmt.Errorf("route destination %q: %w", dstS, err)
	}
	via, err := expand(c.Via, r)
	if err != nil {
		return err
	}
	rep, err := e.report(ctx, c.Node)
	if err != nil {
		return err
	}
	var found, others []string
	for _, rt := range rep.State.Routes {
		if rt.Dst != dst.Masked() {
			continue
		}
		desc := rt.Route.String()
		if (via == "" || rt.Via.String() == via) && (c.Dev == "" || globMatch(c.Dev, rt.Dev)) {
			found = append(found, desc)
		} else {
			others = append(others, desc)
		}
	}
	what := dst.String()
	if via != "" {
		what += " via " + via
	}
	if c.Dev != "" {
		what += " dev " + c.Dev
	}
	switch present := want(c.Present, true); {
	case present && len(found) == 0 && len(others) > 0:
		return fmt.Errorf("%s has no route %s, but %s", c.Node, what, strings.Join(others, "; "))
	case present && len(found) == 0:
		return fmt.Errorf("%s has no route to %s", c.Node, dst)
	case !present && len(found) > 0:
		return fmt.Errorf("%s still has route %s", c.Node, strings.Join(found, "; "))
	}
	return nil
}

func globMatch(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

// DeviceCheck: a network device (name, or a pattern such as cali*) is on
// a node, with a kind, MTU, state or address — or is not there.
type DeviceCheck struct {
	Node    string `yaml:"node"`
	Name    string `yaml:"name"`
	Kind    string `yaml:"type"`
	MTU     int    `yaml:"mtu"`
	Up      *bool  `yaml:"up"`
	Address string `yaml:"address"`
	Present *bool  `yaml:"present"`
}

func (c *DeviceCheck) kind() string { return "device" }

func (c *DeviceCheck) validate(v *validator, p string, line int) {
	v.node(line, p+".node", c.Node)
	if v.required(line, p+".name", c.Name) {
		v.glob(line, p+".name", c.Name)
	}
	v.template(line, p+".address", c.Address)
	if !want(c.Present, true) && (c.Kind != "" || c.MTU != 0 || c.Up != nil || c.Address != "") {
		v.errorf(line, p, "a device that must not exist has no properties to check")
	}
}

func (c *DeviceCheck) subject() string { return "device on " + c.Node }

func (c *DeviceCheck) eval(ctx context.Context, e *Env) error {
	addr, err := expand(c.Address, live{ctx: ctx, env: e})
	if err != nil {
		return err
	}
	rep, err := e.report(ctx, c.Node)
	if err != nil {
		return err
	}
	var names []string
	var why string
	matched := false
	for _, d := range rep.State.Devices {
		names = append(names, d.Name)
		if !globMatch(c.Name, d.Name) {
			continue
		}
		if !want(c.Present, true) {
			return fmt.Errorf("%s still has device %s (%s)", c.Node, d.Name, d.Kind)
		}
		switch {
		case c.Kind != "" && d.Kind != c.Kind:
			why = fmt.Sprintf("%s on %s is a %s device, not %s", d.Name, c.Node, d.Kind, c.Kind)
		case c.MTU != 0 && d.MTU != c.MTU:
			why = fmt.Sprintf("%s on %s has MTU %d, not %d", d.Name, c.Node, d.MTU, c.MTU)
		case c.Up != nil && d.Up != *c.Up:
			why = fmt.Sprintf("%s on %s is %s", d.Name, c.Node, map[bool]string{true: "up", false: "down"}[d.Up])
		case addr != "" && !hasAddr(d.Addrs, addr):
			why = fmt.Sprintf("%s on %s has addresses %v, not %s", d.Name, c.Node, d.Addrs, addr)
		default:
			matched = true
		}
		if matched {
			return nil
		}
	}
	if !want(c.Present, true) {
		return nil
	}
	if why != "" {
		return errors.New(why)
	}
	return fmt.Errorf("%s has no device %s (it has %s)", c.Node, c.Name, strings.Join(names, ", "))
}

// hasAddr tells whether one of addrs (CIDRs) is addr (with or without a length).
func hasAddr(addrs []string, addr string) bool {
	for _, a := range addrs {
		ip, _, _ := strings.Cut(a, "/")
		if a == addr || ip == addr {
			return true
		}
	}
	return false
}

// FDBCheck: a node's VXLAN forwarding database has an entry towards an
// underlay address (dst), optionally for a MAC and device.
type FDBCheck struct {
	Node    string `yaml:"node"`
	Dst     string `yaml:"dst"`
	MAC     string `yaml:"mac"`
	Dev     string `yaml:"dev"`
	Present *bool  `yaml:"present"`
}

func (c *FDBCheck) kind() string { return "fdb" }

func (c *FDBCheck) validate(v *validator, p string, line int) {
	v.node(line, p+".node", c.Node)
	if v.required(line, p+".dst", c.Dst) {
		v.addr(line, p+".dst", c.Dst)
	}
	v.glob(line, p+".dev", c.Dev)
}

func (c *FDBCheck) subject() string { return "fdb on " + c.Node }

func (c *FDBCheck) eval(ctx context.Context, e *Env) error {
	dst, err := expand(c.Dst, live{ctx: ctx, env: e})
	if err != nil {
		return err
	}
	rep, err := e.report(ctx, c.Node)
	if err != nil {
		return err
	}
	var found []string
	for _, f := range rep.State.FDB {
		if f.Dst == dst && (c.MAC == "" || strings.EqualFold(f.MAC, c.MAC)) && (c.Dev == "" || globMatch(c.Dev, f.Dev)) {
			found = append(found, fmt.Sprintf("%s dst %s dev %s", f.MAC, f.Dst, f.Dev))
		}
	}
	switch present := want(c.Present, true); {
	case present && len(found) == 0:
		return fmt.Errorf("%s has no FDB entry towards %s (%d entries)", c.Node, dst, len(rep.State.FDB))
	case !present && len(found) > 0:
		return fmt.Errorf("%s still has FDB entry %s", c.Node, strings.Join(found, "; "))
	}
	return nil
}

// BGPCheck: a node's BGP session with a peer (a node's name, or an
// address) is Established (or, with established: false, is not), and it
// learned a prefix from it.
type BGPCheck struct {
	Node        string `yaml:"node"`
	Peer        string `yaml:"peer"`
	Established *bool  `yaml:"established"`
	Learned     string `yaml:"learned"`
}

func (c *BGPCheck) kind() string { return "bgp" }

func (c *BGPCheck) validate(v *validator, p string, line int) {
	v.node(line, p+".node", c.Node)
	v.required(line, p+".peer", c.Peer)
	v.template(line, p+".peer", c.Peer)
	if c.Learned != "" {
		v.prefix(line, p+".learned", c.Learned)
	}
}

func (c *BGPCheck) subject() string { return "BGP on " + c.Node }

func (c *BGPCheck) eval(ctx context.Context, e *Env) error {
	r := live{ctx: ctx, env: e}
	peer, err := expand(c.Peer, r)
	if err != nil {
		return err
	}
	peerIP := peer
	if n, ok := e.Cluster.Node(peer); ok {
		peerIP = n.IP.String()
	}
	rep, err := e.report(ctx, c.Node)
	if err != nil {
		return err
	}
	if rep.BGP == nil {
		return fmt.Errorf("%s runs no BGP speaker", c.Node)
	}
	state := ""
	for _, s := range rep.BGP.Sessions {
		if s.Peer == peer || s.Address.String() == peerIP {
			state = s.State
		}
	}
	established := strings.EqualFold(state, "Established")
	switch wantUp := want(c.Established, true); {
	case state == "" && wantUp:
		return fmt.Errorf("%s has no BGP session with %s", c.Node, peer)
	case wantUp && !established:
		return fmt.Errorf("%s's BGP session with %s is %s, not Established", c.Node, peer, state)
	case !wantUp && established:
		return fmt.Errorf("%s's BGP session with %s is still Established", c.Node, peer)
	}
	if c.Learned == "" {
		return nil
	}
	learned, err := expand(c.Learned, r)
	if err != nil {
		return err
	}
	for _, rt := range rep.BGP.Routes {
		if rt.Prefix.String() == learned && (rt.From == peer || rt.NextHop.String() == peerIP) {
			return nil
		}
	}
	return fmt.Errorf("%s did not learn %s from %s over BGP", c.Node, learned, peer)
}

// ReachCheck: from a pod (or a node), a URL answers (HTTP), a TCP port
// accepts, or an address answers ping — or, with reachable: false, not.
type ReachCheck struct {
	From      string `yaml:"from"`
	Container string `yaml:"container"`
	Node      string `yaml:"node"`
	URL       string `yaml:"url"`
	TCP       string `yaml:"tcp"`
	ICMP      string `yaml:"icmp"`
	Size      int    `yaml:"size"`
	Reachable *bool  `yaml:"reachable"`
	// Match is a regular expression the answer (the page, the ping
	// output) must match.
	Match string `yaml:"match"`
}

func (c *ReachCheck) kind() string { return "reach" }

func (c *ReachCheck) validate(v *validator, p string, line int) {
	v.oneOf(line, p, map[string]string{"from": c.From, "node": c.Node})
	if c.Node != "" {
		v.node(line, p+".node", c.Node)
	}
	v.oneOf(line, p, map[string]string{"url": c.URL, "tcp": c.TCP, "icmp": c.ICMP})
	for f, s := range map[string]string{"from": c.From, "url": c.URL, "tcp": c.TCP, "icmp": c.ICMP} {
		v.template(line, p+"."+f, s)
	}
	if c.TCP != "" && !strings.Contains(c.TCP, "{{") {
		if _, err := netip.ParseAddrPort(c.TCP); err != nil {
			v.errorf(line, p+".tcp", "%q is not ADDRESS:PORT", c.TCP)
		}
	}
	if c.Size != 0 && c.ICMP == "" {
		v.errorf(line, p+".size", "goes with icmp (the ping's payload size)")
	}
	v.regexp(line, p+".match", c.Match)
}

func (c *ReachCheck) subject() string {
	from := c.From
	if from == "" {
		from = c.Node
	}
	switch {
	case c.URL != "":
		return "HTTP from " + from
	case c.TCP != "":
		return "TCP from " + from
	}
	return "ping from " + from
}

// argv is the command that tries to reach the target, in busybox terms
// (pods) that also work with the host's tools (nodes).
func (c *ReachCheck) argv(target string) []string {
	switch {
	case c.URL != "":
		// busybox 1.35's wget -T crashes; timeout is in busybox and coreutils.
		return []string{"timeout", "5", "wget", "-q", "-O", "-", target}
	case c.TCP != "":
		host, port, _ := strings.Cut(target, ":")
		if ap, err := netip.ParseAddrPort(target); err == nil {
			host, port = ap.Addr().String(), fmt.Sprint(ap.Port())
		}
		return []string{"sh", "-c", "nc -w 3 " + host + " " + port + " </dev/null"}
	}
	argv := []string{"ping", "-c", "1", "-W", "2"}
	if c.Size > 0 {
		argv = append(argv, "-s", fmt.Sprint(c.Size))
	}
	return append(argv, target)
}

func (c *ReachCheck) eval(ctx context.Context, e *Env) error {
	r := live{ctx: ctx, env: e, wait: 5 * time.Second}
	target, err := expand(c.URL+c.TCP+c.ICMP, r)
	if err != nil {
		return err
	}
	argv := c.argv(target)
	var out, from string
	var code int
	if c.Node != "" {
		from = c.Node
		out, code, err = e.onNode(ctx, c.Node, argv...)
	} else {
		if from, err = expand(c.From, r); err != nil {
			return err
		}
		out, code, err = e.inPod(ctx, from, c.Container, argv...)
	}
	if err != nil {
		return err
	}
	match, err := liveRegexp(r, c.Match)
	if err != nil {
		return err
	}
	ok := code == 0 && (match == nil || match.MatchString(out))
	switch wantOK := want(c.Reachable, true); {
	case wantOK && code != 0:
		return fmt.Errorf("%s cannot reach %s: %s", from, target, oneLine(out, "exit code "+fmt.Sprint(code)))
	case wantOK && !ok:
		return fmt.Errorf("%s reached %s, but the answer does not match %s: %s", from, target, c.Match, oneLine(out, "(nothing)"))
	case !wantOK && ok:
		return fmt.Errorf("%s can still reach %s", from, target)
	}
	return nil
}

// oneLine shortens a command's output to its last line, or def.
func oneLine(out, def string) string {
	if l := lastLine(out); l != "" {
		if len(l) > 160 {
			l = l[:160] + "…"
		}
		return l
	}
	return def
}

// OutputCheck: a command (run by sh) in a pod's container or on a node
// exits with a code (0 by default) and its output matches (or does not
// match) a regular expression.
type OutputCheck struct {
	Pod       string `yaml:"pod"`
	Container string `yaml:"container"`
	Node      string `yaml:"node"`
	Run       string `yaml:"run"`
	Match     string `yaml:"match"`
	NotMatch  string `yaml:"notMatch"`
	ExitCode  *int   `yaml:"exitCode"`
}

func (c *OutputCheck) kind() string { return "output" }

func (c *OutputCheck) validate(v *validator, p string, line int) {
	v.oneOf(line, p, map[string]string{"pod": c.Pod, "node": c.Node})
	if c.Node != "" {
		v.node(line, p+".node", c.Node)
	}
	v.template(line, p+".pod", c.Pod)
	if v.required(line, p+".run", c.Run) {
		v.template(line, p+".run", c.Run)
	}
	v.regexp(line, p+".match", c.Match)
	v.regexp(line, p+".notMatch", c.NotMatch)
}

func (c *OutputCheck) subject() string {
	if c.Node != "" {
		return "output on " + c.Node
	}
	return "output in pod " + c.Pod
}

func (c *OutputCheck) eval(ctx context.Context, e *Env) error {
	r := live{ctx: ctx, env: e, wait: 5 * time.Second}
	script, err := expand(c.Run, r)
	if err != nil {
		return err
	}
	var out, where string
	var code int
	if c.Node != "" {
		where = c.Node
		out, code, err = e.onNode(ctx, c.Node, "/bin/sh", "-c", script)
	} else {
		if where, err = expand(c.Pod, r); err != nil {
			return err
		}
		out, code, err = e.inPod(ctx, where, c.Container, "sh", "-c", script)
		where = "pod " + where
	}
	if err != nil {
		return err
	}
	return matchOutput(r, where, script, out, code, c.ExitCode, c.Match, c.NotMatch)
}

// matchOutput checks a command's exit code and output.
func matchOutput(r resolver, where, script, out string, code int, exitCode *int, match, notMatch string) error {
	wantCode := 0
	if exitCode != nil {
		wantCode = *exitCode
	}
	if code != wantCode {
		return fmt.Errorf("%q on %s exited %d, want %d: %s", script, where, code, wantCode, oneLine(out, "(no output)"))
	}
	re, err := liveRegexp(r, match)
	if err != nil {
		return err
	}
	if re != nil && !re.MatchString(out) {
		return fmt.Errorf("the output of %q on %s does not match %s: %s", script, where, re, oneLine(out, "(no output)"))
	}
	if re, err = liveRegexp(r, notMatch); err != nil {
		return err
	}
	if re != nil {
		if m := re.FindString(out); m != "" {
			return fmt.Errorf("the output of %q on %s has %q", script, where, m)
		}
	}
	return nil
}

// liveRegexp expands a pattern's {{…}} expressions and compiles it; nil
// for no pattern.
func liveRegexp(r resolver, pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, nil
	}
	s, err := expand(pattern, r)
	if err != nil {
		return nil, err
	}
	return regexp.Compile(s)
}

// EtcdCheck: a key (or, with prefix, a key under it) is in etcd — or is
// not. It asks on a master, as "klab etcd get --keys-only" does.
type EtcdCheck struct {
	Key    string `yaml:"key"`
	Prefix bool   `yaml:"prefix"`
	Exists *bool  `yaml:"exists"`
}

func (c *EtcdCheck) kind() string { return "etcd" }

func (c *EtcdCheck) validate(v *validator, p string, line int) {
	if v.required(line, p+".key", c.Key) {
		v.template(line, p+".key", c.Key)
		if !strings.HasPrefix(c.Key, "/") {
			v.errorf(line, p+".key", "%q: keys start with / (/registry/pods/default/web)", c.Key)
		}
	}
}

func (c *EtcdCheck) subject() string { return "etcd key" }

func (c *EtcdCheck) eval(ctx context.Context, e *Env) error {
	key, err := expand(c.Key, live{ctx: ctx, env: e})
	if err != nil {
		return err
	}
	masters := e.Cluster.Masters()
	if len(masters) == 0 {
		return errors.New("the cluster has no master")
	}
	argv := []string{provision.NodeBinary, "etcd", "get", "--keys-only"}
	if c.Prefix {
		argv = append(argv, "--prefix")
	}
	out, err := e.mustOnNode(ctx, masters[0].Name, append(argv, key)...)
	if err != nil {
		return err
	}
	found := false
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && (l == key || c.Prefix && strings.HasPrefix(l, key)) {
			found = true
		}
	}
	switch exists := want(c.Exists, true); {
	case exists && !found:
		return fmt.Errorf("etcd has no key %s", key)
	case !exists && found:
		return fmt.Errorf("etcd still has key %s", key)
	}
	return nil
}

// EventCheck: an Event was recorded since the lab began: about an
// object (kind, and name or a pattern such as web-*), for a reason, with
// a message matching a regular expression.
type EventCheck struct {
	Namespace string `yaml:"namespace"`
	Kind      string `yaml:"kind"`
	Name      string `yaml:"name"`
	Reason    string `yaml:"reason"`
	Message   string `yaml:"message"`
	Type      string `yaml:"type"`
}

func (c *EventCheck) kind() string { return "event" }

func (c *EventCheck) validate(v *validator, p string, line int) {
	if c.Reason == "" && c.Message == "" {
		v.errorf(line, p, "give a reason or a message to look for")
	}
	v.glob(line, p+".name", c.Name)
	v.regexp(line, p+".message", c.Message)
	if c.Type != "" && c.Type != corev1.EventTypeNormal && c.Type != corev1.EventTypeWarning {
		v.errorf(line, p+".type", "%q: use Normal or Warning", c.Type)
	}
}

func (c *EventCheck) subject() string {
	if c.Reason != "" {
		return "event " + c.Reason
	}
	return "event"
}

func (c *EventCheck) eval(ctx context.Context, e *Env) error {
	ns := c.Namespace
	if ns == "" {
		ns = "default"
	}
	list, err := e.Net.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	since := e.Since.Add(-2 * time.Second) // clock steps between host and master
	var msg *regexp.Regexp
	if c.Message != "" {
		msg = regexp.MustCompile(c.Message)
	}
	for _, ev := range list.Items {
		last := ev.LastTimestamp.Time
		if t := ev.EventTime.Time; t.After(last) {
			last = t
		}
		if ev.Series != nil && ev.Series.LastObservedTime.After(last) {
			last = ev.Series.LastObservedTime.Time
		}
		if last.Before(since) ||
			c.Kind != "" && !strings.EqualFold(ev.InvolvedObject.Kind, c.Kind) ||
			c.Name != "" && !globMatch(c.Name, ev.InvolvedObject.Name) ||
			c.Reason != "" && ev.Reason != c.Reason ||
			c.Type != "" && ev.Type != c.Type ||
			msg != nil && !msg.MatchString(ev.Message) {
			continue
		}
		return nil
	}
	what := strings.TrimSpace(strings.Join([]string{c.Type, c.Reason}, " "))
	if what == "" {
		what = "matching"
	}
	about := ""
	if c.Kind != "" || c.Name != "" {
		about = " about " + strings.TrimSpace(c.Kind+" "+c.Name)
	}
	return fmt.Errorf("no %s event%s in %s since the lab began", what, about, ns)
}

// ScriptCheck: a shell script on the host (klab on its PATH, KLAB_CLUSTER
// set) exits with a code (0 by default), its output matching a regular
// expression — for what the other checks do not cover.
type ScriptCheck struct {
	Run      string `yaml:"run"`
	Match    string `yaml:"match"`
	NotMatch string `yaml:"notMatch"`
	ExitCode *int   `yaml:"exitCode"`
}

func (c *ScriptCheck) kind() string { return "script" }

func (c *ScriptCheck) validate(v *validator, p string, line int) {
	if v.required(line, p+".run", c.Run) {
		v.template(line, p+".run", c.Run)
	}
	v.regexp(line, p+".match", c.Match)
	v.regexp(line, p+".notMatch", c.NotMatch)
}

func (c *ScriptCheck) subject() string { return "script" }

func (c *ScriptCheck) eval(ctx context.Context, e *Env) error {
	script, err := expand(c.Run, live{ctx: ctx, env: e, wait: 5 * time.Second})
	if err != nil {
		return err
	}
	out, code, err := e.shell(ctx, script)
	if err != nil {
		return err
	}
	return matchOutput(live{ctx: ctx, env: e}, "the host", script, out, code, c.ExitCode, c.Match, c.NotMatch)
}
