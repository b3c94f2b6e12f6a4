package labs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeResolver answers the template functions from maps.
type fakeResolver struct {
	ips, blocks map[string]string
	pods        map[string]*corev1.Pod
}

func (f fakeResolver) cluster() string { return "lab-test" }
func (f fakeResolver) nodeIP(n string) (string, error) {
	if ip, ok := f.ips[n]; ok {
		return ip, nil
	}
	return "", errors.New("no node " + n)
}
func (f fakeResolver) podCIDR(n string) (string, error) { return f.blocks[n], nil }
func (f fakeResolver) serviceIP(string) (string, error) { return "10.96.0.7", nil }
func (f fakeResolver) pod(ref string) (*corev1.Pod, error) {
	if p, ok := f.pods[ref]; ok {
		return p, nil
	}
	return nil, errors.New("no pod " + ref)
}

var fake = fakeResolver{
	ips:    map[string]string{"node1": "192.168.34.11", "node2": "192.168.34.12"},
	blocks: map[string]string{"node2": "10.42.2.0/24"},
	pods: map[string]*corev1.Pod{"b": {
		ObjectMeta: metav1.ObjectMeta{Name: "b"},
		Spec:       corev1.PodSpec{NodeName: "node2"},
		Status:     corev1.PodStatus{PodIP: "10.42.2.5"},
	}},
}

func TestExpand(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"klab get pods", "klab get pods", ""},
		{`ping {{podIP "b"}}`, "ping 10.42.2.5", ""},
		{`{{pod "b"}} on {{podNode "b"}} in {{cluster}}`, "b on node2 in lab-test", ""},
		{`{{podCIDR "node2"}} via {{nodeIP "node2"}}`, "10.42.2.0/24 via 192.168.34.12", ""},
		{`curl {{serviceIP "web"}}`, "curl 10.96.0.7", ""},
		{`ping {{podIP "c"}}`, "", `expand "ping {{podIP \"c\"}}": no pod c`},
		{`{{nodeIP "node9"}}`, "", "no node node9"},
	}
	for _, tt := range tests {
		got, err := expand(tt.in, fake)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("expand(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if got, _ := expand(`ping {{podIP "b"}} from {{nodeIP "node1"}}`, placeholders{}); got != "ping <IP of b> from <node1's IP>" {
		t.Errorf("placeholders: %q", got)
	}
}

