// Package plugin is klab's CNI plugin, Calico-style: each pod gets a veth
// pair (eth0 in the pod, cali<hash> on the node), an address from the
// node's block through the plugin's own IPAM, a /32 on eth0 and a default
// route via 169.254.1.1 that the node answers by proxy ARP, and the node
// routes PODIP/32 to the veth. It is built on containernetworking/cni's
// skel, so it speaks the CNI protocol exactly: environment and stdin in,
// result or error JSON on stdout.
package plugin

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/klab-dev/klab/cluster/cni/ipam"
	"github.com/klab-dev/klab/cluster/cni/ns"
	kversion "github.com/klab-dev/klab/internal/version"
)

// Plugin-specific CNI error codes (the spec leaves 100 and up to plugins).
const (
	// ErrNoFreeAddress: every address of the node's block is in use.
	ErrNoFreeAddress uint = 100
	// ErrNoGatewayRoute: the node has no route to 169.254.1.1, so proxy
	// ARP cannot answer the pods' gateway.
	ErrNoGatewayRoute uint = 101
	// ErrCheckFailed: CHECK found the pod's network is not what ADD made.
	ErrCheckFailed uint = 102
)

// SupportedVersions are the CNI spec versions the plugin speaks.
var SupportedVersions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// Gateway is the pods' default gateway: a link-local address that no
// interface has; the node's veth answers ARP for it (proxy ARP).
var Gateway = netip.MustParseAddr("169.254.1.1")

// callTimeout bounds one call, chiefly the wait for the IPAM lock.
const callTimeout = 2 * time.Minute

// HostVethName is the node side of a container's veth: "cali" and the
// first 11 hex digits of the SHA-1 of the container ID, as Calico names
// them (15 characters, the longest name Linux allows).
func HostVethName(containerID string) string {
	h := sha1.Sum([]byte(containerID))
	return "cali" + hex.EncodeToString(h[:])[:11]
}

// Main acts on CNI_COMMAND with the configuration on stdin, printing the
// result to stdout. The error it returns is the CNI error, which the
// caller prints to stdout (types.Error.Print) before exiting non-zero.
func Main(ctx context.Context) *types.Error {
	// The node-side work (links, sysctls, routes) must stay on a thread in
	// the node's namespace; pod-side work goes through netNS.Do.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	p := &plugin{ctx: ctx}
	return skel.PluginMainFuncsWithError(skel.CNIFuncs{
		Add:    p.add,
		Del:    p.del,
		Check:  p.check,
		GC:     p.gc,
		Status: p.status,
	}, SupportedVersions, "klab CNI plugin "+kversion.String())
}

type plugin struct {
	ctx context.Context
}

func (p *plugin) add(args *skel.CmdArgs) (err error) {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	pod, err := ns.Open(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("open the pod's network namespace %s: %v", args.Netns, err),
			"CNI_NETNS must be a network namespace file such as /proc/PID/ns/net or /run/netns/NAME")
	}
	defer pod.Close()
	if same, err := pod.IsCurrent(); err != nil || same {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %s is the node's own network namespace", args.Netns),
			"give the pod a network namespace of its own")
	}
	if err := gatewayRoute(); err != nil {
		return err
	}
	store, err := ipam.Open(conf.IPAM.DataDir, conf.Name, conf.subnet)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "open the IPAM store: "+err.Error(), "the plugin needs to write "+conf.IPAM.DataDir)
	}
	ip, fresh, err := store.Allocate(p.ctx, args.ContainerID, args.IfName)
	if err != nil {
		return ipamError(err)
	}
	defer func() {
		if err != nil && fresh {
			if _, _, rerr := store.Release(context.WithoutCancel(p.ctx), args.ContainerID, args.IfName); rerr != nil {
				slog.Error("release the address of a failed ADD", "ip", ip, "err", rerr)
			}
		}
	}()
	hostName := HostVethName(args.ContainerID)
	l, err := setupVeth(pod, hostName, args.IfName, conf.MTU, ip)
	if err != nil {
		return err
	}
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostName, Mac: l.hostMAC, Mtu: conf.MTU},
			{Name: args.IfName, Mac: l.podMAC, Mtu: conf.MTU, Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(32, 32)},
			Gateway:   net.IP(Gateway.AsSlice()),
		}},
		Routes: []*types.Route{{
			Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			GW:  net.IP(Gateway.AsSlice()),
		}},
		DNS: conf.DNS,
	}
	if err := types.PrintResult(res, conf.CNIVersion); err != nil {
		return types.NewError(types.ErrIOFailure, "print the result: "+err.Error(), "")
	}
	return nil
}

// del undoes add. It is idempotent: what is already gone is not an error,
// and a container the plugin never saw is deleted successfully.
func (p *plugin) del(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	store, err := ipam.Open(conf.IPAM.DataDir, conf.Name, conf.subnet)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "open the IPAM store: "+err.Error(), "the plugin needs to write "+conf.IPAM.DataDir)
	}
	if _, _, err := store.Release(p.ctx, args.ContainerID, args.IfName); err != nil {
		return ipamError(err)
	}
	// Deleting the node side deletes the pod side and the /32 route.
	if err := deleteLink(HostVethName(args.ContainerID)); err != nil {
		return types.NewError(types.ErrInternal, err.Error(), "")
	}
	return nil
}

