package labs

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/util/jsonpath"

	"github.com/klab-dev/klab/provision"
)

var idRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,14}[a-z0-9]$`)

// validator collects the problems of one lab, each with line and path.
type validator struct {
	lab  *Lab
	errs Errors
}

func (v *validator) errorf(line int, path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.lab.Source, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// validate checks a decoded lab and fills in defaults.
func (l *Lab) validate() error {
	v := &validator{lab: l}
	if !idRE.MatchString(l.ID) {
		v.errorf(l.Line, "id", "%q is not a lab id: use 2 to 16 lowercase letters, digits and '-', starting with a letter (it names the cluster lab-ID)", l.ID)
	}
	if l.Number < 0 {
		v.errorf(l.Line, "number", "must be 1 or more (or left out)")
	}
	v.text(l.Title, l.Line, "title", true)
	v.text(l.Summary, l.Line, "summary", false)
	v.cluster(&l.Cluster)
	for i, c := range l.Cleanup {
		v.command(c, fmt.Sprintf("cleanup[%d]", i))
	}
	if len(l.Steps) == 0 {
		v.errorf(l.Line, "steps", "a lab needs at least one step")
	}
	for i := range l.Steps {
		v.step(&l.Steps[i], fmt.Sprintf("steps[%d]", i))
	}
	return v.errs.err()
}

// text checks that a text has both languages; short texts are one line.
func (v *validator) text(t Text, parent int, path string, short bool) {
	line := t.Line
	if line == 0 {
		line = parent
	}
	for _, lang := range Languages {
		s := t.In(lang)
		if lang == "zh" {
			s = t.Zh
		}
		switch {
		case strings.TrimSpace(s) == "":
			v.errorf(line, path+"."+lang, "missing: every text needs English (en) and Chinese (zh)")
		case short && strings.Contains(strings.TrimSpace(s), "\n"):
			v.errorf(line, path+"."+lang, "must be one line")
		}
	}
}

func (v *validator) cluster(c *ClusterSpec) {
	line := c.Line
	if line == 0 {
		line = v.lab.Line
	}
	if c.Masters == 0 {
		c.Masters = 1
	}
	if c.Subnets == 0 {
		c.Subnets = 1
	}
	if c.Mode == "" {
		c.Mode = "bgp"
	}
	if c.Provider == "" {
		c.Provider = "any"
	}
	plan := provision.PlanOptions{Name: "lab", Masters: c.Masters, Workers: c.Nodes, Subnets: c.Subnets}
	if err := plan.Validate(); err != nil {
		// The plan's message names up's flags; say it in the lab's terms.
		msg := strings.NewReplacer("--masters", "masters:", "--nodes", "nodes:", "--subnets", "subnets:").Replace(err.Error())
		v.errorf(line, "cluster", "%s", msg)
	}
	switch c.Mode {
	case "bgp", "vxlan", "ipip":
	default:
		v.errorf(line, "cluster.mode", "%q: use bgp, vxlan or ipip", c.Mode)
	}
	if c.CrossSubnet && c.Mode == "bgp" {
		v.errorf(line, "cluster.crossSubnet", "applies to vxlan and ipip: bgp never encapsulates")
	}
	if c.Subnets > 1 && c.Mode == "bgp" {
		v.errorf(line, "cluster.mode", "a cluster with 2 subnets cannot start in bgp mode (its routes would cross the router, which knows no pod routes): start in ipip or vxlan, and let a step try bgp")
	}
	switch c.Provider {
	case "any", "netns", "libvirt":
	default:
		v.errorf(line, "cluster.provider", "%q: use any, netns or libvirt", c.Provider)
	}
}

// nodes are the machine names a cluster of the lab's shape has.
func (v *validator) nodes() []string {
	c := v.lab.Cluster
	p, err := provision.Plan(provision.PlanOptions{Name: "lab", Masters: c.Masters, Workers: c.Nodes, Subnets: c.Subnets})
	if err != nil {
		return nil
	}
	return p.NodeNames()
}

func (v *validator) step(s *Step, p string) {
	v.text(s.Title, s.Line, p+".title", true)
	v.text(s.Text, s.Line, p+".text", false)
	if len(s.Commands) == 0 && len(s.Checks) == 0 {
		v.errorf(s.Line, p, "a step needs commands or checks (or both)")
	}
	for i := range s.Faults {
		v.fault(&s.Faults[i], fmt.Sprintf("%s.faults[%d]", p, i))
	}
	for i, c := range s.Commands {
		v.command(c, fmt.Sprintf("%s.commands[%d]", p, i))
	}
	for i := range s.Checks {
		v.check(&s.Checks[i], fmt.Sprintf("%s.checks[%d]", p, i))
	}
}

func (v *validator) command(c Command, p string) {
	if strings.TrimSpace(c.Run) == "" {
		v.errorf(c.Line, p, "empty command")
	}
	v.template(c.Line, p, c.Run)
}

func (v *validator) check(c *Check, p string) {
	v.text(c.Title, c.Line, p+".title", true)
	v.text(c.Hint, c.Line, p+".hint", true)
	kinds := c.kinds()
	switch len(kinds) {
	case 0:
		v.errorf(c.Line, p, "says nothing to check: give one of %s", strings.Join(checkKinds, ", "))
	case 1:
		kinds[0].validate(v, p+"."+kinds[0].kind(), c.Line)
	default:
		var names []string
		for _, k := range kinds {
			names = append(names, k.kind())
		}
		v.errorf(c.Line, p, "has %s: one check is one kind (make several checks)", strings.Join(names, " and "))
	}
}

func (v *validator) fault(f *Fault, p string) {
	kinds := f.kinds()
	switch len(kinds) {
	case 0:
		v.errorf(f.Line, p, "says nothing to break: give one of %s", strings.Join(faultKinds, ", "))
	case 1:
		kinds[0].validate(v, p+"."+kinds[0].kind(), f.Line)
	default:
		v.errorf(f.Line, p, "has several kinds: one fault is one kind (make several faults)")
	}
	switch f.Until {
	case "":
		f.Until = "step"
	case "step", "end":
	default:
		v.errorf(f.Line, p+".until", "%q: use step (restore when the step is done) or end (when the lab ends)", f.Until)
	}
}

// Helpers for the kinds' validate methods.

func (v *validator) template(line int, p, s string) {
	if err := parseTemplate(s); err != nil {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); strings.HasPrefix(msg, "template: ") && i >= 0 {
			msg = msg[i+2:]
		}
		v.errorf(line, p, "bad {{…}} expression: %s (functions: %s)", msg, strings.Join(templateFuncs, ", "))
	}
}

func (v *validator) required(line int, p, val string) bool {
	if strings.TrimSpace(val) == "" {
		v.errorf(line, p, "missing")
		return false
	}
	return true
}

// node checks a node name against the lab's cluster shape.
func (v *validator) node(line int, p, name string) {
	if !v.required(line, p, name) {
		return
	}
	nodes := v.nodes()
	for _, n := range nodes {
		if n == name {
			return
		}
	}
	v.errorf(line, p, "no node %q in a cluster of %s (its nodes: %s)", name, v.lab.Cluster.Shape(), strings.Join(nodes, ", "))
}

// regexp checks a regular expression, which may hold {{…}} expressions
// (their values are matched as they are, dots and all).
func (v *validator) regexp(line int, p, re string) {
	if re == "" {
		return
	}
	if strings.Contains(re, "{{") {
		v.template(line, p, re)
		if out, err := expand(re, placeholders{}); err == nil {
			re = out
		}
	}
	if _, err := regexp.Compile(re); err != nil {
		v.errorf(line, p, "bad regular expression: %v", err)
	}
}

func (v *validator) glob(line int, p, pattern string) {
	if _, err := path.Match(pattern, ""); err != nil {
		v.errorf(line, p, "bad pattern %q: %v", pattern, err)
	}
}

func (v *validator) jsonPath(line int, p, expr string) {
	if err := jsonpath.New("").Parse(jsonPathTemplate(expr)); err != nil {
		v.errorf(line, p, "bad JSONPath %q: %v (write it like .status.phase or .spec.containers[0].image)", expr, err)
	}
}

// prefix checks a CIDR, unless it is a {{…}} expression known only later.
func (v *validator) prefix(line int, p, s string) {
	if strings.Contains(s, "{{") {
		v.template(line, p, s)
		return
	}
	if _, err := netip.ParsePrefix(s); err != nil {
		v.errorf(line, p, "%q is not a CIDR such as 10.42.2.0/24", s)
	}
}

// addr checks an IP address, unless it is a {{…}} expression.
func (v *validator) addr(line int, p, s string) {
	if strings.Contains(s, "{{") {
		v.template(line, p, s)
		return
	}
	if _, err := netip.ParseAddr(s); err != nil {
		v.errorf(line, p, "%q is not an IP address", s)
	}
}

func (v *validator) port(line int, p string, port int) {
	if port < 1 || port > 65535 {
		v.errorf(line, p, "%s is not a port (1-65535)", strconv.Itoa(port))
	}
}

// oneOf checks that exactly one of the named fields is set.
func (v *validator) oneOf(line int, p string, fields map[string]string) {
	var set, names []string
	for name, val := range fields {
		names = append(names, name)
		if val != "" {
			set = append(set, name)
		}
	}
	if len(set) != 1 {
		slices.Sort(names)
		v.errorf(line, p, "give exactly one of %s", strings.Join(names, ", "))
	}
}
