package install

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/klab-dev/klab/provision"
)

// BenchOptions configure BenchUp.
type BenchOptions struct {
	Runs     int
	Workers  int
	Provider provision.Provider
	Binary   string
	// Progress, when set, is told about each run.
	Progress func(run int)
}

// BenchResult holds the median times of each variant.
type BenchResult struct {
	Runs    int     `json:"runs"`
	Nodes   int     `json:"nodes"`
	Results []Timed `json:"results"`
}

// Timed is one variant's median up and down times.
type Timed struct {
	Name  string        `json:"name"`
	Up    time.Duration `json:"upNs"`
	Down  time.Duration `json:"downNs"`
	Ratio float64       `json:"ratioToFloor"` // (up+down) / the floor's
}

// Total is up plus down.
func (t Timed) Total() time.Duration { return t.Up + t.Down }

// BenchUp measures, in one run and alternating: the floor (the same
// namespaces, veths, bridge and addresses made by a minimal script of ip
// commands); klab's provider making and deleting the machines; and a full
// "klab up" and "klab down". It reports medians and ratios to the floor.
func BenchUp(ctx context.Context, o BenchOptions) (*BenchResult, error) {
	plan := provision.PlanOptions{Name: "klab-bench", Provider: o.Provider.Name(), Masters: 1, Workers: o.Workers, Subnets: 1}
	var floorUp, floorDown, provUp, provDown, fullUp, fullDown []time.Duration
	for run := range o.Runs {
		if o.Progress != nil {
			o.Progress(run + 1)
		}
		start := time.Now()
		c, err := Up(ctx, Options{Plan: plan, Provider: o.Provider, Binary: o.Binary})
		if err != nil {
			return nil, err
		}
		fullUp = append(fullUp, time.Since(start))
		start = time.Now()
		if err := deleteCluster(ctx, o.Provider, c); err != nil {
			return nil, err
		}
		fullDown = append(fullDown, time.Since(start))

		up, down, err := benchProvider(ctx, o.Provider, plan)
		if err != nil {
			return nil, err
		}
		provUp, provDown = append(provUp, up), append(provDown, down)

		up, down, err = benchFloor(ctx, c)
		if err != nil {
			return nil, err
		}
		floorUp, floorDown = append(floorUp, up), append(floorDown, down)
	}
	floor := Timed{Name: "floor: ip commands", Up: median(floorUp), Down: median(floorDown), Ratio: 1}
	r := &BenchResult{Runs: o.Runs, Nodes: 1 + o.Workers, Results: []Timed{
		floor,
		{Name: "klab machines (provider)", Up: median(provUp), Down: median(provDown)},
		{Name: "klab up + down (full)", Up: median(fullUp), Down: median(fullDown)},
	}}
	for i := 1; i < len(r.Results); i++ {
		r.Results[i].Ratio = float64(r.Results[i].Total()) / float64(floor.Total())
	}
	return r, nil
}

func benchProvider(ctx context.Context, p provision.Provider, plan provision.PlanOptions) (up, down time.Duration, err error) {
	c, err := provision.Reserve(plan.Name, func(slot int) (*provision.Cluster, error) {
		o := plan
		o.Slot = slot
		return provision.Plan(o)
	}, hostUsesRange)
	if err != nil {
		return 0, 0, err
	}
	defer provision.Remove(c.Name)
	start := time.Now()
	if err := p.CreateNetwork(ctx, c); err != nil {
		p.Delete(ctx, c)
		return 0, 0, err
	}
	if err := p.CreateNodes(ctx, c); err != nil {
		p.Delete(ctx, c)
		return 0, 0, err
	}
	up = time.Since(start)
	start = time.Now()
	if err := p.Delete(ctx, c); err != nil {
		return 0, 0, err
	}
	return up, time.Since(start), nil
}

// FloorScripts are the shell scripts that make and remove, with plain ip
// commands, the network plumbing klab makes for c: an underlay namespace
// with a bridge, one namespace per machine on a veth, and the host's link.
func FloorScripts(c *provision.Cluster) (up, down string) {
	u := "klab-floor-underlay"
	var b, d strings.Builder
	b.WriteString("set -e\n")
	fmt.Fprintf(&b, "ip netns add %s\nip -n %s link set lo up\n", u, u)
	for _, s := range c.Subnets {
		fmt.Fprintf(&b, "ip -n %s link add br-%s type bridge\nip -n %s link set br-%s up\n", u, s.Name, u, s.Name)
	}
	fmt.Fprintf(&b, "ip link add klab-floor type veth peer name host netns %s\n", u)
	fmt.Fprintf(&b, "ip addr add %s dev klab-floor\nip link set klab-floor up\n", c.HostIP)
	fmt.Fprintf(&b, "ip -n %s link set host master br-a up\n", u)
	fmt.Fprintf(&d, "ip link del klab-floor\nip netns del %s\n", u)
	for _, n := range c.Members() {
		ns := "klab-floor-" + n.Name
		s := c.Subnets[n.Subnet]
		fmt.Fprintf(&b, "ip netns add %s\nip -n %s link set lo up\n", ns, ns)
		fmt.Fprintf(&b, "ip -n %s link add name %s type veth peer name eth0 netns %s\n", u, n.Name, ns)
		fmt.Fprintf(&b, "ip -n %s link set dev %s master br-%s up\n", u, n.Name, s.Name)
		fmt.Fprintf(&b, "ip -n %s addr add %s/%d dev eth0\nip -n %s link set eth0 up\n", ns, n.IP, s.CIDR.Bits(), ns)
		fmt.Fprintf(&d, "ip netns del %s\n", ns)
	}
	return b.String(), d.String()
}

func benchFloor(ctx context.Context, c *provision.Cluster) (up, down time.Duration, err error) {
	upScript, downScript := FloorScripts(c)
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", upScript).CombinedOutput(); err != nil {
		exec.Command("sh", "-c", downScript).Run()
		return 0, 0, fmt.Errorf("floor script: %v: %s", err, out)
	}
	up = time.Since(start)
	start = time.Now()
	if out, err := exec.CommandContext(ctx, "sh", "-c", downScript).CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("floor script: %v: %s", err, out)
	}
	return up, time.Since(start), nil
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
