package netmodes

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func node(name, underlay, block string) Node {
	return Node{Name: name, Underlay: netip.MustParsePrefix(underlay), Block: netip.MustParsePrefix(block)}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string // "" valid, else part of the error
	}{
		{Config{Mode: BGP}, ""},
		{Config{Mode: VXLAN, CrossSubnet: true}, ""},
		{Config{Mode: IPIP, Implementation: Userspace}, ""},
		{Config{Mode: IPIP, Implementation: Kernel, MTU: 9000}, ""},
		{Config{Mode: "geneve"}, `unknown network mode "geneve"`},
		{Config{Mode: BGP, CrossSubnet: true}, "cross-subnet applies to ipip and vxlan"},
		{Config{Mode: VXLAN, VNI: 1 << 24}, "VNI 16777216 is out of range"},
		{Config{Mode: VXLAN, Port: 70000}, "port 70000 is out of range"},
		{Config{Mode: VXLAN, MTU: 100}, "MTU 100 is out of range"},
		{Config{Mode: VXLAN, Implementation: Userspace}, "vxlan mode has no userspace implementation"},
		{Config{Mode: IPIP, Implementation: "ebpf"}, `unknown implementation "ebpf"`},
	}
	for _, tt := range tests {
		err := tt.cfg.WithDefaults().Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: error %v, want %q", tt.cfg, err, tt.want)
		}
	}
	if c := (Config{Mode: VXLAN}).WithDefaults(); c.VNI != 4096 || c.Port != 4789 {
		t.Errorf("defaults: %+v", c)
	}
}

func TestEncapsulates(t *testing.T) {
	self := node("n1", "192.168.34.11/24", "10.42.1.0/24")
	same := node("n2", "192.168.34.12/24", "10.42.2.0/24")
	other := node("n3", "192.168.35.13/24", "10.42.3.0/24")
	tests := []struct {
		cfg         Config
		same, other bool
	}{
		{Config{Mode: BGP}, false, false},
		{Config{Mode: VXLAN}, true, true},
		{Config{Mode: IPIP}, true, true},
		{Config{Mode: VXLAN, CrossSubnet: true}, false, true},
		{Config{Mode: IPIP, CrossSubnet: true}, false, true},
	}
	for _, tt := range tests {
		if got := tt.cfg.Encapsulates(self, same); got != tt.same {
			t.Errorf("%s to the same subnet: %v, want %v", tt.cfg, got, tt.same)
		}
		if got := tt.cfg.Encapsulates(self, other); got != tt.other {
			t.Errorf("%s to another subnet: %v, want %v", tt.cfg, got, tt.other)
		}
	}
}

func TestNodeAddresses(t *testing.T) {
	n := node("n2", "192.168.34.12/24", "10.42.2.0/24")
	if got := n.MAC().String(); got != "66:6b:c0:a8:22:0c" {
		t.Errorf("VTEP MAC %s", got)
	}
	if got := n.TunnelAddress().String(); got != "10.42.2.0" {
		t.Errorf("tunnel address %s", got)
	}
	n.VTEPMAC = []byte{0x66, 0, 0, 0, 0, 1}
	if got := n.MAC().String(); got != "66:00:00:00:00:01" {
		t.Errorf("given VTEP MAC %s", got)
	}
	// Locally administered, unicast.
	if m := VTEPMAC(netip.MustParseAddr("10.0.0.1")); m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("VTEP MAC %s is not a locally administered unicast address", m)
	}
}

func TestValidatePeers(t *testing.T) {
	self := node("n1", "192.168.34.11/24", "10.42.1.0/24")
	n2 := node("n2", "192.168.34.12/24", "10.42.2.0/24")
	n3 := node("n3", "192.168.35.13/24", "10.42.3.0/24")
	tests := []struct {
		name  string
		peers []Node
		want  []string // names, or the error
		err   string
	}{
		{"sorted, self skipped", []Node{n3, self, n2}, []string{"n2", "n3"}, ""},
		{"duplicate dropped", []Node{n2, n2}, []string{"n2"}, ""},
		{"a block claimed twice", []Node{n2, node("n4", "192.168.34.14/24", "10.42.2.0/24")}, nil, "pod block 10.42.2.0/24 is claimed by both"},
		{"overlapping blocks", []Node{node("big", "192.168.34.14/24", "10.42.0.0/16")}, nil, "overlaps this node's block"},
		{"overlapping peers", []Node{n2, node("n4", "192.168.34.14/24", "10.42.2.0/25")}, nil, "overlap"},
		{"block with host bits", []Node{node("n4", "192.168.34.14/24", "10.42.4.1/24")}, nil, "has host bits set"},
		{"no underlay", []Node{{Name: "n4", Block: netip.MustParsePrefix("10.42.4.0/24")}}, nil, "is not an IPv4 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ValidatePeers(self, tt.peers)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", names, tt.want)
			}
		})
	}
}

func TestRouteString(t *testing.T) {
	tests := []struct {
		r    Route
		want string
	}{
		{Route{Dst: netip.MustParsePrefix("10.42.2.0/24"), Via: netip.MustParseAddr("10.42.2.0"), Dev: "vxlan.calico", OnLink: true},
			"10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink"},
		{PlainRoute(node("n2", "192.168.34.12/24", "10.42.2.0/24"), "eth0"), "10.42.2.0/24 via 192.168.34.12 dev eth0"},
		{Route{Dst: netip.MustParsePrefix("10.42.9.0/24"), Dev: "eth0"}, "10.42.9.0/24 dev eth0"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%q, want %q", got, tt.want)
		}
	}
}

func TestChanges(t *testing.T) {
	var c Changes
	if !c.Empty() {
		t.Fatal("new changes not empty")
	}
	c.Add("device %s", "tunl0")
	c.Remove("route %s", "10.42.2.0/24 via 192.168.34.12 dev eth0")
	var d Changes
	d.Add("address 10.42.1.0/32 dev tunl0")
	c.Merge(d)
	want := "- route 10.42.2.0/24 via 192.168.34.12 dev eth0\n+ device tunl0\n+ address 10.42.1.0/32 dev tunl0\n"
	if c.String() != want || c.Empty() {
		t.Fatalf("%q, want %q", c.String(), want)
	}
}

func TestNotOnLinkError(t *testing.T) {
	var err error = &NotOnLinkError{NextHop: netip.MustParseAddr("192.168.35.12"), From: netip.MustParseAddr("192.168.34.11"), Err: unix.ENETUNREACH}
	want := "next hop 192.168.35.12 is not on-link from 192.168.34.11: BGP without encapsulation needs every node in one L2 segment, " +
		"or the router to learn the routes (klab net peer router), or IPIP/VXLAN CrossSubnet"
	if err.Error() != want {
		t.Fatalf("%q", err)
	}
	if !errors.Is(err, unix.ENETUNREACH) {
		t.Fatal("does not unwrap to the kernel's error")
	}
}
