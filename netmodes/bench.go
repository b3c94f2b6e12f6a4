package netmodes

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// The bench protocol, for `klab bench modes`: the client sends one byte
// that names the test. For a throughput test ('T') it then streams the
// bench pattern (benchBlock over and over) and half-closes; the server
// compares every byte it receives with the pattern and answers with the
// byte count and where the first wrong byte was (0: none, else offset+1).
// The sender does no work per byte beyond the send, and the receiver a
// memory compare, so the figure is the network path's, not a hash's. For
// a round-trip test ('P') the client sends single bytes and the server
// echoes each.
const (
	benchThroughput = 'T'
	benchPing       = 'P'
)

// benchBlock is the pattern a throughput test sends: pseudo-random bytes
// from a fixed seed, which both ends make.
var benchBlock = func() []byte {
	b := make([]byte, 128<<10)
	rand.NewChaCha8([32]byte{'k', 'l', 'a', 'b'}).Read(b)
	return b
}

// BenchOptions say how much to measure.
type BenchOptions struct {
	// Bytes sends exactly this many bytes; 0 sends for Duration.
	Bytes int64
	// Duration of the throughput test when Bytes is 0; 0 is 2s.
	Duration time.Duration
	// Pings is how many round trips to time; 0 is 200.
	Pings int
}

// BenchResult is one measurement between two endpoints.
type BenchResult struct {
	Bytes         int64         `json:"bytes"`
	Elapsed       time.Duration `json:"elapsed"`
	BitsPerSecond float64       `json:"bitsPerSecond"`
	// RTT is the median round trip of a one-byte message over TCP.
	RTT    time.Duration `json:"rtt"`
	RTTMin time.Duration `json:"rttMin"`
	RTTMax time.Duration `json:"rttMax"`
}

// Ratio is r's throughput as a fraction of base's (the raw underlay's).
func (r BenchResult) Ratio(base BenchResult) float64 {
	if base.BitsPerSecond == 0 {
		return 0
	}
	return r.BitsPerSecond / base.BitsPerSecond
}

// String is the result in a line: "9.41 Gbit/s, rtt 41µs".
func (r BenchResult) String() string {
	return fmt.Sprintf("%.2f Gbit/s, rtt %s", r.BitsPerSecond/1e9, r.RTT)
}

// ServeBench answers bench clients on ln until ctx ends; it closes ln.
func ServeBench(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("bench server: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cstop := context.AfterFunc(ctx, func() { c.Close() })
			defer cstop()
			defer c.Close()
			serveBenchConn(c)
		}()
	}
}

func serveBenchConn(c net.Conn) {
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	switch op[0] {
	case benchThroughput:
		n, bad, err := checkPattern(c, benchBlock())
		if err != nil {
			return
		}
		var reply [16]byte
		binary.BigEndian.PutUint64(reply[:8], uint64(n))
		binary.BigEndian.PutUint64(reply[8:], uint64(bad))
		c.Write(reply[:])
	case benchPing:
		var b [1]byte
		for {
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				return
			}
		}
	}
}

// checkPattern reads r to its end and compares what arrives with block
// repeated. It returns the byte count and the offset+1 of the first byte
// that differs (0: none).
func checkPattern(r io.Reader, block []byte) (n, bad int64, err error) {
	buf := make([]byte, len(block))
	for {
		k, err := io.ReadFull(r, buf)
		if bad == 0 && !bytes.Equal(buf[:k], block[:k]) {
			for i := range k {
				if buf[i] != block[i] {
					bad = n + int64(i) + 1
					break
				}
			}
		}
		n += int64(k)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return n, bad, nil
		case err != nil:
			return n, bad, err
		}
	}
}

// Dialer connects to a bench server, from a pod's or a node's namespace
// (see Netns.Dial).
type Dialer func(context.Context) (net.Conn, error)

// RunBench measures throughput and round-trip time to a bench server over
// connections made by dial. It checks that every byte arrived intact.
func RunBench(ctx context.Context, dial Dialer, opt BenchOptions) (BenchResult, error) {
	if opt.Duration == 0 {
		opt.Duration = 2 * time.Second
	}
	if opt.Pings == 0 {
		opt.Pings = 200
	}
	var r BenchResult
	if err := benchThroughputRun(ctx, dial, opt, &r); err != nil {
		return r, err
	}
	if err := benchPingRun(ctx, dial, opt.Pings, &r); err != nil {
		return r, err
	}
	return r, nil
}

