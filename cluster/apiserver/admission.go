package apiserver

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/klab-dev/klab/cluster/api"
)

// DefaultSchedulerName is the scheduler pods get unless they name one.
const DefaultSchedulerName = corev1.DefaultSchedulerName

func defaultNamespace(obj runtime.Object) {
	n := obj.(*corev1.Namespace)
	if n.Status.Phase == "" {
		n.Status.Phase = corev1.NamespaceActive
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels[corev1.LabelMetadataName] = n.Name
}

func defaultPodSpec(spec *corev1.PodSpec) {
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	if spec.TerminationGracePeriodSeconds == nil {
		spec.TerminationGracePeriodSeconds = ptr.To[int64](corev1.DefaultTerminationGracePeriodSeconds)
	}
	if spec.SchedulerName == "" {
		spec.SchedulerName = DefaultSchedulerName
	}
	if spec.SecurityContext == nil {
		spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	if spec.ServiceAccountName == "" {
		spec.ServiceAccountName = "default"
	}
	if spec.DeprecatedServiceAccount == "" {
		spec.DeprecatedServiceAccount = spec.ServiceAccountName
	}
	if spec.EnableServiceLinks == nil {
		spec.EnableServiceLinks = ptr.To(true)
	}
	if spec.Priority == nil {
		spec.Priority = ptr.To[int32](0)
	}
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			c := &list[i]
			if c.ImagePullPolicy == "" {
				c.ImagePullPolicy = corev1.PullIfNotPresent
			}
			if c.TerminationMessagePath == "" {
				c.TerminationMessagePath = corev1.TerminationMessagePathDefault
			}
			if c.TerminationMessagePolicy == "" {
				c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
			}
			for j := range c.Ports {
				if c.Ports[j].Protocol == "" {
					c.Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
		}
	}
}

// defaultTolerations adds what the DefaultTolerationSeconds admission
// plugin adds: pods stay on a not-ready or unreachable node for a while
// before the node lifecycle controller evicts them.
func defaultTolerations(spec *corev1.PodSpec, seconds int64) {
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		has := slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
			return (t.Key == key || t.Key == "" && t.Operator == corev1.TolerationOpExists) && (t.Effect == "" || t.Effect == corev1.TaintEffectNoExecute)
		})
		if !has {
			spec.Tolerations = append(spec.Tolerations, corev1.Toleration{
				Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(seconds),
			})
		}
	}
}

func defaultPod(obj runtime.Object) {
	p := obj.(*corev1.Pod)
	defaultPodSpec(&p.Spec)
}

// preparePodCreate adds the default tolerations and resets the status of
// a new pod: it is Pending until its node's agent reports.
func preparePodCreate(_ context.Context, s *Server, obj runtime.Object) error {
	p := obj.(*corev1.Pod)
	defaultTolerations(&p.Spec, s.cfg.DefaultTolerationSeconds)
	p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: qosClass(&p.Spec)}
	if p.Spec.NodeName != "" {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	}
	return nil
}

