package agent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestPodPhase(t *testing.T) {
	exit := func(code int32) *exitView { return &exitView{Code: code} }
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		cs     []containerView
		want   corev1.PodPhase
	}{
		{"nothing started", corev1.RestartPolicyAlways, []containerView{{Name: "a", WaitingReason: "ContainerCreating"}}, corev1.PodPending},
		{"image missing", corev1.RestartPolicyAlways, []containerView{{Name: "a", WaitingReason: "ErrImageNeverPull"}}, corev1.PodPending},
		{"running", corev1.RestartPolicyAlways, []containerView{{Name: "a", ID: "x", Running: true}}, corev1.PodRunning},
		{"one of two running", corev1.RestartPolicyAlways, []containerView{{Name: "a", ID: "x", Running: true}, {Name: "b", WaitingReason: "ContainerCreating"}}, corev1.PodRunning},
		{"crash looping", corev1.RestartPolicyAlways, []containerView{{Name: "a", ID: "x", Restarts: 3, Last: exit(1), WaitingReason: "CrashLoopBackOff"}}, corev1.PodRunning},
		{"completed, never restart", corev1.RestartPolicyNever, []containerView{{Name: "a", ID: "x", Exit: exit(0)}}, corev1.PodSucceeded},
		{"failed, never restart", corev1.RestartPolicyNever, []containerView{{Name: "a", ID: "x", Exit: exit(2)}}, corev1.PodFailed},
		{"one failed one succeeded", corev1.RestartPolicyNever, []containerView{{Name: "a", ID: "x", Exit: exit(0)}, {Name: "b", ID: "y", Exit: exit(1)}}, corev1.PodFailed},
		{"completed on failure policy", corev1.RestartPolicyOnFailure, []containerView{{Name: "a", ID: "x", Exit: exit(0)}}, corev1.PodSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &corev1.PodSpec{RestartPolicy: tt.policy}
			if got := podPhase(spec, tt.cs); got != tt.want {
				t.Errorf("phase %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPodStatusConditions(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways}}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	now := time.Now()
	st := podStatus(pod, "192.168.34.11", []string{"10.42.1.2"}, true, now, []containerView{
		{Name: "a", ID: "x", Running: true, Ready: true, Started: true},
		{Name: "b", ID: "y", Running: true, Ready: false, Started: true},
	}, now)
	cond := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range st.Conditions {
		cond[c.Type] = c.Status
	}
	if cond[corev1.PodScheduled] != corev1.ConditionTrue || cond[corev1.PodReady] != corev1.ConditionFalse || cond[corev1.PodReadyToStartContainers] != corev1.ConditionTrue {
		t.Errorf("conditions %v", cond)
	}
	if st.PodIP != "10.42.1.2" || st.HostIP != "192.168.34.11" || st.Phase != corev1.PodRunning {
		t.Errorf("status %+v", st)
	}
	if !st.ContainerStatuses[0].Ready || st.ContainerStatuses[1].Ready {
		t.Error("readiness per container")
	}
	// Recomputing with the written status keeps transition times.
	pod.Status = st
	again := podStatus(pod, "192.168.34.11", []string{"10.42.1.2"}, true, now, []containerView{
		{Name: "a", ID: "x", Running: true, Ready: true, Started: true},
		{Name: "b", ID: "y", Running: true, Ready: false, Started: true},
	}, now.Add(time.Minute))
	for i := range again.Conditions {
		if !again.Conditions[i].LastTransitionTime.Equal(&st.Conditions[i].LastTransitionTime) {
			t.Errorf("%s moved its transition time", again.Conditions[i].Type)
		}
	}
}