func benchThroughputRun(ctx context.Context, dial Dialer, opt BenchOptions, r *BenchResult) error {
	c, err := dial(ctx)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := benchBlock()
	start := time.Now()
	if _, err := c.Write([]byte{benchThroughput}); err != nil {
		return fmt.Errorf("bench: send: %w", err)
	}
	var sent int64
	deadline := start.Add(opt.Duration)
	for {
		// Every write starts at a block boundary, as the server expects.
		chunk := buf
		if opt.Bytes > 0 {
			if sent >= opt.Bytes {
				break
			}
			chunk = buf[:min(int64(len(buf)), opt.Bytes-sent)]
		} else if time.Now().After(deadline) {
			break
		}
		n, err := c.Write(chunk)
		sent += int64(n)
		if err != nil {
			return fmt.Errorf("bench: send after %d bytes: %w", sent, err)
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("bench: close: %w", err)
		}
	}
	var reply [16]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return fmt.Errorf("bench: read the server's count after sending %d bytes: %w", sent, err)
	}
	r.Elapsed = time.Since(start)
	got, bad := int64(binary.BigEndian.Uint64(reply[:8])), int64(binary.BigEndian.Uint64(reply[8:]))
	if got != sent {
		return fmt.Errorf("bench: sent %d bytes, the server received %d", sent, got)
	}
	if bad != 0 {
		return fmt.Errorf("bench: the data arrived corrupted (first wrong byte at offset %d)", bad-1)
	}
	r.Bytes = sent
	r.BitsPerSecond = float64(sent) * 8 / r.Elapsed.Seconds()
	return nil
}

func benchPingRun(ctx context.Context, dial Dialer, n int, r *BenchResult) error {
	c, err := dial(ctx)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := c.Write([]byte{benchPing}); err != nil {
		return fmt.Errorf("bench: send: %w", err)
	}
	rtts := make([]time.Duration, 0, n)
	var b [1]byte
	for i := range n {
		t := time.Now()
		b[0] = byte(i)
		if _, err := c.Write(b[:]); err != nil {
			return fmt.Errorf("bench: ping: %w", err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return fmt.Errorf("bench: pong: %w", err)
		}
		rtts = append(rtts, time.Since(t))
	}
	slices.Sort(rtts)
	r.RTT, r.RTTMin, r.RTTMax = rtts[len(rtts)/2], rtts[0], rtts[len(rtts)-1]
	return nil
}

// Comparison is a path measured next to its underlay.
type Comparison struct {
	// Path and Underlay are the medians over the rounds.
	Path     BenchResult `json:"path"`
	Underlay BenchResult `json:"underlay"`
	// Ratio is the median of the rounds' throughput ratios; RatioMin and
	// RatioMax are the lowest and highest, the spread a noisy machine gives.
	Ratio    float64 `json:"ratio"`
	RatioMin float64 `json:"ratioMin"`
	RatioMax float64 `json:"ratioMax"`
	Rounds   int     `json:"rounds"`
}

// Compare measures path (pod to pod) and underlay (node to node) in turn,
// rounds times, and reports the medians: alternating the two cancels out
// load that comes and goes on a shared machine.
func Compare(ctx context.Context, path, underlay Dialer, opt BenchOptions, rounds int) (Comparison, error) {
	if rounds < 1 {
		rounds = 1
	}
	var ps, us []BenchResult
	var ratios []float64
	for range rounds {
		u, err := RunBench(ctx, underlay, opt)
		if err != nil {
			return Comparison{}, fmt.Errorf("underlay: %w", err)
		}
		p, err := RunBench(ctx, path, opt)
		if err != nil {
			return Comparison{}, err
		}
		us, ps, ratios = append(us, u), append(ps, p), append(ratios, p.Ratio(u))
	}
	slices.Sort(ratios)
	return Comparison{Path: median(ps), Underlay: median(us), Ratio: ratios[len(ratios)/2],
		RatioMin: ratios[0], RatioMax: ratios[len(ratios)-1], Rounds: rounds}, nil
}

// median is the result with the median throughput, with the median RTT.
func median(rs []BenchResult) BenchResult {
	byRate := slices.Clone(rs)
	slices.SortFunc(byRate, func(a, b BenchResult) int { return cmp.Compare(a.BitsPerSecond, b.BitsPerSecond) })
	m := byRate[len(byRate)/2]
	byRTT := slices.Clone(rs)
	slices.SortFunc(byRTT, func(a, b BenchResult) int { return cmp.Compare(a.RTT, b.RTT) })
	m.RTT, m.RTTMin, m.RTTMax = byRTT[len(byRTT)/2].RTT, byRTT[0].RTTMin, byRTT[len(byRTT)-1].RTTMax
	return m
}
