package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/client/resources"
)

// kubeFlags are the flags every object command shares.
type kubeFlags struct {
	kubeconfig string
	namespace  string
}

func (f *kubeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to use (default: the cluster's admin kubeconfig, see 'klab kubeconfig --path')")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "", "namespace (default: default)")
}

// ns is the namespace to use.
func (f *kubeFlags) ns() string {
	if f.namespace == "" {
		return "default"
	}
	return f.namespace
}

// restConfig loads the selected cluster's (or --kubeconfig's) configuration.
func (a *app) restConfig(f *kubeFlags) (*rest.Config, error) {
	cfg, err := client.Config(a.cluster, f.kubeconfig)
	if err != nil {
		return nil, err
	}
	client.RouteKlog(a.log)
	return cfg, nil
}

// objects connects to the selected cluster for an object command.
func (a *app) objects(f *kubeFlags) (*resources.Client, error) {
	cfg, err := client.Config(a.cluster, f.kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.WarningHandler = rest.NewWarningWriter(a.stderr, rest.WarningWriterOptions{})
	client.RouteKlog(a.log)
	return resources.New(cfg, f.namespace)
}

// onTargets is the RunE of a command on named objects: it connects,
// resolves the arguments to objects and runs do on them.
func (a *app) onTargets(f *kubeFlags, do func(ctx context.Context, c *resources.Client, ts []resources.Target) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := a.objects(f)
		if err != nil {
			return err
		}
		ts, err := c.Targets(args)
		if err != nil {
			return err
		}
		return do(cmd.Context(), c, ts)
	}
}

// manifestCmd is a command that reads manifests from -f and hands them to do.
func (a *app) manifestCmd(cmd *cobra.Command, do func(c *resources.Client, ctx context.Context, out io.Writer, ms []resources.Manifest, ns string) error) *cobra.Command {
	var f kubeFlags
	var files []string
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ms, err := resources.ReadManifests(files, cmd.InOrStdin())
		if err != nil {
			return err
		}
		c, err := a.objects(&f)
		if err != nil {
			return err
		}
		return do(c, cmd.Context(), a.stdout, ms, f.namespace)
	}
	f.add(cmd)
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin")
	cmd.MarkFlagRequired("filename")
	return cmd
}

// addResourceCmds adds get, describe, apply, create, delete, scale and
// rollout: kubectl's everyday verbs, against the selected cluster.
func (a *app) addResourceCmds(root *cobra.Command) {
	root.AddGroup(&cobra.Group{ID: "objects", Title: "Objects in the cluster (like kubectl):"})
	for _, c := range []*cobra.Command{a.getCmd(), a.describeCmd(), a.applyCmd(), a.createCmd(), a.deleteCmd(), a.scaleCmd(), a.rolloutCmd()} {
		c.GroupID = "objects"
		root.AddCommand(c)
	}
}

func (a *app) getCmd() *cobra.Command {
	var f kubeFlags
	var o resources.GetOptions
	cmd := &cobra.Command{
		Use:   "get TYPE[,TYPE…] [NAME…] | TYPE/NAME…",
		Short: "List objects as the API server's tables (the same columns kubectl prints)",
		Long: `List objects of one or more types. Types are resolved through the server's
discovery: plural, singular and short names all work (po, no, deploy, rs, svc,
ep, ns, cm, netpol, ev, cn for clusternetworks). The columns are the server's
own (it answers as=Table), so klab and kubectl print the same.`,
		Example: `  klab get nodes
  klab get pods -A -o wide
  klab get deploy,rs -l app=web
  klab get pod/web-7d9c-x2x4z -o yaml
  klab get pods --watch                 # then changes as they happen`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.onTargets(&f, func(ctx context.Context, c *resources.Client, ts []resources.Target) error {
			o.Namespace = f.namespace
			return c.Get(ctx, a.stdout, a.stderr, ts, o)
		}),
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "objects of every namespace")
	fl.StringVarP(&o.Selector, "selector", "l", "", "label selector (app=web, tier in (a,b), !canary)")
	fl.StringVar(&o.FieldSelector, "field-selector", "", "field selector (spec.nodeName=node1, status.phase=Running)")
	fl.StringVarP(&o.Output, "output", "o", "", "output: wide, json, yaml or name (default: the table)")
	fl.BoolVarP(&o.Watch, "watch", "w", false, "after listing, print each change")
	return cmd
}

func (a *app) describeCmd() *cobra.Command {
	var f kubeFlags
	var selector string
	cmd := &cobra.Command{
		Use:   "describe TYPE [NAME…] | TYPE/NAME…",
		Short: "Show objects in detail, with their events",
		Example: `  klab describe pod web-7d9c-x2x4z      # why is it Pending? see its events
  klab describe node node1              # taints, conditions, pods, allocated requests
  klab describe deploy/web`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.onTargets(&f, func(ctx context.Context, c *resources.Client, ts []resources.Target) error {
			return c.Describe(ctx, a.stdout, ts, f.namespace, selector)
		}),
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "describe the objects this label selector matches")
	return cmd
}

func (a *app) applyCmd() *cobra.Command {
	return a.manifestCmd(&cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests (three-way merge, like kubectl apply)",
		Long: `Create the objects of the manifests that do not exist and update the others.
An update merges three versions, as kubectl's client-side apply does: what was
applied last time (kept in the kubectl.kubernetes.io/last-applied-configuration
annotation), what is applied now, and what the server has, so fields that
controllers or other tools set are kept and fields removed from the file are
removed from the object. Documents in a file are separated by "---".`,
		Example: `  klab apply -f web.yaml
  klab apply -f manifests/
  cat web.yaml | klab apply -f -`,
	}, (*resources.Client).Apply)
}

