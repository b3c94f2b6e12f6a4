package runtime

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/klab-dev/klab/cluster/runtime/image"
)

func TestArgv(t *testing.T) {
	img := image.Config{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	for _, tc := range []struct {
		name          string
		img           image.Config
		command, args []string
		want          []string
	}{
		{"image's", img, nil, nil, []string{"/entry", "default"}},
		{"args replace cmd", img, nil, []string{"a"}, []string{"/entry", "a"}},
		{"command drops cmd", img, []string{"/bin/x"}, nil, []string{"/bin/x"}},
		{"command and args", img, []string{"/bin/x"}, []string{"a", "b"}, []string{"/bin/x", "a", "b"}},
		{"cmd only", image.Config{Cmd: []string{"sh"}}, nil, nil, []string{"sh"}},
		{"nothing", image.Config{}, nil, nil, nil},
	} {
		got := argv(tc.img, ContainerConfig{Command: tc.command, Args: tc.args})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []string
		c    []EnvVar
		tty  bool
		want []string
	}{
		{"defaults", nil, nil, false, []string{defaultPath, "HOSTNAME=pod", "HOME=/root"}},
		{"container overrides image, order kept", []string{"PATH=/bin", "A=1", "B=2"}, []EnvVar{{"A", "x"}, {"C", "3"}}, false,
			[]string{"PATH=/bin", "A=x", "B=2", "C=3", "HOSTNAME=pod", "HOME=/root"}},
		{"own HOME and HOSTNAME", nil, []EnvVar{{"HOME", "/h"}, {"HOSTNAME", "n"}}, true,
			[]string{"HOME=/h", "HOSTNAME=n", defaultPath, "TERM=xterm"}},
	} {
		if got := mergeEnv(tc.img, tc.c, "pod", "/root", tc.tty); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestResolveUser(t *testing.T) {
	passwd := parsePasswd(strings.NewReader("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbad line\n"))
	groups := parseGroup(strings.NewReader("root:x:0:\napp:x:1001:\nwheel:x:10:app,other\nweb:x:33:\n"))
	gid := int64(7)
	for _, tc := range []struct {
		name     string
		c        *User
		img      string
		uid, gid uint32
		extra    []uint32
		home     string
		err      string
	}{
		{"default root", nil, "", 0, 0, nil, "/root", ""},
		{"image user by name", nil, "app", 1000, 1001, []uint32{10}, "/home/app", ""},
		{"image uid:group name", nil, "1000:web", 1000, 33, []uint32{10}, "/home/app", ""},
		{"image unknown uid", nil, "4242", 4242, 0, nil, "/", ""},
		{"image unknown name", nil, "nobody", 0, 0, nil, "", `user "nobody" is not in its /etc/passwd`},
		{"image unknown group", nil, "app:nogroup", 0, 0, nil, "", `group "nogroup" is not in its /etc/group`},
		{"container overrides image", &User{UID: 1000}, "root", 1000, 1001, []uint32{10}, "/home/app", ""},
		{"container gid and groups", &User{UID: 5, GID: &gid, Groups: []int64{8, 9}}, "", 5, 7, []uint32{8, 9}, "/", ""},
	} {
		uid, g, extra, home, err := resolveUser(tc.c, tc.img, passwd, groups)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || uid != tc.uid || g != tc.gid || !slices.Equal(extra, tc.extra) || home != tc.home {
			t.Errorf("%s: %d:%d %v %q %v, want %d:%d %v %q", tc.name, uid, g, extra, home, err, tc.uid, tc.gid, tc.extra, tc.home)
		}
	}
}

func TestPodFiles(t *testing.T) {
	hosts := hostsFile("web", []string{"10.42.1.5"}, []HostAlias{{IP: "10.0.0.1", Hostnames: []string{"a", "b"}}})
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.42.1.5\tweb\n", "10.0.0.1\ta b\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts file %q lacks %q", hosts, want)
		}
	}
	node := []byte("nameserver 1.1.1.1\n")
	if got := resolvConf(DNSConfig{}, node); got != string(node) {
		t.Errorf("no DNS config: %q, want the node's", got)
	}
	got := resolvConf(DNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}, node)
	want := "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
	if got != want {
		t.Errorf("resolv.conf %q, want %q", got, want)
	}
}

