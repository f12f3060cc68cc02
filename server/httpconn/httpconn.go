// Package httpconn makes what net/http's HTTP/1 server does to a TCP
// connection around each request cheaper, without changing what a client
// sees or what the server's timeouts enforce.
//
// Deadlines. net/http sets a connection's deadlines about eight times a
// request when its timeouts are on (the header, whole-request, write and
// idle timeouts, and around the background read below), and each set
// re-arms or stops a runtime timer. Most are replaced before any read or
// write could be held to them. A deadline only matters to a read or a
// write that waits, so a Conn notes a deadline when it is set and gives it
// to the socket when a read or a write starts, or at once when one is
// under way. A socket that has a deadline keeps it while it is earlier
// than the one set by no more than a sixteenth of the time left (net/http
// sets a deadline of now plus a timeout for every request): every read and
// write is held to the last deadline set before it or while it waits, or
// to one at most that little earlier, never a later one. A timeout of
// 30 s acts after 28.1 s at the earliest.
//
// The background read. While a handler runs, net/http reads one byte
// from the connection in a goroutine of its own, to notice a client that
// goes away (and cancel the request's context), and it aborts that read
// by setting a deadline in the past when the handler ends. When the
// handler waits (tokend's does, for its audit record), that read is a
// system call that finds nothing, then a wait in the network poller, then
// a deadline to wake it: a fifth of the system calls of a request. A Conn
// holds back such a read (one byte, no deadline): the read waits without
// touching the socket until a deadline is set (a deadline in the past, the
// abort, ends it with the timeout error the socket would give, and it
// never reads), the connection is closed, or it has waited between
// HoldBack and twice that, when it goes on as the socket's read. So a
// handler that runs longer than that still has its context cancelled when
// the client goes away; a shorter one ends before it would matter.
//
// The read after an answer. Once net/http has written an answer it reads
// the connection for the next request. A client with one request in
// flight (a browser's keep-alive connection, wrk) cannot have sent it
// yet unless it has run since: the read finds nothing, the goroutine
// waits in the network poller and is woken to read again, two system
// calls and a wake-up. The first read after a write yields the processor
// once (runtime.Gosched), so that the goroutines already runnable (other
// connections' handlers and answers) go first; by the time the read runs
// the next request has often arrived. Under wrk it cut tokend's reads
// from about 1.7 a request to 1.3, and its CPU per request by about 3%
// (BENCHMARKS.md). With nothing else runnable the yield returns at once.
package httpconn

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"
)

// HoldBack is how long a Conn holds back net/http's background read (at
// least, and at most twice as long) before it reads the socket.
const HoldBack = 250 * time.Millisecond

// Listener returns ln with its *net.TCPConn connections wrapped in Conns;
// any other connection is returned as it is. Closing it stops the
// goroutine that lets held-back reads go on after HoldBack.
func Listener(ln net.Listener) net.Listener {
	return newListener(ln, HoldBack)
}

func newListener(ln net.Listener, holdBack time.Duration) *listener {
	l := &listener{Listener: ln, holdBack: holdBack, yield: runtime.Gosched, conns: map[*Conn]struct{}{}, done: make(chan struct{})}
	go l.janitor()
	return l
}

type listener struct {
	net.Listener
	holdBack  time.Duration
	yield     func() // what the first read after a write calls
	mu        sync.Mutex
	conns     map[*Conn]struct{} // open connections
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	tc, ok := c.(*net.TCPConn)
	if !ok || err != nil {
		return c, err
	}
	conn := &Conn{TCPConn: tc, l: l, wake: make(chan struct{}, 1)}
	l.mu.Lock()
	l.conns[conn] = struct{}{}
	l.mu.Unlock()
	return conn, nil
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// janitor lets a read held back for a whole tick go on to the socket.
func (l *listener) janitor() {
	t := time.NewTicker(l.holdBack)
	defer t.Stop()
	var conns []*Conn
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		conns = conns[:0]
		l.mu.Lock()
		for c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		for _, c := range conns {
			c.mu.Lock()
			if c.held {
				if c.seen {
					c.release()
				} else {
					c.seen = true
				}
			}
			c.mu.Unlock()
		}
		clear(conns)
	}
}

// Conn is a TCP connection whose deadlines reach the socket only when a
// read or a write can be held to them, and which holds back net/http's
// background read (see the package doc).
type Conn struct {
	*net.TCPConn
	l *listener

	mu     sync.Mutex
	rd, wd deadline
	// held: a read is held back, waiting on wake; seen: the janitor has
	// seen it held at a tick already.
	held, seen bool
	closed     bool
	// wrote: a write ended since the last read began; the next read
	// (not a held-back one) yields first.
	wrote bool
	wake  chan struct{}
}

// deadline is one direction's deadline (c.rd or c.wd): the one last set
// (want), the one the socket has (sock), and how many reads or writes are
// under way (a deadline set meanwhile goes to the socket at once).
type deadline struct {
	want, sock time.Time
	busy       int
}

