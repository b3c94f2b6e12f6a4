package provision

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPlanAddresses(t *testing.T) {
	tests := []struct {
		name string
		opts PlanOptions
		want map[string]string // node -> IP
		subs []string
	}{
		{
			name: "default",
			opts: PlanOptions{Name: "klab", Masters: 1, Workers: 2, Subnets: 1},
			want: map[string]string{"master": "192.168.34.10", "node1": "192.168.34.11", "node2": "192.168.34.12"},
			subs: []string{"192.168.34.0/24"},
		},
		{
			name: "three masters",
			opts: PlanOptions{Name: "ha", Masters: 3, Workers: 1, Subnets: 1},
			want: map[string]string{"master1": "192.168.34.10", "master2": "192.168.34.11", "master3": "192.168.34.12", "node1": "192.168.34.13"},
			subs: []string{"192.168.34.0/24"},
		},
		{
			name: "two subnets alternate workers and add a router",
			opts: PlanOptions{Name: "x", Masters: 1, Workers: 4, Subnets: 2},
			want: map[string]string{"master": "192.168.34.10", "node1": "192.168.34.11", "node2": "192.168.35.12",
				"node3": "192.168.34.13", "node4": "192.168.35.14", "router": "192.168.34.1"},
			subs: []string{"192.168.34.0/24", "192.168.35.0/24"},
		},
		{
			name: "second slot",
			opts: PlanOptions{Name: "two", Masters: 1, Workers: 0, Subnets: 1, Slot: 1},
			want: map[string]string{"master": "192.168.36.10"},
			subs: []string{"192.168.36.0/24"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Plan(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Nodes) != len(tt.want) {
				t.Fatalf("got %d nodes %v, want %d", len(c.Nodes), c.NodeNames(), len(tt.want))
			}
			for _, n := range c.Nodes {
				if got := n.IP.String(); got != tt.want[n.Name] {
					t.Errorf("%s: IP %s, want %s", n.Name, got, tt.want[n.Name])
				}
				if !c.Subnets[n.Subnet].CIDR.Contains(n.IP) {
					t.Errorf("%s: %s not in its subnet %s", n.Name, n.IP, c.Subnets[n.Subnet].CIDR)
				}
			}
			var subs []string
			for _, s := range c.Subnets {
				subs = append(subs, s.CIDR.String())
			}
			if strings.Join(subs, ",") != strings.Join(tt.subs, ",") {
				t.Errorf("subnets %v, want %v", subs, tt.subs)
			}
			if want := netip.MustParsePrefix(tt.subs[0]); !want.Contains(c.HostIP.Addr()) || c.HostIP.Addr().As4()[3] != 254 {
				t.Errorf("host IP %s, want .254 in %s", c.HostIP, want)
			}
		})
	}
}

func TestPlanRouterJoinsSubnets(t *testing.T) {
	c, err := Plan(PlanOptions{Name: "r", Masters: 1, Workers: 2, Subnets: 2})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := c.Node("router")
	if !ok || r.Role != RoleRouter {
		t.Fatalf("no router: %v", c.NodeNames())
	}
	if len(r.IPs) != 2 || r.IPs[0].String() != "192.168.34.1" || r.IPs[1].String() != "192.168.35.1" {
		t.Errorf("router IPs %v", r.IPs)
	}
	for _, s := range c.Subnets {
		if !s.Gateway.IsValid() {
			t.Errorf("subnet %s has no gateway", s.Name)
		}
	}
	if len(c.Members()) != 3 {
		t.Errorf("members %d, want 3 (the router is not a member)", len(c.Members()))
	}
}

func TestValidate(t *testing.T) {
	ok := PlanOptions{Name: "klab", Masters: 1, Workers: 2, Subnets: 1}
	tests := []struct {
		name string
		mod  func(*PlanOptions)
		want string // "" for valid
	}{
		{"default", func(*PlanOptions) {}, ""},
		{"master only", func(o *PlanOptions) { o.Workers = 0 }, ""},
		{"negative nodes", func(o *PlanOptions) { o.Workers = -1 }, "--nodes -1: the number of worker nodes must be between 0 and 100"},
		{"too many nodes", func(o *PlanOptions) { o.Workers = 1000 }, "--nodes 1000"},
		{"even masters", func(o *PlanOptions) { o.Masters = 2 }, "--masters 2: etcd needs an odd number"},
		{"no masters", func(o *PlanOptions) { o.Masters = 0 }, "--masters 0: use 1, 3 or 5"},
		{"three subnets", func(o *PlanOptions) { o.Subnets = 3 }, "--subnets 3"},
		{"two subnets one node", func(o *PlanOptions) { o.Subnets, o.Workers = 2, 1 }, "--subnets 2 needs at least 2 worker nodes"},
		{"slash in name", func(o *PlanOptions) { o.Name = "a/b" }, `invalid cluster name "a/b"`},
		{"upper case name", func(o *PlanOptions) { o.Name = "Lab" }, "invalid cluster name"},
		{"long name", func(o *PlanOptions) { o.Name = strings.Repeat("a", 21) }, "invalid cluster name"},
		{"trailing dash", func(o *PlanOptions) { o.Name = "lab-" }, "invalid cluster name"},
		{"jumbo frames", func(o *PlanOptions) { o.MTU = 9000 }, ""},
		{"tiny mtu", func(o *PlanOptions) { o.MTU = 576 }, "--mtu 576: the underlay MTU must be between 1280 and 9000"},
		{"huge mtu", func(o *PlanOptions) { o.MTU = 65535 }, "--mtu 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestHostLinkName(t *testing.T) {
	if got := HostLinkName("klab"); got != "klab-klab" {
		t.Errorf("got %q", got)
	}
	long := HostLinkName("a-rather-long-name")
	if len(long) > 15 || !strings.HasPrefix(long, "klab-") {
		t.Errorf("got %q: interface names have at most 15 characters", long)
	}
	if long == HostLinkName("a-rather-long-nam2") {
		t.Error("different clusters share a host link name")
	}
}
