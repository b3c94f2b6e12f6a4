// Package capture captures the frames of one network interface with an
// AF_PACKET socket, with kernel timestamps and their direction, for tests
// and for `klab trace`. It needs no libpcap (klab is a static binary) and
// decodes with gopacket.
//
// Open the capture on a thread inside the interface's network namespace
// (netmodes.Netns.Do); the socket stays in that namespace afterwards.
package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// Packet is one captured frame.
type Packet struct {
	Time      time.Time `json:"time"`
	Interface string    `json:"interface"`
	// Outgoing is set for frames this host sent, clear for frames it
	// received.
	Outgoing bool `json:"outgoing"`
	// Length is the frame's length; Data holds at most SnapLen bytes of it.
	Length int    `json:"length"`
	Data   []byte `json:"data"`
}

// Options tune a capture.
type Options struct {
	// SnapLen is how many bytes of each frame are kept; 0 keeps 65535.
	SnapLen int
}

// Capture is an open capture on one interface.
type Capture struct {
	f        *os.File
	rc       syscall.RawConn
	iface    string
	linkType layers.LinkType
	snap     int

	mu  sync.Mutex
	gen uint64 // which Read a context's cancellation belongs to
}

// Open starts capturing on iface, in the calling thread's network
// namespace.
func Open(iface string, opt Options) (_ *Capture, err error) {
	if opt.SnapLen <= 0 {
		opt.SnapLen = 65535
	}
	// Protocol 0: the socket receives nothing until bound to the interface.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: packet socket: %w", iface, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(iface)
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return nil, fmt.Errorf("capture on %s: no such interface: %w", iface, err)
	}
	index := int(ifr.Uint32())
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return nil, fmt.Errorf("capture on %s: link type: %w", iface, err)
	}
	lt := layers.LinkTypeEthernet
	switch ifr.Uint16() { // sa_family of the hardware address: ARPHRD_*
	case unix.ARPHRD_NONE, unix.ARPHRD_TUNNEL, unix.ARPHRD_IPGRE:
		lt = layers.LinkTypeRaw
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("capture on %s: timestamps: %w", iface, err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: index}); err != nil {
		return nil, fmt.Errorf("capture on %s: bind: %w", iface, err)
	}
	f := os.NewFile(uintptr(fd), "capture:"+iface)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture on %s: %w", iface, err)
	}
	return &Capture{f: f, rc: rc, iface: iface, linkType: lt, snap: opt.SnapLen}, nil
}

// LinkType is how the frames start: Ethernet, or bare IP on TUN and
// tunnel devices.
func (c *Capture) LinkType() layers.LinkType { return c.linkType }

// Read returns the next frame; it waits until one comes or ctx ends.
func (c *Capture) Read(ctx context.Context) (Packet, error) {
	// ctx's end sets a deadline in the past, which ends the wait; a late
	// cancellation of an earlier Read must not touch this one.
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.f.SetReadDeadline(time.Time{})
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gen == gen {
			c.f.SetReadDeadline(time.Now())
		}
	})
	defer stop()
	buf := make([]byte, c.snap)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	var (
		n, oobn int
		from    unix.Sockaddr
		rerr    error
	)
	err := c.rc.Read(func(fd uintptr) bool {
		n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		if ctx.Err() != nil {
			return Packet{}, ctx.Err()
		}
		return Packet{}, fmt.Errorf("capture on %s: %w", c.iface, err)
	}
	if rerr != nil {
		return Packet{}, fmt.Errorf("capture on %s: %w", c.iface, rerr)
	}
	p := Packet{Time: time.Now(), Interface: c.iface, Length: n, Data: buf[:min(n, len(buf))]}
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		p.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
	}
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := *(*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				p.Time = time.Unix(ts.Unix())
			}
		}
	}
	return p, nil
}

// Collect reads frames until it has n that match (all when match is nil)
// or ctx ends; it returns what it found, with ctx's error if it ended
// first.
func (c *Capture) Collect(ctx context.Context, n int, match func(Packet) bool) ([]Packet, error) {
	var out []Packet
	for len(out) < n {
		p, err := c.Read(ctx)
		if err != nil {
			return out, err
		}
		if match == nil || match(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// Decode decodes a frame with gopacket.
func (c *Capture) Decode(p Packet) gopacket.Packet {
	return gopacket.NewPacket(p.Data, c.linkType, gopacket.Default)
}

// Close stops the capture.
func (c *Capture) Close() error {
	if err := c.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
