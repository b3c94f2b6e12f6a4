package labs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// minimal is a valid lab; tests change one thing in it.
const minimal = `id: tiny
title: {en: A tiny lab, zh: 一个小实验}
summary: {en: It checks one thing., zh: 它只检查一件事。}
cluster: {nodes: 2}
steps:
  - title: {en: Nodes, zh: 节点}
    text:
      en: |
        Look at the nodes.
      zh: |
        看看节点。
    commands:
      - klab get nodes
    checks:
      - title: {en: every node is Ready, zh: 每个节点都 Ready}
        hint: {en: klab status, zh: klab status}
        nodeReady: {}
`

func TestParseMinimal(t *testing.T) {
	l, err := Parse("tiny.yaml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != "tiny" || len(l.Steps) != 1 || len(l.Steps[0].Checks) != 1 {
		t.Fatalf("parsed %+v", l)
	}
	// Defaults filled in by validation.
	if c := l.Cluster; c.Masters != 1 || c.Subnets != 1 || c.Mode != "bgp" || c.Provider != "any" {
		t.Errorf("cluster defaults: %+v", c)
	}
	if got := l.Steps[0].Commands[0]; got.Run != "klab get nodes" || got.Line != 13 {
		t.Errorf("command %+v, want the string on line 13", got)
	}
	if got := l.Steps[0].Checks[0].Line; got != 15 {
		t.Errorf("check on line %d, want 15", got)
	}
	if l.ClusterName() != "lab-tiny" {
		t.Errorf("cluster name %q", l.ClusterName())
	}
}

