package labs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/provision"
)

// faulter is one kind of fault, as written in a lab.
type faulter interface {
	kind() string
	validate(v *validator, p string, line int)
	// prepare finds what the fault will change and how to undo it,
	// without changing anything yet.
	prepare(ctx context.Context, e *Env) (*Applied, error)
}

// faultKinds are the keys of the kinds, as lab files write them.
var faultKinds = []string{"stopNode", "stopComponent", "deleteRoute", "dropUDP", "mtu"}

func (f *Fault) kinds() []faulter {
	var out []faulter
	for _, k := range []faulter{f.StopNode, f.StopComponent, f.DeleteRoute, f.DropUDP, f.MTU} {
		if !isNil(k) {
			out = append(out, k)
		}
	}
	return out
}

// Prepare finds what the fault will change on the cluster, and how to
// put it back; nothing is changed yet. Step is the step it belongs to.
func (f *Fault) Prepare(ctx context.Context, e *Env, step int) (*Applied, error) {
	a, err := f.kinds()[0].prepare(ctx, e)
	if err != nil {
		return nil, err
	}
	a.Step, a.Until = step, f.Until
	return a, nil
}

// StopNodeFault stops every component a node's supervisor runs (the
// agent: the kubelet, felix and bird roles; on a master also the control
// plane): the machine stays, but as a node it is gone.
type StopNodeFault struct {
	Node string `yaml:"node"`
}

func (f *StopNodeFault) kind() string { return "stopNode" }

func (f *StopNodeFault) validate(v *validator, p string, line int) {
	v.node(line, p+".node", f.Node)
}

func (f *StopNodeFault) prepare(ctx context.Context, e *Env) (*Applied, error) {
	st, err := supervised(ctx, e, f.Node)
	if err != nil {
		return nil, err
	}
	a := &Applied{Kind: "stopNode", Node: f.Node}
	for _, c := range st.Components {
		if c.State != supervisor.StateStopped {
			a.Components = append(a.Components, c.Name)
		}
	}
	if len(a.Components) == 0 {
		return nil, fmt.Errorf("%s runs no component to stop: is it already down? (klab status)", f.Node)
	}
	return a, nil
}

// StopComponentFault stops one component on a node (the scheduler on the
// master, the agent on a node).
type StopComponentFault struct {
	Node      string `yaml:"node"`
	Component string `yaml:"component"`
}

func (f *StopComponentFault) kind() string { return "stopComponent" }

func (f *StopComponentFault) validate(v *validator, p string, line int) {
	v.node(line, p+".node", f.Node)
	v.required(line, p+".component", f.Component)
}

func (f *StopComponentFault) prepare(ctx context.Context, e *Env) (*Applied, error) {
	st, err := supervised(ctx, e, f.Node)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range st.Components {
		if c.Name == f.Component {
			return &Applied{Kind: "stopComponent", Node: f.Node, Components: []string{c.Name}}, nil
		}
		names = append(names, c.Name)
	}
	return nil, fmt.Errorf("%s runs no component %q (it runs %s)", f.Node, f.Component, strings.Join(names, ", "))
}

// supervised asks a node's supervisor what it runs.
func supervised(ctx context.Context, e *Env, node string) (*supervisor.Status, error) {
	out, err := e.mustOnNode(ctx, node, provision.NodeBinary, "supervise", "status", "-o", "json")
	if err != nil {
		return nil, err
	}
	var st supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("read %s's supervisor status: %w", node, err)
	}
	return &st, nil
}

// DeleteRouteFault deletes a node's routes to a destination. The agent
// puts routes back when it reconciles (within a second or so), as felix
// does: stop the agent in the same step to keep the route away.
type DeleteRouteFault struct {
	Node string `yaml:"node"`
	Dst  string `yaml:"dst"`
}

func (f *DeleteRouteFault) kind() string { return "deleteRoute" }

func (f *DeleteRouteFault) validate(v *validator, p string, line int) {
	v.node(line, p+".node", f.Node)
	if v.required(line, p+".dst", f.Dst) {
		v.prefix(line, p+".dst", f.Dst)
	}
}