// qosClass is Guaranteed when every container's requests equal its
// limits for cpu and memory, BestEffort when none sets any, else Burstable.
func qosClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	anySet, guaranteed := false, true
	for _, c := range spec.Containers {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim {
				anySet = true
			}
			if !hasLim || hasReq && req.Cmp(lim) != 0 {
				guaranteed = false
			}
		}
	}
	switch {
	case !anySet:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func validatePodSpec(spec *corev1.PodSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), "a pod needs at least one container"))
	}
	names := map[string]bool{}
	for _, group := range []struct {
		name string
		list []corev1.Container
	}{{"initContainers", spec.InitContainers}, {"containers", spec.Containers}} {
		for i, c := range group.list {
			p := path.Child(group.name).Index(i)
			switch {
			case c.Name == "":
				errs = append(errs, field.Required(p.Child("name"), ""))
			case names[c.Name]:
				errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
			default:
				for _, msg := range validation.IsDNS1123Label(c.Name) {
					errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
				}
			}
			names[c.Name] = true
			if c.Image == "" {
				errs = append(errs, field.Required(p.Child("image"), ""))
			}
			if !slices.Contains([]corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever, ""}, c.ImagePullPolicy) {
				errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, []string{"Always", "IfNotPresent", "Never"}))
			}
			ports := map[string]bool{}
			for j, port := range c.Ports {
				pp := p.Child("ports").Index(j)
				for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
					errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
				}
				if port.Name != "" {
					if ports[port.Name] {
						errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
					}
					ports[port.Name] = true
					for _, msg := range validation.IsValidPortName(port.Name) {
						errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
					}
				}
				if !slices.Contains([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP, ""}, port.Protocol) {
					errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, []string{"TCP", "UDP", "SCTP"}))
				}
			}
			for j, e := range c.Env {
				if e.Name == "" {
					errs = append(errs, field.Required(p.Child("env").Index(j).Child("name"), ""))
				}
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, hasReq := c.Resources.Requests[r]
				lim, hasLim := c.Resources.Limits[r]
				if hasReq && hasLim && req.Cmp(lim) > 0 {
					errs = append(errs, field.Invalid(p.Child("resources", "requests").Key(string(r)), req.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", r, lim.String())))
				}
			}
		}
	}
	if !slices.Contains([]corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}, spec.RestartPolicy) {
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), spec.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	if !slices.Contains([]corev1.DNSPolicy{corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone}, spec.DNSPolicy) {
		errs = append(errs, field.NotSupported(path.Child("dnsPolicy"), spec.DNSPolicy, []string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}))
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(path.Child("terminationGracePeriodSeconds"), *g, "must be 0 or more"))
	}
	if spec.NodeName != "" {
		for _, msg := range apivalidation.NameIsDNSSubdomain(spec.NodeName, false) {
			errs = append(errs, field.Invalid(path.Child("nodeName"), spec.NodeName, msg))
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(spec.NodeSelector, path.Child("nodeSelector"))...)
	for i, t := range spec.Tolerations {
		if t.Operator == corev1.TolerationOpExists && t.Value != "" {
			errs = append(errs, field.Invalid(path.Child("tolerations").Index(i).Child("operator"), t.Operator, "value must be empty when operator is Exists"))
		}
	}
	return errs
}

func validatePod(obj, old runtime.Object) field.ErrorList {
	p := obj.(*corev1.Pod)
	errs := validatePodSpec(&p.Spec, field.NewPath("spec"))
	if old == nil {
		return errs
	}
	o := old.(*corev1.Pod)
	// As upstream: a pod's spec is fixed but for images, the deadline,
	// added tolerations and the grace period; nodeName changes only
	// through the binding subresource.
	a, b := p.Spec.DeepCopy(), o.Spec.DeepCopy()
	for i := range a.Containers {
		if i < len(b.Containers) {
			a.Containers[i].Image = b.Containers[i].Image
		}
	}
	for i := range a.InitContainers {
		if i < len(b.InitContainers) {
			a.InitContainers[i].Image = b.InitContainers[i].Image
		}
	}
	a.ActiveDeadlineSeconds, a.TerminationGracePeriodSeconds = b.ActiveDeadlineSeconds, b.TerminationGracePeriodSeconds
	if len(a.Tolerations) >= len(b.Tolerations) && equality.Semantic.DeepEqual(a.Tolerations[:len(b.Tolerations)], b.Tolerations) {
		a.Tolerations = b.Tolerations
	}
	if !equality.Semantic.DeepEqual(a, b) {
		if a.NodeName != b.NodeName {
			errs = append(errs, field.Forbidden(field.NewPath("spec", "nodeName"), "a pod is bound to a node through its binding subresource (POST pods/NAME/binding), once"))
		} else {
			errs = append(errs, field.Forbidden(field.NewPath("spec"), "pod updates may not change fields other than spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds, spec.tolerations (only additions) or spec.terminationGracePeriodSeconds: delete and recreate the pod (or let its Deployment do it)"))
		}
	}
	return errs
}

