package agent

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerView is what the agent knows of one container of a pod, from
// the runtime and its probes.
type containerView struct {
	Name    string
	Image   string
	ImageID string
	ID      string // empty: never started
	// Running or not; when not, Exit holds how the last run ended.
	Running   bool
	StartedAt time.Time
	Exit      *exitView
	// Waiting explains why a container does not run (CrashLoopBackOff,
	// ErrImageNeverPull, CreateContainerConfigError, ContainerCreating).
	WaitingReason, WaitingMessage string
	Restarts                      int32
	Ready                         bool
	Started                       bool // startup probe passed (or none)
	// Last is how the run before the current one ended.
	Last *exitView
}

type exitView struct {
	Code       int32
	Signal     string
	Reason     string
	Message    string
	StartedAt  time.Time
	FinishedAt time.Time
}

func (e *exitView) terminated(id string) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    e.Code,
		Reason:      e.Reason,
		Message:     e.Message,
		StartedAt:   apiTime(e.StartedAt),
		FinishedAt:  apiTime(e.FinishedAt),
		ContainerID: containerID(id),
	}
	return t
}

// apiTime is t as the API stores it: whole seconds. A status built with
// finer times never equals the one read back, and would be written again
// on every look.
func apiTime(t time.Time) metav1.Time {
	return metav1.NewTime(t.Truncate(time.Second))
}

func containerID(id string) string {
	if id == "" {
		return ""
	}
	return "klab://" + id
}

// containerStatus renders a view as the API's ContainerStatus.
func (v containerView) status() corev1.ContainerStatus {
	s := corev1.ContainerStatus{
		Name:         v.Name,
		Image:        v.Image,
		ImageID:      v.ImageID,
		ContainerID:  containerID(v.ID),
		RestartCount: v.Restarts,
		Ready:        v.Ready && v.Running,
		Started:      &v.Started,
	}
	switch {
	case v.Running:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: apiTime(v.StartedAt)}
	case v.WaitingReason != "":
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: v.WaitingReason, Message: v.WaitingMessage}
	case v.Exit != nil:
		s.State.Terminated = v.Exit.terminated(v.ID)
	default:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	if v.Last != nil {
		s.LastTerminationState.Terminated = v.Last.terminated(v.ID)
	}
	if !v.Running {
		f := false
		s.Started = &f
	}
	return s
}

// podPhase is the pod's phase from its containers, as the kubelet
// computes it: Succeeded or Failed once every container has ended for
// good, Running while any runs or will be restarted, Pending before.
func podPhase(spec *corev1.PodSpec, cs []containerView) corev1.PodPhase {
	running, waiting, succeeded, failed, unknown := 0, 0, 0, 0, 0
	for _, c := range cs {
		switch {
		case c.Running:
			running++
		case c.Exit != nil && c.WaitingReason == "":
			if c.Exit.Code == 0 {
				succeeded++
			} else {
				failed++
			}
		case c.Exit != nil || c.Restarts > 0 || c.Last != nil:
			// Ended before, waiting to be restarted.
			running++
		case c.ID == "" && c.WaitingReason != "":
			waiting++
		default:
			unknown++
		}
	}
	switch {
	case waiting > 0 && running == 0 && succeeded == 0 && failed == 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case unknown > 0 || waiting > 0:
		return corev1.PodPending
	case failed > 0:
		if spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	case succeeded > 0:
		if spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		return corev1.PodSucceeded
	}
	return corev1.PodPending
}

// podStatus builds a pod's status.
func podStatus(pod *corev1.Pod, nodeIP string, podIPs []string, sandboxReady bool, started time.Time, cs []containerView, now time.Time) corev1.PodStatus {
	st := corev1.PodStatus{
		Phase:  podPhase(&pod.Spec, cs),
		HostIP: nodeIP,
	}
	if nodeIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: nodeIP}}
	}
	if len(podIPs) > 0 {
		st.PodIP = podIPs[0]
		for _, ip := range podIPs {
			st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	if !started.IsZero() {
		t := apiTime(started)
		st.StartTime = &t
	}
	allReady := len(cs) > 0
	for _, c := range cs {
		st.ContainerStatuses = append(st.ContainerStatuses, c.status())
		if !(c.Ready && c.Running) {
			allReady = false
		}
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		c.LastTransitionTime = apiTime(now)
		for _, p := range pod.Status.Conditions {
			if p.Type == t && p.Status == c.Status {
				c.LastTransitionTime = p.LastTransitionTime
			}
		}
		return c
	}
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	notReady := "ContainersNotReady"
	if terminal {
		notReady = "PodCompleted"
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, sandboxReady, ""),
		cond(corev1.PodInitialized, true, ""),
		cond(corev1.ContainersReady, allReady && !terminal, notReady),
		cond(corev1.PodReady, allReady && !terminal, notReady),
	}
	for _, p := range pod.Status.Conditions {
		if p.Type == corev1.PodScheduled {
			st.Conditions = append([]corev1.PodCondition{p}, st.Conditions...)
		}
	}
	return st
}
