// Package libvirt is the provider whose machines are VMs: libvirt domains
// defined through go-libvirt (qemu:///system over its unix socket, or a
// remote URI such as qemu+ssh://host/system), one isolated libvirt network
// per underlay subnet with the host's address on the first, a small router
// VM joining the subnets with --subnets 2, and a storage pool per cluster
// for the machines' disks and boot files. Machines boot klab's node image
// (provision/image) directly from its kernel, or any cloud image with a
// cloud-init seed, and are reached over SSH with a per-cluster key and
// host keys klab generated and pinned before the first boot. KVM is used
// when it works; otherwise QEMU emulates the CPU.
package libvirt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/image"
	"github.com/klab-dev/klab/provision/transport"
	"github.com/klab-dev/klab/templates"
)

// Accelerators.
const (
	AccelAuto = "auto" // KVM when the boot probe succeeds, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg" // plain QEMU emulation
)

// Options configure the provider.
type Options struct {
	// URI is the libvirt connection (default qemu:///system).
	URI string
	// Accel is auto, kvm or tcg.
	Accel string
	// CloudImage, when set, is a qcow2 cloud image that every machine's
	// disk is based on, booted with a cloud-init NoCloud seed; by default
	// machines boot klab's node image.
	CloudImage string
	// Image says how to build klab's node image.
	Image image.Options
	// MemoryMiB per cluster member (default 1024; the router gets 256).
	MemoryMiB int
	// CPUs per machine (default 1).
	CPUs int
	// DiskGiB is the size of a machine's disk (default 8; sparse).
	DiskGiB int
	// BootTimeout bounds the wait for a machine's sshd (default 2 minutes
	// with KVM, 5 minutes with emulation).
	BootTimeout time.Duration
}

// Provider is the libvirt provider.
type Provider struct {
	// Binary is the klab executable (installed on the machines by the
	// install pipeline, not by the provider).
	Binary string
	Opts   Options

	boots map[string]*boot // per cluster, made once by prepareBoot
}

var _ provision.Provider = (*Provider)(nil)

// New returns the provider.
func New(binary string, o Options) *Provider {
	if o.URI == "" {
		o.URI = DefaultURI
	}
	if o.Accel == "" {
		o.Accel = AccelAuto
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 1024
	}
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	if o.DiskGiB == 0 {
		o.DiskGiB = 8
	}
	return &Provider{Binary: binary, Opts: o}
}

// Name implements provision.Provider.
func (p *Provider) Name() string { return "libvirt" }

// Check reports whether libvirt answers at the provider's URI, with a
// one-line error saying how to start it when it does not.
func (p *Provider) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := connect(ctx, p.Opts.URI)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// uri is the libvirt connection a cluster was made with.
func (p *Provider) uri(cluster string) string {
	if s, err := loadState(cluster); err == nil && s.URI != "" {
		return s.URI
	}
	return p.Opts.URI
}

