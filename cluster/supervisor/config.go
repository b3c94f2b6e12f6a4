// Package supervisor is "klab supervise": the process that runs a node's
// components (etcd, apiserver, agent, …), restarts one that crashes with
// an increasing backoff, writes each one's output to its own log file, and
// answers status and control requests on a unix socket. It is klab's small
// stand-in for systemd on machines that have none.
package supervisor

import (
	"fmt"
	"os"
	"regexp"

	"sigs.k8s.io/yaml"
)

// Default paths on a node.
const (
	DefaultConfig = "/etc/klab/supervise.yaml"
	DefaultSocket = "/run/klab/supervise.sock"
	DefaultLogDir = "/var/log/klab"
)

// Config lists what a node runs.
type Config struct {
	// Cgroup is the cgroup (relative to the hierarchy root) the supervisor
	// and its components live in; empty to stay where started.
	Cgroup     string      `json:"cgroup,omitempty"`
	Components []Component `json:"components"`
}

// Component is one long-running process.
type Component struct {
	Name string   `json:"name"`
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
}

var componentName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Validate checks names and commands.
func (c *Config) Validate() error {
	seen := map[string]bool{}
	for i, comp := range c.Components {
		if !componentName.MatchString(comp.Name) {
			return fmt.Errorf("components[%d].name %q: use lowercase letters, digits and '-'", i, comp.Name)
		}
		if seen[comp.Name] {
			return fmt.Errorf("components[%d].name %q: duplicate", i, comp.Name)
		}
		seen[comp.Name] = true
		if len(comp.Args) == 0 {
			return fmt.Errorf("components[%d].args: Required value", i)
		}
	}
	return nil
}

// LoadConfig reads a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Marshal renders a config file.
func (c *Config) Marshal() ([]byte, error) { return yaml.Marshal(c) }
