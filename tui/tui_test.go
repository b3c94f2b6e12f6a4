package tui_test

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"github.com/klab-dev/klab/tui"
	"github.com/klab-dev/klab/tui/fake"
)

func renderer(p termenv.Profile) *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(p)
	return r
}

// newTUI makes the TUI on a fake cluster with a fixed clock, no colour and
// a fast animation.
func newTUI(c tui.Cluster, o tui.Options) *tui.Model {
	if o.Renderer == nil {
		o.Renderer = renderer(termenv.Ascii)
	}
	o.Now = func() time.Time { return fake.T0.Add(time.Hour) }
	o.Location = time.UTC
	if o.Step == 0 {
		o.Step = time.Millisecond
	}
	return tui.New(context.Background(), c, o)
}

// screen runs a TUI under teatest and keeps the screen it last drew, so
// that tests wait for what the terminal shows, not for bytes on the wire
// (the renderer only repaints lines that change).
type screen struct {
	*teatest.TestModel
	m    *tui.Model
	mu   sync.Mutex
	last string
}

type probe struct{ s *screen }

func (p probe) Init() tea.Cmd { return p.s.m.Init() }

func (p probe) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	_, cmd := p.s.m.Update(msg)
	return p, cmd
}

func (p probe) View() string {
	v := p.s.m.View()
	p.s.mu.Lock()
	p.s.last = v
	p.s.mu.Unlock()
	return v
}

func (s *screen) now() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// start runs the TUI in a w×h terminal.
func start(t *testing.T, c tui.Cluster, w, h int, o tui.Options) *screen {
	t.Helper()
	s := &screen{m: newTUI(c, o)}
	s.TestModel = teatest.NewTestModel(t, probe{s}, teatest.WithInitialTermSize(w, h))
	t.Cleanup(func() { s.Quit() })
	return s
}

// press sends keys: "enter", "esc", "tab", "left", "right", "up", "down",
// "space", "backspace", or runes.
func press(tm *screen, keys ...string) {
	for _, k := range keys {
		var m tea.KeyMsg
		switch k {
		case "enter":
			m = tea.KeyMsg{Type: tea.KeyEnter}
		case "esc":
			m = tea.KeyMsg{Type: tea.KeyEsc}
		case "tab":
			m = tea.KeyMsg{Type: tea.KeyTab}
		case "left":
			m = tea.KeyMsg{Type: tea.KeyLeft}
		case "right":
			m = tea.KeyMsg{Type: tea.KeyRight}
		case "up":
			m = tea.KeyMsg{Type: tea.KeyUp}
		case "down":
			m = tea.KeyMsg{Type: tea.KeyDown}
		case "space":
			m = tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
		case "backspace":
			m = tea.KeyMsg{Type: tea.KeyBackspace}
		default:
			m = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
		}
		tm.Send(m)
	}
}

// waitFor waits until the screen shows every text.
func waitFor(t *testing.T, tm *screen, texts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		cur := tm.now()
		ok := true
		for _, s := range texts {
			ok = ok && strings.Contains(cur, s)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the screen does not show %q after 5s:\n%s", texts, cur)
		}
		time.Sleep(wait)
	}
}

var spinnerFrames = regexp.MustCompile(`[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏∙●]{1}( switching| creating| tracing| checking)`)

// finalModel quits and returns the model.
func finalModel(t *testing.T, tm *screen) *tui.Model {
	t.Helper()
	tm.Quit()
	tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
	return tm.m
}

// final quits and returns the last screen, spinners normalised.
func final(t *testing.T, tm *screen) string {
	t.Helper()
	return spinnerFrames.ReplaceAllString(finalModel(t, tm).View(), "*$1")
}

// golden compares a screen with testdata/TestName.golden (-update writes it).
func requireGolden(t *testing.T, screen string) {
	t.Helper()
	golden.RequireEqual(t, []byte(screen+"\n"))
}

// assertFits checks a screen has exactly h lines of exactly w cells.
func assertFits(t *testing.T, screen string, w, h int) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) != h {
		t.Errorf("%d×%d: the screen has %d lines", w, h, len(lines))
	}
	for i, l := range lines {
		if got := ansi.StringWidth(l); got != w {
			t.Errorf("%d×%d: line %d is %d cells wide: %q", w, h, i, got, l)
		}
	}
}

func TestOverview(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS", "controller-manager")
	got := final(t, tm)
	assertFits(t, got, 80, 24)
	requireGolden(t, got)
}

func TestPods(t *testing.T) {
	c := fake.New()
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "2")
	waitFor(t, tm, "6 pods")
	press(tm, "down")
	waitFor(t, tm, "▸ default")
	requireGolden(t, final(t, tm))
}

