package vxlan

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/klab-dev/klab/netmodes"
)

func node(name, underlay, block string) netmodes.Node {
	return netmodes.Node{Name: name, Underlay: netip.MustParsePrefix(underlay), Block: netip.MustParsePrefix(block)}
}

func TestPlanFor(t *testing.T) {
	self := node("n1", "192.168.34.11/24", "10.42.1.0/24")
	n2 := node("n2", "192.168.34.12/24", "10.42.2.0/24")
	n3 := node("n3", "192.168.35.13/24", "10.42.3.0/24")
	// n3 announces a second block: one FDB entry for its VTEP.
	n3b := node("n3", "192.168.35.13/24", "10.42.9.0/24")
	tests := []struct {
		name   string
		cfg    netmodes.Config
		peers  []netmodes.Node
		routes []string
		fdb    []string
		neighs []string
	}{
		{
			"all encapsulated", netmodes.Config{Mode: netmodes.VXLAN}, []netmodes.Node{n2, n3},
			[]string{"10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink", "10.42.3.0/24 via 10.42.3.0 dev vxlan.calico onlink"},
			[]string{"fdb 66:6b:c0:a8:22:0c dst 192.168.34.12", "fdb 66:6b:c0:a8:23:0d dst 192.168.35.13"},
			[]string{"neigh 10.42.2.0 lladdr 66:6b:c0:a8:22:0c dev vxlan.calico", "neigh 10.42.3.0 lladdr 66:6b:c0:a8:23:0d dev vxlan.calico"},
		},
		{
			"cross-subnet", netmodes.Config{Mode: netmodes.VXLAN, CrossSubnet: true}, []netmodes.Node{n2, n3},
			[]string{"10.42.2.0/24 via 192.168.34.12 dev eth0", "10.42.3.0/24 via 10.42.3.0 dev vxlan.calico onlink"},
			[]string{"fdb 66:6b:c0:a8:23:0d dst 192.168.35.13"},
			[]string{"neigh 10.42.3.0 lladdr 66:6b:c0:a8:23:0d dev vxlan.calico"},
		},
		{
			"two blocks behind one VTEP", netmodes.Config{Mode: netmodes.VXLAN}, []netmodes.Node{n3, n3b},
			[]string{"10.42.3.0/24 via 10.42.3.0 dev vxlan.calico onlink", "10.42.9.0/24 via 10.42.9.0 dev vxlan.calico onlink"},
			[]string{"fdb 66:6b:c0:a8:23:0d dst 192.168.35.13"},
			[]string{"neigh 10.42.3.0 lladdr 66:6b:c0:a8:23:0d dev vxlan.calico", "neigh 10.42.9.0 lladdr 66:6b:c0:a8:23:0d dev vxlan.calico"},
		},
		{"no peers", netmodes.Config{Mode: netmodes.VXLAN}, nil, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanFor(tt.cfg, self, tt.peers, "eth0")
			if got := strs(p.Routes); !slices.Equal(got, tt.routes) {
				t.Errorf("routes %q, want %q", got, tt.routes)
			}
			if got := strs(p.FDB); !slices.Equal(got, tt.fdb) {
				t.Errorf("fdb %q, want %q", got, tt.fdb)
			}
			if got := strs(p.Neighbors); !slices.Equal(got, tt.neighs) {
				t.Errorf("neighbours %q, want %q", got, tt.neighs)
			}
		})
	}
}

func strs[T interface{ String() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}
