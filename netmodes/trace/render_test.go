package trace

import (
	"strings"
	"testing"

	"github.com/mattn/go-runewidth"

	"github.com/klab-dev/klab/netmodes"
)

func render(t *testing.T, res *Result, wide bool) string {
	t.Helper()
	var b strings.Builder
	if err := Render(&b, res, wide); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRenderDelivered(t *testing.T) {
	res, _ := traceFake(t, fixture(netmodes.VXLAN, 1), "a", "b", -1, nil, Request{})
	out := render(t, res, false)
	for _, want := range []string{
		"trace default/a (10.42.1.2 on node1) → default/b (10.42.2.2 on node2)  mode vxlan  ICMP echo, 56 bytes of payload",
		"  1  a · eth0 out ",
		"10.42.1.2 → 10.42.2.2 ttl 64 ICMP echo request",
		"proxy ARP",
		"  3  node1 · vxlan.calico out ",
		"     route  10.42.2.0/24 via 10.42.2.0 dev vxlan.calico onlink   (programmed from the API: the VXLAN peers)",
		"     fdb    66:6b:c0:a8:22:0c dst 192.168.34.12 dev vxlan.calico",
		"+ outer 192.168.34.11 → 192.168.34.12 UDP 4789 VNI 4096",
		"[Ethernet | IPv4 | UDP | VXLAN | Ethernet | IPv4 | ICMPv4]",
		"  5  br-a · node1 in ",
		" 10  b · eth0 in ",
		"delivered in 63µs · 10 hops · encapsulation +50 bytes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if w := runewidth.StringWidth(line); w > width+20 {
			t.Errorf("line %d is %d columns: %q", i, w, line)
		}
	}
	// The layer stack shows where it changes, every hop's in wide.
	if n := strings.Count(out, "[Ethernet | IPv4 | UDP | VXLAN"); n != 1 {
		t.Errorf("the VXLAN stack is shown %d times, want once", n)
	}
	wideOut := render(t, res, true)
	if n := strings.Count(wideOut, "[Ethernet | IPv4 | UDP | VXLAN"); n != 4 || !strings.Contains(wideOut, "outer 192.168.34.11 → 192.168.34.12 UDP 4789 VNI 4096  eth") {
		t.Errorf("wide: the VXLAN stack is shown %d times, want 4:\n%s", n, wideOut)
	}
}

func TestRenderLostChinese(t *testing.T) {
	topo := fixture(netmodes.IPIP, 1)
	deleteRoute(topo, "node1", "10.42.2.0/24")
	res, _ := traceFake(t, topo, "a", "b", -1, nil, Request{Lang: Chinese})
	out := render(t, res, false)
	for _, want := range []string{
		"追踪 default/a (10.42.1.2，在 node1 上) → default/b (10.42.2.2，在 node2 上)  模式 ipip",
		"↯ node1 · eth0 out",
		"↯ 偏离了模式的路径",
		"✗ 在第 2 跳（node1 · calia in）之后丢失：node1 没有到 10.42.2.0/24（node2 的 pod 网段）的路由",
		"`10.42.2.0/24 via 192.168.34.12 dev tunl0 onlink`",
		"注：这里的 ipip 是用户态封装器",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "送达，") {
		t.Errorf("a lost packet is reported delivered:\n%s", out)
	}
}

func TestWrap(t *testing.T) {
	for _, tc := range []struct {
		in   string
		w    int
		want []string
	}{
		{"one two three four", 20, []string{"one two three four"}},
		{"one two three four five six", 20, []string{"one two three four", "five six"}},
		{"", 20, []string{""}},
		{"节点在 cali veth 上代答 ARP（proxy ARP），所以帧发往 veth 的 MAC", 20, []string{"节点在 cali veth 上", "代答 ARP（proxy ARP", "），所以帧发往 veth", "的 MAC"}},
	} {
		got := wrap(tc.in, tc.w)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("wrap(%q, %d) = %q, want %q", tc.in, tc.w, got, tc.want)
		}
		for _, l := range got {
			if runewidth.StringWidth(l) > tc.w {
				t.Errorf("line %q is wider than %d", l, tc.w)
			}
		}
	}
}

func TestParseLang(t *testing.T) {
	for _, tc := range []struct {
		flag, lcAll, lang string
		want              Lang
		err               bool
	}{
		{"en", "", "zh_CN.UTF-8", English, false},
		{"zh", "", "C", Chinese, false},
		{"", "", "zh_TW.UTF-8", Chinese, false},
		{"", "", "en_US.UTF-8", English, false},
		{"", "C.UTF-8", "zh_CN.UTF-8", English, false},
		{"", "", "", English, false},
		{"fr", "", "", "", true},
	} {
		t.Setenv("LC_ALL", tc.lcAll)
		t.Setenv("LC_MESSAGES", "")
		t.Setenv("LANG", tc.lang)
		got, err := ParseLang(tc.flag)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseLang(%q) with LC_ALL=%q LANG=%q: %q %v", tc.flag, tc.lcAll, tc.lang, got, err)
		}
	}
}
