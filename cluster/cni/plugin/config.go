package plugin

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/klab-dev/klab/cluster/cni/ipam"
)

// Type is the plugin's name in a network configuration ("type": "klab"),
// and the IPAM type it implements itself.
const Type = "klab"

// DefaultMTU is the pod interfaces' MTU when the configuration sets none.
const DefaultMTU = 1500

// NetConf is the plugin's network configuration, read from stdin.
type NetConf struct {
	CNIVersion    string         `json:"cniVersion"`
	Name          string         `json:"name"`
	Type          string         `json:"type"`
	MTU           int            `json:"mtu"`
	IPAM          IPAMConf       `json:"ipam"`
	DNS           types.DNS      `json:"dns"`
	RawPrevResult map[string]any `json:"prevResult"`
	// ValidAttachments is what a GC keeps (CNI 1.1).
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments"`

	subnet     netip.Prefix
	prevResult types.Result
}

// IPAMConf configures the plugin's own IPAM:
// {"type": "klab", "subnet": "10.42.1.0/24"}.
type IPAMConf struct {
	Type    string `json:"type"`
	Subnet  string `json:"subnet"`
	DataDir string `json:"dataDir,omitempty"`
}

// parseConf reads and checks a configuration; its errors are CNI errors
// that say what to change.
func parseConf(stdin []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode the network configuration: %v", err), "stdin must be one plugin's JSON configuration, as in the conflist")
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return nil, invalidConf(fmt.Sprintf("mtu %d is out of range", c.MTU), "set \"mtu\" between 68 and 65535, or leave it out for 1500")
	}
	if c.IPAM.Type != Type {
		return nil, invalidConf(fmt.Sprintf("ipam type %q is not supported", c.IPAM.Type), `klab has its own IPAM: set "ipam": {"type": "klab", "subnet": "POD_CIDR"} with the node's pod CIDR`)
	}
	p, err := netip.ParsePrefix(c.IPAM.Subnet)
	if err != nil {
		return nil, invalidConf(fmt.Sprintf("ipam subnet %q is not a CIDR", c.IPAM.Subnet), `set "ipam": {"subnet": ...} to the node's pod CIDR, such as 10.42.1.0/24`)
	}
	if _, _, err := ipam.Range(p); err != nil {
		return nil, invalidConf("ipam "+err.Error(), `set "ipam": {"subnet": ...} to the node's pod CIDR, such as 10.42.1.0/24`)
	}
	c.subnet = p
	if c.IPAM.DataDir == "" {
		c.IPAM.DataDir = ipam.DefaultDataDir
	}
	if c.RawPrevResult != nil {
		pc := &types.PluginConf{CNIVersion: c.CNIVersion, RawPrevResult: c.RawPrevResult}
		if err := version.ParsePrevResult(pc); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode prevResult: %v", err), "prevResult must be the result of the previous ADD")
		}
		c.prevResult = pc.PrevResult
	}
	return c, nil
}

func invalidConf(msg, fix string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, msg, fix)
}
