package netmodes

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

func TestBenchLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- ServeBench(ctx, ln) }()
	dial := func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	}
	r, err := RunBench(t.Context(), dial, BenchOptions{Bytes: 3<<20 + 17, Pings: 20})
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes != 3<<20+17 || r.BitsPerSecond <= 0 || r.RTT <= 0 || r.RTTMin > r.RTT || r.RTT > r.RTTMax {
		t.Fatalf("result %+v", r)
	}
	r, err = RunBench(t.Context(), dial, BenchOptions{Duration: 100 * time.Millisecond, Pings: 5})
	if err != nil {
		t.Fatal(err)
	}
	if r.Bytes == 0 || r.Elapsed < 100*time.Millisecond {
		t.Fatalf("timed result %+v", r)
	}
	if got := r.Ratio(BenchResult{BitsPerSecond: r.BitsPerSecond / 2}); got != 2 {
		t.Fatalf("ratio %v", got)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestCheckPattern(t *testing.T) {
	block := benchBlock()
	stream := bytes.Repeat(block, 3)
	stream = append(stream, block[:1000]...)
	n, bad, err := checkPattern(bytes.NewReader(stream), block)
	if err != nil || n != int64(len(stream)) || bad != 0 {
		t.Fatalf("intact stream: n %d, bad %d, err %v", n, bad, err)
	}
	for _, off := range []int{0, len(block) + 7, 3*len(block) + 999} {
		broken := bytes.Clone(stream)
		broken[off] ^= 0x40
		n, bad, err := checkPattern(bytes.NewReader(broken), block)
		if err != nil || n != int64(len(stream)) || bad != int64(off)+1 {
			t.Errorf("byte %d flipped: n %d, bad %d, err %v", off, n, bad, err)
		}
	}
}
