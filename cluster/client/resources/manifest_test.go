package resources

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []string // kind/name@line
		wantErr string
	}{
		{"two documents", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lab\n---\n# a comment\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n",
			[]string{"Namespace/lab@1", "ConfigMap/cfg@6"}, ""},
		{"leading separator and empty documents", "---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n\n",
			[]string{"Pod/p@3"}, ""},
		{"a list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n",
			[]string{"ConfigMap/a@1", "ConfigMap/b@1"}, ""},
		{"json", `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"j"}}`, []string{"Namespace/j@1"}, ""},
		{"bad yaml in the second document", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lab\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n   bad: indent\n",
			nil, "f.yaml: line 10: "},
		{"no kind", "---\napiVersion: v1\nmetadata:\n  name: x\n", nil, "f.yaml:2: the object has no kind"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\n", nil, "f.yaml:1: ConfigMap has no metadata.name"},
		{"not a mapping", "- a\n- b\n", nil, "f.yaml:1: the document is not a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := parseManifest("f.yaml", []byte(tt.text))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.Object.GetKind()+"/"+m.Object.GetName()+"@"+strings.TrimPrefix(m.Source, "f.yaml:"))
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadManifestsDirectory(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"b.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
		"a.yml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
		"notes.txt": "not a manifest",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := ReadManifests([]string{dir, "-"}, strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stdin}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		names = append(names, m.Object.GetName())
	}
	if strings.Join(names, ",") != "a,b,stdin" {
		t.Errorf("read %v, want a,b,stdin in that order", names)
	}
	if _, err := ReadManifests([]string{filepath.Join(dir, "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("a missing file: %v", err)
	}
}

func TestDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{{"pods", "pods", 0}, {"pdos", "pods", 2}, {"pod", "pods", 1}, {"", "ab", 2}, {"deploy", "deployments", 5}} {
		if got := distance(tt.a, tt.b); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
