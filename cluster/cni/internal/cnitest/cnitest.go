// Package cnitest holds what the CNI tests share: throwaway network
// namespaces (all named kt-cni-…, addresses in 10.244.0.0/16), a "node"
// with an uplink and a default route, running a plugin binary there as a
// runtime does, and TCP probes between namespaces.
package cnitest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/klab-dev/klab/cluster/cni/ns"
	"github.com/klab-dev/klab/internal/testutil"
)

// Prefix starts the name of every namespace the tests create.
const Prefix = "kt-cni-"

// Namespace is a named network namespace under /run/netns; Path is its
// file, what CNI_NETNS names.
type Namespace struct {
	Name string
	*ns.NS
}

// NewNS creates the namespace kt-cni-TAG-RANDOM; the test deletes it.
func NewNS(t testing.TB, tag string) *Namespace {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "ip")
	b := make([]byte, 3)
	rand.Read(b)
	name := Prefix + tag + "-" + hex.EncodeToString(b)
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete namespace %s: %v: %s", name, err, out)
		}
	})
	h, err := ns.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	IP(t, "-n", name, "link", "set", "lo", "up")
	return &Namespace{Name: name, NS: h}
}

// IP runs ip(8) and fails the test when it fails.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Node is a namespace standing for a node: its uplink (up0, 10.244.0.1/30)
// leads to a second namespace (10.244.0.2) that is its default gateway;
// with a default route the node answers pods' ARP for 169.254.1.1. It
// forwards (ip_forward=1), as a node routing for its pods does.
type Node struct {
	*Namespace
	Upstream *Namespace
	IP       netip.Addr
	Gateway  netip.Addr
}

// NewNode creates a node with its uplink and default route.
func NewNode(t testing.TB) *Node {
	t.Helper()
	n := &Node{Namespace: NewNS(t, "node"), IP: netip.MustParseAddr("10.244.0.1"), Gateway: netip.MustParseAddr("10.244.0.2")}
	n.Upstream = NewNS(t, "up")
	IP(t, "-n", n.Name, "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", n.Upstream.Name)
	IP(t, "-n", n.Name, "addr", "add", n.IP.String()+"/30", "dev", "up0")
	IP(t, "-n", n.Upstream.Name, "addr", "add", n.Gateway.String()+"/30", "dev", "up1")
	IP(t, "-n", n.Name, "link", "set", "up0", "up")
	IP(t, "-n", n.Upstream.Name, "link", "set", "up1", "up")
	IP(t, "-n", n.Name, "route", "add", "default", "via", n.Gateway.String())
	if err := n.Do(func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644) }); err != nil {
		t.Fatalf("turn on forwarding in %s: %v", n.Name, err)
	}
	return n
}

// Run executes bin inside the namespace as a runtime executes a plugin:
// the environment (nothing but env and PATH) and stdin in, stdout and the
// exit code out.
func Run(t testing.TB, in *Namespace, bin string, env map[string]string, stdin []byte) (stdout []byte, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := in.Do(func() error {
		c := exec.CommandContext(ctx, bin)
		c.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		for k, v := range env {
			c.Env = append(c.Env, k+"="+v)
		}
		c.Stdin, c.Stdout, c.Stderr = bytes.NewReader(stdin), &out, &errb
		return c.Run()
	})
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", bin, err)
	}
	if errb.Len() > 0 {
		t.Logf("%s %s stderr: %s", env["CNI_COMMAND"], bin, errb.String())
	}
	return out.Bytes(), code
}

// Listen opens a TCP listener inside the namespace.
func Listen(t testing.TB, in *Namespace, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := in.Do(func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, in.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects from inside the namespace.
func Dial(in *Namespace, addr string) (net.Conn, error) {
	var c net.Conn
	err := in.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 5*time.Second)
		return err
	})
	return c, err
}

// Source connects from one namespace to a listener in another and returns
// the source address the listener saw.
func Source(t testing.TB, from *Namespace, ln net.Listener, dst netip.AddrPort) netip.Addr {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	got := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		got <- accepted{c, err}
	}()
	c, err := Dial(from, dst.String())
	if err != nil {
		ln.Close()
		<-got
		t.Fatalf("connect from %s to %s: %v", from.Name, dst, err)
	}
	defer c.Close()
	a := <-got
	if a.err != nil {
		t.Fatalf("accept on %s: %v", dst, a.err)
	}
	defer a.c.Close()
	return a.c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
}
