package runtime

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klab-dev/klab/cluster/runtime/image"
)

// SandboxConfig is a pod as the runtime sees it: what its pause process
// and shared namespaces need, and the volumes its containers share.
type SandboxConfig struct {
	// ID names the sandbox (its netns pin is /run/netns/ID); empty: a
	// random one. Lower-case letters, digits and '-', at most 40.
	ID        string `json:"id,omitempty"`
	Name      string `json:"name"` // the pod's name
	Namespace string `json:"namespace,omitempty"`
	UID       string `json:"uid,omitempty"`
	// Hostname is the pod's hostname; empty: Name.
	Hostname string `json:"hostname,omitempty"`
	// SharePID puts all containers in one PID namespace, whose PID 1 is
	// the pause process (shareProcessNamespace).
	SharePID    bool              `json:"sharePID,omitempty"`
	DNS         DNSConfig         `json:"dns,omitzero"`
	HostAliases []HostAlias       `json:"hostAliases,omitempty"`
	Volumes     []Volume          `json:"volumes,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// DNSConfig becomes the pod's /etc/resolv.conf; empty means the node's.
type DNSConfig struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Searches    []string `json:"searches,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// HostAlias is an extra /etc/hosts line.
type HostAlias struct {
	IP        string   `json:"ip"`
	Hostnames []string `json:"hostnames"`
}

// Volume is a pod volume: an emptyDir (a directory of the pod's, removed
// with it) or a directory or file of the node.
type Volume struct {
	Name     string          `json:"name"`
	EmptyDir bool            `json:"emptyDir,omitempty"`
	HostPath *HostPathVolume `json:"hostPath,omitempty"`
}

// HostPathVolume is a node path. Type is Kubernetes' hostPath type: ""
// (must exist), Directory, DirectoryOrCreate, File, FileOrCreate, Socket,
// CharDevice or BlockDevice.
type HostPathVolume struct {
	Path string `json:"path"`
	Type string `json:"type,omitempty"`
}

// ContainerConfig is one container of a pod. Empty fields take the
// image's values (Command its Entrypoint, Args its Cmd, WorkingDir, User).
type ContainerConfig struct {
	Name       string            `json:"name"`
	Image      string            `json:"image"`
	Command    []string          `json:"command,omitempty"`
	Args       []string          `json:"args,omitempty"`
	Env        []EnvVar          `json:"env,omitempty"`
	WorkingDir string            `json:"workingDir,omitempty"`
	User       *User             `json:"user,omitempty"`
	TTY        bool              `json:"tty,omitempty"`
	Resources  Resources         `json:"resources,omitzero"`
	Mounts     []Mount           `json:"mounts,omitempty"`
	Attempt    int               `json:"attempt,omitempty"` // restart count; names the log file
	Labels     map[string]string `json:"labels,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// User is who a container's processes run as.
type User struct {
	UID    int64   `json:"uid"`
	GID    *int64  `json:"gid,omitempty"` // nil: the image's group for UID, or 0
	Groups []int64 `json:"groups,omitempty"`
}

// Resources are a container's limits; zero means none.
type Resources struct {
	MemoryLimit     int64 `json:"memoryLimit,omitempty"`     // bytes
	CPULimitMilli   int64 `json:"cpuLimitMilli,omitempty"`   // quota, in thousandths of a CPU
	CPURequestMilli int64 `json:"cpuRequestMilli,omitempty"` // relative weight (shares)
	PidsLimit       int64 `json:"pidsLimit,omitempty"`
}

// Mount puts a pod volume into a container.
type Mount struct {
	Volume   string `json:"volume"`
	Path     string `json:"path"`
	SubPath  string `json:"subPath,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Sandbox is a created pod sandbox.
type Sandbox struct {
	ID       string        `json:"id"`
	Config   SandboxConfig `json:"config"`
	PausePID int           `json:"pausePID"`
	// PauseStart is the pause process's start time (clock ticks after
	// boot), which tells it from a later process that got the same PID.
	PauseStart uint64 `json:"pauseStart"`
	// NetNS is the pinned network namespace, the CNI_NETNS path.
	NetNS   string    `json:"netns"`
	IPs     []string  `json:"ips,omitempty"`
	Created time.Time `json:"created"`
	// Ready is false once the pause process is gone.
	Ready bool `json:"-"`
}

// State is where a container is in its life.
type State string

// Container states.
const (
	Running State = "running"
	Exited  State = "exited"
)

// Exit reasons, as Kubernetes reports them.
const (
	ReasonCompleted          = "Completed"
	ReasonError              = "Error"
	ReasonOOMKilled          = "OOMKilled"
	ReasonContainerCannotRun = "ContainerCannotRun"
	// ReasonImageNotFound: the node does not have the image (and klab
	// never pulls).
	ReasonImageNotFound = "ErrImageNeverPull"
	// ReasonConfigError: the container's spec cannot be run as given (no
	// command, an unknown volume, a missing host path).
	ReasonConfigError = "CreateContainerConfigError"
)

// ExitStatus is how a container ended.
type ExitStatus struct {
	Code       int       `json:"code"`
	Signal     string    `json:"signal,omitempty"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
}

// Container is a container that was started.
type Container struct {
	ID        string          `json:"id"`
	SandboxID string          `json:"sandboxID"`
	Config    ContainerConfig `json:"config"`
	ImageID   string          `json:"imageID"`
	// ShimPID is the container's shim (its init), in the node's PID
	// namespace; PID is its main process.
	ShimPID int `json:"shimPID"`
	// ShimStart is the shim's start time (clock ticks after boot), which
	// tells it from a later process that got the same PID.
	ShimStart uint64    `json:"shimStart"`
	PID       int       `json:"pid"`
	LogPath   string    `json:"logPath"`
	Started   time.Time `json:"started"`
	// State and Exit are filled in by Status and List.
	State State       `json:"-"`
	Exit  *ExitStatus `json:"-"`
}

// StartError is a container that could not be started, with the reason
// the agent reports in the pod's status.
type StartError struct {
	Reason string
	Err    error
}

func (e *StartError) Error() string { return e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

func configError(format string, a ...any) error {
	return &StartError{Reason: ReasonConfigError, Err: fmt.Errorf(format, a...)}
}

var idRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// validID reports whether id can name a sandbox or container.
func validID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("bad id %q: want lower-case letters, digits and '-', at most 40", id)
	}
	return nil
}

// process is what a container runs, once the image's config and the
// container's are merged.
type process struct {
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	Cwd    string   `json:"cwd"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	TTY    bool     `json:"tty,omitempty"`
}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// argv merges the command as Kubernetes does: command replaces the
// image's entrypoint (and drops its cmd), args replace its cmd.
func argv(img image.Config, c ContainerConfig) []string {
	switch {
	case len(c.Command) > 0:
		return slices.Concat(c.Command, c.Args)
	case len(c.Args) > 0:
		return slices.Concat(img.Entrypoint, c.Args)
	default:
		return slices.Concat(img.Entrypoint, img.Cmd)
	}
}

// mergeEnv puts the container's variables over the image's, then adds
// PATH, HOSTNAME and HOME where neither set them.
func mergeEnv(img []string, c []EnvVar, hostname, home string, tty bool) []string {
	var out []string
	idx := map[string]int{}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range img {
		set(kv)
	}
	for _, e := range c {
		set(e.Name + "=" + e.Value)
	}
	for _, kv := range []string{defaultPath, "HOSTNAME=" + hostname, "HOME=" + home} {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := idx[k]; !ok {
			set(kv)
		}
	}
	if _, ok := idx["TERM"]; tty && !ok {
		set("TERM=xterm")
	}
	return out
}

// passwdEntry is a line of /etc/passwd.
type passwdEntry struct {
	Name     string
	UID, GID uint32
	Home     string
}

func parsePasswd(r io.Reader) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 6 {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5]})
	}
	return out
}

