package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/controllers"
	"github.com/klab-dev/klab/cluster/scheduler"
)

// addWorkloads adds the scheduler and the controller manager (components)
// and the commands that work with the cluster's objects (get, apply …).
func (a *app) addWorkloads(root *cobra.Command) {
	for _, c := range []*cobra.Command{a.schedulerCmd(), a.controllerManagerCmd()} {
		c.GroupID = "components"
		root.AddCommand(c)
	}
	a.addResourceCmds(root)
}

// leaderFlags adds the leader election flags, named as upstream's.
func leaderFlags(f *pflag.FlagSet, le *client.LeaderElection) {
	f.BoolVar(&le.Enabled, "leader-elect", le.Enabled, "take a Lease before working, so that only one replica (one per master) is active")
	f.DurationVar(&le.LeaseDuration, "leader-elect-lease-duration", le.LeaseDuration, "how long a leader's claim lasts without renewal; a standby takes over after it")
	f.DurationVar(&le.RenewDeadline, "leader-elect-renew-deadline", le.RenewDeadline, "how long the leader keeps failing to renew before it steps down")
	f.DurationVar(&le.RetryPeriod, "leader-elect-retry-period", le.RetryPeriod, "how often candidates try to take the lease")
	f.StringVar(&le.Namespace, "leader-elect-resource-namespace", le.Namespace, "namespace of the Lease")
	f.StringVar(&le.Name, "leader-elect-resource-name", le.Name, "name of the Lease")
}

// componentClient loads the kubeconfig and returns a clientset for a
// long-running component.
func (a *app) componentClient(kubeconfig, component string) (*rest.Config, *kubernetes.Clientset, error) {
	cfg, err := client.Config(a.cluster, kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	cfg = client.ForComponent(cfg, component)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: client for %s: %w", component, cfg.Host, err)
	}
	client.RouteKlog(a.log)
	return cfg, cs, nil
}

func (a *app) schedulerCmd() *cobra.Command {
	var kubeconfig string
	o := scheduler.Options{}
	le := client.DefaultLeaderElection("klab-scheduler")
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Bind pending pods to nodes (runs on masters)",
		Long: `Bind every pod that has no node (and whose schedulerName is default-scheduler
or klab) to one, through the pods/binding subresource.

Filters: the node is Ready and schedulable, matches the pod's nodeSelector and
required node affinity, has no NoSchedule/NoExecute taint the pod does not
tolerate (the master carries node-role.kubernetes.io/control-plane), has room
for the pod's cpu and memory requests, and holds fewer than --max-pods pods.
Scores: least allocated, plus twice the spread of the pod's ReplicaSet.
A pod that fits nowhere gets a FailedScheduling event such as
"0/3 nodes are available: 1 node(s) had untolerated taint {…}, 2 Insufficient cpu."
and is tried again after a backoff, or as soon as a node changes.

With --leader-elect (the default) replicas on several masters share the Lease
kube-system/klab-scheduler and only its holder schedules.`,
		Example: `  klab scheduler --kubeconfig /etc/klab/scheduler.kubeconfig
  klab scheduler --leader-elect=false -v        # one replica, log every binding
  klab get events -A | grep -i schedul          # what it decided`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, cs, err := a.componentClient(kubeconfig, "scheduler")
			if err != nil {
				return err
			}
			o.Log = a.log
			s, err := scheduler.New(cs, o)
			if err != nil {
				return err
			}
			return client.RunLeader(cmd.Context(), cs, le, a.log, s.Run)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default: the cluster's admin kubeconfig)")
	f.StringSliceVar(&o.SchedulerNames, "scheduler-name", []string{scheduler.DefaultSchedulerName, "klab"}, "schedulerName values of the pods to schedule")
	f.Int64Var(&o.MaxPodsPerNode, "max-pods", 110, "at most this many pods per node")
	f.DurationVar(&o.InitialBackoff, "pod-initial-backoff", time.Second, "first wait before an unschedulable pod is tried again")
	f.DurationVar(&o.MaxBackoff, "pod-max-backoff", 10*time.Second, "longest wait before an unschedulable pod is tried again")
	leaderFlags(f, &le)
	return cmd
}

func (a *app) controllerManagerCmd() *cobra.Command {
	var kubeconfig string
	o := controllers.Options{}
	le := client.DefaultLeaderElection("klab-controller-manager")
	cmd := &cobra.Command{
		Use:   "controller-manager",
		Short: "Run the control loops: ReplicaSets, Deployments, node lifecycle, endpoints, GC, pod CIDRs (runs on masters)",
		Long: `Run the controllers that make the cluster do what its objects ask:

  replicaset        create and delete pods to match each ReplicaSet's replicas
  deployment        roll Deployments out through ReplicaSets (RollingUpdate with
                    maxSurge/maxUnavailable, Recreate), keep revisions for undo
  nodelifecycle     a node whose Lease is not renewed for --node-monitor-grace-period
                    goes Unknown and gets the node.kubernetes.io/unreachable taint;
                    after --pod-eviction-timeout (or the pod's own toleration) its
                    pods are deleted and their ReplicaSets recreate them elsewhere
  endpoints         Endpoints of every Service with a selector, from its ready pods
  garbagecollector  delete objects whose owners are gone (ownerReferences)
  podcidr           give every node a /24 of --cluster-cidr in spec.podCIDR

The lab timings (20s grace, 30s eviction) are shorter than upstream's (40s, 300s)
so that self-healing is something you can watch. With --leader-elect (the
default) replicas on several masters share the Lease
kube-system/klab-controller-manager.`,
		Example: `  klab controller-manager --kubeconfig /etc/klab/controller-manager.kubeconfig
  klab controller-manager --node-monitor-grace-period 10s --pod-eviction-timeout 15s
  klab controller-manager --controllers replicaset,deployment --leader-elect=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			cfg, cs, err := a.componentClient(kubeconfig, "controller-manager")
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("controller-manager: dynamic client: %w", err)
			}
			o.Log = a.log
			return client.RunLeader(cmd.Context(), cs, le, a.log, func(ctx context.Context) error {
				return controllers.Run(ctx, cs, dyn, o)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server (default: the cluster's admin kubeconfig)")
	f.StringSliceVar(&o.Controllers, "controllers", controllers.All, "controllers to run")
	f.IntVar(&o.Workers, "concurrent-syncs", 4, "workers per controller")
	f.DurationVar(&o.NodeMonitorPeriod, "node-monitor-period", 2*time.Second, "how often node heartbeats are checked")
	f.DurationVar(&o.NodeMonitorGracePeriod, "node-monitor-grace-period", 20*time.Second, "a node without a heartbeat for this long goes Unknown and is tainted unreachable")
	f.DurationVar(&o.PodEvictionTimeout, "pod-eviction-timeout", 30*time.Second, "pods without a toleration of their own leave a tainted node after this long")
	f.StringVar(&o.ClusterCIDR, "cluster-cidr", "10.42.0.0/16", "the pod network, cut into one block per node")
	f.IntVar(&o.NodeCIDRMaskSize, "node-cidr-mask-size", 24, "prefix length of each node's pod CIDR")
	leaderFlags(f, &le)
	return cmd
}
