package netdelay

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// echoServer answers every connection with what it reads, until EOF.
func echoServer(t *testing.T) string {
	return serveEach(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// serveEach listens on a free loopback port, runs handle on every
// connection accepted and closes it after; it returns the address.
func serveEach(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T, rtt time.Duration, window int) *Proxy {
	t.Helper()
	p := &Proxy{Target: echoServer(t), RTT: rtt, Window: window}
	if err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip writes msg on c and times until the echo is back.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo differs: %q", got)
	}
	return time.Since(start)
}

// A request on a new connection costs the handshake's round trip and its
// own; later requests on the connection cost one round trip. A loaded
// machine makes some round trips late, never early: each must take at
// least the added time, and the fastest no more than half as much again.
func TestRoundTripGainsRTT(t *testing.T) {
	const rtt = 60 * time.Millisecond
	p := startProxy(t, rtt, 0)
	start := time.Now() // a real connect takes the handshake's round trip
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, []byte("hello"))
	if first := time.Since(start); first < 2*rtt || first > 4*rtt {
		t.Errorf("first round trip took %v, want about %v (handshake and request)", first, 2*rtt)
	}
	fastest := time.Hour
	for i := 0; i < 5; i++ {
		d := roundTrip(t, c, []byte("again"))
		if d < rtt {
			t.Errorf("round trip %d took %v, less than the %v added", i, d, rtt)
		}
		fastest = min(fastest, d)
	}
	if fastest > rtt+rtt/2 {
		t.Errorf("the fastest of 5 round trips took %v, want about %v", fastest, rtt)
	}
}

// Bulk data arrives intact and in order, and a half-close reaches the
// server (which then ends its side, which reaches the client).
func TestStreamsIntactAndHalfClose(t *testing.T) {
	p := startProxy(t, 10*time.Millisecond, 256<<10)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if !bytes.Equal(b, data) {
			t.Fatalf("echoed %d bytes, not the %d sent", len(b), len(data))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no EOF from the proxy after the half-close")
	}
}

// The window bounds one connection's throughput to about Window/RTT.
func TestWindowBoundsThroughput(t *testing.T) {
	const (
		rtt    = 50 * time.Millisecond
		window = 256 << 10
		size   = 4 << 20
	)
	p := startProxy(t, rtt, window)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { _, _ = c.Write(make([]byte, size)) }()
	start := time.Now()
	if _, err := io.CopyN(io.Discard, c, size); err != nil {
		t.Fatal(err)
	}
	// Socket buffers add to the window; at least the window's share of the
	// time must pass: size/window round trips of rtt/2 each way.
	if d, least := time.Since(start), time.Duration(size/window/4)*rtt; d < least {
		t.Errorf("%d bytes through a %d-byte window at %v took %v, want at least %v", size, window, rtt, d, least)
	}
}

// Close ends open connections and returns.
func TestCloseEndsConnections(t *testing.T) {
	p := &Proxy{Target: echoServer(t), RTT: time.Millisecond}
	if err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, []byte("x"))
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a connection open")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the client's connection is still open after Close")
	}
}

// TestCountsConnections: Accepted counts every client connection, Live
// the ones still open.
func TestCountsConnections(t *testing.T) {
	p := startProxy(t, 0, 0)
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, []byte("hello"))
		conns = append(conns, c)
	}
	if a, l := p.Accepted(), p.Live(); a != 2 || l != 2 {
		t.Fatalf("with 2 connections open: Accepted %d, Live %d, want 2, 2", a, l)
	}
	for _, c := range conns {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Live() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a, l := p.Accepted(), p.Live(); a != 2 || l != 0 {
		t.Fatalf("after both closed: Accepted %d, Live %d, want 2, 0", a, l)
	}
}

// sourceServer answers every connection with size bytes, then closes it,
// as a GET on a connection of its own does.
func sourceServer(t *testing.T, size int) string {
	body := make([]byte, size)
	return serveEach(t, func(c net.Conn) { _, _ = c.Write(body) })
}

// TestBuffersOutliveConnections: connections one after another reuse the
// buffers of the ones before, so the proxy allocates about one
// connection's bytes in flight, not every connection's (fresh buffers
// must be zeroed and faulted in: at 20 ms that was about an eighth of the
// proxy's CPU during the parallel GETs of a large object,
// docs/benchmarks.md). A later connection may hold more pieces in flight
// than the first did, hence twice a connection's bytes as the bound; the
// old proxy allocated every connection's.
func TestBuffersOutliveConnections(t *testing.T) {
	const (
		size  = 4 << 20
		conns = 8
	)
	p := &Proxy{Target: sourceServer(t, size), RTT: 20 * time.Millisecond}
	if err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	get := func() {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if n, err := io.Copy(io.Discard, c); err != nil || n != size {
			t.Fatalf("read %d of %d bytes: %v", n, size, err)
		}
	}
	get() // the buffers of the first connection are new
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range conns {
		get()
	}
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d connections of %d bytes: %d bytes allocated", conns, size, got)
	if got > 2*size {
		t.Errorf("%d connections of %d bytes each allocated %d bytes, want at most %d", conns, size, got, 2*size)
	}
}
