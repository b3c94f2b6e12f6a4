package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/proxy"
	"github.com/klab-dev/klab/internal/output"
	"github.com/klab-dev/klab/netmodes/policy"
	"github.com/klab-dev/klab/provision"
)

// agentReport asks node's agent for one of its reports (a method of
// agent.Client) and prints it as a table, JSON or YAML.
func agentReport[R any](a *app, ctx context.Context, format, node string, get func(*agent.Client, context.Context, string) (R, error), table func(*tabwriter.Writer, R, bool)) error {
	if err := output.Check(format); err != nil {
		return err
	}
	nc, c, err := a.netClient()
	if err != nil {
		return err
	}
	ip, err := memberIP(c, node)
	if err != nil {
		return err
	}
	rep, err := get(nc.Agents, ctx, ip)
	if err != nil {
		return fmt.Errorf("%s: %w", node, err)
	}
	return output.Print(a.stdout, format, rep, func(tw *tabwriter.Writer, wide bool) { table(tw, rep, wide) })
}

// memberIP is the underlay address of a cluster member, where its agent
// listens.
func memberIP(c *provision.Cluster, node string) (string, error) {
	var names []string
	for _, n := range c.Members() {
		if n.Name == node {
			return n.IP.String(), nil
		}
		names = append(names, n.Name)
	}
	return "", fmt.Errorf("no node %q in cluster %q: its nodes are %s", node, c.Name, strings.Join(names, ", "))
}

func (a *app) netServicesCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "services NODE",
		Short: "Show how a node's proxy sends Service traffic: cluster IPs, node ports, endpoints, nftables rules",
		Long: `Show what the proxy in NODE's agent (kube-proxy's job) programmed: for every Service
port its cluster IP and node port, its ready endpoints and how many connections
went to each, read back with the counters from the node's nftables table
"ip klab-proxy". With -o wide, every chain and rule of the table as nft prints
it: DNAT to an endpoint picked by "numgen random mod N", ClientIP affinity
sets, masquerade for hairpin and node-port traffic.`,
		Example: `  klab net services node1
  klab net services node1 -o wide    # with the nftables chains and rules
  klab net services node1 -o json`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			return agentReport(a, cmd.Context(), format, args[0], (*agent.Client).Services, printServices)
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

func printServices(tw *tabwriter.Writer, rep *proxy.Report, wide bool) {
	fmt.Fprintf(tw, "node %s (%s)\ttable %s\tsynced %s ago\n\n", rep.Node, rep.NodeIP, rep.Table, since(rep.Synced))
	fmt.Fprintln(tw, "SERVICE\tCLUSTER-IP\tNODE-PORT\tAFFINITY\tCONNECTIONS\tENDPOINTS")
	for _, s := range rep.Services {
		np, aff := "-", "-"
		if s.NodePort != 0 {
			np = fmt.Sprint(s.NodePort)
		}
		if s.Affinity > 0 {
			aff = "ClientIP " + s.Affinity.String()
		}
		conns := fmt.Sprint(s.Connections)
		if s.NodeConnections > 0 {
			conns += fmt.Sprintf(" (+%d node port)", s.NodeConnections)
		}
		eps := fmt.Sprint(len(s.Endpoints))
		if len(s.Endpoints) == 0 {
			eps = fmt.Sprintf("none: %d rejected", s.Rejected)
		}
		fmt.Fprintf(tw, "%s\t%s:%d/%s\t%s\t%s\t%s\t%s\n", s.Name(), s.ClusterIP, s.Port, s.Protocol, np, aff, conns, eps)
		var total uint64
		for _, e := range s.Endpoints {
			total += e.Connections
		}
		for _, e := range s.Endpoints {
			share := ""
			if total > 0 {
				share = fmt.Sprintf(" (%d%%)", e.Connections*100/total)
			}
			what := e.Pod
			if e.Node != "" {
				what += " on " + e.Node
			}
			if e.AffinityHits > 0 {
				share += fmt.Sprintf(", %d by affinity", e.AffinityHits)
			}
			fmt.Fprintf(tw, "  → %s\t\t\t\t%d%s\t%s\n", e.Endpoint, e.Connections, share, what)
		}
	}
	if !wide {
		return
	}
	for _, c := range rep.Chains {
		hook := ""
		if c.Hook != "" {
			hook = " (" + c.Hook + ")"
		}
		printChain(tw, "chain "+c.Name+hook, c.Rules)
	}
}

