package labs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// TraceCheck: "klab trace FROM TO" delivers the packet (or loses it on a
// node), through the given hops, with the mode's encapsulation on the
// underlay. It reads the trace's JSON (the shape netmodes/trace documents).
type TraceCheck struct {
	From  string `yaml:"from"`
	To    string `yaml:"to"`
	Proto string `yaml:"proto"`
	Port  int    `yaml:"port"`
	Size  int    `yaml:"size"`
	// Delivered is whether the packet must arrive (default true).
	Delivered *bool `yaml:"delivered"`
	// Encap is the encapsulation seen on the underlay: none, vxlan or ipip.
	Encap string `yaml:"encap"`
	// Overhead is the bytes the encapsulation adds (50 for VXLAN).
	Overhead *int `yaml:"overhead"`
	// Through lists hops as NODE/INTERFACE patterns (node1/vxlan.calico,
	// node2/cali*) that must have seen the packet, in this order.
	Through []string `yaml:"through"`
	// LostOn is the node where a lost packet was last seen; Cause the
	// trace's diagnosis (no-route, fdb, mtu, policy, …).
	LostOn string `yaml:"lostOn"`
	Cause  string `yaml:"cause"`
}

func (c *TraceCheck) kind() string { return "trace" }

func (c *TraceCheck) validate(v *validator, p string, line int) {
	if v.required(line, p+".from", c.From) {
		v.template(line, p+".from", c.From)
	}
	if v.required(line, p+".to", c.To) {
		v.template(line, p+".to", c.To)
	}
	switch c.Proto {
	case "", "icmp":
		if c.Port != 0 {
			v.errorf(line, p+".port", "goes with proto tcp or udp")
		}
	case "tcp", "udp":
		v.port(line, p+".port", c.Port)
	default:
		v.errorf(line, p+".proto", "%q: use icmp, tcp or udp", c.Proto)
	}
	switch c.Encap {
	case "", "none", "vxlan", "ipip":
	default:
		v.errorf(line, p+".encap", "%q: use none, vxlan or ipip", c.Encap)
	}
	for i, h := range c.Through {
		node, ifc, ok := strings.Cut(h, "/")
		if !ok || node == "" || ifc == "" {
			v.errorf(line, fmt.Sprintf("%s.through[%d]", p, i), "%q: write hops as NODE/INTERFACE (node1/vxlan.calico, node2/cali*)", h)
			continue
		}
		v.glob(line, fmt.Sprintf("%s.through[%d]", p, i), h)
	}
	delivered := want(c.Delivered, true)
	if delivered && (c.LostOn != "" || c.Cause != "") {
		v.errorf(line, p, "lostOn and cause describe a lost packet: add delivered: false")
	}
	if strings.Contains(c.LostOn, "{{") {
		v.template(line, p+".lostOn", c.LostOn)
	} else if c.LostOn != "" {
		v.node(line, p+".lostOn", c.LostOn)
	}
}

func (c *TraceCheck) subject() string { return "trace " + c.From + " → " + c.To }

// traceResult is the part of klab trace's JSON the check reads.
type traceResult struct {
	Mode      string `json:"mode"`
	Delivered bool   `json:"delivered"`
	Hops      []struct {
		Node      string `json:"node"`
		Interface string `json:"interface"`
		Kind      string `json:"kind"`
		Seen      bool   `json:"seen"`
		Encap     string `json:"encap"`
		Layers    []struct {
			Type string `json:"type"`
		} `json:"layers"`
	} `json:"hops"`
	LostAt *struct {
		Node      string `json:"node"`
		Interface string `json:"interface"`
	} `json:"lost_at"`
	Reason   string `json:"reason"`
	Cause    string `json:"cause"`
	Overhead int    `json:"overhead_bytes"`
}

func (c *TraceCheck) eval(ctx context.Context, e *Env) error {
	r := live{ctx: ctx, env: e, wait: 5 * time.Second}
	from, err := expand(c.From, r)
	if err != nil {
		return err
	}
	to, err := expand(c.To, r)
	if err != nil {
		return err
	}
	args := []string{"trace", from, to, "-o", "json"}
	if c.Proto != "" {
		args = append(args, "--proto", c.Proto)
	}
	if c.Port != 0 {
		args = append(args, "--port", strconv.Itoa(c.Port))
	}
	if c.Size != 0 {
		args = append(args, "--size", strconv.Itoa(c.Size))
	}
	out, err := e.klab(ctx, args...)
	if err != nil && len(out) == 0 {
		return err
	}
	var res traceResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		if err != nil {
			return err
		}
		return fmt.Errorf("klab trace printed no JSON: %v", jerr)
	}
	lostOn, err := expand(c.LostOn, r)
	if err != nil {
		return err
	}
	return c.judge(from, to, lostOn, &res)
}

// judge compares a trace with what the check wants.
func (c *TraceCheck) judge(from, to, lostOn string, res *traceResult) error {
	path := from + " → " + to
	switch delivered := want(c.Delivered, true); {
	case delivered && !res.Delivered:
		where := ""
		if res.LostAt != nil {
			where = fmt.Sprintf(" after %s/%s", res.LostAt.Node, res.LostAt.Interface)
		}
		return fmt.Errorf("trace %s: lost%s: %s", path, where, res.Reason)
	case !delivered && res.Delivered:
		return fmt.Errorf("trace %s: the packet was delivered", path)
	}
	if lostOn != "" && (res.LostAt == nil || res.LostAt.Node != lostOn) {
		got := "nowhere"
		if res.LostAt != nil {
			got = res.LostAt.Node
		}
		return fmt.Errorf("trace %s: lost on %s, not %s (%s)", path, got, lostOn, res.Reason)
	}
	if c.Cause != "" && res.Cause != c.Cause {
		return fmt.Errorf("trace %s: the cause found is %q, not %q (%s)", path, res.Cause, c.Cause, res.Reason)
	}
	if c.Encap != "" {
		var seen []string
		all := true
		for _, h := range res.Hops {
			if !h.Seen || h.Kind != "nic" && h.Kind != "bridge-port" && h.Kind != "router" {
				continue
			}
			seen = append(seen, h.Node+"/"+h.Interface+" "+h.Encap)
			all = all && h.Encap == c.Encap
		}
		if len(seen) == 0 {
			return fmt.Errorf("trace %s: no underlay hop saw the packet", path)
		}
		if !all {
			return fmt.Errorf("trace %s: the underlay did not carry %s only (%s)", path, c.Encap, strings.Join(seen, ", "))
		}
	}
	if c.Overhead != nil && res.Overhead != *c.Overhead {
		return fmt.Errorf("trace %s: the encapsulation adds %d bytes, not %d", path, res.Overhead, *c.Overhead)
	}
	next := 0
	for _, h := range res.Hops {
		if next < len(c.Through) && h.Seen && globMatch(c.Through[next], h.Node+"/"+h.Interface) {
			next++
		}
	}
	if next < len(c.Through) {
		return fmt.Errorf("trace %s: no hop %s saw the packet (in this order: %s)", path, c.Through[next], strings.Join(c.Through, " → "))
	}
	return nil
}

// klab runs this klab binary against the lab's cluster and returns its
// standard output; a failure carries the end of its standard error.
func (e *Env) klab(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, e.Binary, append(args, "--name", e.Cluster.Name)...)
	cmd.Env = append(os.Environ(), "KLAB_CLUSTER="+e.Cluster.Name)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, fmt.Errorf("klab %s: exit code %d: %s", strings.Join(args, " "), ee.ExitCode(), oneLine(stderr.String(), ""))
	}
	if err != nil {
		return out, fmt.Errorf("klab %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}
