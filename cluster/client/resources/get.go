package resources

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// tableAccept asks for a server-side Table, falling back to plain JSON.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// Target is one resource type and the names asked for (none: all).
type Target struct {
	Mapping *meta.RESTMapping
	Names   []string
}

// Targets parses what follows a verb the way kubectl does: "pods",
// "pods a b", "deploy,rs", or "pod/a svc/b".
func (c *Client) Targets(args []string) ([]Target, error) {
	if len(args) == 0 {
		return nil, errors.New("say what to work on: a resource type (pods, nodes, deploy …) and optionally names, or TYPE/NAME")
	}
	if strings.Contains(args[0], "/") {
		var out []Target
		for _, a := range args {
			typ, name, ok := strings.Cut(a, "/")
			if !ok || typ == "" || name == "" {
				return nil, fmt.Errorf("%q: mix no TYPE/NAME and plain arguments: write every object as TYPE/NAME", a)
			}
			m, err := c.Mapping(typ)
			if err != nil {
				return nil, err
			}
			out = append(out, Target{Mapping: m, Names: []string{name}})
		}
		return out, nil
	}
	types := strings.Split(args[0], ",")
	if len(types) > 1 && len(args) > 1 {
		return nil, fmt.Errorf("names with several types (%s) are ambiguous: write TYPE/NAME for each", args[0])
	}
	var out []Target
	for _, t := range types {
		m, err := c.Mapping(t)
		if err != nil {
			return nil, err
		}
		out = append(out, Target{Mapping: m, Names: args[1:]})
	}
	return out, nil
}

// GetOptions selects what Get prints and how.
type GetOptions struct {
	Namespace     string // "" means the client's default
	AllNamespaces bool
	Selector      string // label selector
	FieldSelector string
	// Output is "" (a table), wide, json, yaml or name.
	Output string
	// Watch keeps printing changes after the first listing.
	Watch bool
}

// Get prints targets as the server's tables (or JSON, YAML, names).
func (c *Client) Get(ctx context.Context, out, errOut io.Writer, targets []Target, o GetOptions) error {
	ns := o.Namespace
	if ns == "" {
		ns = c.Namespace
	}
	if o.AllNamespaces {
		ns = ""
	}
	switch o.Output {
	case "", "wide", "json", "yaml", "name":
	default:
		return fmt.Errorf("unknown output format %q: use wide, json, yaml or name", o.Output)
	}
	if o.Watch && (len(targets) != 1 || len(targets[0].Names) > 1) {
		return errors.New("--watch works with one resource type (and at most one name)")
	}
	kinds := map[string]bool{}
	for _, t := range targets {
		kinds[t.Mapping.Resource.String()] = true
	}
	withType := len(kinds) > 1
	var items []any
	var errs []error
	printed := 0
	for _, t := range targets {
		switch o.Output {
		case "json", "yaml", "name":
			objs, err := c.objects(ctx, t, ns, o)
			errs = append(errs, err)
			for _, obj := range objs {
				if o.Output == "name" {
					fmt.Fprintf(out, "%s/%s\n", typeName(t.Mapping), obj.GetName())
					continue
				}
				unstructured.RemoveNestedField(obj.Object, "metadata", "managedFields")
				items = append(items, obj.Object)
			}
		default:
			tab, err := c.tables(ctx, t, ns, o)
			errs = append(errs, err)
			if tab == nil || len(tab.Rows) == 0 {
				continue
			}
			if printed > 0 {
				fmt.Fprintln(out)
			}
			printed++
			w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
			printTable(w, tab, t.Mapping, printOpts{wide: o.Output == "wide", namespace: o.AllNamespaces && namespaced(t.Mapping), withType: withType, header: true})
			w.Flush()
			if o.Watch {
				return c.watch(ctx, out, t, ns, o, tab)
			}
		}
	}
	if o.Output == "json" || o.Output == "yaml" {
		var doc any = map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]any{"resourceVersion": ""}}
		if len(items) == 1 && len(targets) == 1 && len(targets[0].Names) == 1 {
			doc = items[0]
		}
		if len(items) > 0 || errors.Join(errs...) == nil {
			if err := encode(out, o.Output, doc); err != nil {
				return err
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if o.Output == "" || o.Output == "wide" {
		if printed == 0 {
			switch {
			case o.Watch:
				return c.watch(ctx, out, targets[0], ns, o, nil)
			case ns == "" || !namespaced(targets[0].Mapping):
				fmt.Fprintln(errOut, "No resources found")
			default:
				fmt.Fprintf(errOut, "No resources found in %s namespace.\n", ns)
			}
		}
	}
	return nil
}

func encode(w io.Writer, format string, v any) error {
	if format == "yaml" {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

// objects fetches a target's objects in full.
func (c *Client) objects(ctx context.Context, t Target, ns string, o GetOptions) ([]*unstructured.Unstructured, error) {
	rc := c.resourceClient(t.Mapping, ns)
	if len(t.Names) == 0 {
		l, err := rc.List(ctx, metav1.ListOptions{LabelSelector: o.Selector, FieldSelector: o.FieldSelector})
		if err != nil {
			return nil, c.connErr(err)
		}
		out := make([]*unstructured.Unstructured, len(l.Items))
		for i := range l.Items {
			out[i] = &l.Items[i]
		}
		return out, nil
	}
	var out []*unstructured.Unstructured
	var errs []error
	for _, n := range t.Names {
		obj, err := rc.Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			errs = append(errs, notFound(c.connErr(err), t.Mapping, ns))
			continue
		}
		out = append(out, obj)
	}
	return out, errors.Join(errs...)
}

// tables fetches a target as the server's Table: one request for all, or
// one per name.
func (c *Client) tables(ctx context.Context, t Target, ns string, o GetOptions) (*metav1.Table, error) {
	fetch := func(name string) (*metav1.Table, error) {
		req := c.raw.Get().AbsPath(path(t.Mapping, ns, name)).SetHeader("Accept", tableAccept)
		if name == "" {
			if o.Selector != "" {
				req = req.Param("labelSelector", o.Selector)
			}
			if o.FieldSelector != "" {
				req = req.Param("fieldSelector", o.FieldSelector)
			}
		}
		b, err := req.Do(ctx).Raw()
		if apierrors.IsNotFound(err) && name != "" {
			// The raw client words a 404 generically; say what is missing.
			err = apierrors.NewNotFound(t.Mapping.Resource.GroupResource(), name)
		}
		if err != nil {
			return nil, notFound(c.connErr(err), t.Mapping, ns)
		}
		return decodeTable(b)
	}
	if len(t.Names) == 0 {
		return fetch("")
	}
	var all *metav1.Table
	var errs []error
	for _, n := range t.Names {
		tab, err := fetch(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if all == nil {
			all = tab
		} else {
			all.Rows = append(all.Rows, tab.Rows...)
		}
	}
	return all, errors.Join(errs...)
}

// decodeTable reads a Table, or builds a NAME/AGE one from a plain object
// or list when the server offers no tables for the type.
func decodeTable(b []byte) (*metav1.Table, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("the server's answer is not JSON: %w", err)
	}
	if head.Kind == "Table" {
		var t metav1.Table
		if err := json.Unmarshal(b, &t); err != nil {
			return nil, fmt.Errorf("decode table: %w", err)
		}
		return &t, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	t := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{{Name: "Name", Type: "string"}, {Name: "Age", Type: "string"}}}
	row := func(o *unstructured.Unstructured) {
		raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"name": o.GetName(), "namespace": o.GetNamespace()}})
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells:  []any{o.GetName(), duration.HumanDuration(time.Since(o.GetCreationTimestamp().Time))},
			Object: runtime.RawExtension{Raw: raw},
		})
	}
	if u.IsList() {
		_ = u.EachListItem(func(o runtime.Object) error {
			if item, ok := o.(*unstructured.Unstructured); ok {
				row(item)
			}
			return nil
		})
		t.ResourceVersion = u.GetResourceVersion()
		return t, nil
	}
	row(u)
	return t, nil
}

