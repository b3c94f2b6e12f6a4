package libvirt

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/klab-dev/klab/provision"
)

func plan(t *testing.T, name string, workers, subnets int) *provision.Cluster {
	t.Helper()
	c, err := provision.Plan(provision.PlanOptions{Name: name, Provider: "libvirt", Masters: 1, Workers: workers, Subnets: subnets})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNetworkXML(t *testing.T) {
	c := plan(t, "kvx", 2, 2)
	for i, want := range []struct {
		name, bridge, ip string
		routes           []string
	}{
		{"klab-kvx-a", "klab-kvx", "192.168.34.254", []string{"192.168.35.0/24 via 192.168.34.1"}},
		{"klab-kvx-b", "klab-kvx.b", "", nil},
	} {
		x, err := networkXML(c, i)
		if err != nil {
			t.Fatal(err)
		}
		var n libvirtxml.Network
		if err := n.Unmarshal(string(x)); err != nil {
			t.Fatalf("subnet %d: %v\n%s", i, err, x)
		}
		if n.Name != want.name || n.Bridge == nil || n.Bridge.Name != want.bridge || n.Bridge.STP != "off" {
			t.Errorf("subnet %d: name %q bridge %+v", i, n.Name, n.Bridge)
		}
		if n.Forward != nil {
			t.Errorf("subnet %d: forward %+v, want an isolated network", i, n.Forward)
		}
		if n.DNS == nil || n.DNS.Enable != "no" {
			t.Errorf("subnet %d: DNS %+v, want disabled", i, n.DNS)
		}
		if n.MTU == nil || n.MTU.Size != 1500 {
			t.Errorf("subnet %d: MTU %+v, want 1500", i, n.MTU)
		}
		switch {
		case want.ip == "" && len(n.IPs) != 0:
			t.Errorf("subnet %d: host address %+v", i, n.IPs)
		case want.ip != "" && (len(n.IPs) != 1 || n.IPs[0].Address != want.ip || n.IPs[0].Prefix != 24 || n.IPs[0].DHCP != nil):
			t.Errorf("subnet %d: IPs %+v, want %s/24 without DHCP", i, n.IPs, want.ip)
		}
		var routes []string
		for _, r := range n.Routes {
			routes = append(routes, fmt.Sprintf("%s/%d via %s", r.Address, r.Prefix, r.Gateway))
		}
		if strings.Join(routes, ",") != strings.Join(want.routes, ",") {
			t.Errorf("subnet %d: routes %v, want %v", i, routes, want.routes)
		}
	}
	one := plan(t, "kvy", 2, 1)
	x, _ := networkXML(one, 0)
	var n libvirtxml.Network
	if err := n.Unmarshal(string(x)); err != nil || len(n.Routes) != 0 {
		t.Errorf("one subnet: %v routes %+v", err, n.Routes)
	}
	jumbo, err := provision.Plan(provision.PlanOptions{Name: "kvj", Provider: "libvirt", Masters: 1, Workers: 1, Subnets: 1, MTU: 9000})
	if err != nil {
		t.Fatal(err)
	}
	x, _ = networkXML(jumbo, 0)
	if err := n.Unmarshal(string(x)); err != nil || n.MTU == nil || n.MTU.Size != 9000 {
		t.Errorf("jumbo: %v MTU %+v, want 9000", err, n.MTU)
	}
	if nics := machineNICs(jumbo, jumbo.Nodes[1]); len(nics) != 1 || nics[0].MTU != 9000 {
		t.Errorf("jumbo: NICs %+v, want MTU 9000", nics)
	}
}

func TestDomainXML(t *testing.T) {
	c := plan(t, "kvx", 2, 2)
	router, _ := c.Node("router")
	for _, tc := range []struct {
		name  string
		d     domainData
		check func(t *testing.T, d *libvirtxml.Domain)
	}{
		{"klab image, emulated", domainData{
			Type: "qemu", Name: "klab-kvx-node2", Title: "klab cluster kvx: node2 (worker)", Emulator: "/usr/bin/qemu-system-x86_64",
			MemoryMiB: 1024, CPUs: 1, Kernel: "/pool/vmlinuz", Initrd: "/pool/node2.initrd", Cmdline: "console=ttyS0 klab.hostname=node2",
			Disks:     []disk{{Device: "disk", Format: "qcow2", Path: "/pool/node2.qcow2", Target: "vda", Bus: "virtio"}},
			NICs:      machineNICs(c, provision.Node{Name: "node2", Role: provision.RoleWorker, IP: netip.MustParseAddr("192.168.35.12"), Subnet: 1}),
			SerialLog: "/state/nodes/node2/serial.log",
		}, func(t *testing.T, d *libvirtxml.Domain) {
			if d.Type != "qemu" || d.Name != "klab-kvx-node2" || d.Memory.Value != 1024 || d.Memory.Unit != "MiB" || d.VCPU.Value != 1 {
				t.Errorf("domain %s type %s memory %+v vcpu %+v", d.Name, d.Type, d.Memory, d.VCPU)
			}
			if d.OS.Kernel != "/pool/vmlinuz" || d.OS.Initrd != "/pool/node2.initrd" || d.OS.Cmdline != "console=ttyS0 klab.hostname=node2" {
				t.Errorf("direct boot %+v", d.OS)
			}
			if d.CPU == nil || d.CPU.Mode != "maximum" {
				t.Errorf("cpu %+v, want maximum under emulation", d.CPU)
			}
			disks := d.Devices.Disks
			if len(disks) != 1 || disks[0].Target.Dev != "vda" || disks[0].Target.Bus != "virtio" || disks[0].Source.File.File != "/pool/node2.qcow2" || disks[0].Driver.Type != "qcow2" {
				t.Errorf("disks %+v", disks)
			}
			nics := d.Devices.Interfaces
			if len(nics) != 1 || nics[0].Source.Network.Network != "klab-kvx-b" || nics[0].Model.Type != "virtio" || nics[0].MAC.Address != MAC("kvx", "node2", 0) {
				t.Errorf("interfaces %+v", nics)
			}
			if len(nics) == 1 && (nics[0].MTU == nil || nics[0].MTU.Size != 1500) {
				t.Errorf("interface MTU %+v, want the underlay's 1500", nics[0].MTU)
			}
			if len(d.Devices.Serials) != 1 || d.Devices.Serials[0].Log == nil || d.Devices.Serials[0].Log.File != "/state/nodes/node2/serial.log" {
				t.Errorf("serial %+v", d.Devices.Serials)
			}
		}},
		{"cloud image, KVM, router", domainData{
			Type: "kvm", Name: "klab-kvx-router", Title: "klab cluster kvx: router (router)", Emulator: "/usr/bin/qemu-system-x86_64",
			MemoryMiB: 256, CPUs: 1,
			Disks: []disk{
				{Device: "disk", Format: "qcow2", Path: "/pool/router.qcow2", Target: "vda", Bus: "virtio"},
				{Device: "cdrom", Format: "raw", Path: "/pool/router-seed.iso", Target: "hdc", Bus: "ide"},
			},
			NICs: machineNICs(c, router), SerialLog: "/x.log",
		}, func(t *testing.T, d *libvirtxml.Domain) {
			if d.Type != "kvm" || d.CPU == nil || d.CPU.Mode != "host-passthrough" {
				t.Errorf("type %s cpu %+v", d.Type, d.CPU)
			}
			if d.OS.Kernel != "" || len(d.OS.BootDevices) != 1 || d.OS.BootDevices[0].Dev != "hd" {
				t.Errorf("os %+v, want boot from disk", d.OS)
			}
			if len(d.Devices.Disks) != 2 || d.Devices.Disks[1].Device != "cdrom" || d.Devices.Disks[1].ReadOnly == nil {
				t.Errorf("disks %+v", d.Devices.Disks)
			}
			if n := d.Devices.Interfaces; len(n) != 2 || n[0].Source.Network.Network != "klab-kvx-a" || n[1].Source.Network.Network != "klab-kvx-b" {
				t.Errorf("router interfaces %+v", n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := domainXML(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(string(x)); err != nil {
				t.Fatalf("%v\n%s", err, x)
			}
			tc.check(t, &d)
		})
	}
}

func TestStorageXML(t *testing.T) {
	x, err := poolXML("kvx")
	if err != nil {
		t.Fatal(err)
	}
	var p libvirtxml.StoragePool
	if err := p.Unmarshal(string(x)); err != nil {
		t.Fatal(err)
	}
	if p.Type != "dir" || p.Name != "klab-kvx" || p.Target.Path != "/var/lib/libvirt/images/klab-kvx" {
		t.Errorf("pool %+v target %+v", p, p.Target)
	}
	for _, v := range []volumeData{
		{Name: "node1.qcow2", Capacity: 8 << 30, Format: "qcow2"},
		{Name: "node1.qcow2", Capacity: 8 << 30, Format: "qcow2", Backing: "/pool/base.qcow2", BackingFormat: "qcow2"},
		{Name: "vmlinuz", Capacity: 123, Format: "raw"},
	} {
		x, err := volumeXML(v)
		if err != nil {
			t.Fatal(err)
		}
		var sv libvirtxml.StorageVolume
		if err := sv.Unmarshal(string(x)); err != nil {
			t.Fatal(err)
		}
		if sv.Name != v.Name || sv.Capacity.Value != uint64(v.Capacity) || sv.Target.Format.Type != v.Format {
			t.Errorf("volume %+v from %+v", sv, v)
		}
		if (sv.BackingStore != nil) != (v.Backing != "") || v.Backing != "" && (sv.BackingStore.Path != v.Backing || sv.BackingStore.Format.Type != "qcow2") {
			t.Errorf("backing store %+v from %+v", sv.BackingStore, v)
		}
	}
}

func TestXMLEscapes(t *testing.T) {
	x, err := domainXML(domainData{Type: "qemu", Name: "klab-a", Title: `a <b> & "c"`, Emulator: "/e", MemoryMiB: 1, CPUs: 1, SerialLog: "/l"})
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(string(x)); err != nil || d.Title != `a <b> & "c"` {
		t.Errorf("title %q, %v", d.Title, err)
	}
}

func TestCmdline(t *testing.T) {
	c := plan(t, "kvx", 2, 2)
	for node, want := range map[string]string{
		"master": "console=ttyS0 quiet klab.hostname=master klab.disk=/dev/vda klab.ip=eth0:192.168.34.10/24 klab.route=0.0.0.0/0,192.168.34.1",
		"node2":  "console=ttyS0 quiet klab.hostname=node2 klab.disk=/dev/vda klab.ip=eth0:192.168.35.12/24 klab.route=0.0.0.0/0,192.168.35.1",
		"router": "console=ttyS0 quiet klab.hostname=router klab.disk=/dev/vda klab.ip=eth0:192.168.34.1/24 klab.ip=eth1:192.168.35.1/24 klab.route=0.0.0.0/0,192.168.34.254 klab.forward=1",
	} {
		n, _ := c.Node(node)
		if got := Cmdline(c, n); got != want {
			t.Errorf("%s:\n got %s\nwant %s", node, got, want)
		}
	}
	// One subnet: the default route is the host's address.
	one := plan(t, "kvy", 1, 1)
	n, _ := one.Node("node1")
	if got, want := Cmdline(one, n), "klab.route=0.0.0.0/0,192.168.34.254"; !strings.HasSuffix(got, want) {
		t.Errorf("one subnet: %s, want it to end with %s", got, want)
	}
}

func TestNames(t *testing.T) {
	c := plan(t, "kvx", 2, 2)
	if got := DomainName("kvx", "node1"); got != "klab-kvx-node1" {
		t.Errorf("domain %s", got)
	}
	long := plan(t, "a-very-long-name-xy", 2, 2)
	for i := range long.Subnets {
		if b := BridgeName(long, i); len(b) > 15 || !strings.HasPrefix(b, "klab-") {
			t.Errorf("bridge %q", b)
		}
	}
	if BridgeName(long, 0) == BridgeName(long, 1) || BridgeName(c, 0) == BridgeName(c, 1) {
		t.Error("subnets share a bridge name")
	}
	// Cluster "kvx" subnet b and cluster "kvx-b" subnet a must not collide.
	other := plan(t, "kvx-b", 1, 1)
	if BridgeName(c, 1) == BridgeName(other, 0) {
		t.Errorf("bridge %s shared by two clusters", BridgeName(c, 1))
	}
	if m := MAC("kvx", "node1", 0); !strings.HasPrefix(m, "52:54:00:") || len(m) != 17 || m == MAC("kvx", "node1", 1) || m != MAC("kvx", "node1", 0) {
		t.Errorf("MAC %s", m)
	}
}

func TestCheckURI(t *testing.T) {
	for uri, ok := range map[string]bool{
		"qemu:///system":                                       true,
		"qemu+ssh://root@host/system":                          true,
		"qemu+ssh://host/system?no_verify=1":                   false,
		"qemu+libssh2://host/system?known_hosts_verify=ignore": false,
		"qemu+tls://host/system?no_verify=0":                   true,
	} {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkURI(u); (err == nil) != ok {
			t.Errorf("%s: %v", uri, err)
		}
	}
	if !isLocal("qemu:///system") || !isLocal("qemu+unix:///system?socket=/x") || isLocal("qemu+ssh://h/system") {
		t.Error("isLocal")
	}
}

func TestCleanConsole(t *testing.T) {
	in := "\x1bc\x1b[?7l\x1b[2JSeaBIOS\r\nklab: up\x07\n\x1b[6n/ # ok\tx\n"
	if got := string(CleanConsole([]byte(in))); got != "SeaBIOS\nklab: up\n/ # ok\tx\n" {
		t.Errorf("got %q", got)
	}
	f := filepath.Join(t.TempDir(), "serial.log")
	os.WriteFile(f, []byte(in+"line4\nline5\n"), 0o644)
	if got := TailLog(f, 2); got != "  line4\n  line5" {
		t.Errorf("TailLog: %q", got)
	}
	if TailLog(filepath.Join(t.TempDir(), "none"), 3) != "" {
		t.Error("TailLog of a missing file")
	}
}

func TestEmulator(t *testing.T) {
	caps := `<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
<guest><os_type>hvm</os_type><arch name='i686'><emulator>/usr/bin/qemu-system-i386</emulator><domain type='qemu'/></arch></guest>
<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize><emulator>/usr/bin/qemu-system-x86_64</emulator><domain type='qemu'/>%s</arch></guest>
</capabilities>`
	for kvmDom, want := range map[string]bool{"": false, "<domain type='kvm'/>": true} {
		path, kvm, err := emulator(strings.Replace(caps, "%s", kvmDom, 1))
		if err != nil || path != "/usr/bin/qemu-system-x86_64" || kvm != want {
			t.Errorf("%q: %s %v %v", kvmDom, path, kvm, err)
		}
	}
	if _, _, err := emulator(`<capabilities><host/></capabilities>`); err == nil {
		t.Error("no x86_64 guest: no error")
	}
}

func TestQcow2Size(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "a.qcow2")
	h := make([]byte, 512)
	copy(h, "QFI\xfb\x00\x00\x00\x03")
	h[24+3] = 0x01 // 1 << 32
	os.WriteFile(q, h, 0o644)
	if n, err := qcow2Size(q); err != nil || n != 1<<32 {
		t.Errorf("size %d, %v", n, err)
	}
	raw := filepath.Join(dir, "a.raw")
	os.WriteFile(raw, make([]byte, 512), 0o644)
	if _, err := qcow2Size(raw); err == nil || !strings.Contains(err.Error(), "not a qcow2 image") {
		t.Errorf("raw: %v", err)
	}
}
