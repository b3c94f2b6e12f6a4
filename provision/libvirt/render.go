package libvirt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/klab-dev/klab/provision"
	"github.com/klab-dev/klab/templates"
)

// Names of what klab makes in libvirt: every object is klab-CLUSTER-….

// DomainName names a machine's domain.
func DomainName(cluster, node string) string { return "klab-" + cluster + "-" + node }

// NetworkName names a subnet's libvirt network.
func NetworkName(cluster string, s provision.Subnet) string { return "klab-" + cluster + "-" + s.Name }

// PoolName names the storage pool that holds a cluster's volumes.
func PoolName(cluster string) string { return "klab-" + cluster }

// PoolDir is where the pool keeps its volumes on the libvirt host.
func PoolDir(cluster string) string { return "/var/lib/libvirt/images/" + PoolName(cluster) }

// BridgeName names a subnet's bridge: the host's link into the underlay
// (Cluster.HostLink) for the first subnet, klab-CLUSTER.NAME (or a hash,
// when that is longer than an interface name may be) for the others.
func BridgeName(c *provision.Cluster, i int) string {
	if i == 0 {
		return c.HostLink
	}
	n := "klab-" + c.Name + "." + c.Subnets[i].Name
	if len(n) <= 15 {
		return n
	}
	h := sha256.Sum256([]byte(c.Name + "." + c.Subnets[i].Name))
	return "klab-" + hex.EncodeToString(h[:])[:10]
}

// MAC gives a machine's NIC a stable, locally administered address in
// QEMU's range.
func MAC(cluster, node string, nic int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", cluster, node, nic)))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

// networkData is what templates/libvirt/network.xml needs.
type networkData struct {
	Name, Bridge string
	HostIP       string // the host's address on the bridge (subnet a only)
	Prefix       int
	Gateway      string
	Routes       []netip.Prefix
	MTU          int // the bridge's and its taps'
}

// networkXML is the libvirt network of subnet i: an isolated bridge (no
// forwarding, no DHCP, no DNS). The first subnet carries the host's
// address and, with a router, routes to the others through it.
func networkXML(c *provision.Cluster, i int) ([]byte, error) {
	s := c.Subnets[i]
	d := networkData{Name: NetworkName(c.Name, s), Bridge: BridgeName(c, i), Prefix: s.CIDR.Bits(), MTU: c.MTU}
	if i == 0 {
		d.HostIP = c.HostIP.Addr().String()
		if s.Gateway.IsValid() {
			d.Gateway = s.Gateway.String()
			for _, o := range c.Subnets[1:] {
				d.Routes = append(d.Routes, o.CIDR)
			}
		}
	}
	return templates.Render("libvirt/network.xml", d)
}

// nic is one of a machine's network interfaces.
type nic struct {
	Name    string // eth0 in the machine
	Network string
	MAC     string
	Addr    netip.Prefix
	MTU     int // QEMU offers it to the guest's virtio driver (host_mtu)
}

// route is a static route of a machine.
type route struct {
	To  netip.Prefix
	Via netip.Addr
}

// machineNICs lists a machine's interfaces: one in its subnet, or one in
// every subnet for the router.
func machineNICs(c *provision.Cluster, n provision.Node) []nic {
	if n.Role == provision.RoleRouter {
		var out []nic
		for i, s := range c.Subnets {
			out = append(out, nic{Name: fmt.Sprintf("eth%d", i), Network: NetworkName(c.Name, s), MAC: MAC(c.Name, n.Name, i), Addr: netip.PrefixFrom(s.Gateway, s.CIDR.Bits()), MTU: c.MTU})
		}
		return out
	}
	s := c.Subnets[n.Subnet]
	return []nic{{Name: "eth0", Network: NetworkName(c.Name, s), MAC: MAC(c.Name, n.Name, 0), Addr: netip.PrefixFrom(n.IP, s.CIDR.Bits()), MTU: c.MTU}}
}

// machineRoutes are a machine's static routes: as on a real network, and
// as the netns provider's nodes have, a default route — through the
// router's address in its subnet when there is a router, else (and for the
// router itself) through the host's address. Pods need it too: a node
// answers a pod's ARP for its gateway (169.254.1.1, by proxy ARP) only
// when it has a route to that address.
func machineRoutes(c *provision.Cluster, n provision.Node) []route {
	gw := c.Subnets[n.Subnet].Gateway
	if n.Role == provision.RoleRouter || !gw.IsValid() {
		gw = c.HostIP.Addr()
	}
	return []route{{To: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: gw}}
}

// Cmdline is the kernel command line that configures a machine booted from
// klab's image (see templates/image/init).
func Cmdline(c *provision.Cluster, n provision.Node) string {
	args := []string{"console=ttyS0", "quiet", "klab.hostname=" + n.Name, "klab.disk=/dev/vda"}
	for _, i := range machineNICs(c, n) {
		args = append(args, "klab.ip="+i.Name+":"+i.Addr.String())
	}
	for _, r := range machineRoutes(c, n) {
		args = append(args, "klab.route="+r.To.String()+","+r.Via.String())
	}
	if n.Role == provision.RoleRouter {
		args = append(args, "klab.forward=1")
	}
	return strings.Join(args, " ")
}

// disk is a disk or CD-ROM of a domain.
type disk struct {
	Device, Format, Path, Target, Bus string
}

// domainData is what templates/libvirt/domain.xml needs.
type domainData struct {
	Type, Name, Title, Emulator string
	MemoryMiB, CPUs             int
	// Direct kernel boot (klab's image); empty to boot the disk.
	Kernel, Initrd, Cmdline string
	Disks                   []disk
	NICs                    []nic
	SerialLog               string
}

func domainXML(d domainData) ([]byte, error) { return templates.Render("libvirt/domain.xml", d) }

type poolData struct{ Name, Path string }

func poolXML(cluster string) ([]byte, error) {
	return templates.Render("libvirt/pool.xml", poolData{Name: PoolName(cluster), Path: PoolDir(cluster)})
}

type volumeData struct {
	Name          string
	Capacity      int64
	Format        string // raw, qcow2
	Backing       string // backing file (qcow2 overlays)
	BackingFormat string
}

func volumeXML(v volumeData) ([]byte, error) { return templates.Render("libvirt/volume.xml", v) }
