// Package cni is the runtime side of CNI, what a kubelet does for a pod's
// network: read the node's network configuration list, execute the plugin
// binaries it names with the CNI environment and the JSON configuration on
// stdin, and parse what they print. Every execution is recorded in the
// node's call log, so that users and labs can see the protocol at work.
package cni

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// Where things are on a node.
const (
	DefaultConfDir  = "/etc/cni/net.d"
	DefaultCacheDir = "/var/lib/klab/cni/cache"
)

// DefaultBinDirs are searched for plugins in order: klab's own directory,
// then where Debian's containernetworking-plugins puts the standard ones.
var DefaultBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// cleanupTimeout bounds the DEL that undoes a failed ADD.
const cleanupTimeout = 30 * time.Second

// Options says where the runtime finds configuration and plugins and
// where it keeps its cache and call log; empty fields take the defaults.
type Options struct {
	ConfDir  string
	BinDirs  []string
	CacheDir string
	LogPath  string
}

// Runtime calls the node's CNI plugins.
type Runtime struct {
	confDir string
	cni     *libcni.CNIConfig
}

// New returns a runtime for o.
func New(o Options) *Runtime {
	if o.ConfDir == "" {
		o.ConfDir = DefaultConfDir
	}
	if len(o.BinDirs) == 0 {
		o.BinDirs = DefaultBinDirs
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.LogPath == "" {
		o.LogPath = DefaultLogPath
	}
	exec := &recordingExec{log: &callLog{path: o.LogPath}, now: time.Now}
	return &Runtime{
		confDir: o.ConfDir,
		cni:     libcni.NewCNIConfigWithCacheDir(slices.Clone(o.BinDirs), o.CacheDir, exec),
	}
}

// PodArgs is what the runtime tells the plugins about the pod besides its
// sandbox: CNI_ARGS as a kubelet sets them, and the runtime configuration
// of the plugins that declare the capability (portmap, bandwidth).
type PodArgs struct {
	Namespace, Name, UID string
	PortMappings         []PortMapping
	Bandwidth            *Bandwidth
}

// PortMapping is a hostPort of the pod ("portMappings" capability).
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp or udp
	HostIP        string `json:"hostIP,omitempty"`
}

// Bandwidth limits the pod's traffic ("bandwidth" capability): rates in
// bits per second, bursts in bits; a zero burst with a rate means no
// burst limit, as a kubelet does it.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// Attachment is a pod's network after ADD.
type Attachment struct {
	Network   string
	Interface string
	// IP is the pod interface's IPv4 address: the pod IP.
	IP netip.Addr
	// Result is the last plugin's result, as CNI 1.0 types.
	Result *current.Result
}

// Add attaches the pod's sandbox (the network namespace at netnsPath) to
// the node's network under ifName. When a plugin of the list fails, the
// plugins before it are undone with a DEL.
func (r *Runtime) Add(ctx context.Context, containerID, netnsPath, ifName string, args PodArgs) (att *Attachment, err error) {
	list, err := r.load()
	if err != nil {
		return nil, err
	}
	rt := runtimeConf(containerID, netnsPath, ifName, args)
	res, err := r.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		err = fmt.Errorf("CNI ADD of %s to network %s: %w", containerID, list.Name, err)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := r.cni.DelNetworkList(cctx, list, rt); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo with DEL: %w", derr))
		}
		return nil, err
	}
	cur, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD of %s: read the result: %w", containerID, err)
	}
	att = &Attachment{Network: list.Name, Interface: ifName, Result: cur}
	for _, c := range cur.IPs {
		if c.Interface == nil || *c.Interface < 0 || *c.Interface >= len(cur.Interfaces) {
			continue
		}
		itf := cur.Interfaces[*c.Interface]
		if a, ok := netip.AddrFromSlice(c.Address.IP); ok && a.Unmap().Is4() && itf.Name == ifName && itf.Sandbox != "" {
			att.IP = a.Unmap()
			break
		}
	}
	if !att.IP.IsValid() {
		return att, fmt.Errorf("CNI ADD of %s: the result gives %s no IPv4 address", containerID, ifName)
	}
	return att, nil
}

