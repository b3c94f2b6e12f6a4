package capture_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/internal/testnet"
	"github.com/klab-dev/klab/internal/testutil"
	"github.com/klab-dev/klab/netmodes/capture"
)

func open(t *testing.T, ns *testnet.NS, iface string) *capture.Capture {
	t.Helper()
	var c *capture.Capture
	if err := ns.Do(func() error {
		var err error
		c, err = capture.Open(iface, capture.Options{SnapLen: 128})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udp sends one datagram from ns to dst:port.
func udp(t *testing.T, ns *testnet.NS, dst netip.Addr, payload string) {
	t.Helper()
	c, err := ns.Dial(t.Context(), "udp", netip.AddrPortFrom(dst, 9999).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationCapture(t *testing.T) {
	testutil.RequireRoot(t)
	l := testnet.New(t, 2, 1)
	n1, n2 := l.Nodes[0], l.Nodes[1]
	c := open(t, n1.NS, "eth0")
	if c.LinkType() != layers.LinkTypeEthernet {
		t.Fatalf("link type %s", c.LinkType())
	}
	isUDP := func(payload string) func(capture.Packet) bool {
		return func(p capture.Packet) bool {
			u, ok := c.Decode(p).Layer(layers.LayerTypeUDP).(*layers.UDP)
			return ok && string(u.Payload) == payload
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	udp(t, n1.NS, n2.IP(), "out")
	ps, err := c.Collect(ctx, 1, isUDP("out"))
	if err != nil {
		t.Fatal(err)
	}
	if p := ps[0]; !p.Outgoing || p.Interface != "eth0" || p.Length != 14+20+8+3 || p.Time.Before(start.Add(-time.Second)) || p.Time.After(time.Now()) {
		t.Fatalf("outgoing packet %+v", p)
	}
	udp(t, n2.NS, n1.IP(), "in")
	ps, err = c.Collect(ctx, 1, isUDP("in"))
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].Outgoing {
		t.Fatal("a received packet marked outgoing")
	}

	// A snap length cuts the data, not the length.
	udp(t, n1.NS, n2.IP(), string(make([]byte, 1000)))
	ps, err = c.Collect(ctx, 1, func(p capture.Packet) bool { return p.Length > 1000 })
	if err != nil {
		t.Fatal(err)
	}
	if len(ps[0].Data) != 128 || ps[0].Length != 14+20+8+1000 {
		t.Fatalf("snapped packet: %d of %d bytes", len(ps[0].Data), ps[0].Length)
	}

	// The end of the context ends a wait; the next wait is not affected.
	short, stop := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer stop()
	if _, err := c.Collect(short, 1, isUDP("never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
	udp(t, n1.NS, n2.IP(), "again")
	if _, err := c.Collect(ctx, 1, isUDP("again")); err != nil {
		t.Fatalf("after a cancelled read: %v", err)
	}
}

// TestIntegrationCaptureTUN captures on a TUN device: bare IP frames.
func TestIntegrationCaptureTUN(t *testing.T) {
	testutil.RequireRoot(t)
	l := testnet.New(t, 1, 1)
	ns := l.Nodes[0].NS
	var tun *os.File
	if err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq("kttun0")
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return err
		}
		tun = os.NewFile(uintptr(fd), "tun")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	link, err := ns.Netlink().LinkByName("kttun0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Netlink().LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	c := open(t, ns, "kttun0")
	if c.LinkType() != layers.LinkTypeRaw {
		t.Fatalf("link type %s", c.LinkType())
	}
	// A packet written to the TUN device is one the kernel receives on it.
	pkt := []byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 251, 9, 1, 10, 251, 9, 2, 0, 1, 0, 2, 0, 8, 0, 0}
	if _, err := tun.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ps, err := c.Collect(ctx, 1, func(p capture.Packet) bool {
		ip, ok := c.Decode(p).Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return ok && ip.DstIP.String() == "10.251.9.2"
	})
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].Outgoing || ps[0].Length != len(pkt) {
		t.Fatalf("packet %+v", ps[0])
	}
}