func TestLimitFiles(t *testing.T) {
	res := Resources{MemoryLimit: 128 << 20, CPULimitMilli: 1500, CPURequestMilli: 100, PidsLimit: 64}
	for _, tc := range []struct {
		ctrl string
		v2   bool
		want []cgroupSetting
	}{
		{"memory", true, []cgroupSetting{{"memory.max", "134217728"}}},
		{"memory", false, []cgroupSetting{{"memory.limit_in_bytes", "134217728"}}},
		{"cpu", true, []cgroupSetting{{"cpu.weight", "4"}, {"cpu.max", "150000 100000"}}},
		{"cpu", false, []cgroupSetting{{"cpu.shares", "102"}, {"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "150000"}}},
		{"pids", true, []cgroupSetting{{"pids.max", "64"}}},
		{"pids", false, []cgroupSetting{{"pids.max", "64"}}},
	} {
		if got := limitFiles(res, tc.ctrl, tc.v2); !slices.Equal(got, tc.want) {
			t.Errorf("%s v2=%v: %v, want %v", tc.ctrl, tc.v2, got, tc.want)
		}
	}
	if got := limitFiles(Resources{}, "memory", true); len(got) != 0 {
		t.Errorf("no limits: %v", got)
	}
	// The smallest request still gets the minimum of 2 shares, the smallest
	// limit a quota of 1ms.
	if got := limitFiles(Resources{CPURequestMilli: 1, CPULimitMilli: 1}, "cpu", false); !slices.Equal(got, []cgroupSetting{{"cpu.shares", "2"}, {"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", "1000"}}) {
		t.Errorf("tiny cpu: %v", got)
	}
}

func TestLayout(t *testing.T) {
	r := &Runtime{cfg: Config{StateDir: "/s", RunDir: "/run/r", LogDir: "/l", NetNSDir: "/run/netns", CgroupParent: "klab/c/node1/pods"}}
	for _, tc := range []struct{ got, want string }{
		{r.sandboxDir("p1"), "/s/sandboxes/p1"},
		{r.containerDir("p1-ab"), "/s/containers/p1-ab"},
		{r.socketPath("p1-ab"), "/run/r/p1-ab.sock"},
		{r.netnsPath("p1"), "/run/netns/p1"},
		{r.logPath("p1", "web", 3), "/l/p1/web/3.log"},
		{podCgroup(r.cfg.CgroupParent, "p1"), "klab/c/node1/pods/pod-p1"},
		{infraCgroup(r.cfg.CgroupParent, "p1"), "klab/c/node1/pods/pod-p1/infra"},
		{containerCgroup(r.cfg.CgroupParent, "p1", "p1-ab"), "klab/c/node1/pods/pod-p1/p1-ab"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s, want %s", tc.got, tc.want)
		}
	}
	for id, ok := range map[string]bool{"kt-rt-1": true, "p0123456789ab": true, "": false, "Upper": false, "a/b": false, "-a": false, "..": false, strings.Repeat("a", 41): false} {
		if (validID(id) == nil) != ok {
			t.Errorf("validID(%q) = %v", id, validID(id))
		}
	}
}

func TestLogFormat(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	l := &logFile{f: f}
	long := strings.Repeat("x", maxLogLine+10)
	if err := l.copyLog("stdout", strings.NewReader("one\r\ntwo\n"+long+"\nno newline")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var got []logLine
	for _, line := range strings.Split(strings.TrimSuffix(readBack(t, f), "\n"), "\n") {
		e, ok := parseLogLine([]byte(line))
		if !ok || e.stream != "stdout" {
			t.Fatalf("bad entry %q", line)
		}
		got = append(got, e)
	}
	want := []struct {
		full bool
		text string
	}{{true, "one"}, {true, "two"}, {false, long[:maxLogLine]}, {true, "xxxxxxxxxx"}, {true, "no newline"}}
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].full != w.full || string(got[i].text) != w.text {
			t.Errorf("entry %d: full=%v %q, want full=%v %q", i, got[i].full, got[i].text, w.full, w.text)
		}
	}
}

func readBack(t *testing.T, f *os.File) string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
