package libvirt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/provision/image"
	"github.com/klab-dev/klab/provision/transport"
)

// boot is what every machine of a cluster boots from.
type boot struct {
	emulator string
	hasKVM   bool
	// klab's node image: the kernel's volume and the base initramfs.
	kernel string
	base   []byte
	// preload is an archive holding the klab binary at its place on the
	// machines, appended to every machine's initramfs, so that installing
	// it finds it there (see sshTransport.CopyFile).
	preload []byte
	// a cloud image: its volume and virtual size.
	cloudBase string
	cloudSize int64
}

// probeName is the boot probe's domain, klab-CLUSTER-probe.
const probeName = "probe"

var bootsMu sync.Mutex

// prepareBoot finds the emulator, and builds (or finds in the cache) klab's
// node image and uploads its kernel — or uploads the cloud image.
func (p *Provider) prepareBoot(ctx context.Context, l *conn, c *provision.Cluster, st *state) (*boot, error) {
	bootsMu.Lock()
	defer bootsMu.Unlock()
	if b, ok := p.boots[c.Name]; ok {
		return b, nil
	}
	capsXML, err := l.ConnectGetCapabilities()
	if err != nil {
		return nil, fmt.Errorf("libvirt capabilities: %w", err)
	}
	b := &boot{}
	if b.emulator, b.hasKVM, err = emulator(capsXML); err != nil {
		return nil, err
	}
	if p.Opts.CloudImage != "" {
		if b.cloudSize, err = qcow2Size(p.Opts.CloudImage); err != nil {
			return nil, err
		}
		if b.cloudBase, err = uploadFile(l, c.Name, "base.qcow2", "raw", p.Opts.CloudImage); err != nil {
			return nil, err
		}
	} else {
		img, err := image.Build(ctx, p.Opts.Image)
		if err != nil {
			return nil, fmt.Errorf("node image: %w", err)
		}
		st.NodeImage = img.Hash
		if b.base, err = os.ReadFile(img.Initrd); err != nil {
			return nil, err
		}
		if b.kernel, err = uploadFile(l, c.Name, "vmlinuz", "raw", img.Kernel); err != nil {
			return nil, err
		}
		if p.Binary != "" {
			if b.preload, err = preloadArchive(p.Binary); err != nil {
				return nil, err
			}
		}
	}
	if p.boots == nil {
		p.boots = map[string]*boot{}
	}
	p.boots[c.Name] = b
	return b, nil
}

// preloadArchive is an uncompressed cpio archive holding the klab binary
// at provision.NodeBinary.
func preloadArchive(binary string) ([]byte, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("klab binary: %w", err)
	}
	var buf bytes.Buffer
	c := image.NewCPIO(&buf)
	if err := c.File(provision.NodeBinary, data, 0o755); err != nil {
		return nil, err
	}
	if err := c.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// emulator reads libvirt's capabilities: the x86-64 emulator, and whether
// libvirt offers KVM domains.
func emulator(capsXML string) (path string, kvm bool, err error) {
	var caps libvirtxml.Caps
	if err := caps.Unmarshal(capsXML); err != nil {
		return "", false, fmt.Errorf("parse libvirt capabilities: %w", err)
	}
	for _, g := range caps.Guests {
		if g.OSType != "hvm" || g.Arch.Name != "x86_64" {
			continue
		}
		for _, d := range g.Arch.Domains {
			if d.Type == "kvm" {
				kvm = true
			}
		}
		return g.Arch.Emulator, kvm, nil
	}
	return "", false, errors.New("libvirt offers no x86_64 virtual machines: install qemu-system-x86 on the libvirt host and restart libvirtd")
}

// qcow2Size checks that file is a qcow2 image and returns its virtual size.
func qcow2Size(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, fmt.Errorf("cloud image: %w", err)
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != "QFI\xfb" {
		return 0, fmt.Errorf("cloud image %s is not a qcow2 image", file)
	}
	return int64(binary.BigEndian.Uint64(h[24:])), nil
}