// TestParseErrors breaks the minimal lab in one place each and expects an
// error naming the file, the line and the field path.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     string // "file:line: path: message" prefix, or part of it
	}{
		{"unknown field", "cluster: {nodes: 2}", "cluster: {nodes: 2, nodez: 3}", "tiny.yaml:4: cluster.nodez: unknown field"},
		{"field in the wrong case", "    commands:", "    Commands:", `tiny.yaml:12: steps[0].Commands: unknown field: did you mean "commands"?`},
		{"missing chinese", "title: {en: A tiny lab, zh: 一个小实验}", "title: {en: A tiny lab}", "tiny.yaml:2: title.zh: missing: every text needs English (en) and Chinese (zh)"},
		{"missing step text", "      zh: |\n        看看节点。\n", "", "tiny.yaml:8: steps[0].text.zh: missing"},
		{"bad id", "id: tiny", "id: Tiny_Lab", `tiny.yaml:1: id: "Tiny_Lab" is not a lab id`},
		{"bad mode", "cluster: {nodes: 2}", "cluster: {nodes: 2, mode: flannel}", `tiny.yaml:4: cluster.mode: "flannel": use bgp, vxlan or ipip`},
		{"bgp across subnets", "cluster: {nodes: 2}", "cluster: {nodes: 2, subnets: 2}", "tiny.yaml:4: cluster.mode: a cluster with 2 subnets cannot start in bgp mode"},
		{"too few nodes for subnets", "cluster: {nodes: 2}", "cluster: {nodes: 1, subnets: 2, mode: vxlan}", "tiny.yaml:4: cluster: subnets: 2 needs at least 2 worker nodes"},
		{"wrong type", "cluster: {nodes: 2}", "cluster: {nodes: two}", `tiny.yaml:4: cluster.nodes: "two" is not a whole number`},
		{"no check kind", "        nodeReady: {}\n", "", "tiny.yaml:15: steps[0].checks[0]: says nothing to check: give one of nodeReady, pod,"},
		{"two check kinds", "        nodeReady: {}", "        nodeReady: {}\n        script: {run: 'true'}", "tiny.yaml:15: steps[0].checks[0]: has nodeReady and script: one check is one kind"},
		{"unknown node", "        nodeReady: {}", "        nodeReady: {node: node7}", `tiny.yaml:15: steps[0].checks[0].nodeReady.node: no node "node7" in a cluster of 1 master, 2 nodes, 1 subnet, bgp (its nodes: master, node1, node2)`},
		{"bad regexp", "        nodeReady: {}", "        output: {node: node1, run: hostname, match: '('}", "tiny.yaml:15: steps[0].checks[0].output.match: bad regular expression"},
		{"bad template", "      - klab get nodes", "      - klab exec a -- ping {{podIP b}}", "tiny.yaml:13: steps[0].commands[0]: bad {{…}} expression"},
		{"unknown function", "      - klab get nodes", `      - klab exec a -- ping {{podAddr "b"}}`, `tiny.yaml:13: steps[0].commands[0]: bad {{…}} expression: function "podAddr" not defined`},
		{"bad duration", "        nodeReady: {}", "        timeout: soon\n        nodeReady: {}", `tiny.yaml:17: steps[0].checks[0].timeout: "soon" is not a duration`},
		{"bad jsonpath", "        nodeReady: {}", "        object: {kind: pod, name: a, fields: {'.status[': x}}", "steps[0].checks[0].object.fields..status[: bad JSONPath"},
		{"bad cidr", "        nodeReady: {}", "        route: {node: node1, dst: 10.42.2.0}", `steps[0].checks[0].route.dst: "10.42.2.0" is not a CIDR`},
		{"fault without kind", "    commands:", "    faults:\n      - until: end\n    commands:", "tiny.yaml:13: steps[0].faults[0]: says nothing to break"},
		{"bad fault until", "    commands:", "    faults:\n      - {stopNode: {node: node2}, until: later}\n    commands:", `steps[0].faults[0].until: "later": use step`},
		{"fault on a node that is not there", "    commands:", "    faults:\n      - mtu: {node: node9, device: eth0, mtu: 1400}\n    commands:", `steps[0].faults[0].mtu.node: no node "node9"`},
		{"duplicate key", "cluster: {nodes: 2}", "cluster: {nodes: 2}\ncluster: {nodes: 3}", "tiny.yaml:5: cluster: given twice"},
		{"a string for a list", "    commands:\n      - klab get nodes", "    commands: klab get nodes", "tiny.yaml:12: steps[0].commands: must be a list"},
		{"no steps", minimal[strings.Index(minimal, "steps:"):], "", "tiny.yaml:1: steps: a lab needs at least one step"},
		{"not yaml", "cluster: {nodes: 2}", "cluster: {nodes: 2", "tiny.yaml:3: not valid YAML (near this line)"},
		{"trace lost but delivered", "        nodeReady: {}", "        trace: {from: a, to: b, lostOn: node1}", "steps[0].checks[0].trace: lostOn and cause describe a lost packet: add delivered: false"},
		{"pod name and selector", "        nodeReady: {}", "        pod: {name: a, selector: app=a}", "steps[0].checks[0].pod: give exactly one of name, selector"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.Replace(minimal, tt.old, tt.new, 1)
			if src == minimal {
				t.Fatalf("the test's old text %q is not in the lab", tt.old)
			}
			_, err := Parse("tiny.yaml", []byte(src))
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

// TestParseAllErrors finds every problem of a file at once, in line order.
func TestParseAllErrors(t *testing.T) {
	src := strings.NewReplacer("id: tiny", "id: X", "nodeReady: {}", "nodeReady: {node: node5}", "zh: 节点", "zh: ''").Replace(minimal)
	_, err := Parse("tiny.yaml", []byte(src))
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	for i := 1; i < len(es); i++ {
		if es[i].Line < es[i-1].Line {
			t.Errorf("errors out of line order: %v", err)
		}
	}
}

func TestCommandForms(t *testing.T) {
	src := strings.Replace(minimal, "      - klab get nodes", `      - klab get nodes
      - run: klab net mode bgp --timeout 5s
        fails: true
        timeout: 1m`, 1)
	l, err := Parse("tiny.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c := l.Steps[0].Commands[1]
	if c.Run != "klab net mode bgp --timeout 5s" || !c.Fails || c.Timeout.Or(0).String() != "1m0s" || c.Line != 14 {
		t.Errorf("command %+v", c)
	}
	bad := strings.Replace(minimal, "      - klab get nodes", "      - {run: klab get nodes, failz: true}", 1)
	if _, err := Parse("tiny.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "tiny.yaml:13: steps[0].commands[0].failz: unknown field") {
		t.Errorf("error %v", err)
	}
}

func TestBundledLabs(t *testing.T) {
	all, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 {
		t.Errorf("%d bundled labs, want the curriculum's 10", len(all))
	}
	for i, l := range all {
		if l.Number != i+1 {
			t.Errorf("lab %s has number %d, want %d", l.ID, l.Number, i+1)
		}
	}
}

// TestEveryTextInBothLanguages walks every text of every bundled lab: the
// lab's, each step's, each check's title and hint.
func TestEveryTextInBothLanguages(t *testing.T) {
	all, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range all {
		texts := map[string]Text{"title": l.Title, "summary": l.Summary}
		for i, s := range l.Steps {
			texts[fmt.Sprintf("steps[%d].title", i)] = s.Title
			texts[fmt.Sprintf("steps[%d].text", i)] = s.Text
			for j, c := range s.Checks {
				texts[fmt.Sprintf("steps[%d].checks[%d].title", i, j)] = c.Title
				texts[fmt.Sprintf("steps[%d].checks[%d].hint", i, j)] = c.Hint
			}
		}
		for path, tx := range texts {
			if strings.TrimSpace(tx.En) == "" || strings.TrimSpace(tx.Zh) == "" {
				t.Errorf("%s: %s lacks a language: en %q, zh %q", l.ID, path, tx.En, tx.Zh)
			}
			if !hasHan(tx.Zh) {
				t.Errorf("%s: %s: the zh text has no Chinese: %q", l.ID, path, tx.Zh)
			}
		}
	}
}

func hasHan(s string) bool {
	for _, r := range s {
		if r >= 0x4e00 && r <= 0x9fff {
			return true
		}
	}
	// Hints may be a command alone, the same in both languages.
	return strings.HasPrefix(strings.TrimSpace(s), "klab ") || strings.HasPrefix(strings.TrimSpace(s), "'klab ")
}

func TestFind(t *testing.T) {
	all, err := Catalog()
	if err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"vxlan", "8"} {
		l, err := Find(all, what)
		if err != nil || l.ID != "vxlan" {
			t.Errorf("Find(%q) = %v, %v", what, l, err)
		}
	}
	if _, err := Find(all, "flannel"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "deploy, master") {
		t.Errorf("Find(flannel): %v", err)
	}
	l, err := Find(all, "testdata/manual.yaml")
	if err != nil || l.ID != "manual" {
		t.Errorf("Find by path: %v, %v", l, err)
	}
}

func TestCatalogPaths(t *testing.T) {
	all, err := Catalog("testdata")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, l := range all {
		ids[l.ID] = true
	}
	if !ids["deploy"] || !ids["manual"] || !ids["broken"] {
		t.Errorf("catalog %v lacks a bundled or a testdata lab", ids)
	}
	if _, err := Catalog("testdata", "testdata/manual.yaml"); err == nil || !strings.Contains(err.Error(), `two labs have the id "manual"`) {
		t.Errorf("a lab given twice: %v", err)
	}
	if _, err := Catalog("testdata/nothing-here"); err == nil {
		t.Error("a missing path is no error")
	}
}