// groupEntry is a line of /etc/group.
type groupEntry struct {
	Name    string
	GID     uint32
	Members []string
}

func parseGroup(r io.Reader) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		var members []string
		if f[3] != "" {
			members = strings.Split(f[3], ",")
		}
		out = append(out, groupEntry{Name: f[0], GID: uint32(gid), Members: members})
	}
	return out
}

// resolveUser works out uid, gid, supplementary groups and home from the
// container's user (when set) or the image's USER string ("name",
// "uid", "name:group", "uid:gid"), with the image's passwd and group
// files for names.
func resolveUser(c *User, imgUser string, passwd []passwdEntry, groups []groupEntry) (uid, gid uint32, extra []uint32, home string, err error) {
	home = "/"
	byUID := func(u uint32) *passwdEntry {
		for i := range passwd {
			if passwd[i].UID == u {
				return &passwd[i]
			}
		}
		return nil
	}
	var name string
	if c != nil {
		if c.UID < 0 || c.UID > 1<<32-1 {
			return 0, 0, nil, "", fmt.Errorf("bad uid %d", c.UID)
		}
		uid = uint32(c.UID)
		if p := byUID(uid); p != nil {
			gid, home, name = p.GID, p.Home, p.Name
		}
		if c.GID != nil {
			gid = uint32(*c.GID)
		}
		for _, g := range c.Groups {
			extra = append(extra, uint32(g))
		}
	} else if imgUser != "" {
		u, g, hasGroup := strings.Cut(imgUser, ":")
		if n, perr := strconv.ParseUint(u, 10, 32); perr == nil {
			uid = uint32(n)
			if p := byUID(uid); p != nil {
				gid, home, name = p.GID, p.Home, p.Name
			}
		} else {
			i := slices.IndexFunc(passwd, func(p passwdEntry) bool { return p.Name == u })
			if i < 0 {
				return 0, 0, nil, "", fmt.Errorf("the image's user %q is not in its /etc/passwd", u)
			}
			uid, gid, home, name = passwd[i].UID, passwd[i].GID, passwd[i].Home, passwd[i].Name
		}
		if hasGroup {
			if n, perr := strconv.ParseUint(g, 10, 32); perr == nil {
				gid = uint32(n)
			} else {
				i := slices.IndexFunc(groups, func(e groupEntry) bool { return e.Name == g })
				if i < 0 {
					return 0, 0, nil, "", fmt.Errorf("the image's group %q is not in its /etc/group", g)
				}
				gid = groups[i].GID
			}
		}
	} else if p := byUID(0); p != nil {
		home = p.Home
		name = p.Name
	}
	if name != "" {
		for _, e := range groups {
			if e.GID != gid && slices.Contains(e.Members, name) && !slices.Contains(extra, e.GID) {
				extra = append(extra, e.GID)
			}
		}
	}
	if home == "" {
		home = "/"
	}
	return uid, gid, extra, home, nil
}

// hostsFile is a pod's /etc/hosts.
func hostsFile(hostname string, ips []string, aliases []HostAlias) string {
	var b strings.Builder
	b.WriteString("# Written by klab's runtime.\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, ip := range ips {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	for _, a := range aliases {
		fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, " "))
	}
	return b.String()
}

// resolvConf is a pod's /etc/resolv.conf: the pod's DNS config, or the
// node's file when it has none.
func resolvConf(d DNSConfig, node []byte) string {
	if len(d.Nameservers) == 0 && len(d.Searches) == 0 && len(d.Options) == 0 {
		return string(node)
	}
	var b strings.Builder
	for _, n := range d.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	if len(d.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(d.Searches, " "))
	}
	if len(d.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(d.Options, " "))
	}
	return b.String()
}

// cleanContainerPath checks a path a container gives (mount path, working
// directory): absolute, and taken as it would be inside the container.
func cleanContainerPath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	return path.Clean(p), nil
}
