package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Serve answers on TCP and UDP port in ns with name, until the test ends:
// a TCP connection gets name and is closed, a datagram gets name back.
func Serve(t testing.TB, ns *NS, port int, name string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ln, err := ns.Listen(ctx, "tcp4", fmt.Sprintf(":%d", port))
	must(t, err)
	pc, err := ns.ListenPacket(ctx, "udp4", fmt.Sprintf(":%d", port))
	must(t, err)
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, name)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name), from)
		}
	}()
}

// Get connects over TCP from ns to addr and returns what it answers.
func Get(ns *NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := dial(ns, "tcp4", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	return string(b), err
}

// Ask sends a datagram from ns to addr and returns the answer.
func Ask(ns *NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	c, err := dial(ns, "udp4", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// dial connects from ns to addr within timeout and gives the connection
// the same time from now for its reads and writes.
func dial(ns *NS, network string, addr netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.Dial(ctx, network, addr.String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	return c, nil
}

// Refused reports whether err is a refused connection.
func Refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "refused")
}