// Del detaches the pod; deleting what is already gone succeeds.
func (r *Runtime) Del(ctx context.Context, containerID, netnsPath, ifName string, args PodArgs) error {
	list, err := r.load()
	if err != nil {
		return err
	}
	if err := r.cni.DelNetworkList(ctx, list, runtimeConf(containerID, netnsPath, ifName, args)); err != nil {
		return fmt.Errorf("CNI DEL of %s from network %s: %w", containerID, list.Name, err)
	}
	return nil
}

// Check asks every plugin whether the pod's network is still what ADD made.
func (r *Runtime) Check(ctx context.Context, containerID, netnsPath, ifName string, args PodArgs) error {
	list, err := r.load()
	if err != nil {
		return err
	}
	if err := r.cni.CheckNetworkList(ctx, list, runtimeConf(containerID, netnsPath, ifName, args)); err != nil {
		return fmt.Errorf("CNI CHECK of %s on network %s: %w", containerID, list.Name, err)
	}
	return nil
}

// GC deletes every attachment the runtime made that is not in valid (the
// pods the node still runs), and asks the plugins to release what they
// hold for any other (CNI 1.1; older lists only get the DELs).
func (r *Runtime) GC(ctx context.Context, valid []types.GCAttachment) error {
	list, err := r.load()
	if err != nil {
		return err
	}
	if err := r.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		return fmt.Errorf("CNI GC of network %s: %w", list.Name, err)
	}
	return nil
}

// Status reports whether the plugins can take ADDs now (CNI 1.1; older
// lists are always ready).
func (r *Runtime) Status(ctx context.Context) error {
	list, err := r.load()
	if err != nil {
		return err
	}
	if err := r.cni.GetStatusNetworkList(ctx, list); err != nil {
		return fmt.Errorf("CNI STATUS of network %s: %w", list.Name, err)
	}
	return nil
}

// load reads the network configuration list, as a kubelet does: the first
// .conflist (or .json) file of the configuration directory by name.
func (r *Runtime) load() (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(r.confDir, []string{".conflist", ".json"})
	if err != nil {
		return nil, fmt.Errorf("read the CNI configuration directory: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CNI configuration list in %s: the agent writes %s once the node has a pod CIDR", r.confDir, ConfListName)
	}
	slices.Sort(files)
	list, err := libcni.NetworkConfFromFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("CNI configuration %s: %w", files[0], err)
	}
	return list, nil
}

func runtimeConf(containerID, netnsPath, ifName string, a PodArgs) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID:    containerID,
		NetNS:          netnsPath,
		IfName:         ifName,
		Args:           [][2]string{{"IgnoreUnknown", "1"}},
		CapabilityArgs: map[string]any{},
	}
	for _, kv := range [][2]string{
		{"K8S_POD_NAMESPACE", a.Namespace},
		{"K8S_POD_NAME", a.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", containerID},
		{"K8S_POD_UID", a.UID},
	} {
		if kv[1] != "" {
			rt.Args = append(rt.Args, kv)
		}
	}
	if len(a.PortMappings) > 0 {
		pm := slices.Clone(a.PortMappings)
		for i := range pm {
			pm[i].Protocol = strings.ToLower(pm[i].Protocol)
			if pm[i].Protocol == "" {
				pm[i].Protocol = "tcp"
			}
		}
		rt.CapabilityArgs["portMappings"] = pm
	}
	if b := a.Bandwidth; b != nil {
		bw := *b
		if bw.IngressRate > 0 && bw.IngressBurst == 0 {
			bw.IngressBurst = math.MaxInt32
		}
		if bw.EgressRate > 0 && bw.EgressBurst == 0 {
			bw.EgressBurst = math.MaxInt32
		}
		rt.CapabilityArgs["bandwidth"] = bw
	}
	return rt
}
