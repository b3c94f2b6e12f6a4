package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/klab-dev/klab/internal/testutil"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":        "plain",
		"/usr/bin/x":   "/usr/bin/x",
		"a b":          "'a b'",
		"it's":         `'it'\''s'`,
		"":             "''",
		"$HOME":        "'$HOME'",
		"--x=1,2":      "--x=1,2",
		"semi;colon":   "'semi;colon'",
		"new\nline":    "'new\nline'",
		"10.42.0.0/16": "10.42.0.0/16",
	} {
		if got := ShellQuote([]string{in}); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestRunErrorMessage(t *testing.T) {
	e := &RunError{Node: "node1", Args: []string{"ip", "link"}, Output: []byte("a\nb\nc\nd\n"), Code: 2, Err: errors.New("exit status 2")}
	if got := e.Error(); got != `node1: "ip link": exit status 2: b | c | d` {
		t.Errorf("got %q", got)
	}
}

// sshd starts a real OpenSSH server in a network namespace of its own,
// reachable from the test over a veth pair. It returns the address.
func sshd(t *testing.T, hostKey []byte, authorized string) string {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "ip", "/usr/sbin/sshd")
	ns := fmt.Sprintf("kt-ssh-%d", os.Getpid())
	dir := t.TempDir()
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "link", "add", "kt-ssh-h", "type", "veth", "peer", "name", "eth0", "netns", ns)
	t.Cleanup(func() { exec.Command("ip", "link", "del", "kt-ssh-h").Run() })
	sh("ip", "addr", "add", "10.250.77.1/30", "dev", "kt-ssh-h")
	sh("ip", "link", "set", "kt-ssh-h", "up")
	sh("ip", "-n", ns, "addr", "add", "10.250.77.2/30", "dev", "eth0")
	sh("ip", "-n", ns, "link", "set", "eth0", "up")
	sh("ip", "-n", ns, "link", "set", "lo", "up")

	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := write("host_key", hostKey, 0o600)
	auth := write("authorized_keys", []byte(authorized+"\n"), 0o600)
	conf := write("sshd_config", []byte(fmt.Sprintf(`Port 2222
ListenAddress 10.250.77.2
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
`, key, auth)), 0o644)
	cmd := exec.Command("ip", "netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f", conf)
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", log.String())
		}
	})
	return "10.250.77.2:2222"
}

func TestIntegrationSSH(t *testing.T) {
	hostPriv, hostPub, err := NewKey("host")
	if err != nil {
		t.Fatal(err)
	}
	userPriv, userPub, err := NewKey("klab")
	if err != nil {
		t.Fatal(err)
	}
	addr := sshd(t, hostPriv, userPub)
	signer, err := ssh.ParsePrivateKey(userPriv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	line, err := KnownHostsLine([]string{addr}, hostPub)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, []byte(line+"\n"), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tr *SSH
	testutil.Poll(t, 10*time.Second, "sshd to accept connections", func() bool {
		tr, err = DialSSH(ctx, SSHConfig{Node: "n", Addr: addr, User: "root", Signer: signer, KnownHosts: known})
		return err == nil
	})
	defer tr.Close()

	out, err := Output(ctx, tr, "sh", "-c", "echo \"$GREETING\" world", "")
	if err != nil || strings.TrimSpace(string(out)) != "world" {
		t.Errorf("run: %q %v", out, err)
	}
	var b bytes.Buffer
	if err := tr.Run(ctx, Cmd{Args: []string{"sh", "-c", `echo "$GREETING"`}, Env: []string{"GREETING=hi there"}, Stdout: &b}); err != nil || b.String() != "hi there\n" {
		t.Errorf("env: %q %v", b.String(), err)
	}
	err = tr.Run(ctx, Cmd{Args: []string{"sh", "-c", "echo oops >&2; exit 7"}})
	var re *RunError
	if !errors.As(err, &re) || re.ExitCode() != 7 || !strings.Contains(re.Error(), "oops") {
		t.Errorf("failing command: %v", err)
	}

	target := filepath.Join(dir, "sub dir", "file")
	if err := tr.WriteFile(ctx, target, strings.NewReader("payload"), 0o640); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "payload" {
		t.Errorf("WriteFile wrote %q", got)
	}
	if fi, _ := os.Stat(target); fi == nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi)
	}
	if err := tr.CopyFile(ctx, known, target, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != line+"\n" {
		t.Errorf("CopyFile wrote %q", got)
	}

	marker := filepath.Join(dir, "started")
	logPath := filepath.Join(dir, "logs", "detached.log")
	if err := tr.Start(ctx, Cmd{Args: []string{"sh", "-c", "echo running; touch " + marker + "; sleep 0.2"}}, logPath); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 5*time.Second, "the detached command to run", func() bool {
		b, _ := os.ReadFile(logPath)
		_, err := os.Stat(marker)
		return err == nil && string(b) == "running\n"
	})

	// A different host key for the same address is refused.
	_, otherPub, _ := NewKey("other")
	other, _ := KnownHostsLine([]string{addr}, otherPub)
	os.WriteFile(known, []byte(other+"\n"), 0o600)
	_, err = DialSSH(ctx, SSHConfig{Node: "n", Addr: addr, User: "root", Signer: signer, KnownHosts: known})
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Errorf("replaced host key: %v", err)
	}
	os.WriteFile(known, nil, 0o600)
	_, err = DialSSH(ctx, SSHConfig{Node: "n", Addr: addr, User: "root", Signer: signer, KnownHosts: known})
	if err == nil || !strings.Contains(err.Error(), "unknown host") {
		t.Errorf("unknown host key: %v", err)
	}
}
