package live

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/cluster/netctl"
	"github.com/klab-dev/klab/cluster/supervisor"
	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/tui"
)

// clusterInfo is the plan part of a snapshot.
func clusterInfo(c *provision.Cluster) tui.ClusterInfo {
	ci := tui.ClusterInfo{
		Name: c.Name, Provider: c.Provider, Phase: string(c.Phase), Created: c.Created,
		PodCIDR: c.PodCIDR.String(), ServiceCIDR: c.ServiceCIDR.String(),
	}
	if c.HostIP.IsValid() {
		ci.HostIP = c.HostIP.String()
	}
	for _, s := range c.Subnets {
		sn := tui.Subnet{Name: s.Name, CIDR: s.CIDR.String()}
		if s.Gateway.IsValid() {
			sn.Gateway = s.Gateway.String()
		}
		ci.Subnets = append(ci.Subnets, sn)
	}
	return ci
}

// machine is one machine of the plan as the TUI shows it, before the API
// and the supervisor add to it.
func machine(n provision.Node) tui.Node {
	out := tui.Node{Name: n.Name, Role: string(n.Role), Subnet: n.Subnet}
	if n.IP.IsValid() {
		out.IP = n.IP.String()
	}
	for _, ip := range n.IPs {
		out.IPs = append(out.IPs, ip.String())
	}
	return out
}

// withNode adds what the API says of a node, and what its pods request.
func withNode(out *tui.Node, n *corev1.Node, pods []*corev1.Pod) {
	if n == nil {
		return
	}
	out.Registered = true
	out.PodCIDR = n.Spec.PodCIDR
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Ready = c.Status == corev1.ConditionTrue
			if !out.Ready {
				out.NotReady = strings.TrimSpace(c.Reason + " " + c.Message)
			}
		}
	}
	out.CPU.Allocatable = n.Status.Allocatable.Cpu().MilliValue()
	out.Memory.Allocatable = n.Status.Allocatable.Memory().Value()
	for _, p := range pods {
		if p.Spec.NodeName != n.Name || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out.Pods++
		for _, c := range p.Spec.Containers {
			out.CPU.Requested += c.Resources.Requests.Cpu().MilliValue()
			out.Memory.Requested += c.Resources.Requests.Memory().Value()
		}
	}
}

// components converts a supervisor's status.
func components(st *supervisor.Status) []tui.Component {
	out := make([]tui.Component, 0, len(st.Components))
	for _, c := range st.Components {
		out = append(out, tui.Component{Name: c.Name, State: c.State, Restarts: c.Restarts, Since: c.Since, LastExit: c.LastExit})
	}
	return out
}

// pod converts a pod, with its status as kubectl prints it.
func pod(p *corev1.Pod) tui.Pod {
	out := tui.Pod{
		Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, IP: p.Status.PodIP,
		Phase: string(p.Status.Phase), Status: podStatus(p), Total: len(p.Spec.Containers), Created: p.CreationTimestamp.Time,
	}
	for _, c := range p.Spec.Containers {
		out.Containers = append(out.Containers, c.Name)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			out.Ready++
		}
		out.Restarts += int(cs.RestartCount)
	}
	return out
}

// podStatus is the STATUS column of kubectl get pods: the pod's reason,
// else the first container that waits or failed, else the phase;
// Terminating once it is being deleted.
func podStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	status := string(p.Status.Phase)
	if p.Status.Reason != "" {
		status = p.Status.Reason
	}
	if status == "" {
		status = "Pending"
	}
	for _, cs := range p.Status.InitContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			return "Init:" + cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			return "Init:" + orWord(cs.State.Terminated.Reason, "Error")
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			return cs.State.Waiting.Reason
		case cs.State.Terminated != nil && p.Status.Phase == corev1.PodRunning:
			return orWord(cs.State.Terminated.Reason, "Completed")
		}
	}
	return status
}

