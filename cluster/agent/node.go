package agent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/internal/version"
)

// Labels and taints klab puts on nodes.
const (
	LabelSubnet       = "network.klab.dev/subnet"
	LabelControlPlane = "node-role.kubernetes.io/control-plane"
)

// nodeObject is the Node the agent registers: identity, capacity,
// addresses, and on a master the control-plane taint.
func nodeObject(c *Config, capacity corev1.ResourceList) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: c.NodeName,
			Labels: map[string]string{
				"kubernetes.io/hostname": c.NodeName,
				"kubernetes.io/os":       runtime.GOOS,
				"kubernetes.io/arch":     runtime.GOARCH,
			},
		},
	}
	if c.Subnet != "" {
		n.Labels[LabelSubnet] = c.Subnet
	}
	if c.Master {
		n.Labels[LabelControlPlane] = ""
		n.Spec.Taints = []corev1.Taint{{Key: LabelControlPlane, Effect: corev1.TaintEffectNoSchedule}}
	}
	n.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: c.NodeIP},
			{Type: corev1.NodeHostName, Address: c.NodeName},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: listenPort(c.Listen)}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "klab-" + version.String(),
			KubeProxyVersion:        "klab-" + version.String(),
			ContainerRuntimeVersion: "klab://" + version.String(),
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
			KernelVersion:           kernelVersion(),
			OSImage:                 osImage(),
			MachineID:               c.Cluster + "/" + c.NodeName,
		},
	}
	return n
}

func listenPort(addr string) int32 {
	i := strings.LastIndexByte(addr, ':')
	p, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		return 10250
	}
	return int32(p)
}

// Capacity is what a node offers: the configured CPU and memory, or the
// machine's, and the pod limit.
func Capacity(c *Config) (corev1.ResourceList, error) {
	cpu := c.CPU
	if cpu == "" {
		cpu = strconv.Itoa(runtime.NumCPU())
	}
	mem := c.Memory
	if mem == "" {
		kb, err := memTotalKB()
		if err != nil {
			return nil, err
		}
		mem = strconv.FormatInt(kb, 10) + "Ki"
	}
	q := func(s string) (resource.Quantity, error) { return resource.ParseQuantity(s) }
	cq, err := q(cpu)
	if err != nil {
		return nil, fmt.Errorf("cpu %q: %w", cpu, err)
	}
	mq, err := q(mem)
	if err != nil {
		return nil, fmt.Errorf("memory %q: %w", mem, err)
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:    cq,
		corev1.ResourceMemory: mq,
		corev1.ResourcePods:   *resource.NewQuantity(int64(c.MaxPods), resource.DecimalSI),
	}, nil
}

func memTotalKB() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

func kernelVersion() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func osImage() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// readyConditions are the node's conditions while the agent runs. The
// node is Ready once the pod network is configured (the CNI
// configuration list written from the node's pod CIDR).
func readyConditions(now metav1.Time, prev []corev1.NodeCondition, netReady bool) []corev1.NodeCondition {
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "klab agent is posting ready status"}
	if !netReady {
		ready = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady",
			Message: "container runtime network not ready: no CNI configuration yet (waiting for the node's pod CIDR from the controller manager)"}
	}
	want := []corev1.NodeCondition{
		ready,
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "klab agent has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "klab agent has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "klab agent has sufficient PID available"},
	}
	for i := range want {
		want[i].LastHeartbeatTime = now
		want[i].LastTransitionTime = now
		for _, p := range prev {
			if p.Type == want[i].Type && p.Status == want[i].Status {
				want[i].LastTransitionTime = p.LastTransitionTime
			}
		}
	}
	return want
}

// register creates the Node, or brings an existing one up to date, and
// returns it.
func register(ctx context.Context, cs kubernetes.Interface, c *Config, capacity corev1.ResourceList, log *slog.Logger) (*corev1.Node, error) {
	want := nodeObject(c, capacity)
	now := metav1.Now()
	for {
		cur, err := cs.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			want.Status.Conditions = readyConditions(now, nil, false)
			created, err := cs.CoreV1().Nodes().Create(ctx, want, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("register node %s: %w", c.NodeName, err)
			}
			// Status is a subresource: write it separately.
			created.Status = want.Status
			if created, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return nil, fmt.Errorf("node %s status: %w", c.NodeName, err)
			}
			log.Info("registered node", "node", c.NodeName)
			return created, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get node %s: %w", c.NodeName, err)
		}
		n := cur.DeepCopy()
		for k, v := range want.Labels {
			n.Labels = setDefault(n.Labels, k, v)
		}
		if c.Master && !hasTaint(n.Spec.Taints, LabelControlPlane) {
			n.Spec.Taints = append(n.Spec.Taints, want.Spec.Taints...)
		}
		if n, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); apierrors.IsConflict(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("update node %s: %w", c.NodeName, err)
		}
		n.Status.Capacity, n.Status.Allocatable = want.Status.Capacity, want.Status.Allocatable
		n.Status.Addresses, n.Status.NodeInfo, n.Status.DaemonEndpoints = want.Status.Addresses, want.Status.NodeInfo, want.Status.DaemonEndpoints
		n.Status.Conditions = readyConditions(now, n.Status.Conditions, false)
		n, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("node %s status: %w", c.NodeName, err)
		}
		log.Info("node registered again", "node", c.NodeName)
		return n, nil
	}
}

func setDefault(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	if _, ok := m[k]; !ok {
		m[k] = v
	}
	return m
}

func hasTaint(ts []corev1.Taint, key string) bool {
	for _, t := range ts {
		if t.Key == key {
			return true
		}
	}
	return false
}

// heartbeat renews the node's Lease every c.LeaseRenew and rewrites its
// Ready condition every c.StatusInterval, until ctx ends.
func heartbeat(ctx context.Context, cs kubernetes.Interface, c *Config, netReady *atomic.Bool, readyChanged <-chan struct{}, log *slog.Logger) {
	leases := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	renewLease := func() error {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, c.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: c.NodeName, Namespace: corev1.NamespaceNodeLease},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To(c.NodeName),
					LeaseDurationSeconds: ptr.To(int32(c.LeaseDuration.Seconds())),
					AcquireTime:          &now,
					RenewTime:            &now,
				},
			}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l.Spec.RenewTime = &now
		l.Spec.HolderIdentity = ptr.To(c.NodeName)
		l.Spec.LeaseDurationSeconds = ptr.To(int32(c.LeaseDuration.Seconds()))
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	}
	writeStatus := func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = readyConditions(metav1.Now(), n.Status.Conditions, netReady.Load())
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	}
	lease := time.NewTicker(c.LeaseRenew.Duration)
	defer lease.Stop()
	status := time.NewTicker(c.StatusInterval.Duration)
	defer status.Stop()
	if err := renewLease(); err != nil && ctx.Err() == nil {
		log.Warn("renew lease", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
			if err := renewLease(); err != nil && ctx.Err() == nil {
				log.Warn("renew lease", "err", err)
			}
		case <-readyChanged:
			if err := writeStatus(); err != nil && ctx.Err() == nil {
				log.Warn("node status", "err", err)
			}
		case <-status.C:
			if err := writeStatus(); err != nil && ctx.Err() == nil {
				log.Warn("node status", "err", err)
			}
		}
	}
}