func (f *DeleteRouteFault) prepare(ctx context.Context, e *Env) (*Applied, error) {
	dst, err := expand(f.Dst, live{ctx: ctx, env: e})
	if err != nil {
		return nil, err
	}
	out, err := e.mustOnNode(ctx, f.Node, "ip", "route", "show", "exact", dst)
	if err != nil {
		return nil, err
	}
	a := &Applied{Kind: "deleteRoute", Node: f.Node, Dst: dst}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if !strings.HasPrefix(l, dst) {
				l = dst + " " + l // "default via …" for 0.0.0.0/0
			}
			a.Routes = append(a.Routes, l)
		}
	}
	if len(a.Routes) == 0 {
		return nil, fmt.Errorf("%s has no route to %s to delete", f.Node, dst)
	}
	return a, nil
}

// DropUDPFault makes a node drop UDP packets to a port (4789: VXLAN) with
// nftables, coming in, going out or both.
type DropUDPFault struct {
	Node      string `yaml:"node"`
	Port      int    `yaml:"port"`
	Direction string `yaml:"direction"`
}

func (f *DropUDPFault) kind() string { return "dropUDP" }

func (f *DropUDPFault) validate(v *validator, p string, line int) {
	v.node(line, p+".node", f.Node)
	v.port(line, p+".port", f.Port)
	switch f.Direction {
	case "":
		f.Direction = "in"
	case "in", "out", "both":
	default:
		v.errorf(line, p+".direction", "%q: use in, out or both", f.Direction)
	}
}

func (f *DropUDPFault) prepare(ctx context.Context, e *Env) (*Applied, error) {
	if _, err := e.mustOnNode(ctx, f.Node, "nft", "--version"); err != nil {
		return nil, fmt.Errorf("%s cannot run nft (install nftables): %w", f.Node, err)
	}
	return &Applied{Kind: "dropUDP", Node: f.Node, Port: f.Port, Direction: f.Direction,
		Table: "klab_lab_drop_udp_" + strconv.Itoa(f.Port)}, nil
}

// MTUFault sets a device's MTU on a node (lower than the path needs, to
// show what big packets do then).
type MTUFault struct {
	Node   string `yaml:"node"`
	Device string `yaml:"device"`
	MTU    int    `yaml:"mtu"`
}

func (f *MTUFault) kind() string { return "mtu" }

func (f *MTUFault) validate(v *validator, p string, line int) {
	v.node(line, p+".node", f.Node)
	if v.required(line, p+".device", f.Device) && !deviceRE.MatchString(f.Device) {
		v.errorf(line, p+".device", "%q is not a device name", f.Device)
	}
	if f.MTU < 576 || f.MTU > 9000 {
		v.errorf(line, p+".mtu", "%d: give an MTU between 576 and 9000", f.MTU)
	}
}

var deviceRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,15}$`)

func (f *MTUFault) prepare(ctx context.Context, e *Env) (*Applied, error) {
	out, err := e.mustOnNode(ctx, f.Node, "cat", "/sys/class/net/"+f.Device+"/mtu")
	if err != nil {
		return nil, fmt.Errorf("%s has no device %s: %w", f.Node, f.Device, err)
	}
	prev, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return nil, fmt.Errorf("MTU of %s on %s: %q", f.Device, f.Node, out)
	}
	return &Applied{Kind: "mtu", Node: f.Node, Device: f.Device, MTU: f.MTU, PrevMTU: prev}, nil
}

// Describe says what the fault will break, before it is prepared.
func (f *Fault) Describe(lang string) string {
	a := &Applied{Until: f.Until}
	switch k := f.kinds()[0].(type) {
	case *StopNodeFault:
		a.Kind, a.Node = "stopNode", k.Node
	case *StopComponentFault:
		a.Kind, a.Node, a.Components = "stopComponent", k.Node, []string{k.Component}
	case *DeleteRouteFault:
		dst, err := expand(k.Dst, placeholders{})
		if err != nil {
			dst = k.Dst
		}
		a.Kind, a.Node, a.Dst = "deleteRoute", k.Node, dst
	case *DropUDPFault:
		a.Kind, a.Node, a.Port, a.Direction = "dropUDP", k.Node, k.Port, k.Direction
	case *MTUFault:
		a.Kind, a.Node, a.Device, a.MTU = "mtu", k.Node, k.Device, k.MTU
	}
	return a.Describe(lang)
}

// Applied is a fault as the runner records it before breaking anything:
// everything needed to undo it, even from another process after a crash.
type Applied struct {
	Kind  string `json:"kind"`
	Step  int    `json:"step"`
	Until string `json:"until"`
	Node  string `json:"node"`
	// stopNode, stopComponent: the components stopped.
	Components []string `json:"components,omitempty"`
	// deleteRoute: the destination and the routes as ip route printed them.
	Dst    string   `json:"dst,omitempty"`
	Routes []string `json:"routes,omitempty"`
	// dropUDP: the port, direction and the nftables table holding the rules.
	Port      int    `json:"port,omitempty"`
	Direction string `json:"direction,omitempty"`
	Table     string `json:"table,omitempty"`
	// mtu: the device, the MTU set and the one it had.
	Device  string `json:"device,omitempty"`
	MTU     int    `json:"mtu,omitempty"`
	PrevMTU int    `json:"prevMTU,omitempty"`
}

// Describe says what the fault breaks.
func (a *Applied) Describe(lang string) string {
	zh := lang == "zh"
	switch a.Kind {
	case "stopNode":
		what := [2]string{strings.Join(a.Components, ", "), strings.Join(a.Components, ", ")}
		if len(a.Components) == 0 {
			what = [2]string{"every component", "所有组件"}
		}
		if zh {
			return fmt.Sprintf("%s 停机：它的 supervisor 停止了%s", a.Node, what[1])
		}
		return fmt.Sprintf("%s goes down: its supervisor stops %s", a.Node, what[0])
	case "stopComponent":
		if zh {
			return fmt.Sprintf("停止 %s 上的 %s", a.Node, a.Components[0])
		}
		return fmt.Sprintf("%s stops on %s", a.Components[0], a.Node)
	case "deleteRoute":
		if zh {
			return fmt.Sprintf("删除 %s 上去往 %s 的路由", a.Node, a.Dst)
		}
		return fmt.Sprintf("the route to %s is deleted on %s", a.Dst, a.Node)
	case "dropUDP":
		dir := map[string][2]string{"in": {"incoming", "入站"}, "out": {"outgoing", "出站"}, "both": {"incoming and outgoing", "进出"}}[a.Direction]
		if zh {
			return fmt.Sprintf("%s 丢弃%s的 UDP %d 数据包（nftables）", a.Node, dir[1], a.Port)
		}
		return fmt.Sprintf("%s drops %s UDP %d packets (nftables)", a.Node, dir[0], a.Port)
	case "mtu":
		if a.PrevMTU == 0 {
			if zh {
				return fmt.Sprintf("%s 上 %s 的 MTU 改为 %d", a.Node, a.Device, a.MTU)
			}
			return fmt.Sprintf("the MTU of %s on %s goes to %d", a.Device, a.Node, a.MTU)
		}
		if zh {
			return fmt.Sprintf("%s 上 %s 的 MTU 从 %d 改为 %d", a.Node, a.Device, a.PrevMTU, a.MTU)
		}
		return fmt.Sprintf("the MTU of %s on %s goes from %d to %d", a.Device, a.Node, a.PrevMTU, a.MTU)
	}
	return a.Kind + " on " + a.Node
}

// Restored says that the fault has been undone.
func (a *Applied) Restored(lang string) string {
	zh := lang == "zh"
	switch a.Kind {
	case "stopNode":
		if zh {
			return fmt.Sprintf("%s 恢复了：它的 supervisor 重新启动了 %s", a.Node, strings.Join(a.Components, ", "))
		}
		return fmt.Sprintf("%s is back: its supervisor starts %s again", a.Node, strings.Join(a.Components, ", "))
	case "stopComponent":
		if zh {
			return fmt.Sprintf("%s 上的 %s 重新运行了", a.Node, a.Components[0])
		}
		return fmt.Sprintf("%s runs again on %s", a.Components[0], a.Node)
	case "deleteRoute":
		if zh {
			return fmt.Sprintf("%s 上去往 %s 的路由恢复了", a.Node, a.Dst)
		}
		return fmt.Sprintf("the route to %s is back on %s", a.Dst, a.Node)
	case "dropUDP":
		if zh {
			return fmt.Sprintf("%s 不再丢弃 UDP %d 数据包", a.Node, a.Port)
		}
		return fmt.Sprintf("%s no longer drops UDP %d packets", a.Node, a.Port)
	case "mtu":
		if zh {
			return fmt.Sprintf("%s 上 %s 的 MTU 恢复为 %d", a.Node, a.Device, a.PrevMTU)
		}
		return fmt.Sprintf("the MTU of %s on %s is %d again", a.Device, a.Node, a.PrevMTU)
	}
	return a.Kind + " on " + a.Node + " restored"
}

// Apply breaks it.
func (a *Applied) Apply(ctx context.Context, e *Env) error {
	n := a.Node
	switch a.Kind {
	case "stopNode", "stopComponent":
		for _, c := range a.Components {
			if _, err := e.mustOnNode(ctx, n, provision.NodeBinary, "supervise", "stop", c); err != nil {
				return err
			}
		}
	case "deleteRoute":
		for _, r := range a.Routes {
			out, code, err := e.onNode(ctx, n, append([]string{"ip", "route", "del"}, strings.Fields(r)...)...)
			if err != nil {
				return err
			}
			if code != 0 && !strings.Contains(out, "No such process") { // gone already
				return fmt.Errorf("delete route %s on %s: %s", r, n, lastLine(out))
			}
		}
	case "dropUDP":
		hooks := map[string][]string{"in": {"input"}, "out": {"output"}, "both": {"input", "output"}}[a.Direction]
		if _, err := e.mustOnNode(ctx, n, "nft", "add", "table", "inet", a.Table); err != nil {
			return err
		}
		for _, h := range hooks {
			if _, err := e.mustOnNode(ctx, n, "nft", "add", "chain", "inet", a.Table, h, "{ type filter hook "+h+" priority -10; policy accept; }"); err != nil {
				return err
			}
			if _, err := e.mustOnNode(ctx, n, "nft", "add", "rule", "inet", a.Table, h, "udp", "dport", strconv.Itoa(a.Port), "counter", "drop"); err != nil {
				return err
			}
		}
	case "mtu":
		_, err := e.mustOnNode(ctx, n, "ip", "link", "set", "dev", a.Device, "mtu", strconv.Itoa(a.MTU))
		return err
	default:
		return fmt.Errorf("unknown fault %q", a.Kind)
	}
	return nil
}

// Restore undoes it. It is idempotent: restoring what was never broken,
// or was restored already, succeeds.
func (a *Applied) Restore(ctx context.Context, e *Env) error {
	n := a.Node
	var errs []error
	switch a.Kind {
	case "stopNode", "stopComponent":
		for _, c := range a.Components {
			if _, err := e.mustOnNode(ctx, n, provision.NodeBinary, "supervise", "start", c); err != nil {
				errs = append(errs, err)
			}
		}
	case "deleteRoute":
		for _, r := range a.Routes {
			if _, err := e.mustOnNode(ctx, n, append([]string{"ip", "route", "replace"}, strings.Fields(r)...)...); err != nil {
				errs = append(errs, err)
			}
		}
	case "dropUDP":
		out, code, err := e.onNode(ctx, n, "nft", "delete", "table", "inet", a.Table)
		if err == nil && code != 0 && !strings.Contains(out, "No such file or directory") {
			err = fmt.Errorf("delete nftables table %s on %s: %s", a.Table, n, lastLine(out))
		}
		errs = append(errs, err)
	case "mtu":
		_, err := e.mustOnNode(ctx, n, "ip", "link", "set", "dev", a.Device, "mtu", strconv.Itoa(a.PrevMTU))
		errs = append(errs, err)
	default:
		errs = append(errs, fmt.Errorf("unknown fault %q", a.Kind))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore (%s): %w", a.Describe("en"), err)
	}
	return nil
}
