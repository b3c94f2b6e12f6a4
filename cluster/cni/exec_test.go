package cni_test

import (
	"os/exec"

	"github.com/klab-dev/klab/cluster/cni/internal/cnitest"
)

// cnitestRun runs a command inside a namespace and returns its output.
func cnitestRun(n *cnitest.Node, name string, args ...string) (string, error) {
	var out []byte
	err := n.Do(func() (err error) {
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	return string(out), err
}