func validateNode(obj, old runtime.Object) field.ErrorList {
	n := obj.(*corev1.Node)
	var errs field.ErrorList
	if n.Spec.PodCIDR != "" {
		if _, err := netip.ParsePrefix(n.Spec.PodCIDR); err != nil {
			errs = append(errs, field.Invalid(field.NewPath("spec", "podCIDR"), n.Spec.PodCIDR, "must be a CIDR like 10.42.1.0/24"))
		}
	}
	if old != nil {
		o := old.(*corev1.Node)
		if o.Spec.PodCIDR != "" && n.Spec.PodCIDR != o.Spec.PodCIDR {
			errs = append(errs, field.Forbidden(field.NewPath("spec", "podCIDR"), "may not be changed once set"))
		}
	}
	for i, t := range n.Spec.Taints {
		if t.Key == "" {
			errs = append(errs, field.Required(field.NewPath("spec", "taints").Index(i).Child("key"), ""))
		}
		if !slices.Contains([]corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}, t.Effect) {
			errs = append(errs, field.NotSupported(field.NewPath("spec", "taints").Index(i).Child("effect"), t.Effect, []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}))
		}
	}
	return errs
}

func validateDataKeys[V any](data map[string]V, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for k := range data {
		for _, msg := range validation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(path.Key(k), k, msg))
		}
	}
	return errs
}

func validateConfigMap(obj, old runtime.Object) field.ErrorList {
	c := obj.(*corev1.ConfigMap)
	errs := validateDataKeys(c.Data, field.NewPath("data"))
	errs = append(errs, validateDataKeys(c.BinaryData, field.NewPath("binaryData"))...)
	for k := range c.Data {
		if _, ok := c.BinaryData[k]; ok {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(k), k, "duplicate of a key in binaryData"))
		}
	}
	return errs
}

// defaultSecret moves stringData into data, as upstream does on write.
func defaultSecret(obj runtime.Object) {
	s := obj.(*corev1.Secret)
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
}

func validateSecret(obj, old runtime.Object) field.ErrorList {
	s := obj.(*corev1.Secret)
	errs := validateDataKeys(s.Data, field.NewPath("data"))
	if old != nil && old.(*corev1.Secret).Type != s.Type {
		errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
	}
	return errs
}

func defaultEvent(obj runtime.Object) {
	e := obj.(*corev1.Event)
	if e.Type == "" {
		e.Type = corev1.EventTypeNormal
	}
	if e.Count == 0 {
		e.Count = 1
	}
}

func validateEvent(obj, old runtime.Object) field.ErrorList {
	e := obj.(*corev1.Event)
	var errs field.ErrorList
	if e.InvolvedObject.Namespace != "" && e.InvolvedObject.Namespace != e.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), e.InvolvedObject.Namespace, "does not match event.namespace "+e.Namespace))
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{"Normal", "Warning"}))
	}
	return errs
}

func defaultDeployment(obj runtime.Object) {
	d := obj.(*appsv1.Deployment)
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = ptr.To[int32](1)
	}
	if d.Spec.Strategy.Type == "" {
		d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if d.Spec.Strategy.RollingUpdate == nil {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		ru := d.Spec.Strategy.RollingUpdate
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = ptr.To(intstr.FromString("25%"))
		}
		if ru.MaxSurge == nil {
			ru.MaxSurge = ptr.To(intstr.FromString("25%"))
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = ptr.To[int32](600)
	}
	defaultPodSpec(&d.Spec.Template.Spec)
}

func validateSelectorAndTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, replicas *int32, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if replicas != nil && *replicas < 0 {
		errs = append(errs, field.Invalid(path.Child("replicas"), *replicas, "must be 0 or more"))
	}
	if sel == nil {
		return append(errs, field.Required(path.Child("selector"), "a selector of the pods' labels, e.g. matchLabels: {app: web}"))
	}
	errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, path.Child("selector"))...)
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err == nil && s.Empty() {
		errs = append(errs, field.Invalid(path.Child("selector"), sel, "empty selector is invalid for deployment"))
	} else if err == nil && !s.Matches(labels.Set(tmpl.Labels)) {
		errs = append(errs, field.Invalid(path.Child("template", "metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, metav1validation.ValidateLabels(tmpl.Labels, path.Child("template", "metadata", "labels"))...)
	errs = append(errs, validatePodSpec(&tmpl.Spec, path.Child("template", "spec"))...)
	return errs
}

func selectorImmutable(sel, old *metav1.LabelSelector, path *field.Path) field.ErrorList {
	if !equality.Semantic.DeepEqual(sel, old) {
		return field.ErrorList{field.Invalid(path.Child("selector"), sel, "field is immutable")}
	}
	return nil
}

func validateDeployment(obj, old runtime.Object) field.ErrorList {
	d := obj.(*appsv1.Deployment)
	p := field.NewPath("spec")
	errs := validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, d.Spec.Replicas, p)
	if d.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(p.Child("template", "spec", "restartPolicy"), d.Spec.Template.Spec.RestartPolicy, []string{"Always"}))
	}
	if t := d.Spec.Strategy.Type; t != appsv1.RollingUpdateDeploymentStrategyType && t != appsv1.RecreateDeploymentStrategyType {
		errs = append(errs, field.NotSupported(p.Child("strategy", "type"), t, []string{"RollingUpdate", "Recreate"}))
	}
	if old != nil {
		errs = append(errs, selectorImmutable(d.Spec.Selector, old.(*appsv1.Deployment).Spec.Selector, p)...)
	}
	return errs
}

func defaultReplicaSet(obj runtime.Object) {
	r := obj.(*appsv1.ReplicaSet)
	if r.Spec.Replicas == nil {
		r.Spec.Replicas = ptr.To[int32](1)
	}
	defaultPodSpec(&r.Spec.Template.Spec)
}

func validateReplicaSet(obj, old runtime.Object) field.ErrorList {
	r := obj.(*appsv1.ReplicaSet)
	p := field.NewPath("spec")
	errs := validateSelectorAndTemplate(r.Spec.Selector, &r.Spec.Template, r.Spec.Replicas, p)
	if old != nil {
		errs = append(errs, selectorImmutable(r.Spec.Selector, old.(*appsv1.ReplicaSet).Spec.Selector, p)...)
	}
	return errs
}

func defaultNetworkPolicy(obj runtime.Object) {
	n := obj.(*networkingv1.NetworkPolicy)
	if len(n.Spec.PolicyTypes) == 0 {
		n.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(n.Spec.Egress) > 0 {
			n.Spec.PolicyTypes = append(n.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	for i := range n.Spec.Ingress {
		defaultPolicyPorts(n.Spec.Ingress[i].Ports)
	}
	for i := range n.Spec.Egress {
		defaultPolicyPorts(n.Spec.Egress[i].Ports)
	}
}

func defaultPolicyPorts(ports []networkingv1.NetworkPolicyPort) {
	for i := range ports {
		if ports[i].Protocol == nil {
			ports[i].Protocol = ptr.To(corev1.ProtocolTCP)
		}
	}
}

func validateNetworkPolicy(obj, old runtime.Object) field.ErrorList {
	n := obj.(*networkingv1.NetworkPolicy)
	p := field.NewPath("spec")
	errs := metav1validation.ValidateLabelSelector(&n.Spec.PodSelector, metav1validation.LabelSelectorValidationOptions{}, p.Child("podSelector"))
	for i, t := range n.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(p.Child("policyTypes").Index(i), t, []string{"Ingress", "Egress"}))
		}
	}
	check := func(peers []networkingv1.NetworkPolicyPeer, path *field.Path) {
		for i, peer := range peers {
			pp := path.Index(i)
			if peer.IPBlock != nil {
				if _, err := netip.ParsePrefix(peer.IPBlock.CIDR); err != nil {
					errs = append(errs, field.Invalid(pp.Child("ipBlock", "cidr"), peer.IPBlock.CIDR, "must be a CIDR like 10.42.0.0/16"))
				}
				if peer.PodSelector != nil || peer.NamespaceSelector != nil {
					errs = append(errs, field.Forbidden(pp, "may not specify more than 1 peer type when ipBlock is given"))
				}
			}
		}
	}
	for i, r := range n.Spec.Ingress {
		check(r.From, p.Child("ingress").Index(i).Child("from"))
	}
	for i, r := range n.Spec.Egress {
		check(r.To, p.Child("egress").Index(i).Child("to"))
	}
	return errs
}