func TestPodsFilterDetailsLogs(t *testing.T) {
	c := fake.New()
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "2", "/", "w", "e", "b", "x")
	waitFor(t, tm, "/webx")
	press(tm, "backspace")
	waitFor(t, tm, "/web█")
	press(tm, "enter")
	waitFor(t, tm, "4 of 6 pods")
	press(tm, "enter")
	waitFor(t, tm, "Containers:")
	press(tm, "esc", "l")
	waitFor(t, tm, "line 3")
	t.Run("logs", func(t *testing.T) { requireGolden(t, final(t, tm)) })
}

func TestPodsFiltered(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "2", "/", "n", "o", "d", "e", "2", "enter")
	waitFor(t, tm, "of 6 pods")
	requireGolden(t, final(t, tm))
}

func TestPodsDelete(t *testing.T) {
	c := fake.New()
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "2")
	waitFor(t, tm, "6 pods")
	press(tm, "d")
	waitFor(t, tm, "delete pod default/a?")
	press(tm, "n")
	waitFor(t, tm, "6 pods")
	press(tm, "d", "y")
	waitFor(t, tm, "5 pods")
	if calls := c.Calls(); !slices.Contains(calls, "delete default/a") || slices.Contains(calls[1:], "delete default/a") {
		t.Errorf("calls %q: want one delete of default/a", calls)
	}
	got := final(t, tm)
	if strings.Contains(got, " a ") {
		t.Errorf("pod a still listed:\n%s", got)
	}
}

func TestNetwork(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "3")
	waitFor(t, tm, "FDB (VXLAN")
	press(tm, "right")
	waitFor(t, tm, "node1 runs")
	requireGolden(t, final(t, tm))
}

// TestModeSwitch goes through the whole switch: picker, confirmation,
// per-node progress as the nodes converge, and the diff.
func TestModeSwitch(t *testing.T) {
	c := fake.New()
	c.SwitchGate = make(chan struct{})
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "3")
	waitFor(t, tm, "FDB (VXLAN")
	press(tm, "m")
	waitFor(t, tm, "switch the pod network to:", "▸ vxlan (now)")
	press(tm, "up")
	waitFor(t, tm, "▸ bgp")
	press(tm, "enter")
	waitFor(t, tm, "switch vxlan → bgp on 3 nodes?")
	t.Run("confirm", func(t *testing.T) {
		// Numbers do not leave a dialog.
		press(tm, "1")
		press(tm, "y")
		waitFor(t, tm, "switching vxlan → bgp", "waiting for the agent")
		c.SwitchGate <- struct{}{}
		waitFor(t, tm, "✓ bgp")
	})
	t.Run("progress", func(t *testing.T) {
		c.SwitchGate <- struct{}{}
		c.SwitchGate <- struct{}{}
		waitFor(t, tm, "vxlan → bgp on 3 nodes in 1.2s", "+ route")
		requireGolden(t, final(t, tm))
	})
	if calls := c.Calls(); !slices.Equal(calls, []string{"switch bgp"}) {
		t.Errorf("calls %q, want one switch to bgp", calls)
	}
}

func TestModeSwitchCancel(t *testing.T) {
	c := fake.New()
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "3", "m", "down", "enter")
	waitFor(t, tm, "switch vxlan → ipip on 3 nodes?")
	press(tm, "n")
	waitFor(t, tm, "FDB (VXLAN")
	final(t, tm)
	if calls := c.Calls(); len(calls) != 0 {
		t.Errorf("calls %q after a cancelled switch", calls)
	}
}

func TestTopology(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "4")
	waitFor(t, tm, "underlay a 192.168.34.0/24", "(6 entries)")
	requireGolden(t, final(t, tm))
}

// TestTopologyTwoSubnets: nodes behind a router, tunnels across subnets
// only.
func TestTopologyTwoSubnets(t *testing.T) {
	tm := start(t, fake.NewTwoSubnets(), 80, 30, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "4")
	waitFor(t, tm, "underlay b 192.168.35.0/24", "router")
	got := final(t, tm)
	assertFits(t, got, 80, 30)
	requireGolden(t, got)
}

