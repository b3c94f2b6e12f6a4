package ns_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/klab-dev/klab/cluster/cni/internal/cnitest"
	"github.com/klab-dev/klab/cluster/cni/ns"
)

func TestOpenRejectsOtherFiles(t *testing.T) {
	for _, p := range []string{"/etc/hostname", "/nonexistent/kt-cni-none"} {
		if h, err := ns.Open(p); err == nil {
			h.Close()
			t.Errorf("Open(%s) succeeded, want an error", p)
		}
	}
}

func TestIntegrationDo(t *testing.T) {
	target := cnitest.NewNS(t, "do")
	want := nsID(t, target)
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside, child string
	if err := target.Do(func() error {
		var err error
		if inside, err = os.Readlink("/proc/thread-self/ns/net"); err != nil {
			return err
		}
		out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
		child = strings.TrimSpace(string(out))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("inside Do the thread is in %s, want %s", inside, want)
	}
	if child != want {
		t.Errorf("a process started in Do is in %s, want %s", child, want)
	}
	after, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("after Do the caller is in %s, was in %s", after, before)
	}
}

// nsID is the namespace's "net:[INODE]", read through a process in it.
func nsID(t *testing.T, n *cnitest.Namespace) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.Name, "readlink", "/proc/self/ns/net").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