type printOpts struct {
	wide, namespace, withType, header bool
}

// printTable prints a Table's columns (priority 0 only, unless wide),
// NAMESPACE first with -A, names as TYPE/NAME with several types.
func printTable(w io.Writer, t *metav1.Table, m *meta.RESTMapping, o printOpts) {
	var cols []int
	for i, c := range t.ColumnDefinitions {
		if c.Priority == 0 || o.wide {
			cols = append(cols, i)
		}
	}
	if o.header {
		var h []string
		if o.namespace {
			h = append(h, "NAMESPACE")
		}
		for _, i := range cols {
			h = append(h, strings.ToUpper(t.ColumnDefinitions[i].Name))
		}
		fmt.Fprintln(w, strings.Join(h, "\t"))
	}
	for _, r := range t.Rows {
		var cells []string
		if o.namespace {
			cells = append(cells, rowNamespace(r))
		}
		for _, i := range cols {
			s := "<none>"
			if i < len(r.Cells) {
				s = cell(r.Cells[i])
			}
			if o.withType && strings.EqualFold(t.ColumnDefinitions[i].Name, "name") {
				s = typeName(m) + "/" + s
			}
			cells = append(cells, s)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
}

func rowNamespace(r metav1.TableRow) string {
	var o struct {
		Metadata struct {
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if r.Object.Raw != nil {
		_ = json.Unmarshal(r.Object.Raw, &o)
	}
	return o.Metadata.Namespace
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "<none>"
	case string:
		return x
	case float64:
		if x == math.Trunc(x) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// watch prints the rows of changed objects as they change, starting after
// the listing's resourceVersion, until ctx ends.
func (c *Client) watch(ctx context.Context, out io.Writer, t Target, ns string, o GetOptions, first *metav1.Table) error {
	req := c.raw.Get().AbsPath(path(t.Mapping, ns, "")).SetHeader("Accept", tableAccept).Param("watch", "true")
	if o.Selector != "" {
		req = req.Param("labelSelector", o.Selector)
	}
	fs := o.FieldSelector
	if len(t.Names) == 1 {
		fs = strings.Trim(fs+",metadata.name="+t.Names[0], ",")
	}
	if fs != "" {
		req = req.Param("fieldSelector", fs)
	}
	if first != nil && first.ResourceVersion != "" {
		req = req.Param("resourceVersion", first.ResourceVersion)
	}
	stream, err := req.Stream(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return notFound(c.connErr(err), t.Mapping, ns)
	}
	defer stream.Close()
	// Closing the body is what reliably ends a read blocked on the stream.
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			stream.Close()
		case <-stopped:
		}
	}()
	header := first == nil
	dec := json.NewDecoder(bufio.NewReader(stream))
	for {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("watch %s: %w", t.Mapping.Resource.Resource, err)
		}
		if ev.Type == "ERROR" {
			return fmt.Errorf("watch %s: %s", t.Mapping.Resource.Resource, string(ev.Object))
		}
		if ev.Type == "BOOKMARK" {
			continue
		}
		tab, err := decodeTable(ev.Object)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
		printTable(w, tab, t.Mapping, printOpts{wide: o.Output == "wide", namespace: o.AllNamespaces && namespaced(t.Mapping), header: header})
		w.Flush()
		header = false
	}
}
