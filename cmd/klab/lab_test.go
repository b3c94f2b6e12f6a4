package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klab-dev/klab/internal/testutil"
)

// labRun runs klab with the test's state directory and returns what it
// printed (both streams) and its exit code.
func labRun(t *testing.T, state string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(testutil.KlabBinary(t), args...)
	cmd.Env = append(os.Environ(), "KLAB_STATE_DIR="+state, "LANG=C", "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("klab %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// healthy fails the test unless every machine of the cluster runs with
// all its components, every node is Ready, and no node keeps a lab's
// fault: a changed eth0 MTU or a fault's nftables table.
func healthy(t *testing.T, state, cluster string) {
	t.Helper()
	out, code := labRun(t, state, "status", "--name", cluster, "-o", "json")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	var st struct {
		Nodes []struct {
			Name       string `json:"name"`
			Role       string `json:"role"`
			State      string `json:"state"`
			Error      string `json:"error"`
			Components []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"components"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, n := range st.Nodes {
		if n.State != "running" {
			t.Errorf("%s is %s", n.Name, n.State)
		}
		if n.Error != "" {
			t.Errorf("%s: no status of its components: %s", n.Name, n.Error)
		}
		for _, c := range n.Components {
			if c.State != "running" {
				t.Errorf("%s: %s is %s", n.Name, c.Name, c.State)
			}
		}
		if n.Role == "router" {
			continue
		}
		if mtu, _ := labRun(t, state, "node", "exec", n.Name, "--name", cluster, "--", "cat", "/sys/class/net/eth0/mtu"); strings.TrimSpace(mtu) != "1500" {
			t.Errorf("%s: eth0 MTU %q, want 1500", n.Name, mtu)
		}
		if tables, _ := labRun(t, state, "node", "exec", n.Name, "--name", cluster, "--", "nft", "list", "tables"); strings.Contains(tables, "klab_lab_") {
			t.Errorf("%s keeps a lab's nftables table:\n%s", n.Name, tables)
		}
	}
	testutil.Poll(t, time.Minute, "every node Ready", func() bool {
		out, code := labRun(t, state, "get", "nodes", "--name", cluster, "-o", "json")
		if code != 0 {
			return false
		}
		var nodes struct {
			Items []struct {
				Status struct {
					Conditions []struct{ Type, Status string } `json:"conditions"`
				} `json:"status"`
			} `json:"items"`
		}
		if json.Unmarshal([]byte(out), &nodes) != nil || len(nodes.Items) == 0 {
			return false
		}
		for _, n := range nodes.Items {
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == "Ready" && c.Status == "True")
			}
			if !ready {
				return false
			}
		}
		return true
	})
}

// TestIntegrationLabs is issue 8's acceptance: every bundled lab passes
// "klab lab run ID --auto" on the netns provider (labs of the same shape
// share a cluster, as a student's would), leaving nothing it broke; and
// in the step-by-step flow a check fails with its hint while the state is
// wrong, and passes once it is right.
func TestIntegrationLabs(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "nsenter", "ip", "nft")
	state := t.TempDir()

	out, code := labRun(t, state, "lab", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("lab list: exit %d\n%s", code, out)
	}
	var catalog []struct {
		ID      string `json:"id"`
		Cluster string `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(out), &catalog); err != nil || len(catalog) < 10 {
		t.Fatalf("lab list: %v, %d labs\n%s", err, len(catalog), out)
	}
	clusters := map[string]string{} // shape → cluster
	t.Cleanup(func() {
		for _, c := range clusters {
			labRun(t, state, "down", "--name", c)
		}
	})
	clusterFor := func(shape string) string {
		c, ok := clusters[shape]
		if !ok {
			c = fmt.Sprintf("tlab%d", len(clusters)+1)
			clusters[shape] = c
		}
		return c
	}

	t.Run("manual", func(t *testing.T) {
		c := clusterFor(catalog[0].Cluster)
		lab := filepath.Join("..", "..", "labs", "testdata", "manual.yaml")
		if out, code := labRun(t, state, "lab", "start", lab, "--name", c, "--provider", "netns"); code != 0 {
			t.Fatalf("lab start: exit %d\n%s", code, out)
		}
		// Nothing done yet: the check fails with its hint.
		out, code := labRun(t, state, "lab", "check", "--name", c, "--wait", "1s")
		if code != 1 || !strings.Contains(out, "HINT-MANUAL-POD") {
			t.Fatalf("check before the pod exists: exit %d, want 1 with the hint\n%s", code, out)
		}
		pod := filepath.Join(t.TempDir(), "pod.yaml")
		manifest := "apiVersion: v1\nkind: Pod\nmetadata: {name: manual-pod}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: main, image: busybox, command: [sleep, \"3600\"]}]\n"
		if err := os.WriteFile(pod, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, code := labRun(t, state, "apply", "-f", pod, "--name", c); code != 0 {
			t.Fatalf("apply: exit %d\n%s", code, out)
		}
		if out, code := labRun(t, state, "lab", "check", "--name", c, "--wait", "90s"); code != 0 {
			t.Fatalf("check with the pod running: exit %d\n%s", code, out)
		}
		// Step 2 lowered node1's MTU; put it back by hand and the check
		// sees the state is not the step's.
		mtu, _ := labRun(t, state, "node", "exec", "node1", "--name", c, "--", "cat", "/sys/class/net/eth0/mtu")
		if strings.TrimSpace(mtu) != "1400" {
			t.Fatalf("step 2's fault: node1 eth0 MTU %q, want 1400", mtu)
		}
		labRun(t, state, "node", "exec", "node1", "--name", c, "--", "ip", "link", "set", "eth0", "mtu", "1500")
		if out, code := labRun(t, state, "lab", "check", "--name", c, "--wait", "1s"); code != 1 || !strings.Contains(out, "HINT-MANUAL-MTU") {
			t.Fatalf("check with the MTU put back: exit %d, want 1 with the hint\n%s", code, out)
		}
		labRun(t, state, "node", "exec", "node1", "--name", c, "--", "ip", "link", "set", "eth0", "mtu", "1400")
		for _, args := range [][]string{{"lab", "check", "--name", c}, {"delete", "pod", "manual-pod", "--name", c}, {"lab", "check", "--name", c, "--wait", "60s"}} {
			if out, code := labRun(t, state, args...); code != 0 {
				t.Fatalf("%s: exit %d\n%s", strings.Join(args, " "), code, out)
			}
		}
		healthy(t, state, c)
	})

	for _, l := range catalog {
		t.Run(l.ID, func(t *testing.T) {
			c := clusterFor(l.Cluster)
			out, code := labRun(t, state, "lab", "run", l.ID, "--auto", "--quiet", "--name", c, "--provider", "netns")
			if code != 0 {
				t.Fatalf("lab run %s --auto on %s: exit %d\n%s", l.ID, c, code, out)
			}
			healthy(t, state, c)
		})
	}
}
