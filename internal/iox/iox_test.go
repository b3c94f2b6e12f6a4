package iox

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestSerialize(t *testing.T) {
	var b bytes.Buffer
	out, errw := Serialize(&b, &b)
	if out != errw {
		t.Fatal("the same writer did not give one locked writer")
	}
	var wg sync.WaitGroup
	for _, w := range []interface{ Write([]byte) (int, error) }{out, errw} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				w.Write([]byte("x"))
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "x"); n != 2000 {
		t.Errorf("%d bytes of 2000", n)
	}
	var c bytes.Buffer
	if o, e := Serialize(&b, &c); o != &b || e != &c {
		t.Error("different writers were wrapped")
	}
	if o, e := Serialize(nil, nil); o != nil || e != nil {
		t.Error("nil writers were wrapped")
	}
}
