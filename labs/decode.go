package labs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is a problem in a lab file: where it is (file, line and the path
// of the field) and what is wrong.
type Error struct {
	File string
	Line int
	Path string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems found in lab files, in file order.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// err returns es as an error, or nil when there is none.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	slices.SortStableFunc(es, func(a, b *Error) int {
		if a.File != b.File {
			return strings.Compare(a.File, b.File)
		}
		return a.Line - b.Line
	})
	return es
}

// Parse reads one lab from YAML and validates it. file names it in
// errors. A bad file returns Errors: every problem, each with its line
// and field path.
func Parse(file string, data []byte) (*Lab, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{yamlError(file, err)}
	}
	d := &decoder{file: file}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, Errors{{File: file, Msg: "empty file: a lab is a YAML mapping with id, title, summary, cluster and steps"}}
	}
	lab := &Lab{Source: file}
	d.decode(doc.Content[0], "", reflect.ValueOf(lab).Elem())
	if len(d.errs) > 0 {
		return nil, d.errs.err()
	}
	if err := lab.validate(); err != nil {
		return nil, err
	}
	return lab, nil
}

// yamlError turns the YAML parser's message ("yaml: line 4: …") into an
// Error with the line. The parser names the line where it noticed the
// problem, or where the construct it was in began, which can be the line
// before: the message says "near".
func yamlError(file string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ":"); ok {
			if l, err := strconv.Atoi(n); err == nil {
				line, msg = l, strings.TrimSpace(after)
			}
		}
	}
	if line > 0 {
		return &Error{File: file, Line: line, Msg: "not valid YAML (near this line): " + msg}
	}
	return &Error{File: file, Msg: "not valid YAML: " + msg}
}

// decoder fills Go values from YAML nodes strictly: unknown fields,
// duplicate keys and wrong types are errors with line and path. It knows
// the few kinds of value lab files hold: structs, pointers to structs,
// slices, string maps, strings, ints, bools and Durations. A struct's
// field Line (tagged yaml:"-") gets the line the value starts on.
type decoder struct {
	file string
	errs Errors
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// nodeDecoder is a type with its own YAML form (a command may be a string).
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

var durationType = reflect.TypeFor[Duration]()

func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() {
		if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
			nd.decodeNode(d, n, path)
			return
		}
	}
	if v.Type() == durationType {
		s, ok := d.scalar(n, path, "a duration such as 20s or 1m30s")
		if !ok {
			return
		}
		dur, err := time.ParseDuration(s)
		if err != nil || dur < 0 {
			d.errorf(n, path, "%q is not a duration: write it like 20s or 1m30s", s)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			d.errorf(n, path, "is empty: give its fields (or {} for none)")
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, path, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, path, v)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, path, "must be a list (items starting with \"- \"), not %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, fmt.Sprintf("%s[%d]", path, i), s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "must be a mapping (key: value), not %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key, ok := d.scalar(k, path, "a key")
			if !ok {
				continue
			}
			if m.MapIndex(reflect.ValueOf(key)).IsValid() {
				d.errorf(k, path+"."+key, "given twice")
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, path+"."+key, e)
			m.SetMapIndex(reflect.ValueOf(key), e)
		}
		v.Set(m)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Int:
		s, ok := d.scalar(n, path, "a whole number")
		if !ok {
			return
		}
		i, err := strconv.Atoi(s)
		if err != nil {
			d.errorf(n, path, "%q is not a whole number", s)
			return
		}
		v.SetInt(int64(i))
	case reflect.Bool:
		s, ok := d.scalar(n, path, "true or false")
		if !ok {
			return
		}
		switch s {
		case "true":
			v.SetBool(true)
		case "false":
			v.SetBool(false)
		default:
			d.errorf(n, path, "%q is not true or false", s)
		}
	default:
		panic(fmt.Sprintf("labs: cannot decode into %s", v.Type()))
	}
}

// scalar returns a scalar node's text.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "must be %s, not %s", want, describe(n))
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

func (d *decoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	t := v.Type()
	if f, ok := t.FieldByName("Line"); ok && f.Type.Kind() == reflect.Int {
		v.FieldByIndex(f.Index).SetInt(int64(n.Line))
	}
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping (field: value), not %s", describe(n))
		return
	}
	fields := map[string]int{}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
		names = append(names, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key, ok := d.scalar(k, path, "a field name")
		if !ok {
			continue
		}
		sub := join(path, key)
		idx, known := fields[key]
		if !known {
			d.errorf(k, sub, "unknown field%s (known here: %s)", suggest(key, names), strings.Join(names, ", "))
			continue
		}
		if seen[key] {
			d.errorf(k, sub, "given twice")
			continue
		}
		seen[key] = true
		d.decode(val, sub, v.Field(idx))
	}
}

// suggest names a known field that differs from key only in case, as a
// hint for the commonest mistake.
func suggest(key string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return fmt.Sprintf(": did you mean %q?", n)
		}
	}
	return ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// decodeNode reads a command: a string, or a mapping with run, fails
// and timeout.
func (c *Command) decodeNode(d *decoder, n *yaml.Node, path string) {
	c.Line = n.Line
	if n.Kind == yaml.ScalarNode {
		if s, ok := d.scalar(n, path, "a command"); ok {
			c.Run = s
		}
		return
	}
	type plain Command // without this method
	d.decodeStruct(n, path, reflect.ValueOf((*plain)(c)).Elem())
}

// ErrNotFound is returned when no lab has the ID asked for.
var ErrNotFound = errors.New("no such lab")