func defaultClusterNetwork(obj runtime.Object) {
	c := obj.(*api.ClusterNetwork)
	if c.Spec.MTU == 0 {
		c.Spec.MTU = api.DefaultPodMTU
	}
}

func validateClusterNetwork(obj, old runtime.Object) field.ErrorList {
	c := obj.(*api.ClusterNetwork)
	p := field.NewPath("spec")
	var errs field.ErrorList
	if c.Name != api.ClusterNetworkName {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), c.Name, "there is one ClusterNetwork and it is named \"default\": edit that one"))
	}
	if !slices.Contains(api.Modes, c.Spec.Mode) {
		errs = append(errs, field.NotSupported(p.Child("mode"), c.Spec.Mode, []string{"bgp", "vxlan", "ipip"}))
	}
	if pfx, err := netip.ParsePrefix(c.Spec.PodCIDR); err != nil || !pfx.Addr().Is4() {
		errs = append(errs, field.Invalid(p.Child("podCIDR"), c.Spec.PodCIDR, "must be an IPv4 CIDR like 10.42.0.0/16"))
	} else if pfx.Bits() > 24 {
		errs = append(errs, field.Invalid(p.Child("podCIDR"), c.Spec.PodCIDR, "must hold at least one /24 block per node: use a prefix of /24 or shorter"))
	}
	if c.Spec.MTU < 576 || c.Spec.MTU > 9000 {
		errs = append(errs, field.Invalid(p.Child("mtu"), c.Spec.MTU, "must be between 576 and 9000"))
	}
	if c.Spec.CrossSubnet && c.Spec.Mode == api.ModeBGP {
		errs = append(errs, field.Invalid(p.Child("crossSubnet"), true, "only vxlan and ipip encapsulate: crossSubnet needs mode vxlan or ipip"))
	}
	if old != nil && old.(*api.ClusterNetwork).Spec.PodCIDR != c.Spec.PodCIDR {
		errs = append(errs, field.Forbidden(p.Child("podCIDR"), "may not change while pods have addresses from it"))
	}
	for name, n := range c.Status.Nodes {
		if n.Mode != "" && !slices.Contains(api.Modes, n.Mode) {
			errs = append(errs, field.NotSupported(field.NewPath("status", "nodes").Key(name).Child("mode"), n.Mode, []string{"bgp", "vxlan", "ipip"}))
		}
	}
	return errs
}

func validateBGPPeer(obj, old runtime.Object) field.ErrorList {
	b := obj.(*api.BGPPeer)
	p := field.NewPath("spec")
	var errs field.ErrorList
	if _, err := netip.ParseAddr(b.Spec.PeerIP); err != nil {
		errs = append(errs, field.Invalid(p.Child("peerIP"), b.Spec.PeerIP, "must be an IP address like 192.168.34.1"))
	}
	if b.Spec.ASN == 0 {
		errs = append(errs, field.Required(p.Child("asn"), "the peer's AS number (1-4294967295)"))
	}
	if b.Spec.NodeSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(b.Spec.NodeSelector, metav1validation.LabelSelectorValidationOptions{}, p.Child("nodeSelector"))...)
	}
	return errs
}
