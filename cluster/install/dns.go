package install

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/agent"
	"github.com/klab-dev/klab/cluster/runtime/image"
	"github.com/klab-dev/klab/internal/progress"
)

// The cluster DNS add-on: the Deployment kube-system/klab-dns running
// "klab dns" from the built-in klab image, behind the Service
// kube-system/kube-dns at the address every pod's resolv.conf names.
const (
	dnsNamespace = metav1.NamespaceSystem
	dnsName      = "klab-dns"
	dnsService   = "kube-dns"
	dnsReplicas  = 2
	dnsHealth    = 8080
)

var dnsLabels = map[string]string{"k8s-app": "kube-dns"}

// dnsObjects are the DNS add-on's Deployment and Service.
func dnsObjects() (*appsv1.Deployment, *corev1.Service) {
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(dnsHealth)}},
			PeriodSeconds: period, TimeoutSeconds: 1, FailureThreshold: 3}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: dnsNamespace, Name: dnsName, Labels: dnsLabels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](dnsReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: dnsLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: dnsLabels},
				Spec: corev1.PodSpec{
					// Not itself: a DNS server resolving through its own
					// Service would ask itself.
					DNSPolicy: corev1.DNSDefault,
					// As CoreDNS: masters too, so that a cluster without
					// workers has DNS.
					Tolerations: []corev1.Toleration{{Key: agent.LabelControlPlane, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
					Containers: []corev1.Container{{
						Name:    "dns",
						Image:   image.Klab,
						Command: []string{"/klab", "dns"},
						Args:    []string{"--listen", ":53", "--health", fmt.Sprintf(":%d", dnsHealth), "--domain", agent.ClusterDomain},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "health", ContainerPort: dnsHealth, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: probe("/ready", 1),
						LivenessProbe:  probe("/health", 10),
					}},
				},
			},
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: dnsNamespace, Name: dnsService, Labels: dnsLabels},
		Spec: corev1.ServiceSpec{
			Selector:  dnsLabels,
			ClusterIP: agent.ClusterDNS,
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("dns-tcp")},
			},
		},
	}
	return d, s
}

// deployDNS creates the DNS add-on (keeping what is already there) and,
// with wait, waits until its Service has a ready endpoint: the server
// answers, which also means it reached the API server through the
// kubernetes Service. Without wait (a pod network that cannot route
// between subnets yet) it only creates it.
func deployDNS(ctx context.Context, cs kubernetes.Interface, pr *progress.Printer, wait bool, timeout time.Duration) error {
	d, s := dnsObjects()
	return pr.Do(fmt.Sprintf("dns: %s/%s %s, %d replicas of klab dns", dnsNamespace, dnsService, agent.ClusterDNS, dnsReplicas), func(step *progress.Step) error {
		if _, err := cs.CoreV1().Services(dnsNamespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create the Service %s/%s: %w", dnsNamespace, dnsService, err)
		}
		if _, err := cs.AppsV1().Deployments(dnsNamespace).Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create the Deployment %s/%s: %w", dnsNamespace, dnsName, err)
		}
		if !wait {
			step.Rename(fmt.Sprintf("dns: %s/%s %s created; its pods need a network that routes between the subnets", dnsNamespace, dnsService, agent.ClusterDNS))
			return nil
		}
		ready, err := waitEndpoints(ctx, cs, dnsNamespace, dnsService, timeout)
		if err != nil {
			return err
		}
		step.Rename(fmt.Sprintf("dns: %s/%s %s, %d of %d klab dns pods ready", dnsNamespace, dnsService, agent.ClusterDNS, ready, dnsReplicas))
		return nil
	})
}

// waitEndpoints polls until the Service has a ready address, and returns
// how many it has then.
func waitEndpoints(ctx context.Context, cs kubernetes.Interface, ns, name string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		ep, err := cs.CoreV1().Endpoints(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			n := 0
			for _, ss := range ep.Subsets {
				n += len(ss.Addresses)
			}
			if n > 0 {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("no %s/%s pod became ready within %s (see klab get pods -n %s -o wide and klab logs -n %s -l k8s-app=kube-dns)",
				ns, name, timeout, ns, ns)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}
