package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/klab-dev/klab/internal/iox"
	"github.com/klab-dev/klab/internal/testutil"
)

func TestConfList(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       ConfListOptions
		version string
		types   []string
		err     bool
	}{
		{name: "klab alone", o: ConfListOptions{PodCIDR: netip.MustParsePrefix("10.42.1.0/24"), MTU: 1440}, version: "1.1.0", types: []string{"klab"}},
		{name: "all chained", o: ConfListOptions{PodCIDR: netip.MustParsePrefix("10.42.2.0/24"), PortMap: true, Bandwidth: true, Sysctls: map[string]string{"net.core.somaxconn": "1024"}},
			version: "1.0.0", types: []string{"klab", "tuning", "portmap", "bandwidth"}},
		{name: "no pod CIDR", o: ConfListOptions{}, err: true},
		{name: "host bits", o: ConfListOptions{PodCIDR: netip.MustParsePrefix("10.42.1.1/24")}, err: true},
		{name: "MTU", o: ConfListOptions{PodCIDR: netip.MustParsePrefix("10.42.1.0/24"), MTU: 10}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ConfList(tc.o)
			if tc.err {
				if err == nil {
					t.Fatalf("ConfList succeeded: %s", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.NetworkConfFromBytes(b)
			if err != nil {
				t.Fatalf("libcni cannot read %s: %v", b, err)
			}
			if list.DisableCheck != tc.o.PortMap {
				t.Errorf("disableCheck %v with portmap %v", list.DisableCheck, tc.o.PortMap)
			}
			if list.Name != NetworkName || list.CNIVersion != tc.version || len(list.Plugins) != len(tc.types) {
				t.Fatalf("list %s %s with %d plugins, want %s %s with %v", list.Name, list.CNIVersion, len(list.Plugins), NetworkName, tc.version, tc.types)
			}
			for i, p := range list.Plugins {
				if p.Network.Type != tc.types[i] {
					t.Errorf("plugin %d is %s, want %s", i, p.Network.Type, tc.types[i])
				}
			}
			var klab struct {
				MTU  int `json:"mtu"`
				IPAM struct{ Type, Subnet string }
			}
			json.Unmarshal(list.Plugins[0].Bytes, &klab)
			if klab.IPAM.Type != "klab" || klab.IPAM.Subnet != tc.o.PodCIDR.String() || klab.MTU != tc.o.MTU {
				t.Errorf("klab plugin %s, want ipam klab on %s and mtu %d", list.Plugins[0].Bytes, tc.o.PodCIDR, tc.o.MTU)
			}
		})
	}
}

func TestWriteConfListThenLoad(t *testing.T) {
	dir := t.TempDir()
	r := New(Options{ConfDir: dir, LogPath: filepath.Join(dir, "cni.log")})
	if _, err := r.load(); err == nil || !strings.Contains(err.Error(), ConfListName) {
		t.Errorf("load from an empty directory: %v, want an error naming %s", err, ConfListName)
	}
	p, err := WriteConfList(dir, ConfListOptions{PodCIDR: netip.MustParsePrefix("10.42.3.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, ConfListName) {
		t.Errorf("wrote %s", p)
	}
	list, err := r.load()
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != NetworkName || list.Plugins[0].Network.Type != "klab" {
		t.Errorf("loaded %s with %s", list.Name, list.Plugins[0].Network.Type)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("the directory holds %d files, want the list alone", len(ents))
	}
}

// fakePlugin is a shell-script CNI plugin for tests that need no root: it
// answers ADD with a fixed result, CHECK with FAIL_CHECK set with an error,
// and anything else with nothing.
const fakePlugin = `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
	if [ -n "$FAIL_ADD" ] && [ "$(basename "$0")" = fail ]; then
		echo '{"code":100,"msg":"told to fail"}'; exit 1
	fi
	echo "plugin log line" >&2
	echo '{"cniVersion":"1.0.0","interfaces":[{"name":"'"$CNI_IFNAME"'","sandbox":"'"$CNI_NETNS"'"}],"ips":[{"address":"10.244.7.2/32","interface":0}]}' ;;
CHECK)
	echo '{"code":102,"msg":"broken on purpose"}'; exit 1 ;;
VERSION)
	echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
esac
`

func fakeRuntime(t *testing.T, conflist string) (*Runtime, string) {
	t.Helper()
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	os.Mkdir(bin, 0o755)
	os.Mkdir(conf, 0o755)
	for _, name := range []string{"fake", "fail"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(fakePlugin), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(conf, "10-test.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log", "cni.log")
	return New(Options{ConfDir: conf, BinDirs: []string{bin}, CacheDir: filepath.Join(dir, "cache"), LogPath: log}), log
}

func TestRuntimeRecordsEveryCall(t *testing.T) {
	t.Setenv("KT_SECRET_TOKEN", "s3cret")
	r, logPath := fakeRuntime(t, `{"cniVersion":"1.0.0","name":"kt-net","plugins":[
		{"type":"fake","capabilities":{"portMappings":true}}]}`)
	ctx := context.Background()
	args := PodArgs{Namespace: "default", Name: "web", UID: "u1", PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"}}}
	att, err := r.Add(ctx, "kt-c1", "/run/netns/kt-cni-x", "eth0", args)
	if err != nil {
		t.Fatal(err)
	}
	if att.IP.String() != "10.244.7.2" || att.Network != "kt-net" {
		t.Errorf("attachment %+v, want 10.244.7.2 on kt-net", att)
	}
	if err := r.Check(ctx, "kt-c1", "/run/netns/kt-cni-x", "eth0", args); err == nil || !strings.Contains(err.Error(), "broken on purpose") {
		t.Fatalf("Check = %v, want the plugin's error", err)
	}
	if err := r.Del(ctx, "kt-c1", "/run/netns/kt-cni-x", "eth0", args); err != nil {
		t.Fatal(err)
	}
	calls, err := ReadCalls(logPath, -1)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, c := range calls {
		cmds = append(cmds, c.Command)
	}
	if strings.Join(cmds, " ") != "ADD CHECK DEL" {
		t.Fatalf("recorded %v, want ADD CHECK DEL", cmds)
	}
	add, check := calls[0], calls[1]
	if add.Plugin != "fake" || !add.OK() || add.Env["CNI_CONTAINERID"] != "kt-c1" || add.Env["CNI_NETNS"] != "/run/netns/kt-cni-x" ||
		add.Env["CNI_IFNAME"] != "eth0" || !strings.Contains(add.Env["CNI_ARGS"], "K8S_POD_NAME=web") || add.Stderr != "plugin log line" {
		t.Errorf("ADD record %+v", add)
	}
	if _, leaked := add.Env["KT_SECRET_TOKEN"]; leaked {
		t.Error("the record holds a non-CNI environment variable")
	}
	var req struct {
		Name          string
		RuntimeConfig struct {
			PortMappings []PortMapping `json:"portMappings"`
		} `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(add.Request, &req); err != nil || req.Name != "kt-net" || len(req.RuntimeConfig.PortMappings) != 1 || req.RuntimeConfig.PortMappings[0].Protocol != "tcp" {
		t.Errorf("ADD request %s (%v): want the network's config with portMappings", add.Request, err)
	}
	if !strings.Contains(string(add.Result), "10.244.7.2/32") {
		t.Errorf("ADD result %s", add.Result)
	}
	if check.OK() || check.Error.Code != 102 || check.Error.Msg != "broken on purpose" {
		t.Errorf("CHECK record error %+v, want code 102", check.Error)
	}
	if last, err := ReadCalls(logPath, 1); err != nil || len(last) != 1 || last[0].Command != "DEL" {
		t.Errorf("the last call: %+v, %v", last, err)
	}

	var pretty bytes.Buffer
	if err := PrintLog(ctx, &pretty, logPath, 2, false, false); err != nil {
		t.Fatal(err)
	}
	out := pretty.String()
	for _, want := range []string{"CHECK fake  error 102", "DEL fake  ok", "CNI_CONTAINERID=kt-c1", "request (stdin):", "error (stdout):", `    "name": "kt-net"`} {
		if !strings.Contains(out, want) {
			t.Errorf("pretty log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ADD fake") {
		t.Errorf("--tail 2 printed the ADD:\n%s", out)
	}
	var lines bytes.Buffer
	if err := PrintLog(ctx, &lines, logPath, -1, false, true); err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
		var c Call
		if err := json.Unmarshal([]byte(l), &c); err != nil || c.Command != cmds[i] {
			t.Errorf("JSON line %d %q: %v", i, l, err)
		}
	}
}

func TestCLILog(t *testing.T) {
	bin := testutil.KlabBinary(t)
	r, logPath := fakeRuntime(t, `{"cniVersion":"1.0.0","name":"kt-net","plugins":[{"type":"fake"}]}`)
	ctx := context.Background()
	if _, err := r.Add(ctx, "kt-l1", "/run/netns/kt-cni-l", "eth0", PodArgs{}); err != nil {
		t.Fatal(err)
	}
	if err := r.Del(ctx, "kt-l1", "/run/netns/kt-cni-l", "eth0", PodArgs{}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "cni", "log", "--log", logPath, "--tail", "1", "-o", "json").Output()
	var c Call
	if err != nil || json.Unmarshal(out, &c) != nil || c.Command != "DEL" {
		t.Errorf("klab cni log --tail 1 -o json: %v: %s", err, out)
	}
	out, err = exec.Command(bin, "cni", "log", "--log", logPath).Output()
	if err != nil || !strings.Contains(string(out), "ADD fake  ok") || !strings.Contains(string(out), "DEL fake  ok") {
		t.Errorf("klab cni log: %v:\n%s", err, out)
	}
	if out, err := exec.Command(bin, "cni", "log", "--log", logPath+".none").CombinedOutput(); err == nil || !strings.Contains(string(out), "no CNI calls recorded") {
		t.Errorf("klab cni log of a missing log: %v: %s", err, out)
	}

	// -f prints calls as they are made (after the last one, printed once
	// the follower runs).
	var follow iox.Buffer
	cmd := exec.Command(bin, "cni", "log", "--log", logPath, "--tail", "1", "-f")
	cmd.Stdout = &follow
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	testutil.Poll(t, 10*time.Second, "klab cni log -f to print the last call", func() bool {
		return strings.Contains(follow.String(), "DEL fake")
	})
	if _, err := r.Add(ctx, "kt-l2", "/run/netns/kt-cni-l", "eth0", PodArgs{}); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 10*time.Second, "klab cni log -f to print the new ADD", func() bool {
		return strings.Contains(follow.String(), "CNI_CONTAINERID=kt-l2")
	})
	if strings.Count(follow.String(), "=== ") != 2 {
		t.Errorf("--tail 1 -f printed other calls than the last and the new one:\n%s", follow.String())
	}
}

func TestRuntimeUndoesAFailedAdd(t *testing.T) {
	t.Setenv("FAIL_ADD", "1")
	r, logPath := fakeRuntime(t, `{"cniVersion":"1.0.0","name":"kt-net","plugins":[{"type":"fake"},{"type":"fail"}]}`)
	_, err := r.Add(context.Background(), "kt-c2", "/run/netns/kt-cni-y", "eth0", PodArgs{})
	if err == nil || !strings.Contains(err.Error(), "told to fail") {
		t.Fatalf("Add = %v, want the failing plugin's error", err)
	}
	calls, err := ReadCalls(logPath, -1)
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, c := range calls {
		seq = append(seq, c.Command+" "+c.Plugin)
	}
	if got := strings.Join(seq, ", "); got != "ADD fake, ADD fail, DEL fail, DEL fake" {
		t.Errorf("calls %s; want the ADDs then DELs in reverse", got)
	}
}

func TestRuntimeErrors(t *testing.T) {
	r, _ := fakeRuntime(t, `{"cniVersion":"1.0.0","name":"kt-net","plugins":[{"type":"missing"}]}`)
	_, err := r.Add(context.Background(), "kt-c3", "/run/netns/kt-cni-z", "eth0", PodArgs{})
	if err == nil || !strings.Contains(err.Error(), "install it in one of") {
		t.Errorf("Add with a missing plugin: %v", err)
	}
	if _, err := ReadCalls(filepath.Join(t.TempDir(), "cni.log"), -1); err == nil || !strings.Contains(err.Error(), "no CNI calls recorded") {
		t.Errorf("ReadCalls of a missing log: %v", err)
	}
}

func TestRuntimeArgs(t *testing.T) {
	rt := runtimeConf("c1", "/ns", "eth0", PodArgs{Namespace: "ns1", Name: "p", Bandwidth: &Bandwidth{IngressRate: 1000}})
	want := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "ns1"}, {"K8S_POD_NAME", "p"}, {"K8S_POD_INFRA_CONTAINER_ID", "c1"}}
	if len(rt.Args) != len(want) {
		t.Fatalf("args %v, want %v", rt.Args, want)
	}
	for i := range want {
		if rt.Args[i] != want[i] {
			t.Errorf("arg %d = %v, want %v", i, rt.Args[i], want[i])
		}
	}
	bw := rt.CapabilityArgs["bandwidth"].(Bandwidth)
	if bw.IngressBurst == 0 || bw.EgressBurst != 0 {
		t.Errorf("bandwidth %+v: want an unlimited ingress burst and no egress", bw)
	}
	if _, ok := rt.CapabilityArgs["portMappings"]; ok {
		t.Error("portMappings set without any")
	}
}
