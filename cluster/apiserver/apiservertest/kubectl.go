package apiservertest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// KubectlVersion is the kubectl that Kubectl builds: the one matching the
// k8s.io libraries klab uses.
const KubectlVersion = "v0.37.2"

const kubectlMain = `package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
`

// Kubectl returns a real kubectl, built from k8s.io/kubectl through the Go
// module proxy in a temporary module, and cached under the user's cache
// directory (klab-test/kubectl-VERSION) so it is built once per machine.
// The test is skipped when the module proxy cannot be reached.
func Kubectl(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no cache directory for kubectl: %v", err)
	}
	dir := filepath.Join(cache, "klab-test")
	bin := filepath.Join(dir, "kubectl-"+KubectlVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// One build at a time on this machine.
	lock, err := os.OpenFile(filepath.Join(dir, ".kubectl.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	mod := t.TempDir()
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module klabtest/kubectl\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "main.go"), []byte(kubectlMain), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0", "GOWORK=off")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return errors.New(strings.TrimSpace(out.String()))
		}
		return nil
	}
	if err := run("get", "k8s.io/kubectl@"+KubectlVersion, "k8s.io/component-base@"+KubectlVersion); err != nil {
		if unreachable(err) {
			t.Skipf("cannot build kubectl: the Go module proxy is unreachable: %v", err)
		}
		t.Fatalf("fetch kubectl %s: %v", KubectlVersion, err)
	}
	if err := run("mod", "tidy"); err != nil {
		if unreachable(err) {
			t.Skipf("cannot build kubectl: the Go module proxy is unreachable: %v", err)
		}
		t.Fatalf("kubectl module: %v", err)
	}
	tmp := bin + ".tmp"
	// The version kubectl reports (and checks against the server's).
	var ldflags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ldflags = append(ldflags, "-X", pkg+".gitVersion="+strings.Replace(KubectlVersion, "v0.", "v1.", 1),
			"-X", pkg+".gitMajor=1", "-X", pkg+".gitMinor="+strings.Split(KubectlVersion, ".")[1])
	}
	if err := run("build", "-ldflags", strings.Join(ldflags, " "), "-o", tmp, "."); err != nil {
		t.Fatalf("build kubectl: %v", err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func unreachable(err error) bool {
	s := err.Error()
	for _, m := range []string{"dial tcp", "no such host", "connection refused", "i/o timeout", "proxyconnect", "network is unreachable", "TLS handshake timeout"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
