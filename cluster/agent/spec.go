package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/klab-dev/klab/cluster/runtime"
)

// Cluster DNS, as "klab up" deploys it (the Service 10.96.0.10).
const (
	ClusterDNS    = "10.96.0.10"
	ClusterDomain = "cluster.local"
)

// sandboxConfig maps a pod onto the runtime's sandbox.
func sandboxConfig(pod *corev1.Pod, volumeDir string) (runtime.SandboxConfig, error) {
	sc := runtime.SandboxConfig{
		ID:        string(pod.UID),
		Name:      pod.Name,
		Namespace: pod.Namespace,
		UID:       string(pod.UID),
		Hostname:  pod.Spec.Hostname,
		SharePID:  pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace,
		Labels:    map[string]string{"pod": pod.Namespace + "/" + pod.Name},
	}
	if pod.Spec.DNSPolicy == corev1.DNSClusterFirst || pod.Spec.DNSPolicy == "" {
		sc.DNS = runtime.DNSConfig{
			Nameservers: []string{ClusterDNS},
			Searches:    []string{pod.Namespace + ".svc." + ClusterDomain, "svc." + ClusterDomain, ClusterDomain},
			Options:     []string{"ndots:5"},
		}
	}
	if c := pod.Spec.DNSConfig; c != nil {
		sc.DNS.Nameservers = append(sc.DNS.Nameservers, c.Nameservers...)
		sc.DNS.Searches = append(sc.DNS.Searches, c.Searches...)
		for _, o := range c.Options {
			if o.Value != nil {
				sc.DNS.Options = append(sc.DNS.Options, o.Name+":"+*o.Value)
			} else {
				sc.DNS.Options = append(sc.DNS.Options, o.Name)
			}
		}
	}
	for _, a := range pod.Spec.HostAliases {
		sc.HostAliases = append(sc.HostAliases, runtime.HostAlias{IP: a.IP, Hostnames: a.Hostnames})
	}
	for i, v := range pod.Spec.Volumes {
		switch {
		case v.EmptyDir != nil:
			sc.Volumes = append(sc.Volumes, runtime.Volume{Name: v.Name, EmptyDir: true})
		case v.HostPath != nil:
			t := ""
			if v.HostPath.Type != nil {
				t = string(*v.HostPath.Type)
			}
			sc.Volumes = append(sc.Volumes, runtime.Volume{Name: v.Name, HostPath: &runtime.HostPathVolume{Path: v.HostPath.Path, Type: t}})
		case v.ConfigMap != nil, v.Secret != nil:
			// Materialised by the agent into a directory of the pod's.
			sc.Volumes = append(sc.Volumes, runtime.Volume{Name: v.Name, HostPath: &runtime.HostPathVolume{Path: filepath.Join(volumeDir, v.Name), Type: "Directory"}})
		default:
			return sc, fmt.Errorf("spec.volumes[%d] %q: klab supports emptyDir, hostPath, configMap and secret volumes", i, v.Name)
		}
	}
	return sc, nil
}

// containerConfig maps one container of a pod onto the runtime's
// container, resolving environment references through the API.
func containerConfig(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, podIP string, attempt int) (runtime.ContainerConfig, error) {
	cc := runtime.ContainerConfig{
		Name:       c.Name,
		Image:      c.Image,
		Command:    c.Command,
		Args:       c.Args,
		WorkingDir: c.WorkingDir,
		TTY:        c.TTY,
		Attempt:    attempt,
		Labels:     map[string]string{"pod": pod.Namespace + "/" + pod.Name, "container": c.Name},
	}
	env, err := envFor(ctx, cs, pod, c, podIP)
	if err != nil {
		return cc, err
	}
	cc.Env = env
	if u := userFor(pod, c); u != nil {
		cc.User = u
	}
	lim := c.Resources.Limits
	if q, ok := lim[corev1.ResourceMemory]; ok {
		cc.Resources.MemoryLimit = q.Value()
	}
	if q, ok := lim[corev1.ResourceCPU]; ok {
		cc.Resources.CPULimitMilli = q.MilliValue()
	}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		cc.Resources.CPURequestMilli = q.MilliValue()
	}
	for _, m := range c.VolumeMounts {
		cc.Mounts = append(cc.Mounts, runtime.Mount{Volume: m.Name, Path: m.MountPath, SubPath: m.SubPath, ReadOnly: m.ReadOnly})
	}
	return cc, nil
}

func userFor(pod *corev1.Pod, c *corev1.Container) *runtime.User {
	var uid, gid *int64
	var groups []int64
	if p := pod.Spec.SecurityContext; p != nil {
		uid, gid, groups = p.RunAsUser, p.RunAsGroup, p.SupplementalGroups
	}
	if s := c.SecurityContext; s != nil {
		if s.RunAsUser != nil {
			uid = s.RunAsUser
		}
		if s.RunAsGroup != nil {
			gid = s.RunAsGroup
		}
	}
	if uid == nil {
		return nil
	}
	return &runtime.User{UID: *uid, GID: gid, Groups: groups}
}

