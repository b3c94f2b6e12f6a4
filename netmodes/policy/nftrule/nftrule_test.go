package nftrule

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func r(from, to string) Range {
	return Range{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}
}

func p(s string) Range { return PrefixRange(netip.MustParsePrefix(s)) }

func TestRanges(t *testing.T) {
	tests := []struct {
		name string
		got  []Range
		want string
	}{
		{"one address", Merge([]Range{r("10.0.0.1", "10.0.0.1")}), "10.0.0.1"},
		{"a prefix prints as one", []Range{p("10.42.0.0/16")}, "10.42.0.0/16"},
		{"merge overlapping and touching", Merge([]Range{r("10.0.0.5", "10.0.0.9"), r("10.0.0.1", "10.0.0.4"), r("10.0.0.8", "10.0.0.20"), r("10.1.0.0", "10.1.0.0")}),
			"{ 10.0.0.1-10.0.0.20, 10.1.0.0 }"},
		{"contained", Merge([]Range{p("10.0.0.0/8"), p("10.1.0.0/16")}), "10.0.0.0/8"},
		{"except in the middle", Subtract([]Range{p("10.0.0.0/24")}, []Range{p("10.0.0.128/25"), r("10.0.0.1", "10.0.0.1")}),
			"{ 10.0.0.0, 10.0.0.2-10.0.0.127 }"},
		{"except everything", Subtract([]Range{p("10.0.0.0/24")}, []Range{p("10.0.0.0/16")}), "{ }"},
		{"except at the edges", Subtract([]Range{p("10.0.0.0/24")}, []Range{r("10.0.0.0", "10.0.0.0"), r("10.0.0.255", "10.0.0.255")}),
			"10.0.0.1-10.0.0.254"},
		{"the whole space", []Range{p("0.0.0.0/0")}, "0.0.0.0/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s := Ranges(tt.got); s != tt.want {
				t.Errorf("got %s, want %s", s, tt.want)
			}
		})
	}
}

func TestRuleString(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		rule *Rule
		want string
	}{
		{New().DAddr(ip("10.96.0.20")).L4Proto(unix.IPPROTO_TCP).DPort(80).Counter().Goto("svc-a").Comment("default/web:http"),
			`ip daddr 10.96.0.20 tcp dport 80 counter packets 0 bytes 0 goto svc-a comment "default/web:http"`},
		{New().L4Proto(unix.IPPROTO_UDP).DPortRange(30000, 30010).MarkSet(0x8000).Jump("x"),
			"udp dport 30000-30010 meta mark set meta mark | 0x8000 jump x"},
		{New().MarkHas(0x4000).OIFNamePrefix("cali", true).Masquerade(),
			`meta mark & 0x4000 != 0x0 oifname != "cali*" masquerade`},
		{New().SAddr(ip("10.42.1.5")).UpdateSAddr("aff", time.Minute).Counter().DNAT(ip("10.42.1.5"), 8080),
			"ip saddr 10.42.1.5 update @aff { ip saddr timeout 1m0s } counter packets 0 bytes 0 dnat to 10.42.1.5:8080"},
		{New().CTState(2 | 4).Accept(), "ct state established,related accept"},
		{New().AddrIn(Source, []Range{p("10.0.0.0/8"), r("192.168.1.1", "192.168.1.1")}, false).L4Proto(unix.IPPROTO_TCP).Return(),
			"ip saddr { 10.0.0.0/8, 192.168.1.1 } meta l4proto tcp return"},
		{New().AddrIn(Dest, []Range{p("10.42.0.0/16")}, true).Drop(), "ip daddr != 10.42.0.0/16 drop"},
		{New().IfNameVmap(Out, map[string]string{"calib": "to-calib", "calia": "to-calia"}),
			`oifname vmap { "calia" : jump to-calia, "calib" : jump to-calib }`},
		{New().NumgenMap("lb", 3), "numgen random mod 3 vmap @lb"},
		{New().SAddrInSet("aff").Reject(), "ip saddr @aff reject"},
	}
	for _, tt := range tests {
		if got := tt.rule.String(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestCommentIsCut(t *testing.T) {
	long := New().Comment("%0200d", 1).String()
	if len(long) > maxComment+len(` comment ""`) {
		t.Errorf("a 200-character comment became %d characters", len(long))
	}
}
