// Package netdelay is a TCP proxy that adds a fixed network latency, so
// benchmarks against a server on loopback can see what a store some
// milliseconds away does to each client (docs/benchmarks.md).
//
// Every byte crosses the proxy RTT/2 later than it arrived, in each
// direction, so a request and its answer gain RTT; a new connection's
// first bytes also wait one more RTT, the cost of the TCP handshake a
// remote server would need. Each direction of a connection holds at most
// Window bytes in flight, as a TCP receive window does, so one
// connection streams at most about Window/RTT bytes a second and parallel
// connections pay off as they do against a real store.
package netdelay

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// DefaultWindow is the bytes in flight per direction of a connection when
// Proxy.Window is zero: Linux's default largest TCP receive buffer
// (net.ipv4.tcp_rmem), so 20 ms gives about 300 MB/s per connection.
const DefaultWindow = 6 << 20

// chunkSize is the largest read the proxy forwards as one piece.
const chunkSize = 64 << 10

// maxSpare bounds the chunk buffers kept for reuse (256 MiB, about 40
// full one-way windows of DefaultWindow), kept while the Proxy lives.
const maxSpare = 4096

// Proxy forwards connections from its listener to Target with RTT added.
// Its zero RTT forwards without delay (the proxy's own cost remains).
type Proxy struct {
	// Target is the host:port every accepted connection is forwarded to.
	Target string
	// RTT is the round-trip time the proxy adds.
	RTT time.Duration
	// Window bounds the bytes in flight per direction (DefaultWindow when
	// zero).
	Window int

	ln       net.Listener
	spare    chan []byte // chunk buffers no piece uses, for any connection
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	accepted int // client connections accepted
	live     int // client connections not yet ended
}

// Listen starts serving on addr ("127.0.0.1:0" for a free port) and
// returns once the proxy accepts connections; Addr says where.
func (p *Proxy) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.ln = ln
	p.conns = map[net.Conn]struct{}{}
	p.spare = make(chan []byte, maxSpare)
	p.wg.Add(1)
	go p.accept()
	return nil
}

// Addr is the listening address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted returns how many client connections the proxy has accepted,
// and Live how many of them are still open (both directions not yet
// ended), so a test can tell whether a client reuses its connections and
// closes them.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Live: see Accepted.
func (p *Proxy) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

// Close stops listening, closes every open connection and waits until
// all of the proxy's goroutines have ended.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		accepted := time.Now()
		if !p.track(c) {
			c.Close()
			return
		}
		p.mu.Lock()
		p.accepted++
		p.live++
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c, accepted)
		}()
	}
}

// track records c for Close; it reports false once the proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// serve forwards one client connection until both directions end.
func (p *Proxy) serve(client net.Conn, accepted time.Time) {
	defer func() {
		p.mu.Lock()
		p.live--
		p.mu.Unlock()
	}()
	defer p.untrack(client)
	defer client.Close()
	server, err := net.Dial("tcp", p.Target)
	if err != nil {
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	defer server.Close()
	oneWay := p.RTT / 2
	var wg sync.WaitGroup
	wg.Add(2)
	// The handshake a remote server needs: the request leaves one RTT
	// after the connect, and reaches the server half an RTT later.
	go func() { defer wg.Done(); p.pipe(server, client, oneWay, accepted.Add(p.RTT)) }()
	go func() { defer wg.Done(); p.pipe(client, server, oneWay, accepted) }()
	wg.Wait()
}

// piece is a chunk of a stream and when it may be written on.
type piece struct {
	data []byte
	due  time.Time
}

// pipe copies src to dst, each piece delay after it was read and not
// before notBefore+delay; src's end becomes dst's write end (or an error
// closes both).
func (p *Proxy) pipe(dst, src net.Conn, delay time.Duration, notBefore time.Time) {
	window := p.Window
	if window <= 0 {
		window = DefaultWindow
	}
	queue := make(chan piece, max(1, window/chunkSize))
	done := make(chan struct{})
	go func() {
		defer close(done)
		failed := false
		for pc := range queue {
			if !failed {
				time.Sleep(time.Until(pc.due))
				if _, err := dst.Write(pc.data); err != nil {
					failed = true
					src.Close()
				}
			}
			p.putBuf(pc.data)
		}
		if !failed {
			closeWrite(dst)
		}
	}()
	for {
		buf := p.getBuf()
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now()
			if due.Before(notBefore) {
				due = notBefore
			}
			queue <- piece{data: buf[:n], due: due.Add(delay)}
		}
		if n == 0 {
			p.putBuf(buf)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			break
		}
	}
	close(queue)
	<-done
}

// getBuf returns a chunk buffer, one an earlier piece of any connection
// used if there is one: a fresh 64 KiB buffer must be zeroed and faulted
// in, which at 20 ms took about an eighth of the proxy's CPU when every
// new connection made its own (docs/benchmarks.md).
func (p *Proxy) getBuf() []byte {
	select {
	case b := <-p.spare:
		return b
	default:
		return make([]byte, chunkSize)
	}
}

// putBuf gives back a buffer getBuf returned, once nothing uses it; it
// is dropped when maxSpare are kept already.
func (p *Proxy) putBuf(b []byte) {
	select {
	case p.spare <- b[:cap(b)]:
	default:
	}
}

// closeWrite ends the write side of c (the peer reads EOF).
func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	c.Close()
}