func (a *app) createCmd() *cobra.Command {
	return a.manifestCmd(&cobra.Command{
		Use:   "create -f FILE|DIR|-",
		Short: "Create objects from manifests (fails for those that exist)",
		Example: `  klab create -f web.yaml
  klab create -f - <<EOF
  apiVersion: v1
  kind: Namespace
  metadata: {name: lab}
  EOF`,
	}, (*resources.Client).Create)
}

func (a *app) deleteCmd() *cobra.Command {
	var f kubeFlags
	var files []string
	o := resources.DeleteOptions{GracePeriod: -1}
	cmd := &cobra.Command{
		Use:   "delete TYPE NAME… | TYPE/NAME… | -f FILE",
		Short: "Delete objects (their dependents go too, unless --cascade orphan)",
		Long: `Delete objects by name, by label selector, or as described in manifests.
With --cascade background (the default) the object goes at once and the
garbage collector then deletes what it owns (a Deployment's ReplicaSets, their
pods); foreground deletes the dependents first; orphan keeps them, ownerless.`,
		Example: `  klab delete pod web-7d9c-x2x4z         # its ReplicaSet makes a new one
  klab delete deploy/web
  klab delete rs web-7d9c --cascade orphan  # the pods stay
  klab delete -f web.yaml
  klab delete pods -l app=web`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.objects(&f)
			if err != nil {
				return err
			}
			if len(files) > 0 {
				if len(args) > 0 {
					return errors.New("give either -f FILE or TYPE NAME, not both")
				}
				ms, err := resources.ReadManifests(files, cmd.InOrStdin())
				if err != nil {
					return err
				}
				return c.DeleteManifests(cmd.Context(), a.stdout, ms, f.namespace, o)
			}
			ts, err := c.Targets(args)
			if err != nil {
				return err
			}
			return c.Delete(cmd.Context(), a.stdout, ts, f.namespace, o)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringSliceVarP(&files, "filename", "f", nil, "delete the objects of these manifests")
	fl.StringVarP(&o.Selector, "selector", "l", "", "delete the objects this label selector matches")
	fl.BoolVar(&o.All, "all", false, "delete every object of the type in the namespace")
	fl.StringVar(&o.Cascade, "cascade", "background", "what happens to dependents: background, foreground or orphan")
	fl.Int64Var(&o.GracePeriod, "grace-period", -1, "seconds a pod gets to stop (-1: its own terminationGracePeriodSeconds; 0: at once)")
	return cmd
}

func (a *app) scaleCmd() *cobra.Command {
	var f kubeFlags
	var replicas int32
	cmd := &cobra.Command{
		Use:   "scale TYPE/NAME --replicas N",
		Short: "Set the replicas of a Deployment or ReplicaSet",
		Example: `  klab scale deploy/web --replicas 5
  klab scale deploy web --replicas 0`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.onTargets(&f, func(ctx context.Context, c *resources.Client, ts []resources.Target) error {
			return c.Scale(ctx, a.stdout, ts, f.namespace, replicas)
		}),
	}
	f.add(cmd)
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new number of replicas")
	cmd.MarkFlagRequired("replicas")
	return cmd
}

func (a *app) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow, list and undo a Deployment's rollouts",
	}
	var sf kubeFlags
	var watch bool
	var timeout time.Duration
	status := &cobra.Command{
		Use:   "status deploy/NAME",
		Short: "Wait until the rollout is done, printing its progress",
		Example: `  klab rollout status deploy/web
  klab rollout status deploy/web --timeout 2m`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.onTargets(&sf, func(ctx context.Context, c *resources.Client, ts []resources.Target) error {
			return c.RolloutStatus(ctx, a.stdout, ts, sf.namespace, watch, timeout)
		}),
	}
	sf.add(status)
	status.Flags().BoolVarP(&watch, "watch", "w", true, "keep watching until the rollout is done")
	status.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: never)")

	var hf kubeFlags
	var revision int64
	history := &cobra.Command{
		Use:   "history deploy/NAME",
		Short: "List the revisions (one per ReplicaSet), or show one",
		Example: `  klab rollout history deploy/web
  klab rollout history deploy/web --revision 2`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.onTargets(&hf, func(ctx context.Context, c *resources.Client, ts []resources.Target) error {
			return c.RolloutHistory(ctx, a.stdout, ts, hf.namespace, revision)
		}),
	}
	hf.add(history)
	history.Flags().Int64Var(&revision, "revision", 0, "show the pod template of this revision")

	var uf kubeFlags
	var to int64
	undo := &cobra.Command{
		Use:   "undo deploy/NAME",
		Short: "Go back to an earlier revision's pod template (it rolls out as a new revision)",
		Example: `  klab rollout undo deploy/web
  klab rollout undo deploy/web --to-revision 1`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.onTargets(&uf, func(ctx context.Context, c *resources.Client, ts []resources.Target) error {
			return c.RolloutUndo(ctx, a.stdout, ts, uf.namespace, to)
		}),
	}
	uf.add(undo)
	undo.Flags().Int64Var(&to, "to-revision", 0, "revision to go back to (0: the one before the current)")
	cmd.AddCommand(status, history, undo)
	return cmd
}
