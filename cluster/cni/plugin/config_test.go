package plugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/klab-dev/klab/cluster/cni/ipam"
)

func TestHostVethName(t *testing.T) {
	for _, tc := range []struct{ id, want string }{
		{"c1", "cali2f22765d049"}, // sha1("c1") = 2f22765d049…
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ""},
	} {
		got := HostVethName(tc.id)
		if len(got) != 15 || !strings.HasPrefix(got, "cali") {
			t.Errorf("HostVethName(%q) = %q: want cali and 11 hex digits", tc.id, got)
		}
		if tc.want != "" && got != tc.want {
			t.Errorf("HostVethName(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if again := HostVethName(tc.id); again != got {
			t.Errorf("HostVethName(%q) changed: %q then %q", tc.id, got, again)
		}
	}
	if HostVethName("a") == HostVethName("b") {
		t.Error("two containers got the same veth name")
	}
}

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		code uint // 0: valid
		want func(*NetConf) bool
	}{
		{
			name: "minimal",
			conf: `{"cniVersion":"1.0.0","name":"klab","type":"klab","ipam":{"type":"klab","subnet":"10.42.1.0/24"}}`,
			want: func(c *NetConf) bool {
				return c.MTU == DefaultMTU && c.IPAM.DataDir == ipam.DefaultDataDir && c.subnet.String() == "10.42.1.0/24"
			},
		},
		{
			name: "mtu and data dir",
			conf: `{"cniVersion":"1.1.0","name":"klab","type":"klab","mtu":1450,"ipam":{"type":"klab","subnet":"10.42.1.0/24","dataDir":"/tmp/x"}}`,
			want: func(c *NetConf) bool { return c.MTU == 1450 && c.IPAM.DataDir == "/tmp/x" },
		},
		{
			name: "prevResult",
			conf: `{"cniVersion":"1.0.0","name":"klab","type":"klab","ipam":{"type":"klab","subnet":"10.42.1.0/24"},
				"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.42.1.2/32","interface":0}]}}`,
			want: func(c *NetConf) bool { return c.prevResult != nil },
		},
		{
			name: "valid attachments",
			conf: `{"cniVersion":"1.1.0","name":"klab","type":"klab","ipam":{"type":"klab","subnet":"10.42.1.0/24"},
				"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
			want: func(c *NetConf) bool {
				return len(c.ValidAttachments) == 1 && c.ValidAttachments[0] == types.GCAttachment{ContainerID: "a", IfName: "eth0"}
			},
		},
		{name: "not json", conf: `{`, code: types.ErrDecodingFailure},
		{name: "host-local ipam", conf: `{"name":"klab","ipam":{"type":"host-local","subnet":"10.42.1.0/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "no subnet", conf: `{"name":"klab","ipam":{"type":"klab"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "bad subnet", conf: `{"name":"klab","ipam":{"type":"klab","subnet":"10.42.1/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "host bits", conf: `{"name":"klab","ipam":{"type":"klab","subnet":"10.42.1.1/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "tiny subnet", conf: `{"name":"klab","ipam":{"type":"klab","subnet":"10.42.1.0/31"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "mtu too small", conf: `{"name":"klab","mtu":40,"ipam":{"type":"klab","subnet":"10.42.1.0/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "bad prevResult", conf: `{"cniVersion":"1.0.0","name":"klab","ipam":{"type":"klab","subnet":"10.42.1.0/24"},"prevResult":{"ips":[{"address":"nope"}]}}`, code: types.ErrDecodingFailure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConf([]byte(tc.conf))
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if !tc.want(c) {
					t.Errorf("parsed %+v", c)
				}
				return
			}
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("parseConf = %v, want a CNI error with code %d", err, tc.code)
			}
			if e.Code != tc.code || e.Details == "" {
				t.Errorf("error %d %q (fix %q), want code %d and a fix", e.Code, e.Msg, e.Details, tc.code)
			}
		})
	}
}