func TestMatchOutput(t *testing.T) {
	one := 1
	tests := []struct {
		name, out       string
		code            int
		exit            *int
		match, notMatch string
		err             string
	}{
		{name: "exit 0, no pattern", out: "x", code: 0},
		{name: "exit 1", out: "boom\nbad thing", code: 1, err: `exited 1, want 0: bad thing`},
		{name: "expected exit 1", code: 1, exit: &one},
		{name: "match", out: "you are 192.168.34.11", match: `you are {{nodeIP "node1"}}$`},
		{name: "no match", out: "you are 10.0.0.1", match: `you are {{nodeIP "node1"}}`, err: "does not match you are 192.168.34.11"},
		{name: "not match holds", out: "S sleep", notMatch: `(?m)^Z`},
		{name: "not match fails", out: "Z zombie", notMatch: `(?m)^Z`, err: `has "Z"`},
		{name: "bad template", out: "x", match: `{{podIP "zz"}}`, err: "no pod zz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := matchOutput(fake, "node1", "cmd", tt.out, tt.code, tt.exit, tt.match, tt.notMatch)
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
}

func TestPodProblem(t *testing.T) {
	ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	running := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: corev1.PodSpec{NodeName: "node1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{ready}}}
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: corev1.PodPending,
		ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}}}
	notReady := running.DeepCopy()
	notReady.Status.Conditions = nil
	tests := []struct {
		name  string
		check PodCheck
		pod   *corev1.Pod
		want  string
	}{
		{"running and ready", PodCheck{Phase: "Running"}, running, ""},
		{"pending", PodCheck{Phase: "Running"}, pending, "pod p is Pending (ErrImageNeverPull), not Running"},
		{"pending wanted", PodCheck{Phase: "Pending"}, pending, ""},
		{"not ready", PodCheck{Phase: "Running"}, notReady, "pod a is not Ready"},
		{"not ready wanted", PodCheck{Phase: "Running", Ready: new(false)}, notReady, ""},
		{"on the node", PodCheck{Phase: "Running", Node: "node1"}, running, ""},
		{"on another node", PodCheck{Phase: "Running", Node: "node2"}, running, `pod a is on "node1", not node2`},
		{"still on the node", PodCheck{Phase: "Running", NotNode: "node1"}, running, "pod a is still on node1"},
	}
	for _, tt := range tests {
		if got := tt.check.problem(tt.pod); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// traceJSON is a trace in the shape of klab trace -o json (netmodes/trace).
const traceJSON = `{"mode":"vxlan","delivered":%s,"overhead_bytes":50,"reason":"%s","cause":"%s","lost_at":%s,"hops":[
 {"node":"node1","interface":"eth0","kind":"pod","seen":true,"encap":"none","layers":[{"type":"Ethernet"}]},
 {"node":"node1","interface":"cali1","kind":"veth","seen":true,"encap":"none","layers":[]},
 {"node":"node1","interface":"vxlan.calico","kind":"vxlan","seen":true,"encap":"none","layers":[]},
 {"node":"node1","interface":"eth0","kind":"nic","seen":true,"encap":"vxlan","layers":[{"type":"UDP"},{"type":"VXLAN"}]},
 {"node":"underlay","interface":"node1","kind":"bridge-port","seen":true,"encap":"vxlan","layers":[]},
 {"node":"node2","interface":"eth0","kind":"nic","seen":true,"encap":"vxlan","layers":[]},
 {"node":"node2","interface":"vxlan.calico","kind":"vxlan","seen":%s,"encap":"none","layers":[]}]}`

func parseTrace(t *testing.T, delivered bool) *traceResult {
	t.Helper()
	var s string
	if delivered {
		s = fmt.Sprintf(traceJSON, "true", "", "", "null", "true")
	} else {
		s = fmt.Sprintf(traceJSON, "false", "dropped after hop 6", "unknown", `{"hop":6,"node":"node2","interface":"eth0"}`, "false")
	}
	var r traceResult
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestTraceJudge(t *testing.T) {
	ok, lost := parseTrace(t, true), parseTrace(t, false)
	fifty, twenty := 50, 20
	tests := []struct {
		name   string
		check  TraceCheck
		lostOn string
		res    *traceResult
		err    string
	}{
		{"delivered", TraceCheck{}, "", ok, ""},
		{"lost but wanted", TraceCheck{}, "", lost, "lost after node2/eth0: dropped after hop 6"},
		{"lost on node2", TraceCheck{Delivered: new(false)}, "node2", lost, ""},
		{"lost elsewhere", TraceCheck{Delivered: new(false)}, "node1", lost, "lost on node2, not node1"},
		{"delivered but not wanted", TraceCheck{Delivered: new(false)}, "", ok, "the packet was delivered"},
		{"vxlan on the underlay", TraceCheck{Encap: "vxlan"}, "", ok, ""},
		{"not ipip", TraceCheck{Encap: "ipip"}, "", ok, "the underlay did not carry ipip only"},
		{"not none", TraceCheck{Encap: "none"}, "", ok, "did not carry none"},
		{"overhead", TraceCheck{Overhead: &fifty}, "", ok, ""},
		{"wrong overhead", TraceCheck{Overhead: &twenty}, "", ok, "adds 50 bytes, not 20"},
		{"through", TraceCheck{Through: []string{"node1/cali*", "node1/vxlan.calico", "node2/eth0", "node2/vxlan.calico"}}, "", ok, ""},
		{"through out of order", TraceCheck{Through: []string{"node2/eth0", "node1/vxlan.calico"}}, "", ok, "no hop node1/vxlan.calico saw the packet"},
		{"cause", TraceCheck{Delivered: new(false), Cause: "policy"}, "", lost, `the cause found is "unknown", not "policy"`},
	}
	for _, tt := range tests {
		err := tt.check.judge("a", "b", tt.lostOn, tt.res)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
		}
	}
}

func TestFaultWords(t *testing.T) {
	a := &Applied{Kind: "mtu", Node: "node2", Device: "eth0", MTU: 1400, PrevMTU: 1500}
	if got := a.Describe("en"); got != "the MTU of eth0 on node2 goes from 1500 to 1400" {
		t.Errorf("describe: %q", got)
	}
	if got := a.Restored("zh"); got != "node2 上 eth0 的 MTU 恢复为 1500" {
		t.Errorf("restored: %q", got)
	}
	f := Fault{DeleteRoute: &DeleteRouteFault{Node: "node1", Dst: `{{podCIDR "node2"}}`}}
	if got := f.Describe("en"); got != "the route to <node2's pod block> is deleted on node1" {
		t.Errorf("fault before it is prepared: %q", got)
	}
	s := Fault{StopNode: &StopNodeFault{Node: "node2"}}
	if got := s.Describe("zh"); got != "node2 停机：它的 supervisor 停止了所有组件" {
		t.Errorf("stopNode: %q", got)
	}
}

func TestProgress(t *testing.T) {
	t.Setenv("KLAB_STATE_DIR", t.TempDir())
	for _, c := range []string{"one", "two"} {
		if err := os.MkdirAll(filepath.Join(os.Getenv("KLAB_STATE_DIR"), c), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := LoadProgress("one"); p != nil || err != nil {
		t.Fatalf("no progress yet: %v, %v", p, err)
	}
	p := &Progress{Lab: "vxlan", Source: "embedded:labs/08-vxlan.yaml", Step: 2, Passed: []int{0, 1},
		Faults: []*Applied{{Kind: "dropUDP", Node: "node2", Port: 4789, Direction: "in", Table: "t", Step: 2, Until: "step"}}}
	if err := p.Save("one"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // distinct modification times
	q := &Progress{Lab: "pods", Source: "embedded:labs/03-pods.yaml"}
	if err := q.Save("two"); err != nil {
		t.Fatal(err)
	}
	got, err := LoadProgress("one")
	if err != nil || got.Lab != "vxlan" || got.Step != 2 || len(got.Faults) != 1 || got.Faults[0].Port != 4789 {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	name, latest, err := LatestProgress()
	if err != nil || name != "two" || latest.Lab != "pods" {
		t.Errorf("latest: %s %+v %v", name, latest, err)
	}
	l, err := got.LabOf()
	if err != nil || l.ID != "vxlan" {
		t.Errorf("lab of the progress: %v, %v", l, err)
	}
	if err := ClearProgress("two"); err != nil {
		t.Fatal(err)
	}
	if name, _, _ := LatestProgress(); name != "one" {
		t.Errorf("latest after clearing two: %q", name)
	}
}

func TestShow(t *testing.T) {
	all, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	l, _ := Find(all, "vxlan")
	for _, tt := range []struct{ lang, want string }{
		{"en", "Lab 8 · VXLAN mode (VTEP, FDB, 50 bytes)"},
		{"zh", "实验 8 · VXLAN 模式（VTEP、FDB、50 字节）"},
	} {
		var b bytes.Buffer
		Show(&b, l, tt.lang)
		out := b.String()
		if !strings.Contains(out, tt.want) {
			t.Errorf("%s: no %q in\n%s", tt.lang, tt.want, out)
		}
		// Commands render with placeholders where the cluster would give values.
		if !strings.Contains(out, "$ klab exec a -- ping -c 1 -W 2 -s 56 <IP of b>") {
			t.Errorf("%s: the ping command is not rendered:\n%s", tt.lang, out)
		}
		if strings.Contains(out, "\x1b[") {
			t.Errorf("%s: colour written to a buffer", tt.lang)
		}
	}
}

func TestDefaultLang(t *testing.T) {
	for _, tt := range []struct{ all, lang, want string }{
		{"", "zh_CN.UTF-8", "zh"},
		{"", "en_US.UTF-8", "en"},
		{"C", "zh_CN.UTF-8", "en"},
		{"", "", "en"},
	} {
		t.Setenv("LC_ALL", tt.all)
		t.Setenv("LC_MESSAGES", "")
		t.Setenv("LANG", tt.lang)
		if got := DefaultLang(); got != tt.want {
			t.Errorf("LC_ALL=%q LANG=%q: %s, want %s", tt.all, tt.lang, got, tt.want)
		}
	}
}

func TestCheckLine(t *testing.T) {
	c := &Check{Title: Text{En: "node1 has an FDB entry", Zh: "node1 有 FDB 条目"}, Hint: Text{En: "is node2 up?", Zh: "node2 在运行吗？"},
		FDB: &FDBCheck{Node: "node1", Dst: "192.168.34.12"}}
	var b bytes.Buffer
	p := newPrinter(&b, "zh")
	p.checkLine(c, nil)
	p.checkLine(c, errors.New("node1 has no FDB entry towards 192.168.34.12 (0 entries)"))
	out := b.String()
	for _, s := range []string{"✓ node1 有 FDB 条目", "检查： fdb on node1", "✗ node1 有 FDB 条目", "提示： node2 在运行吗？", "   node1 has no FDB entry"} {
		if !strings.Contains(out, s) {
			t.Errorf("no %q in\n%s", s, out)
		}
	}
	// The subject column starts at the same place for both lines.
	lines := strings.Split(out, "\n")
	if strings.Index(lines[0], "检查") != strings.Index(lines[1], "提示") {
		t.Errorf("columns differ:\n%s", out)
	}
}