func orWord(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// network converts the ClusterNetwork.
func network(cn *api.ClusterNetwork) tui.Network {
	out := tui.Network{
		Mode: string(cn.Spec.Mode), CrossSubnet: cn.Spec.CrossSubnet, PodCIDR: cn.Spec.PodCIDR,
		MTU: int(cn.Spec.MTU), Generation: cn.Generation,
	}
	for name, s := range cn.Status.Nodes {
		out.Nodes = append(out.Nodes, tui.NodeNetwork{
			Node: name, Mode: string(s.Mode), Implementation: s.Implementation, Converged: s.Converged,
			ObservedGeneration: s.ObservedGeneration, Message: s.Message, Since: s.LastTransition.Time,
			Added: s.Changes.Added, Removed: s.Changes.Removed, Took: s.Took.Duration,
		})
	}
	slices.SortFunc(out.Nodes, func(a, b tui.NodeNetwork) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// report converts an agent's network report.
func report(r *agent.NetworkReport) tui.NetworkReport {
	out := tui.NetworkReport{Node: r.Node, Mode: r.Mode, Implementation: r.Implementation}
	if st := r.State; st != nil {
		for _, d := range st.Devices {
			out.Devices = append(out.Devices, tui.Device{Name: d.Name, Kind: d.Kind, MTU: d.MTU, MAC: d.MAC, Up: d.Up, Addrs: d.Addrs, VNI: d.VNI, Port: d.Port, Local: d.Local})
		}
		for _, rt := range st.Routes {
			tr := tui.Route{Dst: rt.Dst.String(), Dev: rt.Dev, Proto: rt.Proto, Scope: rt.Scope, OnLink: rt.OnLink}
			if rt.Via.IsValid() {
				tr.Via = rt.Via.String()
			}
			out.Routes = append(out.Routes, tr)
		}
		for _, f := range st.FDB {
			out.FDB = append(out.FDB, tui.FDBEntry{MAC: f.MAC, Dst: f.Dst, Dev: f.Dev})
		}
		for _, n := range st.Neighbors {
			out.Neighbors = append(out.Neighbors, tui.Neighbor{IP: n.IP, MAC: n.MAC, Dev: n.Dev, State: n.State})
		}
	}
	if b := r.BGP; b != nil {
		bs := &tui.BGPStatus{AS: b.AS}
		if b.RouterID.IsValid() {
			bs.RouterID = b.RouterID.String()
		}
		for _, s := range b.Sessions {
			bs.Sessions = append(bs.Sessions, tui.BGPSession{Peer: s.Peer, Address: s.Address.String(), AS: s.AS, State: s.State, Uptime: s.Uptime, Received: int(s.Received), Advertised: int(s.Advertised)})
		}
		for _, rt := range b.Routes {
			bs.Routes = append(bs.Routes, tui.BGPRoute{Prefix: rt.Prefix.String(), NextHop: rt.NextHop.String(), From: rt.From})
		}
		out.BGP = bs
	}
	return out
}

// switchResult converts a mode switch's result.
func switchResult(r *netctl.SwitchResult) *tui.SwitchResult {
	if r == nil {
		return nil
	}
	out := &tui.SwitchResult{From: r.From, To: r.To, Took: r.Took}
	for _, n := range r.Nodes {
		out.Nodes = append(out.Nodes, tui.SwitchNode{
			Node: n.Node, Converged: n.Converged, Mode: string(n.Mode), Implementation: n.Implementation,
			Removed: n.Changes.Removed, Added: n.Changes.Added, Took: n.Took, Message: n.Message,
		})
	}
	return out
}

// eventSource names the component that reported an event.
func eventSource(e *corev1.Event) string {
	c := e.Source.Component
	if c == "" {
		c = e.ReportingController
	}
	switch {
	case strings.Contains(c, "scheduler"):
		return "scheduler"
	case c == "klab-agent" || c == "kubelet":
		return "agent"
	case strings.Contains(c, "controller"):
		return "controllers"
	case c == "":
		return "apiserver"
	}
	return c
}

// eventItem converts an event.
func eventItem(e *corev1.Event) tui.FeedItem {
	t := e.LastTimestamp.Time
	if t.IsZero() {
		t = e.EventTime.Time
	}
	if t.IsZero() {
		t = e.CreationTimestamp.Time
	}
	obj := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
	if e.InvolvedObject.Kind == "Pod" {
		obj = e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
	}
	msg := e.Message
	if e.Count > 1 {
		msg += fmt.Sprintf(" (×%d)", e.Count)
	}
	node := e.Source.Host
	if node == "" {
		node = e.ReportingInstance
	}
	if eventSource(e) != "agent" {
		node = ""
	}
	return tui.FeedItem{Time: t, Source: eventSource(e), Node: node, Reason: e.Reason, Object: obj, Message: msg, Warning: e.Type == corev1.EventTypeWarning}
}

// cniItem converts a CNI call of a node's log.
func cniItem(node string, c cni.Call) tui.FeedItem {
	it := tui.FeedItem{Time: c.Time, Source: "cni", Node: node, Reason: c.Command}
	if args := c.Env["CNI_ARGS"]; args != "" {
		kv := map[string]string{}
		for _, p := range strings.Split(args, ";") {
			k, v, _ := strings.Cut(p, "=")
			kv[k] = v
		}
		if kv["K8S_POD_NAME"] != "" {
			it.Object = kv["K8S_POD_NAMESPACE"] + "/" + kv["K8S_POD_NAME"]
		}
	}
	switch {
	case !c.OK():
		it.Warning = true
		it.Message = fmt.Sprintf("error %d: %s", c.Error.Code, c.Error.Msg)
	case c.Command == "ADD":
		it.Message = addSummary(c.Result)
	default:
		it.Message = c.Env["CNI_IFNAME"] + " in " + c.Env["CNI_NETNS"]
	}
	it.Message += fmt.Sprintf(" (%.1fms)", c.DurationMS)
	var b bytes.Buffer
	if err := cni.Render(&b, c); err == nil {
		it.Detail = b.String()
	}
	return it
}

// addSummary says what an ADD gave: the pod's address, its gateway and the
// host side of its veth.
func addSummary(result json.RawMessage) string {
	var r struct {
		Interfaces []struct {
			Name    string `json:"name"`
			Sandbox string `json:"sandbox"`
		} `json:"interfaces"`
		IPs []struct {
			Address string `json:"address"`
			Gateway string `json:"gateway"`
		} `json:"ips"`
	}
	if json.Unmarshal(result, &r) != nil || len(r.IPs) == 0 {
		return "ok"
	}
	s := "eth0 " + r.IPs[0].Address
	if r.IPs[0].Gateway != "" {
		s += " via " + r.IPs[0].Gateway
	}
	for _, i := range r.Interfaces {
		if i.Sandbox == "" {
			s += ", host side " + i.Name
		}
	}
	return s
}

// networkItems are the feed's lines for a ClusterNetwork update: the spec
// that changed, and every node that converged with what it changed.
func networkItems(prev, cur *api.ClusterNetwork, now time.Time) []tui.FeedItem {
	var out []tui.FeedItem
	if prev != nil && prev.Spec != cur.Spec {
		out = append(out, tui.FeedItem{Time: now, Source: "network", Reason: "mode",
			Message: fmt.Sprintf("mode %s → %s (generation %d): every agent reconciles", netctl.Spec(prev.Spec), netctl.Spec(cur.Spec), cur.Generation)})
	}
	for _, name := range sortedKeys(cur.Status.Nodes) {
		s := cur.Status.Nodes[name]
		var old api.NodeNetworkStatus
		if prev != nil {
			old = prev.Status.Nodes[name]
		}
		if !s.Converged || (old.Converged && old.ObservedGeneration == s.ObservedGeneration && old.Mode == s.Mode) {
			continue
		}
		var lines []string
		for _, r := range s.Changes.Removed {
			lines = append(lines, "- "+r)
		}
		for _, a := range s.Changes.Added {
			lines = append(lines, "+ "+a)
		}
		msg := fmt.Sprintf("%s converged: %d removed, %d added in %s", s.Mode, len(s.Changes.Removed), len(s.Changes.Added), s.Took.Duration.Round(time.Millisecond))
		if len(lines) == 1 {
			msg = lines[0]
		}
		// Seen now: the status's times have seconds only.
		out = append(out, tui.FeedItem{Time: now, Source: "network", Node: name, Reason: "routes", Message: msg, Detail: strings.Join(lines, "\n")})
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