// chooseAccel settles between KVM and emulation: what was asked for, or
// with "auto" KVM when libvirt offers it and a probe VM boots with it in
// time (nested KVM can hang instead).
func (p *Provider) chooseAccel(ctx context.Context, l *conn, c *provision.Cluster, st *state, b *boot) error {
	switch p.Opts.Accel {
	case AccelTCG:
		st.Accel, st.AccelWhy = AccelTCG, "--accel tcg"
		return nil
	case AccelKVM:
		if !b.hasKVM {
			return errors.New("--accel kvm: libvirt offers no KVM here (is /dev/kvm there and usable by libvirtd?): use --accel tcg")
		}
		st.Accel, st.AccelWhy = AccelKVM, "--accel kvm"
		return nil
	case AccelAuto:
	default:
		return fmt.Errorf("--accel %q: use auto, kvm or tcg", p.Opts.Accel)
	}
	switch {
	case !b.hasKVM:
		st.Accel, st.AccelWhy = AccelTCG, "libvirt offers no KVM"
	case b.kernel == "":
		st.Accel, st.AccelWhy = AccelKVM, "libvirt offers KVM"
	default:
		if err := p.probeKVM(ctx, l, c, b); err != nil {
			st.Accel, st.AccelWhy = AccelTCG, "KVM boot probe failed: "+err.Error()
			if l.local && pvmHost() {
				st.AccelWhy += " (this host's /dev/kvm is kvm_pvm, which boots only kernels built as PVM guests)"
			}
		} else {
			st.Accel, st.AccelWhy = AccelKVM, "KVM boot probe succeeded"
		}
	}
	return nil
}

// pvmHost reports whether this machine's KVM is PVM (kvm_pvm, the
// pagetable-based virtual machine that runs KVM where the CPU offers no
// VMX, as in nested cloud sandboxes). PVM runs only guest kernels built
// with CONFIG_PVM_GUEST: a stock kernel hangs right after the BIOS hands
// it over, which is what the boot probe then sees.
func pvmHost() bool {
	_, err := os.Stat("/sys/module/kvm_pvm")
	return err == nil
}

// ProbeTimeout bounds the KVM boot probe.
const ProbeTimeout = 30 * time.Second