// release lets a held-back read go on. c.mu is held.
func (c *Conn) release() {
	if c.held {
		c.held = false
		c.wake <- struct{}{}
	}
}

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline notes t; a read under way is held to it at once, and a
// held-back read goes on under it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.set(&c.rd, t) }

// SetWriteDeadline notes t; a write under way is held to it at once.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.set(&c.wd, t) }

func (c *Conn) set(d *deadline, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	d.want = t
	if d == &c.rd {
		c.release()
	}
	if d.busy > 0 {
		return c.sync(d)
	}
	return nil
}

// sync gives the socket the deadline d, unless it has one close enough.
// c.mu is held.
func (c *Conn) sync(d *deadline) error {
	if closeEnough(d.want, d.sock) {
		return nil
	}
	var err error
	if d == &c.rd {
		err = c.TCPConn.SetReadDeadline(d.want)
	} else {
		err = c.TCPConn.SetWriteDeadline(d.want)
	}
	if err != nil {
		return err
	}
	d.sock = d.want
	return nil
}

// begin syncs d and counts a read or a write under way, until end.
// c.mu is held.
func (c *Conn) begin(d *deadline) error {
	if err := c.sync(d); err != nil {
		return err
	}
	d.busy++
	return nil
}

func (c *Conn) end(d *deadline) {
	c.mu.Lock()
	d.busy--
	c.mu.Unlock()
}

// endWrite ends a write (see end) and notes it for the next read.
func (c *Conn) endWrite() {
	c.mu.Lock()
	c.wd.busy--
	c.wrote = true
	c.mu.Unlock()
}

// closeEnough reports whether a socket with deadline sock holds a read or
// a write to the deadline want closely enough that it need not be given
// want: the same deadline, or an earlier one by at most a sixteenth of
// the time want leaves (never a later one, and never for no deadline or
// a deadline past). net/http sets a deadline of now plus a timeout for
// every request (the idle and the write timeouts); a socket keeps the
// first of them for a while instead of a new timer each time, and a
// timeout of 30 s is then at least 28.1 s.
func closeEnough(want, sock time.Time) bool {
	if want.Equal(sock) {
		return true
	}
	if want.IsZero() || sock.IsZero() || sock.After(want) {
		return false
	}
	return want.Sub(sock) <= time.Until(want)/16
}

// Read reads under the read deadline last set. A read of one byte
// without a deadline, while no other read is under way, is held back
// (see the package doc).
func (c *Conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(p) == 1 && c.rd.want.IsZero() && c.rd.busy == 0 && !c.held && !c.closed {
		c.held, c.seen = true, false
		c.mu.Unlock()
		<-c.wake
		c.mu.Lock()
		if w := c.rd.want; !w.IsZero() && (w.Unix() <= abortDeadline || w.Before(time.Now())) {
			c.mu.Unlock()
			return 0, errHeldReadExpired
		}
	} else if c.wrote {
		c.wrote = false
		c.mu.Unlock()
		c.l.yield()
		c.mu.Lock()
	}
	err := c.begin(&c.rd)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.TCPConn.Read(p)
	c.end(&c.rd)
	return n, err
}

// abortDeadline is the Unix second of the deadline net/http sets to end
// its background read once a request is served (time.Unix(1, 0), its
// aLongTimeAgo): a deadline that early is past on any clock, so a held
// read it releases, once a request, needs no clock reading to know it.
const abortDeadline = 1

// errHeldReadExpired is what a held read returns when a deadline in the
// past ends it (net/http's abort, once a request is served): the timeout
// the socket's own read would return (a net.Error whose Timeout is true,
// wrapping os.ErrDeadlineExceeded), made once rather than for every
// request. It names no addresses: net/http drops the error of a read it
// aborted.
var errHeldReadExpired error = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// Write writes under the write deadline last set.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.lockedBegin(&c.wd); err != nil {
		return 0, err
	}
	n, err := c.TCPConn.Write(p)
	c.endWrite()
	return n, err
}

// ReadFrom copies r to the connection (sendfile or splice where the
// socket can) under the write deadline last set.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.lockedBegin(&c.wd); err != nil {
		return 0, err
	}
	n, err := c.TCPConn.ReadFrom(r)
	c.endWrite()
	return n, err
}

// WriteTo copies the connection to w (splice where it can) under the
// read deadline last set.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	if err := c.lockedBegin(&c.rd); err != nil {
		return 0, err
	}
	n, err := c.TCPConn.WriteTo(w)
	c.end(&c.rd)
	return n, err
}

// lockedBegin is begin, taking c.mu.
func (c *Conn) lockedBegin(d *deadline) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.begin(d)
}

// Close closes the connection; a held-back read goes on, and fails as a
// read of a closed connection does.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.release()
	c.mu.Unlock()
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.TCPConn.Close()
}