// TestTrace picks two pods with the fuzzy search, runs the trace, lets the
// animation reach the last hop, and steps back through the hops.
func TestTrace(t *testing.T) {
	c := fake.New()
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "5")
	waitFor(t, tm, "trace a packet from one pod to another")
	press(tm, "enter")
	waitFor(t, tm, "from █")
	// "a" fuzzy-matches many pods; the exact name comes first.
	press(tm, "a", "enter")
	waitFor(t, tm, "to   █")
	press(tm, "b")
	waitFor(t, tm, "▸ default/b")
	press(tm, "enter")
	waitFor(t, tm, "delivered in 83µs · 10 hops", "hop 10 of 10")
	t.Run("last hop", func(t *testing.T) {
		press(tm, "left", "left", "left", "left", "left", "left")
		waitFor(t, tm, "hop 4 of 10")
		requireGolden(t, final(t, tm))
	})
	if calls := c.Calls(); !slices.Equal(calls, []string{"trace default/a default/b"}) {
		t.Errorf("calls %q", calls)
	}
}

func TestTraceDetails(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "5", "/", "a", "enter", "b", "enter")
	waitFor(t, tm, "hop 10 of 10")
	press(tm, "left", "left", "left", "left", "left", "left", "enter")
	waitFor(t, tm, "VXLAN", "vni 4096")
	requireGolden(t, final(t, tm))
}

func TestControlPlane(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "6")
	waitFor(t, tm, "FailedScheduling")
	t.Run("feed", func(t *testing.T) {
		press(tm, "up", "up", "up")
		waitFor(t, tm, "▸ 10:00:03")
		requireGolden(t, final(t, tm))
	})
}

func TestControlPlaneCNIDetails(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "6", "f", "f", "f", "f")
	waitFor(t, tm, "showing cni")
	press(tm, "enter")
	waitFor(t, tm, `"cniVersion": "1.1.0"`)
	requireGolden(t, final(t, tm))
}

func TestLabs(t *testing.T) {
	c := fake.New()
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "7")
	waitFor(t, tm, "VXLAN mode (VTEP, FDB, 50 bytes)")
	press(tm, "enter")
	waitFor(t, tm, "step 2 of 2")
	press(tm, "c")
	waitFor(t, tm, "hint: is node2's agent running?")
	press(tm, "p", "L")
	waitFor(t, tm, "在 VXLAN 模式下")
	press(tm, "c")
	waitFor(t, tm, "✓ 每个节点都报告 vxlan")
	requireGolden(t, final(t, tm))
	if calls := c.Calls(); !slices.Equal(calls, []string{"check vxlan 1", "check vxlan 0"}) {
		t.Errorf("calls %q", calls)
	}
}

func TestHelp(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "2", "?")
	waitFor(t, tm, "keys of Pods")
	requireGolden(t, final(t, tm))
}

// TestTabs: number keys, tab and shift+tab go round the views.
func TestTabs(t *testing.T) {
	tm := start(t, fake.New(), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	for i, name := range []string{"Overview", "Pods", "Network", "Topology", "Trace", "Control plane", "Labs"} {
		press(tm, string(rune('1'+i)))
		waitFor(t, tm, "─ "+string(rune('1'+i))+" "+name+" ─")
	}
	press(tm, "tab")
	waitFor(t, tm, "─ 1 Overview ─")
	tm.Send(tea.KeyMsg{Type: tea.KeyShiftTab})
	waitFor(t, tm, "─ 7 Labs ─")
	final(t, tm)
}

func TestWelcomeCreates(t *testing.T) {
	c := fake.NewMissing("fresh")
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, `There is no cluster "fresh" on this machine yet.`)
	press(tm, "m", "+")
	waitFor(t, tm, "master + 3 workers")
	t.Run("offer", func(t *testing.T) {
		requireGolden(t, final(t, tm))
	})
	tm = start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "There is no cluster")
	press(tm, "c")
	waitFor(t, tm, "COMPONENTS")
	final(t, tm)
	if calls := c.Calls(); !slices.Equal(calls, []string{"create netns 2 workers bgp"}) {
		t.Errorf("calls %q", calls)
	}
}

// TestQuitWhileCreating: ctrl+c during a creation stops it, and the TUI
// ends only once the creation has undone its work.
func TestQuitWhileCreating(t *testing.T) {
	c := fake.NewMissing("fresh")
	c.CreateGate = make(chan struct{})
	tm := start(t, c, 80, 24, tui.Options{})
	waitFor(t, tm, "There is no cluster")
	press(tm, "c")
	waitFor(t, tm, "creating cluster", "✓ underlay", "ctrl+c stop")
	tm.Send(tea.KeyMsg{Type: tea.KeyCtrlC})
	tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
	if calls := c.Calls(); !slices.Equal(calls, []string{"create netns 2 workers bgp", "create undone"}) {
		t.Errorf("calls %q", calls)
	}
}