// Transport implements provision.Provider: SSH as root with the cluster's
// key, the machine's host key checked against the cluster's known_hosts.
func (p *Provider) Transport(c *provision.Cluster, node string) (transport.Transport, error) {
	n, ok := c.Node(node)
	if !ok {
		return nil, fmt.Errorf("no node %q in cluster %q: its nodes are %s", node, c.Name, strings.Join(c.NodeNames(), ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t, err := p.dial(ctx, c, n, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return &sshTransport{SSH: t}, nil
}

// sshTransport is SSH that copies a file only when the machine does not
// have it already (klab's image boots with the klab binary in place), and
// that runs the supervisor as a systemd unit on machines with systemd
// (cloud images).
type sshTransport struct {
	*transport.SSH
}

// SupervisorUnit is the systemd unit that runs "klab supervise" on
// machines with systemd.
const SupervisorUnit = "klab-supervise.service"

// Start implements transport.Transport. "klab supervise" on a machine run
// by systemd becomes the unit SupervisorUnit (templates/systemd), so that
// systemd keeps it, and starts it again after a reboot; everything else,
// and everything on klab's image, starts detached as transport.SSH does.
func (s *sshTransport) Start(ctx context.Context, c transport.Cmd, logPath string) error {
	if len(c.Args) != 2 || c.Args[0] != provision.NodeBinary || c.Args[1] != "supervise" || len(c.Env) > 0 {
		return s.SSH.Start(ctx, c, logPath)
	}
	if err := s.SSH.Run(ctx, transport.Cmd{Args: []string{"test", "-d", "/run/systemd/system"}}); err != nil {
		return s.SSH.Start(ctx, c, logPath)
	}
	unit, err := templates.File("systemd/" + SupervisorUnit)
	if err != nil {
		return err
	}
	if err := s.SSH.WriteFile(ctx, "/etc/systemd/system/"+SupervisorUnit, bytes.NewReader(unit), 0o644); err != nil {
		return err
	}
	return s.SSH.Run(ctx, transport.Cmd{Args: []string{"sh", "-c", "mkdir -p " + provision.NodeLogDir + " && systemctl daemon-reload && systemctl enable --now " + SupervisorUnit}})
}

// CopyFile implements transport.Transport. It compares the SHA-256 and
// mode of path on the machine with the local file's, and copies only
// when they differ.
func (s *sshTransport) CopyFile(ctx context.Context, local, path string, mode fs.FileMode) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return err
	}
	want := fmt.Sprintf("%x %o", h.Sum(nil), mode.Perm())
	out, err := transport.Output(ctx, s.SSH, "sh", "-c", `set -e; s=$(sha256sum "$1"); m=$(stat -c %a "$1"); echo "${s%% *} $m"`, "sh", path)
	if err == nil && strings.TrimSpace(string(out)) == want {
		return nil
	}
	return s.SSH.CopyFile(ctx, local, path, mode)
}

func (p *Provider) dial(ctx context.Context, c *provision.Cluster, n provision.Node, timeout time.Duration) (*transport.SSH, error) {
	signer, err := userSigner(c.Name)
	if err != nil {
		return nil, err
	}
	return transport.DialSSH(ctx, transport.SSHConfig{
		Node:       n.Name,
		Addr:       net.JoinHostPort(n.IP.String(), "22"),
		User:       "root",
		Signer:     signer,
		KnownHosts: knownHostsPath(c.Name),
		Timeout:    timeout,
	})
}

// Describe implements provision.Describer: the VMs' accelerator and how it
// was chosen, as in "tcg: libvirt offers no KVM".
func (p *Provider) Describe(c *provision.Cluster) string {
	s, err := loadState(c.Name)
	if err != nil || s.Accel == "" {
		return ""
	}
	return s.Accel + ": " + s.AccelWhy
}

// Nodes implements provision.Provider: each machine's domain state.
func (p *Provider) Nodes(ctx context.Context, c *provision.Cluster) ([]provision.NodeState, error) {
	l, err := connect(ctx, p.uri(c.Name))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	accel := ""
	if s, err := loadState(c.Name); err == nil && s.Accel != "" {
		accel = ", " + s.Accel
	}
	var out []provision.NodeState
	for _, n := range c.Nodes {
		name := DomainName(c.Name, n.Name)
		st := provision.NodeState{Name: n.Name, State: "missing", Detail: "domain " + name}
		dom, err := l.DomainLookupByName(name)
		if err != nil {
			if !notFound(err) {
				return nil, fmt.Errorf("look up domain %s: %w", name, err)
			}
			out = append(out, st)
			continue
		}
		s, _, err := l.DomainGetState(dom, 0)
		if err != nil {
			return nil, fmt.Errorf("state of domain %s: %w", name, err)
		}
		st.State = "stopped"
		if golibvirt.DomainState(s) == golibvirt.DomainRunning {
			st.State = "running"
		}
		st.Detail = fmt.Sprintf("domain %s (%s%s)", name, domainStateName(golibvirt.DomainState(s)), accel)
		out = append(out, st)
	}
	return out, nil
}

func domainStateName(s golibvirt.DomainState) string {
	switch s {
	case golibvirt.DomainRunning:
		return "running"
	case golibvirt.DomainBlocked:
		return "blocked"
	case golibvirt.DomainPaused:
		return "paused"
	case golibvirt.DomainShutdown:
		return "shutting down"
	case golibvirt.DomainShutoff:
		return "shut off"
	case golibvirt.DomainCrashed:
		return "crashed"
	case golibvirt.DomainPmsuspended:
		return "suspended"
	}
	return "no state"
}

// Delete implements provision.Provider: it destroys and undefines the
// cluster's domains, networks and storage pool (with every volume in it).
// What does not exist is skipped, so it works after a partial create and
// when run twice. Objects are found by the plan's names and, for a lost
// plan, by klab's naming pattern.
func (p *Provider) Delete(ctx context.Context, c *provision.Cluster) error {
	l, err := connect(ctx, p.uri(c.Name))
	if err != nil {
		return fmt.Errorf("delete the VMs of cluster %s: %w", c.Name, err)
	}
	defer l.Close()
	var errs []error
	domains := map[string]bool{DomainName(c.Name, probeName): true}
	for _, n := range c.Nodes {
		domains[DomainName(c.Name, n.Name)] = true
	}
	networks := map[string]bool{}
	for _, s := range c.Subnets {
		networks[NetworkName(c.Name, s)] = true
	}
	domRE := regexp.MustCompile(`^klab-` + regexp.QuoteMeta(c.Name) + `-(master\d*|node\d+|router|` + probeName + `)$`)
	netRE := regexp.MustCompile(`^klab-` + regexp.QuoteMeta(c.Name) + `-[a-z]$`)
	if doms, _, err := l.ConnectListAllDomains(1, 0); err == nil {
		for _, d := range doms {
			if domRE.MatchString(d.Name) {
				domains[d.Name] = true
			}
		}
	}
	if nets, _, err := l.ConnectListAllNetworks(1, 0); err == nil {
		for _, n := range nets {
			if netRE.MatchString(n.Name) {
				networks[n.Name] = true
			}
		}
	}
	for name := range domains {
		if err := deleteDomain(l, name); err != nil {
			errs = append(errs, err)
		}
	}
	for name := range networks {
		if err := deleteNetwork(l, name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deletePool(l, PoolName(c.Name)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func deleteDomain(l *conn, name string) error {
	dom, err := l.DomainLookupByName(name)
	if notFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up domain %s: %w", name, err)
	}
	if err := l.DomainDestroyFlags(dom, golibvirt.DomainDestroyDefault); err != nil && !notFound(err) && !libvirtCode(err, golibvirt.ErrOperationInvalid) {
		return fmt.Errorf("stop domain %s: %w", name, err)
	}
	if err := l.DomainUndefineFlags(dom, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineSnapshotsMetadata|golibvirt.DomainUndefineNvram); err != nil && !notFound(err) {
		return fmt.Errorf("undefine domain %s: %w", name, err)
	}
	return nil
}

func deleteNetwork(l *conn, name string) error {
	n, err := l.NetworkLookupByName(name)
	if notFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up network %s: %w", name, err)
	}
	if err := l.NetworkDestroy(n); err != nil && !notFound(err) && !libvirtCode(err, golibvirt.ErrOperationInvalid) {
		return fmt.Errorf("stop network %s: %w", name, err)
	}
	if err := l.NetworkUndefine(n); err != nil && !notFound(err) {
		return fmt.Errorf("undefine network %s: %w", name, err)
	}
	return nil
}

// deletePool deletes every volume of a pool, its directory, and the pool.
func deletePool(l *conn, name string) error {
	pool, err := l.StoragePoolLookupByName(name)
	if notFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("look up storage pool %s: %w", name, err)
	}
	if active, err := l.StoragePoolIsActive(pool); err == nil && active == 0 {
		if err := l.StoragePoolCreate(pool, 0); err != nil {
			// It cannot start when its directory is gone: nothing is left in it.
			return undefinePool(l, pool)
		}
	}
	if err := l.StoragePoolRefresh(pool, 0); err != nil {
		return fmt.Errorf("refresh storage pool %s: %w", name, err)
	}
	vols, _, err := l.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return fmt.Errorf("list volumes of %s: %w", name, err)
	}
	var errs []error
	for _, v := range vols {
		if err := l.StorageVolDelete(v, golibvirt.StorageVolDeleteNormal); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete volume %s: %w", v.Name, err))
		}
	}
	if err := l.StoragePoolDestroy(pool); err != nil && !libvirtCode(err, golibvirt.ErrOperationInvalid) {
		errs = append(errs, fmt.Errorf("stop storage pool %s: %w", name, err))
	}
	if err := l.StoragePoolDelete(pool, golibvirt.StoragePoolDeleteNormal); err != nil {
		errs = append(errs, fmt.Errorf("remove the directory of storage pool %s: %w", name, err))
	}
	if err := undefinePool(l, pool); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func undefinePool(l *conn, pool golibvirt.StoragePool) error {
	if err := l.StoragePoolUndefine(pool); err != nil && !notFound(err) {
		return fmt.Errorf("undefine storage pool %s: %w", pool.Name, err)
	}
	return nil
}