func (p *plugin) check(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.prevResult == nil {
		return invalidConf("CHECK needs prevResult", "pass the result of ADD as prevResult, as libcni does")
	}
	prev, err := current.NewResultFromResult(conf.prevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "convert prevResult: "+err.Error(), "")
	}
	want, err := expected(prev, args.IfName)
	if err != nil {
		return err
	}
	store, err := ipam.Open(conf.IPAM.DataDir, conf.Name, conf.subnet)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "open the IPAM store: "+err.Error(), "the plugin needs to read "+conf.IPAM.DataDir)
	}
	held, ok, err := store.Lookup(p.ctx, args.ContainerID, args.IfName)
	switch {
	case err != nil:
		return ipamError(err)
	case !ok:
		return checkFailed(fmt.Sprintf("the IPAM holds no address for container %s %s", args.ContainerID, args.IfName))
	case held != want.ip:
		return checkFailed(fmt.Sprintf("the IPAM gave container %s %s the address %s, but the result says %s", args.ContainerID, args.IfName, held, want.ip))
	}
	pod, err := ns.Open(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("open the pod's network namespace %s: %v", args.Netns, err),
			"CNI_NETNS must be the network namespace ADD was called with")
	}
	defer pod.Close()
	if err := checkVeth(pod, HostVethName(args.ContainerID), args.IfName, want); err != nil {
		return checkFailed(err.Error())
	}
	return nil
}

// gc releases the addresses (and veths) of every attachment that is not
// in the runtime's list of valid ones (CNI 1.1).
func (p *plugin) gc(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	store, err := ipam.Open(conf.IPAM.DataDir, conf.Name, conf.subnet)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "open the IPAM store: "+err.Error(), "the plugin needs to write "+conf.IPAM.DataDir)
	}
	valid := make(map[types.GCAttachment]bool, len(conf.ValidAttachments))
	containers := make(map[string]bool, len(conf.ValidAttachments))
	for _, a := range conf.ValidAttachments {
		valid[a] = true
		containers[a.ContainerID] = true
	}
	released, err := store.GC(p.ctx, func(id, ifName string) bool {
		return valid[types.GCAttachment{ContainerID: id, IfName: ifName}]
	})
	if err != nil {
		return ipamError(err)
	}
	var errs []error
	for _, a := range released {
		slog.Info("gc: released a stale address", "ip", a.IP, "container", a.ContainerID, "ifname", a.IfName)
		if !containers[a.ContainerID] {
			if err := deleteLink(HostVethName(a.ContainerID)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrInternal, err.Error(), "")
	}
	return nil
}

// status says whether an ADD could succeed now (CNI 1.1).
func (p *plugin) status(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := gatewayRoute(); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, err.Msg, err.Details)
	}
	store, err := ipam.Open(conf.IPAM.DataDir, conf.Name, conf.subnet)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "open the IPAM store: "+err.Error(), "the plugin needs to write "+conf.IPAM.DataDir)
	}
	free, err := store.Free(p.ctx)
	if err != nil {
		return ipamError(err)
	}
	if free == 0 {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("no free address in %s", conf.subnet), "delete pods on this node or give it a bigger pod CIDR")
	}
	return nil
}

func ipamError(err error) *types.Error {
	switch {
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(ErrNoFreeAddress, err.Error(), "")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return types.NewError(types.ErrTryAgainLater, err.Error(), "another CNI call holds the IPAM lock: try again")
	}
	return types.NewError(types.ErrIOFailure, "IPAM: "+err.Error(), "")
}

func checkFailed(msg string) *types.Error {
	return types.NewError(ErrCheckFailed, msg, "DEL and ADD the container again (the agent recreates the pod's sandbox)")
}

// want is what CHECK expects to find, from prevResult.
type want struct {
	ip     netip.Addr
	podMAC string
}

func expected(prev *current.Result, ifName string) (want, error) {
	idx := -1
	var w want
	for i, itf := range prev.Interfaces {
		if itf.Name == ifName && itf.Sandbox != "" {
			idx, w.podMAC = i, itf.Mac
		}
	}
	if idx < 0 {
		return w, checkFailed(fmt.Sprintf("prevResult has no interface %s in a sandbox", ifName))
	}
	for _, c := range prev.IPs {
		if c.Interface == nil || *c.Interface != idx {
			continue
		}
		if a, ok := netip.AddrFromSlice(c.Address.IP); ok && a.Unmap().Is4() {
			w.ip = a.Unmap()
		}
	}
	if !w.ip.IsValid() {
		return w, checkFailed(fmt.Sprintf("prevResult has no IPv4 address on %s", ifName))
	}
	return w, nil
}
