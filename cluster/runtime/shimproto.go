package runtime

// shimSpec is what the runtime tells a shim, as JSON on its stdin.
type shimSpec struct {
	ID string `json:"id"`
	// Rootfs is the mount point of the container's root: an overlay of
	// Lower (read-only, top first), Upper and Work.
	Rootfs string   `json:"rootfs"`
	Lower  []string `json:"lower"`
	Upper  string   `json:"upper"`
	Work   string   `json:"work"`
	// Binds are the volumes and the pod's /etc files.
	Binds   []bindMount `json:"binds,omitempty"`
	Process process     `json:"process"`
	// OwnPID: the shim is PID 1 of a PID namespace of its own.
	OwnPID bool `json:"ownPID,omitempty"`
	// Dir is the container's state directory (exit.json goes there).
	Dir    string `json:"dir"`
	Socket string `json:"socket"`
	Log    string `json:"log"`
	// CgroupV2 is the container's v2 group, processes are cloned into;
	// CgroupV1 its v1 groups and InfraV1 the pod's infra v1 groups, which
	// the shim moves itself between around each fork.
	CgroupV2 string   `json:"cgroupV2,omitempty"`
	CgroupV1 []string `json:"cgroupV1,omitempty"`
	InfraV1  []string `json:"infraV1,omitempty"`
}

// bindMount is a bind mount of a node path into the container.
type bindMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"` // inside the container
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// shimStatus is the shim's one-line answer on its stdout once the
// container runs (or could not be started).
type shimStatus struct {
	PID    int    `json:"pid,omitempty"` // the main process, in the container's PID namespace
	Error  string `json:"error,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// shimRequest is a request on the shim's socket, one per connection.
// An exec request carries file descriptors: stdin, stdout and stderr, or
// one terminal for all three.
type shimRequest struct {
	Exec   *execRequest `json:"exec,omitempty"`
	Signal int          `json:"signal,omitempty"`
}

type execRequest struct {
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Cwd  string   `json:"cwd,omitempty"`
	TTY  bool     `json:"tty,omitempty"`
}

// shimReply is one line of answer: the exec'd process started (PID),
// ended (Exit), or the request failed (Error).
type shimReply struct {
	PID   int    `json:"pid,omitempty"`
	Exit  *int   `json:"exit,omitempty"`
	Error string `json:"error,omitempty"`
}

// exitRecord is exit.json, written by the shim when the main process
// has ended.
type exitRecord struct {
	Code       int    `json:"code"`
	Signal     string `json:"signal,omitempty"`
	FinishedAt string `json:"finishedAt"`
}
