package resources

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Manifest is one object read from a file, with where it came from.
type Manifest struct {
	Object *unstructured.Unstructured
	// Source is "file:line" of the document's first line.
	Source string
}

// ReadManifests reads objects from files, directories (their .yaml, .yml
// and .json files, in name order) and "-" (stdin). Documents are separated
// by "---" lines; a List's items are read as objects. Errors name the file
// and line.
func ReadManifests(paths []string, stdin io.Reader) ([]Manifest, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no manifest given: use -f FILE, -f DIR or -f - (stdin)")
	}
	var out []Manifest
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			ms, err := parseManifest("<stdin>", b)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		files := []string{p}
		if st.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("read manifest directory: %w", err)
			}
			files = nil
			for _, e := range entries {
				ext := strings.ToLower(filepath.Ext(e.Name()))
				if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			slices.Sort(files)
			if len(files) == 0 {
				return nil, fmt.Errorf("%s has no .yaml, .yml or .json files", p)
			}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read manifest: %w", err)
			}
			ms, err := parseManifest(f, b)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no objects in %s", strings.Join(paths, ", "))
	}
	return out, nil
}

var (
	separator = regexp.MustCompile(`^---(\s.*)?$`)
	yamlLine  = regexp.MustCompile(`(?:yaml|line): line (\d+): (.*)$|^yaml: line (\d+): (.*)$`)
)

type document struct {
	text  []byte
	start int // 1-based line of its first line
}

// splitDocuments cuts a YAML stream at "---" lines.
func splitDocuments(b []byte) []document {
	var docs []document
	var cur bytes.Buffer
	start, line := 1, 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1024*1024), 64*1024*1024)
	for sc.Scan() {
		line++
		if separator.MatchString(strings.TrimRight(sc.Text(), "\r")) {
			docs = append(docs, document{text: bytes.Clone(cur.Bytes()), start: start})
			cur.Reset()
			start = line + 1
			continue
		}
		cur.Write(sc.Bytes())
		cur.WriteByte('\n')
	}
	return append(docs, document{text: cur.Bytes(), start: start})
}

// blank: only whitespace and comments.
func blank(b []byte) bool {
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

func parseManifest(name string, b []byte) ([]Manifest, error) {
	var out []Manifest
	for _, d := range splitDocuments(b) {
		if blank(d.text) {
			continue
		}
		src := name + ":" + strconv.Itoa(d.start)
		j, err := yaml.YAMLToJSON(d.text)
		if err != nil {
			return nil, fmt.Errorf("%s: %s", name, yamlError(err, d.start))
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil || m == nil {
			return nil, fmt.Errorf("%s: the document is not a mapping of fields (apiVersion, kind, metadata …)", src)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("%s: the object has no %s", src, missing(u))
		}
		if u.IsList() {
			err := u.EachListItem(func(o runtime.Object) error {
				item, ok := o.(*unstructured.Unstructured)
				if !ok || item.GetKind() == "" || item.GetAPIVersion() == "" {
					return fmt.Errorf("%s: an item of the %s has no apiVersion or kind", src, u.GetKind())
				}
				out = append(out, Manifest{Object: item, Source: src})
				return nil
			})
			if err != nil {
				return nil, err
			}
			continue
		}
		if u.GetName() == "" && u.GetGenerateName() == "" {
			return nil, fmt.Errorf("%s: %s has no metadata.name", src, u.GetKind())
		}
		out = append(out, Manifest{Object: u, Source: src})
	}
	return out, nil
}

func missing(u *unstructured.Unstructured) string {
	switch {
	case u.GetKind() == "" && u.GetAPIVersion() == "":
		return "apiVersion and kind"
	case u.GetKind() == "":
		return "kind"
	}
	return "apiVersion"
}

// yamlError turns "yaml: line 3: …" (counted within the document) into
// "line N: …" counted within the file.
func yamlError(err error, start int) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, text := m[1], m[2]
		if n == "" {
			n, text = m[3], m[4]
		}
		if l, err := strconv.Atoi(n); err == nil {
			return fmt.Sprintf("line %d: %s", l+start-1, text)
		}
	}
	return fmt.Sprintf("line %d: %s", start, strings.TrimPrefix(msg, "yaml: "))
}
