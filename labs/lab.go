// Package labs is klab's teaching labs: a lab file format (YAML, English
// and Chinese side by side), its validation with file:line and field path
// in every error, the checks that assert on the real state of a cluster
// and its network, the faults a lab may inject on purpose (and that are
// always restored), and the runner behind "klab lab".
//
// The bundled labs are the *.yaml files of this directory, embedded in
// the binary; users may add their own files or directories. docs/labs.md
// describes the format.
package labs

import (
	"fmt"
	"strings"
	"time"
)

// Lab is one lab: what it teaches, the cluster it needs, and its steps.
type Lab struct {
	// ID names the lab on the command line and its cluster ("lab-ID").
	ID string `yaml:"id"`
	// Number orders the bundled curriculum (1, 2, …); 0 for other labs.
	Number  int  `yaml:"number"`
	Title   Text `yaml:"title"`
	Summary Text `yaml:"summary"`
	// Cluster is the shape of cluster the lab needs.
	Cluster ClusterSpec `yaml:"cluster"`
	// Cleanup commands run before the first step, so that a lab can run
	// again on a cluster where it ran before; their failures are ignored.
	Cleanup []Command `yaml:"cleanup"`
	Steps   []Step    `yaml:"steps"`

	// Source is where the lab was read from: "embedded:NAME" or a path.
	Source string `yaml:"-"`
	Line   int    `yaml:"-"`
}

// Text is something said in both of the labs' languages.
type Text struct {
	En   string `yaml:"en"`
	Zh   string `yaml:"zh"`
	Line int    `yaml:"-"`
}

// Languages are the languages every text of a lab has.
var Languages = []string{"en", "zh"}

// In returns the text in lang ("en" or "zh"), or the English when the
// other is empty.
func (t Text) In(lang string) string {
	if lang == "zh" && t.Zh != "" {
		return t.Zh
	}
	return t.En
}

// ClusterSpec is the cluster a lab runs on.
type ClusterSpec struct {
	// Masters is the number of masters: 1 (the default), 3 or 5.
	Masters int `yaml:"masters"`
	// Nodes is the number of worker nodes.
	Nodes int `yaml:"nodes"`
	// Subnets is 1 (the default) or 2 (half the workers behind a router).
	Subnets int `yaml:"subnets"`
	// Mode is the pod network's mode when the lab starts: bgp (the
	// default), vxlan or ipip; CrossSubnet encapsulates only between subnets.
	Mode        string `yaml:"mode"`
	CrossSubnet bool   `yaml:"crossSubnet"`
	// Provider is where the lab can run: any (the default), netns or libvirt.
	Provider string `yaml:"provider"`
	Line     int    `yaml:"-"`
}

// Shape describes the cluster in words: "1 master, 2 nodes, 1 subnet, bgp".
func (c ClusterSpec) Shape() string {
	mode := c.Mode
	if c.CrossSubnet {
		mode += " cross-subnet"
	}
	return fmt.Sprintf("%s, %s, %s, %s", plural(c.Masters, "master"), plural(c.Nodes, "node"), plural(c.Subnets, "subnet"), mode)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Step is one step of a lab: an explanation, the faults it injects, the
// commands the student runs and the checks that say the step is done.
type Step struct {
	Title Text `yaml:"title"`
	// Text is the explanation, in markdown.
	Text Text `yaml:"text"`
	// Faults break something on purpose when the step begins; they are
	// restored when the step is done (or at the end of the lab).
	Faults   []Fault   `yaml:"faults"`
	Commands []Command `yaml:"commands"`
	Checks   []Check   `yaml:"checks"`
	Line     int       `yaml:"-"`
}

// Command is a shell command the student runs (and "--auto" runs). In a
// lab file it is a string, or a mapping with run and the fields below.
type Command struct {
	// Run is the command line, run by sh on the host with klab on the
	// PATH and KLAB_CLUSTER set; {{…}} expressions are expanded first.
	Run string `yaml:"run"`
	// Fails says the command is expected to exit non-zero (it shows a
	// failure on purpose).
	Fails bool `yaml:"fails"`
	// Timeout bounds the command when the runner runs it (default 2m).
	Timeout Duration `yaml:"timeout"`
	Line    int      `yaml:"-"`
}

// Duration is a time.Duration written as "20s" in lab files.
type Duration time.Duration

// Or returns d, or def when d is zero.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Check asserts one thing about the cluster. Exactly one of the kinds
// (nodeReady, pod, …, script) is set.
type Check struct {
	// Title says what holds when the check passes; Hint what to look at
	// when it does not.
	Title Text `yaml:"title"`
	Hint  Text `yaml:"hint"`
	// Timeout is how long the check is retried until it holds (default 30s).
	Timeout Duration `yaml:"timeout"`

	NodeReady *NodeReadyCheck `yaml:"nodeReady"`
	Pod       *PodCheck       `yaml:"pod"`
	Object    *ObjectCheck    `yaml:"object"`
	Network   *NetworkCheck   `yaml:"network"`
	Route     *RouteCheck     `yaml:"route"`
	Device    *DeviceCheck    `yaml:"device"`
	FDB       *FDBCheck       `yaml:"fdb"`
	BGP       *BGPCheck       `yaml:"bgp"`
	Trace     *TraceCheck     `yaml:"trace"`
	Reach     *ReachCheck     `yaml:"reach"`
	Output    *OutputCheck    `yaml:"output"`
	Etcd      *EtcdCheck      `yaml:"etcd"`
	Event     *EventCheck     `yaml:"event"`
	Script    *ScriptCheck    `yaml:"script"`

	Line int `yaml:"-"`
}

// Fault is something a step breaks on purpose. Exactly one kind is set.
type Fault struct {
	StopNode      *StopNodeFault      `yaml:"stopNode"`
	StopComponent *StopComponentFault `yaml:"stopComponent"`
	DeleteRoute   *DeleteRouteFault   `yaml:"deleteRoute"`
	DropUDP       *DropUDPFault       `yaml:"dropUDP"`
	MTU           *MTUFault           `yaml:"mtu"`
	// Until is when the runner restores it: "step" (the default: when the
	// step is done) or "end" (when the lab ends).
	Until string `yaml:"until"`
	Line  int    `yaml:"-"`
}

// Position is a place in a lab file, for messages.
func (l *Lab) Position(line int) string {
	src := strings.TrimPrefix(l.Source, "embedded:")
	if line == 0 {
		return src
	}
	return fmt.Sprintf("%s:%d", src, line)
}

// ClusterName is the name of the cluster "klab lab start" makes for the
// lab when the user names none.
func (l *Lab) ClusterName() string { return "lab-" + l.ID }
