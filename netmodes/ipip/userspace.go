package ipip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/klab-dev/klab/netmodes"
)

// Stats counts what the userspace encapsulator did.
type Stats struct {
	Encapsulated uint64 // packets read from tunl0 and sent to a peer
	Decapsulated uint64 // packets received from a peer and written to tunl0
	NoPeer       uint64 // inner destination in no peer's block
	UnknownPeer  uint64 // outer source is not a peer
	Malformed    uint64 // not IPv4 or not IPIP
	SendErrors   uint64 // the raw socket refused a packet
	WriteErrors  uint64 // tunl0 refused a packet
}

// encapsulator is the userspace ipip: a TUN device named tunl0 and a raw
// IP protocol 4 socket bound to the node's underlay address, both opened
// inside the node's namespace, and two goroutines between them.
type encapsulator struct {
	local netip.Addr // the raw socket's address
	tun   *os.File
	raw   *os.File
	rawc  syscall.RawConn
	table atomic.Pointer[PeerTable]

	encapsulated, decapsulated, noPeer, unknownPeer, malformed, sendErrors, writeErrors atomic.Uint64

	stop    func() bool // stops closing the files on ctx's end
	wg      sync.WaitGroup
	once    sync.Once
	stopped atomic.Bool // a loop ended: the files are closed
}

// openEncapsulator opens the TUN device and the raw socket in ns. The
// device is left down and unconfigured; start runs the goroutines.
func openEncapsulator(ns *netmodes.Netns, local netip.Addr) (_ *encapsulator, err error) {
	e := &encapsulator{local: local}
	e.table.Store(NewPeerTable(nil))
	err = ns.Do(func() error {
		var err error
		if e.tun, err = openTUN(Device); err != nil {
			return err
		}
		e.raw, err = openRaw(local)
		return err
	})
	if err != nil {
		e.closeFiles()
		return nil, err
	}
	if e.rawc, err = e.raw.SyscallConn(); err != nil {
		e.closeFiles()
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	return e, nil
}

// openTUN creates the TUN device name (IFF_TUN|IFF_NO_PI: bare IPv4
// packets) in the calling thread's namespace. It is not persistent: it goes
// when the file is closed, or when the process ends.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	// Non-blocking, so reads go through Go's poller and Close ends them.
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// openRaw opens an IPv4 raw socket for IP protocol 4 bound to local: the
// kernel writes the outer header (protocol 4, source local) of what is sent
// and delivers received IPIP packets to local with their outer header.
func openRaw(local netip.Addr) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, ProtocolIPIP)
	if err != nil {
		return nil, fmt.Errorf("raw IPIP socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: local.As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind raw IPIP socket to %s: %w", local, err)
	}
	// Room for bursts; best effort (needs CAP_NET_ADMIN, which the agent has).
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	return os.NewFile(uintptr(fd), "ipip:"+local.String()), nil
}

// start runs the two goroutines until ctx ends or close is called.
func (e *encapsulator) start(ctx context.Context) {
	e.stop = context.AfterFunc(ctx, e.closeFiles)
	e.wg.Add(2)
	go e.encapsulate()
	go e.decapsulate()
}

// close stops the goroutines and waits for them; the TUN device goes.
func (e *encapsulator) close() {
	if e.stop != nil {
		e.stop()
	}
	e.closeFiles()
	e.wg.Wait()
}

// alive reports whether both goroutines still run. They end, closing both
// files, when a read fails: when the device was deleted under them, or on
// close.
func (e *encapsulator) alive() bool { return !e.stopped.Load() }

func (e *encapsulator) closeFiles() {
	e.once.Do(func() {
		e.stopped.Store(true)
		if e.tun != nil {
			e.tun.Close()
		}
		if e.raw != nil {
			e.raw.Close()
		}
	})
}

// encapsulate reads inner packets from the TUN device and sends each to
// the peer whose block holds its destination.
func (e *encapsulator) encapsulate() {
	defer e.wg.Done()
	defer e.closeFiles()
	buf := make([]byte, 1<<16)
	for {
		n, err := e.tun.Read(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		dst, err := e.table.Load().Outer(pkt)
		switch {
		case errors.Is(err, ErrNoPeer):
			e.noPeer.Add(1)
			continue
		case err != nil:
			e.malformed.Add(1)
			continue
		}
		var serr error
		werr := e.rawc.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), pkt, 0, &unix.SockaddrInet4{Addr: dst.As4()})
			return serr != unix.EAGAIN
		})
		if werr != nil {
			if closed(werr) {
				return
			}
			serr = werr
		}
		if serr != nil {
			e.sendErrors.Add(1)
			continue
		}
		e.encapsulated.Add(1)
	}
}

// decapsulate receives IPIP packets, checks they come from a peer, and
// writes the inner packets to the TUN device.
func (e *encapsulator) decapsulate() {
	defer e.wg.Done()
	defer e.closeFiles()
	buf := make([]byte, 1<<16)
	for {
		n, err := e.raw.Read(buf)
		if err != nil {
			return
		}
		src, inner, err := Decapsulate(buf[:n])
		if err != nil {
			e.malformed.Add(1)
			continue
		}
		if !e.table.Load().Known(src) {
			e.unknownPeer.Add(1)
			continue
		}
		if _, err := e.tun.Write(inner); err != nil {
			if closed(err) {
				return
			}
			e.writeErrors.Add(1)
			continue
		}
		e.decapsulated.Add(1)
	}
}

func (e *encapsulator) stats() Stats {
	return Stats{
		Encapsulated: e.encapsulated.Load(),
		Decapsulated: e.decapsulated.Load(),
		NoPeer:       e.noPeer.Load(),
		UnknownPeer:  e.unknownPeer.Load(),
		Malformed:    e.malformed.Load(),
		SendErrors:   e.sendErrors.Load(),
		WriteErrors:  e.writeErrors.Load(),
	}
}

func closed(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADF) || errors.Is(err, unix.EBADFD)
}