func (a *app) netPolicyCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "policy NODE",
		Short: "Show the NetworkPolicies a node enforces, per pod, with what each rule allowed and dropped",
		Long: `Show the network policy NODE's agent enforces (felix's ACLs in Calico): every
policy that isolates a pod on the node, and for each such pod the chain its
traffic goes through on the pod's host veth — "to-cali…" for what the pod
receives (ingress), "from-cali…" for what it sends (egress) — with how many
packets each rule let through and how many were dropped because no rule of
the pod's policies allowed them. Counters come from the node's nftables table
"ip klab-policy"; -o wide adds its chains as nft prints them.`,
		Example: `  klab net policy node1
  klab net policy node1 -o wide    # with the nftables chains
  klab net policy node1 -o json    # what klab trace reads`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNodes,
		RunE: func(cmd *cobra.Command, args []string) error {
			return agentReport(a, cmd.Context(), format, args[0], (*agent.Client).Policy, printPolicy)
		},
	}
	outputFlag(cmd, &format)
	return cmd
}

func printPolicy(tw *tabwriter.Writer, rep *policy.Report, wide bool) {
	fmt.Fprintf(tw, "node %s\ttable %s\tsynced %s ago\n\n", rep.Node, rep.Table, since(rep.Synced))
	if len(rep.Policies) == 0 {
		fmt.Fprintln(tw, "No policy selects a pod on this node: its pods accept and send everything.")
		return
	}
	dash := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ",")
	}
	fmt.Fprintln(tw, "POLICY\tINGRESS OF\tEGRESS OF\tALLOWED\tDROPPED")
	for _, p := range rep.Policies {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", p.Policy, dash(p.Ingress), dash(p.Egress), p.Allowed, p.Dropped)
	}
	fmt.Fprintln(tw, "\nPOD\tDIRECTION\tRULE\tMATCH\tPACKETS")
	for _, ep := range rep.Endpoints {
		for _, side := range []struct {
			d  policy.Direction
			st *policy.SideStatus
		}{{policy.Ingress, ep.Ingress}, {policy.Egress, ep.Egress}} {
			if side.st == nil {
				continue
			}
			fmt.Fprintf(tw, "%s (%s, %s)\t%s\t\t\t\n", ep.Pod, ep.IP, ep.Veth, side.d)
			for _, r := range side.st.Rules {
				fmt.Fprintf(tw, "\t\t%s #%d\t%s\t%d\n", r.Policy, r.Rule, matchOf(r.Text), r.Packets)
			}
			fmt.Fprintf(tw, "\t\tdrop (%s)\teverything else\t%d\n", strings.Join(side.st.Policies, ", "), side.st.Dropped)
		}
	}
	if !wide {
		return
	}
	for _, c := range rep.Chains {
		printChain(tw, "chain "+c.Name, c.Rules)
	}
}

// printChain prints a chain's rules as nft does, each with its comment;
// without tabs, so that the table's columns do not stretch to fit them.
func printChain(tw *tabwriter.Writer, title string, rules []proxy.Rule) {
	fmt.Fprintf(tw, "\n%s\n", title)
	for _, r := range rules {
		fmt.Fprintf(tw, "    %s\n", r.Text)
		if r.Comment != "" {
			fmt.Fprintf(tw, "        # %s\n", r.Comment)
		}
	}
}

// matchOf is what a policy rule matches, without its counter and verdict.
func matchOf(text string) string {
	if i := strings.Index(text, "counter packets"); i >= 0 {
		text = text[:i]
	}
	if text = strings.TrimSpace(text); text == "" {
		return "anything"
	}
	return text
}