// envFor resolves a container's environment: values, fields of the pod,
// and keys of ConfigMaps and Secrets (envFrom too), plus the service
// variables of the "kubernetes" service.
func envFor(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, c *corev1.Container, podIP string) ([]runtime.EnvVar, error) {
	var env []runtime.EnvVar
	add := func(k, v string) { env = append(env, runtime.EnvVar{Name: k, Value: v}) }
	add("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	add("KUBERNETES_SERVICE_PORT", "443")
	for i, from := range c.EnvFrom {
		data, err := refData(ctx, cs, pod.Namespace, from.ConfigMapRef, from.SecretRef)
		if err != nil {
			return nil, fmt.Errorf("spec.containers[%s].envFrom[%d]: %w", c.Name, i, err)
		}
		for k, v := range data {
			add(from.Prefix+k, v)
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			add(e.Name, expand(e.Value, env))
			continue
		}
		v, err := valueFrom(ctx, cs, pod, e.ValueFrom, podIP)
		if err != nil {
			return nil, fmt.Errorf("env %s of container %s: %w", e.Name, c.Name, err)
		}
		add(e.Name, v)
	}
	return env, nil
}

// expand replaces $(VAR) with earlier variables, as Kubernetes does.
func expand(s string, env []runtime.EnvVar) string {
	if !strings.Contains(s, "$(") {
		return s
	}
	for i := len(env) - 1; i >= 0; i-- {
		s = strings.ReplaceAll(s, "$("+env[i].Name+")", env[i].Value)
	}
	return s
}

func valueFrom(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, src *corev1.EnvVarSource, podIP string) (string, error) {
	switch {
	case src.FieldRef != nil:
		switch p := src.FieldRef.FieldPath; p {
		case "metadata.name":
			return pod.Name, nil
		case "metadata.namespace":
			return pod.Namespace, nil
		case "metadata.uid":
			return string(pod.UID), nil
		case "spec.nodeName":
			return pod.Spec.NodeName, nil
		case "spec.serviceAccountName":
			return pod.Spec.ServiceAccountName, nil
		case "status.podIP":
			return podIP, nil
		case "status.hostIP":
			return pod.Status.HostIP, nil
		default:
			if k, ok := strings.CutPrefix(p, "metadata.labels['"); ok {
				return pod.Labels[strings.TrimSuffix(k, "']")], nil
			}
			if k, ok := strings.CutPrefix(p, "metadata.annotations['"); ok {
				return pod.Annotations[strings.TrimSuffix(k, "']")], nil
			}
			return "", fmt.Errorf("fieldRef %q is not supported", p)
		}
	case src.ConfigMapKeyRef != nil:
		r := src.ConfigMapKeyRef
		cm, err := cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("configmap %s: %w", r.Name, err)
		}
		v, ok := cm.Data[r.Key]
		if !ok {
			return "", fmt.Errorf("configmap %s has no key %q", r.Name, r.Key)
		}
		return v, nil
	case src.SecretKeyRef != nil:
		r := src.SecretKeyRef
		s, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", r.Name, err)
		}
		v, ok := s.Data[r.Key]
		if !ok {
			return "", fmt.Errorf("secret %s has no key %q", r.Name, r.Key)
		}
		return string(v), nil
	}
	return "", fmt.Errorf("valueFrom: only fieldRef, configMapKeyRef and secretKeyRef are supported")
}

func refData(ctx context.Context, cs kubernetes.Interface, ns string, cm *corev1.ConfigMapEnvSource, sec *corev1.SecretEnvSource) (map[string]string, error) {
	switch {
	case cm != nil:
		o, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("configmap %s: %w", cm.Name, err)
		}
		return o.Data, nil
	case sec != nil:
		o, err := cs.CoreV1().Secrets(ns).Get(ctx, sec.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("secret %s: %w", sec.Name, err)
		}
		out := map[string]string{}
		for k, v := range o.Data {
			out[k] = string(v)
		}
		return out, nil
	}
	return nil, nil
}

// volumeFiles returns the files of a pod's configMap and secret volumes,
// by volume name, read through the API.
func volumeFiles(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	for _, v := range pod.Spec.Volumes {
		files := map[string][]byte{}
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			cm, err := cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: configmap %s: %w", v.Name, v.ConfigMap.Name, err)
			}
			for k, d := range cm.Data {
				files[k] = []byte(d)
			}
			for k, d := range cm.BinaryData {
				files[k] = d
			}
			items = v.ConfigMap.Items
		case v.Secret != nil:
			s, err := cs.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("volume %s: secret %s: %w", v.Name, v.Secret.SecretName, err)
			}
			files = s.Data
			items = v.Secret.Items
		default:
			continue
		}
		if len(items) > 0 {
			picked := map[string][]byte{}
			for _, it := range items {
				d, ok := files[it.Key]
				if !ok {
					return nil, fmt.Errorf("volume %s has no key %q", v.Name, it.Key)
				}
				picked[it.Path] = d
			}
			files = picked
		}
		out[v.Name] = files
	}
	return out, nil
}
