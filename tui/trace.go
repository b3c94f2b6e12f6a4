package tui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// TraceRequest asks for a trace from one pod to another.
type TraceRequest struct {
	Src   string // namespace/name
	Dst   string // namespace/name
	Proto string // icmp (default), tcp, udp
	Lang  string // en or zh
}

// TraceResult is a trace in the JSON shape `klab trace -o json` prints
// (netmodes/trace.Result): {"src":…, "dst":…, "mode":…, "delivered":bool,
// "hops":[…], "lost_at":…, "reason":…} and the fields added to it.
type TraceResult struct {
	Src            Endpoint `json:"src"`
	Dst            Endpoint `json:"dst"`
	Mode           string   `json:"mode"`
	Implementation string   `json:"implementation,omitempty"`
	Proto          string   `json:"proto,omitempty"`
	Delivered      bool     `json:"delivered"`
	Hops           []Hop    `json:"hops"`
	LostAt         *LostAt  `json:"lost_at"`
	Reason         FlexText `json:"reason"`
	Cause          string   `json:"cause,omitempty"`
	MissingRoute   string   `json:"missing_route,omitempty"`
	TUS            int64    `json:"t_us"`
	Overhead       int      `json:"overhead_bytes"`
	Notes          []string `json:"notes,omitempty"`
}

// LostAt is where a lost packet was last seen.
type LostAt struct {
	Hop       int    `json:"hop"`
	Node      string `json:"node"`
	Interface string `json:"interface,omitempty"`
}

// Endpoint is one end of a trace: a pod, a node or a Service.
type Endpoint struct {
	Kind string
	Name string
	IP   string
	Node string
}

func (e Endpoint) String() string {
	var extra []string
	if e.IP != "" && e.IP != e.Name {
		extra = append(extra, e.IP)
	}
	if e.Node != "" && e.Node != e.Name {
		extra = append(extra, "on "+e.Node)
	}
	if len(extra) == 0 {
		return e.Name
	}
	return e.Name + " (" + strings.Join(extra, " ") + ")"
}

// UnmarshalJSON takes a string or an object with pod/name, namespace, ip
// and node.
func (e *Endpoint) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &e.Name)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("trace endpoint: %w", err)
	}
	get := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := m[k]; ok {
				var s FlexText
				if json.Unmarshal(v, &s) == nil && s != "" {
					return string(s)
				}
			}
		}
		return ""
	}
	e.Kind, e.Name, e.IP, e.Node = get("kind"), get("pod", "name", "node"), get("ip", "address"), get("node")
	if ns := get("namespace"); ns != "" && e.Name != "" && !strings.Contains(e.Name, "/") {
		e.Name = ns + "/" + e.Name
	}
	if e.Name == "" {
		e.Name = e.IP
	}
	return nil
}

// Hop is one capture point on the path and the frame seen there.
type Hop struct {
	Index int    `json:"index"`
	Node  string `json:"node"` // a node, "router" or "underlay"
	// Pod is namespace/name when the interface is a pod's eth0.
	Pod         string   `json:"pod,omitempty"`
	Interface   string   `json:"interface"`
	Netns       string   `json:"netns,omitempty"`
	Kind        string   `json:"kind,omitempty"` // pod, veth, vxlan, tunnel, nic, bridge-port, router
	Direction   string   `json:"direction"`
	Seen        bool     `json:"seen"`
	Stray       bool     `json:"stray,omitempty"`
	TUS         int64    `json:"t_us"`
	Length      int      `json:"length,omitempty"`
	Layers      []Layer  `json:"layers"`
	Encap       string   `json:"encap,omitempty"`
	Change      FlexText `json:"change,omitempty"`
	Explain     FlexText `json:"explain,omitempty"`
	Route       FlexText `json:"route,omitempty"`
	RouteOrigin string   `json:"route_origin,omitempty"`
	FDB         FlexText `json:"fdb,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// Where is the hop in a few words: "node1 · eth0 out".
func (h Hop) Where() string {
	s := h.Node + " · " + h.Interface
	if h.Pod != "" {
		s = h.Pod + " · " + h.Interface
	}
	if h.Direction != "" {
		s += " " + h.Direction
	}
	return s
}

// Layer is one decoded header: its type and its fields in order.
type Layer struct {
	Type   string
	Fields []Field
}

// Field is one field of a header.
type Field struct {
	Key   string
	Value string
}

// Get returns a field's value.
func (l Layer) Get(key string) string {
	for _, f := range l.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// UnmarshalJSON reads {"type": …, fields…}, keeping the fields' order.
func (l *Layer) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("trace layer: not an object")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("trace layer: %w", err)
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("trace layer %s: %w", k, err)
		}
		var s FlexText
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("trace layer %s: %w", k, err)
		}
		if k == "type" {
			l.Type = string(s)
			continue
		}
		l.Fields = append(l.Fields, Field{Key: k, Value: string(s)})
	}
	return nil
}

// FlexText is a JSON value read as text: strings as they are, numbers and
// booleans as written, arrays joined with "; ", objects as compact JSON.
type FlexText string

func (f *FlexText) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexText(s)
	case b[0] == '[':
		var items []FlexText
		if err := json.Unmarshal(b, &items); err != nil {
			return err
		}
		parts := make([]string, 0, len(items))
		for _, it := range items {
			if it != "" {
				parts = append(parts, string(it))
			}
		}
		*f = FlexText(strings.Join(parts, "; "))
	case b[0] == '{':
		var out bytes.Buffer
		if err := json.Compact(&out, b); err != nil {
			return err
		}
		*f = FlexText(out.String())
	default:
		if _, err := strconv.ParseFloat(string(b), 64); err != nil && string(b) != "true" && string(b) != "false" {
			return fmt.Errorf("unexpected JSON value %s", b)
		}
		*f = FlexText(b)
	}
	return nil
}

// String returns the text.
func (f FlexText) String() string { return string(f) }