// probeKVM boots klab's image under KVM with "klab.probe", which makes
// its init power off at once, and waits for the domain to go away.
func (p *Provider) probeKVM(ctx context.Context, l *conn, c *provision.Cluster, b *boot) error {
	initrd, err := uploadBytes(l, c.Name, "probe.initrd", "raw", b.base)
	if err != nil {
		return err
	}
	name := DomainName(c.Name, probeName)
	x, err := domainXML(domainData{
		Type: "kvm", Name: name, Title: "klab " + c.Name + ": KVM boot probe", Emulator: b.emulator,
		MemoryMiB: 256, CPUs: 1, Kernel: b.kernel, Initrd: initrd, Cmdline: "console=ttyS0 quiet klab.probe",
		SerialLog: serialLog(p.uri(c.Name), c.Name, probeName),
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(nodeDir(c.Name, probeName), 0o755); err != nil {
		return err
	}
	dom, err := l.DomainCreateXML(string(x), golibvirt.DomainNone)
	if err != nil {
		return fmt.Errorf("start: %s", oneLine(err))
	}
	defer deleteDomain(l, name)
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		s, _, err := l.DomainGetState(dom, 0)
		if notFound(err) || err == nil && golibvirt.DomainState(s) == golibvirt.DomainShutoff {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the probe VM did not power off within %s", ProbeTimeout)
		case <-time.After(wait):
		}
	}
}

// CreateNodes implements provision.Provider: the cluster members' VMs,
// created in parallel; it returns when every one answers on SSH.
func (p *Provider) CreateNodes(ctx context.Context, c *provision.Cluster) error {
	l, err := connect(ctx, p.uri(c.Name))
	if err != nil {
		return err
	}
	defer l.Close()
	st, err := loadState(c.Name)
	if err != nil {
		return fmt.Errorf("cluster %s: the libvirt provider's state is missing (%w): create its network first", c.Name, err)
	}
	b, err := p.prepareBoot(ctx, l, c, st)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		if n.Role == provision.RoleRouter {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.createMachine(ctx, l, c, st, b, n); err != nil {
				errs[i] = err
				return
			}
			errs[i] = p.waitBoot(ctx, l, c, st, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// addrs are a machine's underlay addresses, as known_hosts names them.
func addrs(c *provision.Cluster, n provision.Node) []string {
	var out []string
	for _, i := range machineNICs(c, n) {
		out = append(out, i.Addr.Addr().String())
	}
	return out
}

// serialLog is where a machine's serial console is logged: in the
// cluster's state directory when libvirt runs here, in libvirt's own log
// directory on a remote libvirt host.
func serialLog(uri, cluster, node string) string {
	if isLocal(uri) {
		return filepath.Join(nodeDir(cluster, node), "serial.log")
	}
	return "/var/log/libvirt/qemu/" + DomainName(cluster, node) + "-serial.log"
}

// SerialLog returns the file a machine's serial console is logged to, and
// whether it is on this host.
func (p *Provider) SerialLog(c *provision.Cluster, node string) (path string, local bool, err error) {
	if _, ok := c.Node(node); !ok {
		return "", false, fmt.Errorf("no node %q in cluster %q: its nodes are %s", node, c.Name, strings.Join(c.NodeNames(), ", "))
	}
	uri := p.uri(c.Name)
	return serialLog(uri, c.Name, node), isLocal(uri), nil
}

// createMachine makes a machine's host key (pinned in known_hosts before
// it boots), its disk and boot files, and defines and starts its domain.
func (p *Provider) createMachine(ctx context.Context, l *conn, c *provision.Cluster, st *state, b *boot, n provision.Node) error {
	name := DomainName(c.Name, n.Name)
	hostKey, hostPub, err := transport.NewKey(name)
	if err != nil {
		return err
	}
	if err := pinHostKey(c.Name, addrs(c, n), hostPub); err != nil {
		return fmt.Errorf("%s: pin host key: %w", n.Name, err)
	}
	userPub, err := ensureUserKey(c.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(nodeDir(c.Name, n.Name), 0o755); err != nil {
		return err
	}
	mem := p.Opts.MemoryMiB
	if n.Role == provision.RoleRouter {
		mem = 256
	}
	d := domainData{
		Type: "qemu", Name: name, Emulator: b.emulator, MemoryMiB: mem, CPUs: p.Opts.CPUs,
		Title:     fmt.Sprintf("klab cluster %s: %s (%s)", c.Name, n.Name, n.Role),
		NICs:      machineNICs(c, n),
		SerialLog: serialLog(st.URI, c.Name, n.Name),
	}
	if st.Accel == AccelKVM {
		d.Type = "kvm"
	}
	diskSize := int64(p.Opts.DiskGiB) << 30
	if b.kernel != "" {
		archive, err := image.NodeArchive(image.NodeConfig{HostKey: hostKey, HostKeyPub: hostPub, AuthorizedKeys: []string{userPub}})
		if err != nil {
			return err
		}
		if d.Initrd, err = uploadBytes(l, c.Name, n.Name+".initrd", "raw", image.Concat(b.base, b.preload, archive)...); err != nil {
			return err
		}
		d.Kernel, d.Cmdline = b.kernel, Cmdline(c, n)
		disk0, err := emptyVolume(l, c.Name, volumeData{Name: n.Name + ".qcow2", Capacity: diskSize, Format: "qcow2"})
		if err != nil {
			return err
		}
		d.Disks = []disk{{Device: "disk", Format: "qcow2", Path: disk0, Target: "vda", Bus: "virtio"}}
	} else {
		seed, err := image.Seed(seedConfig(c, n, name, userPub, hostKey, hostPub))
		if err != nil {
			return err
		}
		iso, err := uploadBytes(l, c.Name, n.Name+"-seed.iso", "raw", seed)
		if err != nil {
			return err
		}
		disk0, err := emptyVolume(l, c.Name, volumeData{Name: n.Name + ".qcow2", Capacity: max(diskSize, b.cloudSize), Format: "qcow2", Backing: b.cloudBase, BackingFormat: "qcow2"})
		if err != nil {
			return err
		}
		d.Disks = []disk{
			{Device: "disk", Format: "qcow2", Path: disk0, Target: "vda", Bus: "virtio"},
			{Device: "cdrom", Format: "raw", Path: iso, Target: "hdc", Bus: "ide"},
		}
	}
	x, err := domainXML(d)
	if err != nil {
		return err
	}
	dom, err := l.DomainDefineXML(string(x))
	if err != nil {
		return fmt.Errorf("%s: define domain %s: %s", n.Name, name, oneLine(err))
	}
	if err := l.DomainCreate(dom); err != nil {
		return fmt.Errorf("%s: start domain %s: %s", n.Name, name, oneLine(err))
	}
	return nil
}

func seedConfig(c *provision.Cluster, n provision.Node, id, userPub string, hostKey []byte, hostPub string) image.SeedConfig {
	s := image.SeedConfig{Hostname: n.Name, InstanceID: id, AuthorizedKey: userPub, HostKey: hostKey, HostKeyPub: hostPub, Forward: n.Role == provision.RoleRouter}
	for k, i := range machineNICs(c, n) {
		si := image.SeedInterface{Name: i.Name, MAC: i.MAC, Address: i.Addr.String()}
		// The routes' gateways are in the first interface's subnet.
		for _, r := range machineRoutes(c, n) {
			if k == 0 {
				si.Routes = append(si.Routes, image.SeedRoute{To: r.To.String(), Via: r.Via.String()})
			}
		}
		s.Interfaces = append(s.Interfaces, si)
	}
	return s
}

// bootTimeout is how long a machine may take to answer on SSH.
func (p *Provider) bootTimeout(st *state) time.Duration {
	switch {
	case p.Opts.BootTimeout > 0:
		return p.Opts.BootTimeout
	case st.Accel == AccelKVM:
		return 2 * time.Minute
	}
	return 5 * time.Minute
}

// TCGSlowdown is how many times as long as on the host the install
// waits for klab's components on machines whose CPU QEMU emulates (its
// TCG runs them 5 to 20 times slower); with KVM they run at about the
// host's speed.
const TCGSlowdown = 5

// Slowdown implements install.Slow: TCGSlowdown for machines under
// emulation, 1 with KVM.
func (p *Provider) Slowdown(c *provision.Cluster) int {
	if s, err := loadState(c.Name); err == nil && s.Accel == AccelKVM {
		return 1
	}
	return TCGSlowdown
}

// waitBoot waits until a machine's sshd answers with its pinned host key
// and accepts the cluster's key. A machine that stops, presents another
// host key, or does not answer in time is an error that shows the end of
// its serial console.
func (p *Provider) waitBoot(ctx context.Context, l *conn, c *provision.Cluster, st *state, n provision.Node) error {
	name := DomainName(c.Name, n.Name)
	timeout := p.bootTimeout(st)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		dom, err := l.DomainLookupByName(name)
		if err != nil {
			return fmt.Errorf("%s: domain %s: %s", n.Name, name, oneLine(err))
		}
		if s, _, err := l.DomainGetState(dom, 0); err == nil && golibvirt.DomainState(s) != golibvirt.DomainRunning {
			return p.bootError(c, n, fmt.Sprintf("VM %s stopped while booting (%s)", name, domainStateName(golibvirt.DomainState(s))))
		}
		actx, acancel := context.WithTimeout(ctx, 20*time.Second)
		t, err := p.dial(actx, c, n, 5*time.Second)
		acancel()
		if err == nil {
			t.Close()
			return nil
		}
		last = err
		if msg := err.Error(); strings.Contains(msg, "host key mismatch") || strings.Contains(msg, "unable to authenticate") {
			return err // it names the node
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), context.Canceled) {
				return ctx.Err()
			}
			return p.bootError(c, n, fmt.Sprintf("VM %s did not answer on SSH within %s (%s, last: %v)", name, timeout, st.Accel, last))
		case <-time.After(wait):
		}
	}
}

// bootError is a boot failure with the last lines of the serial console.
func (p *Provider) bootError(c *provision.Cluster, n provision.Node, what string) error {
	path, local, _ := p.SerialLog(c, n.Name)
	if !local {
		return fmt.Errorf("%s: %s; its serial console is logged to %s on the libvirt host", n.Name, what, path)
	}
	lines := TailLog(path, 15)
	if lines == "" {
		return fmt.Errorf("%s: %s; its serial console (%s) is empty", n.Name, what, path)
	}
	return fmt.Errorf("%s: %s; last lines of its serial console (%s):\n%s", n.Name, what, path, lines)
}

// TailLog returns the last n lines of a serial log, without terminal
// control sequences, indented for an error message.
func TailLog(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	text := strings.ReplaceAll(string(CleanConsole(b)), "\r", "")
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, "  "+l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CleanConsole strips terminal control sequences (ESC [ … letter, ESC c)
// and other control characters but newlines and tabs from console output.
func CleanConsole(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); i++ {
		switch ch := b[i]; {
		case ch == 0x1b:
			if i+1 < len(b) && b[i+1] == '[' {
				i += 2
				for i < len(b) && !(b[i] >= 0x40 && b[i] <= 0x7e) {
					i++
				}
			} else {
				i++
			}
		case ch == '\n' || ch == '\t' || ch >= 0x20 && ch != 0x7f:
			out.WriteByte(ch)
		}
	}
	return out.Bytes()
}
