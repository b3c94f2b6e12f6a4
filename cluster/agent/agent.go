package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/klab-dev/klab/cluster/api"
	"github.com/klab-dev/klab/cluster/client"
	"github.com/klab-dev/klab/cluster/cni"
	"github.com/klab-dev/klab/cluster/runtime"
	"github.com/klab-dev/klab/cluster/runtime/image"
)

// Agent is a running node agent.
type Agent struct {
	cfg      *Config
	cs       kubernetes.Interface
	log      *slog.Logger
	netReady atomic.Bool
}

// Run runs the agent until ctx ends. binary is the klab executable (for
// "klab pause" and the container shims).
func Run(ctx context.Context, cfg *Config, binary string, log *slog.Logger) error {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	rc.UserAgent = "klab-agent/" + cfg.NodeName
	// The kubelet's defaults: a burst of pod starts writes many statuses.
	rc.QPS, rc.Burst = 50, 100
	client.RouteKlog(log)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	a := &Agent{cfg: cfg, cs: cs, log: log}
	capacity, err := Capacity(cfg)
	if err != nil {
		return err
	}
	var node *corev1.Node
	if err := retry(ctx, log, "register the node", func() error {
		node, err = register(ctx, cs, cfg, capacity, log)
		return err
	}); err != nil {
		return err
	}
	readyChanged := make(chan struct{}, 1)
	go heartbeat(ctx, cs, cfg, &a.netReady, readyChanged, log)

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "klab-agent", Host: cfg.NodeName})

	rt, err := runtime.New(runtime.Config{
		Node:         cfg.NodeName,
		Binary:       binary,
		CgroupParent: cfg.CgroupParent,
		Images:       &image.Store{Root: image.DefaultRoot, Node: cfg.NodeName, KlabBinary: binary},
	})
	if err != nil {
		return err
	}
	pm := &podManager{
		cfg: cfg, cs: cs, rt: rt, recorder: recorder, log: log,
		net:        cni.New(cni.Options{ConfDir: cfg.CNIConfDir}),
		volumeRoot: filepath.Join(cfg.StateDir, "volumes"),
		tokens:     newTokenManager(cs, cfg.CAFile, log),
		workers:    map[types.UID]*podWorker{},
	}
	go pm.tokens.run(ctx)
	srv := &server{pods: pm, log: log}
	go func() {
		if err := srv.serve(ctx, cfg); err != nil {
			log.Error("agent API", "err", err)
		}
	}()

	cidr, err := a.waitPodCIDR(ctx, node)
	if err != nil {
		return err
	}
	if err := installPlugin(binary, filepath.Join(cfg.CNIBinDir, "klab")); err != nil {
		return fmt.Errorf("install the CNI plugin: %w", err)
	}
	client, err := api.NewForConfig(rc)
	if err != nil {
		return err
	}
	nw, err := startNetwork(ctx, cfg, cs, client, cidr, log)
	if err != nil {
		return err
	}
	path, err := nw.writeCNIConf()
	if err != nil {
		return err
	}
	srv.network.Store(nw)
	startServicePlane(ctx, cfg, cs, srv, log)
	a.netReady.Store(true)
	readyChanged <- struct{}{}
	log.Info("network ready", "podCIDR", cidr, "conflist", path)

	if err := pm.recover(ctx); err != nil {
		return fmt.Errorf("recover pods: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
	}))
	podInf := factory.Core().V1().Pods()
	informer := podInf.Informer()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return ctx.Err()
	}
	lister := podInf.Lister()
	pm.startRecovered(ctx, func(uid types.UID) *corev1.Pod {
		pods, _ := lister.List(labels.Everything())
		for _, p := range pods {
			if p.UID == uid {
				return p
			}
		}
		return nil
	})
	informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { pm.update(ctx, o.(*corev1.Pod).UID, o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { pm.update(ctx, o.(*corev1.Pod).UID, o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				pm.update(ctx, p.UID, nil)
			}
		},
	})
	log.Info("agent running", "node", cfg.NodeName)
	<-ctx.Done()
	factory.Shutdown()
	pm.wg.Wait()
	return nil
}

// waitPodCIDR waits, watching the node, until the controller manager
// has given it its block of pod addresses.
func (a *Agent) waitPodCIDR(ctx context.Context, node *corev1.Node) (netip.Prefix, error) {
	logged := false
	for {
		if node != nil && node.Spec.PodCIDR != "" {
			p, err := netip.ParsePrefix(node.Spec.PodCIDR)
			if err != nil {
				return p, fmt.Errorf("node %s has a bad podCIDR %q: %w", a.cfg.NodeName, node.Spec.PodCIDR, err)
			}
			return p, nil
		}
		if !logged {
			a.log.Info("waiting for the controller manager to give the node a pod CIDR")
			logged = true
		}
		rv := ""
		if node != nil {
			rv = node.ResourceVersion
		}
		w, err := a.cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", a.cfg.NodeName).String(),
			ResourceVersion: rv,
		})
		if err != nil {
			if ctx.Err() != nil {
				return netip.Prefix{}, ctx.Err()
			}
			a.log.Warn("watch node", "err", err)
			if node, err = a.cs.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err != nil {
				node = nil
			}
			continue
		}
		for ev := range w.ResultChan() {
			if n, ok := ev.Object.(*corev1.Node); ok {
				node = n
				if n.Spec.PodCIDR != "" {
					break
				}
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return netip.Prefix{}, ctx.Err()
		}
	}
}

// installPlugin makes the CNI plugin, the klab binary itself, available
// as path (as calico-node's install step copies calico into /opt/cni/bin).
func installPlugin(binary, path string) error {
	if target, err := os.Readlink(path); err == nil && target == binary {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(binary, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// retry calls fn until it succeeds or ctx ends, backing off to 5s.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		log.Warn("retrying", "what", what, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}
