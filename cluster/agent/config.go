// Package agent is "klab agent", the kubelet of a klab node: it registers
// the node and keeps it alive (status heartbeats and a Lease), runs the
// pods bound to it through klab's runtime and CNI, probes them, reports
// their status, and serves their logs and exec to the API server.
package agent

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// DefaultConfig is where the agent's configuration lives on a node.
const DefaultConfig = "/etc/klab/agent.yaml"

// Config is the agent's configuration, written by "klab up".
type Config struct {
	Cluster  string `json:"cluster"`
	NodeName string `json:"nodeName"`
	NodeIP   string `json:"nodeIP"`
	// Subnet names the underlay subnet the node is in ("a", "b").
	Subnet string `json:"subnet"`
	// UnderlayCIDR is the node's underlay subnet.
	UnderlayCIDR string `json:"underlayCIDR"`
	Master       bool   `json:"master,omitempty"`

	Kubeconfig string `json:"kubeconfig"`
	// Serving certificate for the agent's API (logs, exec), signed by the cluster CA.
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	CAFile   string `json:"caFile"`
	Listen   string `json:"listen"`

	CNIConfDir string `json:"cniConfDir"`
	CNIBinDir  string `json:"cniBinDir"`
	StateDir   string `json:"stateDir"`
	// CgroupParent is where pod cgroups go, relative to the hierarchy roots.
	CgroupParent string `json:"cgroupParent"`

	// Heartbeats: the Lease is renewed every LeaseRenew; node status is
	// written every StatusInterval (and whenever it changes).
	LeaseRenew     Duration `json:"leaseRenew"`
	LeaseDuration  Duration `json:"leaseDuration"`
	StatusInterval Duration `json:"statusInterval"`

	// Capacity overrides (a netns node shares the host's CPUs and memory).
	CPU     string `json:"cpu,omitempty"`
	Memory  string `json:"memory,omitempty"`
	MaxPods int    `json:"maxPods,omitempty"`
}

// Duration is a time.Duration written as "10s" in YAML.
type Duration struct{ time.Duration }

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' {
		return fmt.Errorf("duration %s: want a string like \"10s\"", b)
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	d.Duration = v
	return err
}

// Defaults fills what the config leaves out.
func (c *Config) Defaults() {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.Kubeconfig, "/etc/klab/agent.kubeconfig")
	set(&c.CertFile, "/etc/klab/pki/node.crt")
	set(&c.KeyFile, "/etc/klab/pki/node.key")
	set(&c.CAFile, "/etc/klab/pki/ca.crt")
	set(&c.Listen, ":10250")
	set(&c.CNIConfDir, "/etc/cni/net.d")
	set(&c.CNIBinDir, "/opt/cni/bin")
	set(&c.StateDir, "/var/lib/klab/agent")
	// Lab-short heartbeats: the controller manager marks a node whose
	// Lease is 20 s old NotReady. The node's status only refreshes its
	// conditions, so it is written rarely (the kubelet: every 5 minutes)
	// and at once when readiness changes; every write wakes every node
	// watcher in the cluster.
	if c.LeaseRenew.Duration == 0 {
		c.LeaseRenew.Duration = 5 * time.Second
	}
	if c.LeaseDuration.Duration == 0 {
		c.LeaseDuration.Duration = 20 * time.Second
	}
	if c.StatusInterval.Duration == 0 {
		c.StatusInterval.Duration = time.Minute
	}
	if c.MaxPods == 0 {
		c.MaxPods = 110
	}
}

// Validate checks a config.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("nodeName: Required value")
	}
	if _, err := netip.ParseAddr(c.NodeIP); err != nil {
		return fmt.Errorf("nodeIP %q: %v", c.NodeIP, err)
	}
	if c.UnderlayCIDR != "" {
		if _, err := netip.ParsePrefix(c.UnderlayCIDR); err != nil {
			return fmt.Errorf("underlayCIDR %q: %v", c.UnderlayCIDR, err)
		}
	}
	return nil
}

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}
