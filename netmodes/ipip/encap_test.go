package ipip

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/klab-dev/klab/netmodes"
)

// ipv4 builds an IPv4 packet (header without options) around payload.
func ipv4(src, dst string, proto byte, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	copy(p[20:], payload)
	return p
}

func TestPeerTableOuter(t *testing.T) {
	tab := NewPeerTable(map[netip.Prefix]netip.Addr{
		netip.MustParsePrefix("10.42.2.0/24"):  netip.MustParseAddr("192.168.34.12"),
		netip.MustParsePrefix("10.42.0.0/16"):  netip.MustParseAddr("192.168.34.99"),
		netip.MustParsePrefix("10.42.3.0/24"):  netip.MustParseAddr("192.168.35.13"),
		netip.MustParsePrefix("10.42.3.64/26"): netip.MustParseAddr("192.168.35.14"),
	})
	tests := []struct {
		dst  string
		want string
		err  error
	}{
		{"10.42.2.7", "192.168.34.12", nil},
		{"10.42.3.1", "192.168.35.13", nil},
		{"10.42.3.70", "192.168.35.14", nil}, // longest prefix wins
		{"10.42.200.1", "192.168.34.99", nil},
		{"10.43.0.1", "", ErrNoPeer},
	}
	for _, tt := range tests {
		got, err := tab.Outer(ipv4("10.42.1.2", tt.dst, 1, []byte{8, 0, 0, 0}))
		if !errors.Is(err, tt.err) || (tt.err == nil && got.String() != tt.want) {
			t.Errorf("%s: %v %v, want %s %v", tt.dst, got, err, tt.want, tt.err)
		}
	}
	if _, err := tab.Outer([]byte{0x60, 0, 0, 0}); !errors.Is(err, ErrTruncated) {
		t.Errorf("short packet: %v", err)
	}
	if _, err := tab.Outer(make([]byte, 40)); !errors.Is(err, ErrNotIPv4) {
		t.Errorf("version 0: %v", err)
	}
	if !tab.Known(netip.MustParseAddr("192.168.35.13")) || tab.Known(netip.MustParseAddr("192.168.34.11")) || tab.Len() != 4 {
		t.Error("known peers")
	}
}

func TestDecapsulate(t *testing.T) {
	inner := ipv4("10.42.2.2", "10.42.1.2", 1, []byte{0, 0, 0, 0, 1, 2, 3, 4})
	outer := ipv4("192.168.34.12", "192.168.34.11", ProtocolIPIP, inner)
	src, got, err := Decapsulate(outer)
	if err != nil || src.String() != "192.168.34.12" || !slices.Equal(got, inner) {
		t.Fatalf("decapsulate: %s %x %v", src, got, err)
	}
	// Trailing bytes beyond the outer total length (Ethernet padding) go.
	if _, got, _ := Decapsulate(append(slices.Clone(outer), 0, 0)); !slices.Equal(got, inner) {
		t.Fatalf("padding kept: %x", got)
	}
	withOptions := ipv4("192.168.34.12", "192.168.34.11", ProtocolIPIP, append([]byte{1, 1, 1, 0}, inner...))
	withOptions[0] = 0x46 // a 24-byte header: 4 bytes of options (NOPs, end)
	if _, got, err := Decapsulate(withOptions); err != nil || !slices.Equal(got, inner) {
		t.Fatalf("outer options: %x %v", got, err)
	}
	tests := []struct {
		name string
		pkt  []byte
		err  error
	}{
		{"empty", nil, ErrTruncated},
		{"not IPIP", ipv4("192.168.34.12", "192.168.34.11", 17, inner), ErrNotIPIP},
		{"IPv6 outer", append([]byte{0x60}, outer[1:]...), ErrNotIPv4},
		{"cut short", outer[:len(outer)-1], ErrTruncated},
		{"inner truncated", ipv4("192.168.34.12", "192.168.34.11", ProtocolIPIP, inner[:10]), ErrTruncated},
		{"inner not IPv4", ipv4("192.168.34.12", "192.168.34.11", ProtocolIPIP, append([]byte{0x60}, inner[1:]...)), ErrNotIPv4},
	}
	for _, tt := range tests {
		if _, _, err := Decapsulate(tt.pkt); !errors.Is(err, tt.err) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.err)
		}
	}
}

func TestPlanFor(t *testing.T) {
	self := netmodes.Node{Name: "n1", Underlay: netip.MustParsePrefix("192.168.34.11/24"), Block: netip.MustParsePrefix("10.42.1.0/24")}
	n2 := netmodes.Node{Name: "n2", Underlay: netip.MustParsePrefix("192.168.34.12/24"), Block: netip.MustParsePrefix("10.42.2.0/24")}
	n3 := netmodes.Node{Name: "n3", Underlay: netip.MustParsePrefix("192.168.35.13/24"), Block: netip.MustParsePrefix("10.42.3.0/24")}
	tests := []struct {
		cfg    netmodes.Config
		routes []string
		table  int
	}{
		{netmodes.Config{Mode: netmodes.IPIP}, []string{"10.42.2.0/24 via 192.168.34.12 dev tunl0 onlink", "10.42.3.0/24 via 192.168.35.13 dev tunl0 onlink"}, 2},
		{netmodes.Config{Mode: netmodes.IPIP, CrossSubnet: true}, []string{"10.42.2.0/24 via 192.168.34.12 dev eth0", "10.42.3.0/24 via 192.168.35.13 dev tunl0 onlink"}, 1},
	}
	for _, tt := range tests {
		p := PlanFor(tt.cfg, self, []netmodes.Node{n2, n3}, "eth0")
		var got []string
		for _, r := range p.Routes {
			got = append(got, r.String())
		}
		if !slices.Equal(got, tt.routes) || p.Table.Len() != tt.table {
			t.Errorf("%s: routes %q (table %d), want %q (table %d)", tt.cfg, got, p.Table.Len(), tt.routes, tt.table)
		}
	}
}
