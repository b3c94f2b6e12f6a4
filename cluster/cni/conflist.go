package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/klab-dev/klab/cluster/cni/ipam"
)

// The node's network configuration list.
const (
	ConfListName = "10-klab.conflist"
	NetworkName  = "klab"
)

// ConfListOptions are what the node's configuration list depends on.
type ConfListOptions struct {
	// PodCIDR is the node's block, which the klab IPAM hands out.
	PodCIDR netip.Prefix
	// MTU of the pods' interfaces (0: the plugin's default, 1500): the
	// ClusterNetwork's, the underlay's less the largest encapsulation.
	MTU int
	// DataDir is where the IPAM keeps its allocations (empty: the
	// plugin's default, /var/lib/klab/cni/networks).
	DataDir string
	// PortMap chains Debian's portmap plugin (hostPort through DNAT); it
	// turns CHECK off for the list (see ConfList).
	PortMap bool
	// Bandwidth chains Debian's bandwidth plugin (traffic shaping).
	Bandwidth bool
	// Sysctls, when set, chains Debian's tuning plugin to set these in
	// every pod's network namespace.
	Sysctls map[string]string
}

// ConfList renders the node's configuration list: the klab plugin with its
// IPAM on the node's block, then the standard plugins asked for. The list
// speaks CNI 1.1.0 (with GC and STATUS) when klab is alone, and 1.0.0 when
// it chains Debian's plugins, which speak no later version.
func ConfList(o ConfListOptions) ([]byte, error) {
	if _, _, err := ipam.Range(o.PodCIDR); err != nil {
		return nil, fmt.Errorf("the node's pod CIDR: %w", err)
	}
	if o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535) {
		return nil, fmt.Errorf("MTU %d is out of range: use 68 to 65535, or 0 for the plugin's default", o.MTU)
	}
	ipamConf := map[string]any{"type": "klab", "subnet": o.PodCIDR.String()}
	if o.DataDir != "" {
		ipamConf["dataDir"] = o.DataDir
	}
	klab := map[string]any{"type": "klab", "ipam": ipamConf}
	if o.MTU != 0 {
		klab["mtu"] = o.MTU
	}
	plugins := []any{klab}
	if len(o.Sysctls) > 0 {
		plugins = append(plugins, map[string]any{"type": "tuning", "sysctl": maps.Clone(o.Sysctls)})
	}
	if o.PortMap {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	if o.Bandwidth {
		plugins = append(plugins, map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}})
	}
	list := map[string]any{"cniVersion": "1.1.0", "name": NetworkName, "plugins": plugins}
	if len(plugins) > 1 {
		list["cniVersion"] = "1.0.0"
	}
	if o.PortMap {
		// Debian 12's portmap (1.1.1) fails every CHECK of an IPv4-only
		// pod, looking for ip6tables rules it never made
		// (containernetworking/plugins#819): CHECK would always fail.
		list["disableCheck"] = true
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	err := enc.Encode(list)
	return b.Bytes(), err
}

// WriteConfList renders the list into dir/10-klab.conflist, replacing the
// old one in a single rename so a runtime never reads half a file.
func WriteConfList(dir string, o ConfListOptions) (path string, err error) {
	b, err := ConfList(o)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	path = filepath.Join(dir, ConfListName)
	tmp, err := os.CreateTemp(dir, "."+ConfListName+".tmp-")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
