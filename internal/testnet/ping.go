package testnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// Sample is one echo request and what came back.
type Sample struct {
	Seq  int
	Sent time.Time
	RTT  time.Duration // 0: no reply
}

// Pinger sends ICMP echo requests with the don't-fragment bit from a
// namespace at a fixed interval and records the replies.
type Pinger struct {
	conn     net.PacketConn
	dst      netip.Addr
	id       int
	size     int
	interval time.Duration
	limit    int           // stop after this many requests; 0: never
	sentAll  chan struct{} // closed when the sender stops

	mu      sync.Mutex
	samples []Sample
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	err     error
}

// StartPinger starts pinging dst from src (an address in ns) every
// interval with size bytes of ICMP data (ping -s size -M do).
func StartPinger(ns *NS, src, dst netip.Addr, interval time.Duration, size int) (*Pinger, error) {
	return startPinger(ns, src, dst, interval, size, 0)
}

func startPinger(ns *NS, src, dst netip.Addr, interval time.Duration, size, limit int) (*Pinger, error) {
	pc, err := ns.ListenPacket(context.Background(), "ip4:icmp", src.String())
	if err != nil {
		return nil, fmt.Errorf("icmp socket in %s: %w", ns.Name, err)
	}
	sc, ok := pc.(syscall.Conn)
	if !ok {
		pc.Close()
		return nil, errors.New("icmp socket has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		pc.Close()
		return nil, err
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	})
	if serr != nil {
		pc.Close()
		return nil, fmt.Errorf("set don't-fragment: %w", serr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pinger{conn: pc, dst: dst, id: rand.IntN(1 << 16), size: size, interval: interval, limit: limit,
		sentAll: make(chan struct{}), cancel: cancel}
	p.wg.Add(2)
	go p.receive()
	go p.send(ctx)
	return p, nil
}

func (p *Pinger) send(ctx context.Context) {
	defer p.wg.Done()
	defer close(p.sentAll)
	data := make([]byte, p.size)
	for i := range data {
		data[i] = byte(i)
	}
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for seq := 0; p.limit == 0 || seq < p.limit; seq++ {
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: seq & 0xffff, Data: data}}
		b, err := m.Marshal(nil)
		if err != nil {
			p.fail(err)
			return
		}
		p.mu.Lock()
		p.samples = append(p.samples, Sample{Seq: seq, Sent: time.Now()})
		p.mu.Unlock()
		if _, err := p.conn.WriteTo(b, &net.IPAddr{IP: p.dst.AsSlice()}); err != nil && !errors.Is(err, unix.EMSGSIZE) &&
			!errors.Is(err, unix.ENETUNREACH) && !errors.Is(err, unix.EHOSTUNREACH) {
			p.fail(err)
			return
		}
		if seq+1 == p.limit {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *Pinger) receive() {
	defer p.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		now := time.Now()
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != p.id || len(e.Data) != p.size {
			continue
		}
		p.mu.Lock()
		// Sequence numbers wrap at 65536; the newest sample with it wins.
		for i := len(p.samples) - 1; i >= 0; i-- {
			if p.samples[i].Seq&0xffff == e.Seq {
				if p.samples[i].RTT == 0 {
					p.samples[i].RTT = max(now.Sub(p.samples[i].Sent), time.Nanosecond)
				}
				break
			}
		}
		p.mu.Unlock()
	}
}

func (p *Pinger) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// Samples is what happened so far.
func (p *Pinger) Samples() []Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Sample(nil), p.samples...)
}

// Stop stops sending, waits up to grace for the last replies, and returns
// every sample.
func (p *Pinger) Stop(grace time.Duration) ([]Sample, error) {
	p.cancel()
	time.AfterFunc(grace, func() { p.conn.Close() })
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Sample(nil), p.samples...), p.err
}

// Received counts the answered samples.
func Received(s []Sample) int {
	n := 0
	for _, x := range s {
		if x.RTT > 0 {
			n++
		}
	}
	return n
}

// LossWindow is the longest stretch of unanswered requests among samples
// sent in [from, to): from the first lost request's send time to the next
// answered one's, and how many were lost in all.
func LossWindow(s []Sample, from, to time.Time) (window time.Duration, lost int) {
	var start time.Time
	for _, x := range s {
		if x.Sent.Before(from) || !x.Sent.Before(to) {
			continue
		}
		if x.RTT == 0 {
			lost++
			if start.IsZero() {
				start = x.Sent
			}
			continue
		}
		if !start.IsZero() {
			window = max(window, x.Sent.Sub(start))
			start = time.Time{}
		}
	}
	if !start.IsZero() {
		window = max(window, to.Sub(start))
	}
	return window, lost
}

// Ping sends count requests of size bytes, interval apart, and reports how
// many were answered (waiting up to a second for the last).
func Ping(ns *NS, src, dst netip.Addr, count int, interval time.Duration, size int) (int, error) {
	p, err := startPinger(ns, src, dst, interval, size, count)
	if err != nil {
		return 0, err
	}
	<-p.sentAll
	deadline := time.Now().Add(time.Second)
	for wait := time.Millisecond; Received(p.Samples()) < count && time.Now().Before(deadline); wait = min(2*wait, 50*time.Millisecond) {
		time.Sleep(wait)
	}
	s, err := p.Stop(0)
	return Received(s), err
}