// TestResize draws every view at several sizes: each screen fills the
// terminal exactly, and a terminal too small says so.
func TestResize(t *testing.T) {
	tm := start(t, fake.NewSized(4, 40), 80, 24, tui.Options{})
	waitFor(t, tm, "COMPONENTS")
	press(tm, "3")
	waitFor(t, tm, "runs")
	m := finalModel(t, tm)
	for _, size := range [][2]int{{80, 24}, {120, 40}, {60, 16}, {200, 60}, {81, 25}} {
		m.Update(tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		for page := range 7 {
			m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{rune('1' + page)}})
			assertFits(t, m.View(), size[0], size[1])
		}
	}
	m.Update(tea.WindowSizeMsg{Width: 40, Height: 10})
	if v := m.View(); !strings.Contains(v, "terminal too small: 40×10 (need 60×16)") {
		t.Errorf("40×10: %q", v)
	}
}

// TestColours: 16-colour terminals get only the 16 colours, no-colour
// terminals (and NO_COLOR) no escape sequence at all.
func TestColours(t *testing.T) {
	draw := func(r *lipgloss.Renderer) string {
		tm := start(t, fake.New(), 80, 24, tui.Options{Renderer: r})
		waitFor(t, tm, "COMPONENTS")
		press(tm, "3")
		waitFor(t, tm, "runs")
		return finalModel(t, tm).View()
	}
	sgr := regexp.MustCompile(`\x1b\[([0-9;]*)m`)
	ansi16 := draw(renderer(termenv.ANSI))
	if !sgr.MatchString(ansi16) {
		t.Fatal("16 colours: no colour at all")
	}
	for _, m := range sgr.FindAllStringSubmatch(ansi16, -1) {
		if strings.Contains(m[1], "38;") || strings.Contains(m[1], "48;") {
			t.Fatalf("16 colours: extended colour %q", m[0])
		}
	}
	if s := draw(renderer(termenv.TrueColor)); !strings.Contains(s, "38;2;") {
		t.Error("true colour: no 24-bit colour")
	}
	env := termenv.WithEnvironment(envMap{"NO_COLOR": "1", "TERM": "xterm-256color", "COLORTERM": "truecolor"})
	noColour := draw(lipgloss.NewRenderer(io.Discard, termenv.WithTTY(true), env))
	if strings.Contains(noColour, "\x1b") {
		t.Errorf("NO_COLOR: escape sequences in %q", noColour[:200])
	}
	if !strings.Contains(noColour, "[node1]") && !strings.Contains(noColour, "[master]") {
		t.Error("NO_COLOR: the selected node is not marked without colour")
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type envMap map[string]string

func (e envMap) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e envMap) Getenv(k string) string { return e[k] }

// BenchmarkView draws every view of a cluster of 10 nodes and 200 pods
// at 80×24 and at 200×60 (the target is under 5ms a frame).
func BenchmarkView(b *testing.B) {
	for _, size := range [][2]int{{80, 24}, {200, 60}} {
		for i, name := range []string{"Overview", "Pods", "Network", "Topology", "Trace", "ControlPlane", "Labs"} {
			b.Run(fmt.Sprintf("%s/%dx%d", name, size[0], size[1]), func(b *testing.B) {
				t := &testing.T{}
				c := fake.NewSized(9, 200)
				tm := &screen{m: newTUI(c, tui.Options{Renderer: renderer(termenv.TrueColor)})}
				tm.TestModel = teatest.NewTestModel(t, probe{tm}, teatest.WithInitialTermSize(size[0], size[1]))
				// The overview's node table (its component list does not
				// fit in 80×24): the fake cluster is loaded.
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(tm.now(), "POD CIDR") && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				deadline = time.Now().Add(5 * time.Second)
				press(tm, string(rune('1'+i)))
				if name == "Trace" {
					press(tm, "enter", "a", "enter", "b", "enter")
				}
				want := map[string]string{"Pods": "200 pods", "Network": "runs", "Topology": "underlay a", "Trace": "hop 10 of 10", "ControlPlane": "6 items", "Labs": "2 labs"}[name]
				for !strings.Contains(tm.now(), want) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if !strings.Contains(tm.now(), want) {
					b.Fatalf("%s: the screen does not show %q:\n%s", name, want, tm.now())
				}
				tm.Quit()
				tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
				m := tm.m
				// The machine may be shared: report the CPU time a frame takes
				// too, which waiting for a CPU does not inflate.
				before := cpuTime()
				n := 0
				for b.Loop() {
					_ = m.View()
					n++
				}
				b.ReportMetric(float64((cpuTime()-before).Nanoseconds())/float64(n), "cpu-ns/op")
			})
		}
	}
}
