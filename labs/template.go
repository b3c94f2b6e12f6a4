package labs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Commands and the string fields of checks and faults may hold {{…}}
// expressions, expanded against the live cluster when they are used:
//
//	{{cluster}}             the cluster's name
//	{{nodeIP "node2"}}      a node's underlay address
//	{{podCIDR "node2"}}     a node's pod block (Node.spec.podCIDR)
//	{{podIP "b"}}           a pod's IP; "ns/name", or a label selector "app=web"
//	{{pod "app=web"}}       the name of a running pod the selector matches
//	{{podNode "b"}}         the node a pod runs on
//	{{serviceIP "web"}}     a Service's cluster IP ("ns/name" or "name")
var templateFuncs = []string{"cluster", "nodeIP", "podCIDR", "podIP", "pod", "podNode", "serviceIP"}

// resolver answers the template functions.
type resolver interface {
	cluster() string
	nodeIP(node string) (string, error)
	podCIDR(node string) (string, error)
	pod(ref string) (*corev1.Pod, error)
	serviceIP(ref string) (string, error)
}

func funcMap(r resolver) template.FuncMap {
	return template.FuncMap{
		"cluster":   r.cluster,
		"nodeIP":    r.nodeIP,
		"podCIDR":   r.podCIDR,
		"serviceIP": r.serviceIP,
		"podIP": func(ref string) (string, error) {
			p, err := r.pod(ref)
			if err != nil {
				return "", err
			}
			return p.Status.PodIP, nil
		},
		"pod": func(ref string) (string, error) {
			p, err := r.pod(ref)
			if err != nil {
				return "", err
			}
			return p.Name, nil
		},
		"podNode": func(ref string) (string, error) {
			p, err := r.pod(ref)
			if err != nil {
				return "", err
			}
			return p.Spec.NodeName, nil
		},
	}
}

// parseTemplate checks s's expressions without running them.
func parseTemplate(s string) error {
	_, err := template.New("").Funcs(funcMap(placeholders{})).Option("missingkey=error").Parse(s)
	return err
}

// expand runs s's expressions against r.
func expand(s string, r resolver) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	t, err := template.New("").Funcs(funcMap(r)).Option("missingkey=error").Parse(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		// The function's own error, without template's position prefix.
		msg := err.Error()
		if i := strings.Index(msg, "error calling "); i >= 0 {
			if _, after, ok := strings.Cut(msg[i:], ": "); ok {
				msg = after
			}
		}
		return "", fmt.Errorf("expand %q: %s", s, msg)
	}
	return b.String(), nil
}

// placeholders stands in for a cluster that is not there: it renders
// every expression as a readable <placeholder>.
type placeholders struct{}

func (placeholders) cluster() string                      { return "<cluster>" }
func (placeholders) nodeIP(node string) (string, error)   { return "<" + node + "'s IP>", nil }
func (placeholders) podCIDR(node string) (string, error)  { return "<" + node + "'s pod block>", nil }
func (placeholders) serviceIP(ref string) (string, error) { return "<cluster IP of " + ref + ">", nil }
func (placeholders) pod(ref string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	p.Name = "<pod " + ref + ">"
	p.Status.PodIP = "<IP of " + ref + ">"
	p.Spec.NodeName = "<node of " + ref + ">"
	return p, nil
}

// live answers from the cluster, waiting up to wait for a pod to run.
type live struct {
	ctx  context.Context
	env  *Env
	wait time.Duration
}

func (l live) cluster() string { return l.env.Cluster.Name }

func (l live) nodeIP(node string) (string, error) {
	n, err := l.env.node(node)
	if err != nil {
		return "", err
	}
	return n.IP.String(), nil
}

func (l live) podCIDR(node string) (string, error) {
	n, err := l.env.Net.Kube.CoreV1().Nodes().Get(l.ctx, node, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("node %s: %w", node, err)
	}
	if n.Spec.PodCIDR == "" {
		return "", fmt.Errorf("node %s has no pod block yet", node)
	}
	return n.Spec.PodCIDR, nil
}

func (l live) serviceIP(ref string) (string, error) {
	ns, name := splitRef(ref)
	s, err := l.env.Net.Kube.CoreV1().Services(ns).Get(l.ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	return s.Spec.ClusterIP, nil
}

// pod finds a running pod with an IP by name or label selector, waiting
// for one up to l.wait.
func (l live) pod(ref string) (*corev1.Pod, error) {
	ns, what := splitRef(ref)
	deadline := time.Now().Add(l.wait)
	for {
		p, err := l.findPod(ns, what)
		if err == nil || time.Now().After(deadline) {
			return p, err
		}
		select {
		case <-l.ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (l live) findPod(ns, what string) (*corev1.Pod, error) {
	pods := l.env.Net.Kube.CoreV1().Pods(ns)
	if !strings.ContainsAny(what, "=!") {
		p, err := pods.Get(l.ctx, what, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no pod %s/%s", ns, what)
		}
		if err != nil {
			return nil, err
		}
		if p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning {
			return nil, fmt.Errorf("pod %s/%s is %s, not running with an IP yet", ns, what, p.Status.Phase)
		}
		return p, nil
	}
	list, err := pods.List(l.ctx, metav1.ListOptions{LabelSelector: what})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no running pod in %s matches %s", ns, what)
}
