package httpconn

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// pair returns a Conn from a listener with the given hold-back, and the
// client's end of its connection.
func pair(t *testing.T, holdBack time.Duration) (*Conn, net.Conn) {
	t.Helper()
	return connect(t, listen(t, holdBack))
}

// listen returns a listener on a loopback port with the given hold-back,
// closed when the test ends.
func listen(t *testing.T, holdBack time.Duration) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newListener(ln, holdBack)
	t.Cleanup(func() { l.Close() })
	return l
}

// connect dials l and returns the Conn it accepts, and the client's end.
func connect(t *testing.T, l *listener) (*Conn, net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn), client
}

// within runs f and fails unless it returns within d.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still waiting after %v", what, d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, errTimeoutTarget)
}

// errTimeoutTarget is what a socket's read past its deadline wraps.
var errTimeoutTarget = func() error {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	c.SetReadDeadline(time.Unix(1, 0))
	_, err := c.Read(make([]byte, 1))
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}()

func TestReadHeldToPastDeadline(t *testing.T) {
	c, client := pair(t, time.Hour)
	client.Write([]byte("abc"))
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0))
	buf := make([]byte, 10)
	if n, err := c.Read(buf); n != 0 || !isTimeout(err) {
		t.Fatalf("Read after a deadline in the past = %d, %v; want 0 and a timeout", n, err)
	}
	c.SetReadDeadline(time.Time{})
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("Read without a deadline = %q, %v; want abc", buf[:n], err)
	}
}

func TestDeadlineSetDuringRead(t *testing.T) {
	c, _ := pair(t, time.Hour)
	var err error
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	}()
	start := time.Now()
	within(t, 5*time.Second, "a read with a deadline set while it waits", func() {
		_, err = c.Read(make([]byte, 10))
	})
	if !isTimeout(err) {
		t.Fatalf("Read = %v, want a timeout", err)
	}
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Fatalf("Read timed out after %v, before its deadline (50ms)", d)
	}
}

func TestWriteDeadline(t *testing.T) {
	c, _ := pair(t, time.Hour)
	// Nobody reads the client's end: the socket buffers fill and a write
	// waits, until its deadline.
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	big := make([]byte, 64<<20)
	var err error
	within(t, 5*time.Second, "a write to a client that does not read", func() {
		_, err = c.Write(big)
	})
	if !isTimeout(err) {
		t.Fatalf("Write = %v, want a timeout", err)
	}
	c.SetWriteDeadline(time.Unix(1, 0))
	if _, err := c.Write([]byte("x")); !isTimeout(err) {
		t.Fatalf("Write after a deadline in the past = %v, want a timeout", err)
	}
}

// TestHeldReadAbort is net/http's background read: one byte, no
// deadline, aborted with a deadline in the past. It ends with a timeout
// and reads nothing: the byte that came meanwhile is still there.
func TestHeldReadAbort(t *testing.T) {
	c, client := pair(t, time.Hour)
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		n, err := c.Read(make([]byte, 1))
		res <- result{n, err}
	}()
	time.Sleep(20 * time.Millisecond)
	client.Write([]byte("G"))
	time.Sleep(20 * time.Millisecond)
	select {
	case r := <-res:
		t.Fatalf("the held-back read returned (%d, %v) before its hold-back or an abort", r.n, r.err)
	default:
	}
	c.SetReadDeadline(time.Unix(1, 0))
	var r result
	within(t, 5*time.Second, "the aborted read", func() { r = <-res })
	if r.n != 0 || !isTimeout(r.err) {
		t.Fatalf("aborted read = %d, %v; want 0 and a timeout", r.n, r.err)
	}
	c.SetReadDeadline(time.Time{})
	buf := make([]byte, 4)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "G" {
		t.Fatalf("next read = %q, %v; want G", buf[:n], err)
	}
}

// TestHeldReadReleasedByDeadline: a deadline set while a read is held
// back releases it; only a deadline already past ends it with a timeout
// (net/http's time.Unix(1, 0) is known past without reading the clock,
// any other is compared with the clock). A later deadline lets the read
// go on to the socket, under that deadline.
func TestHeldReadReleasedByDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline func() time.Time
		expired  bool
	}{
		{"net/http's abort", func() time.Time { return time.Unix(1, 0) }, true},
		{"a moment ago", func() time.Time { return time.Now().Add(-time.Millisecond) }, true},
		{"a year ago", func() time.Time { return time.Now().AddDate(-1, 0, 0) }, true},
		{"in an hour", func() time.Time { return time.Now().Add(time.Hour) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, client := pair(t, time.Hour)
			type result struct {
				n   int
				b   byte
				err error
			}
			res := make(chan result, 1)
			go func() {
				buf := make([]byte, 1)
				n, err := c.Read(buf)
				res <- result{n, buf[0], err}
			}()
			time.Sleep(20 * time.Millisecond)
			c.SetReadDeadline(tc.deadline())
			if !tc.expired {
				client.Write([]byte("y"))
			}
			var r result
			within(t, 5*time.Second, "the released read", func() { r = <-res })
			switch {
			case tc.expired && (r.n != 0 || !isTimeout(r.err)):
				t.Fatalf("read released by a past deadline = %d, %v; want 0 and a timeout", r.n, r.err)
			case !tc.expired && (r.n != 1 || r.b != 'y' || r.err != nil):
				t.Fatalf("read released by a later deadline = %d %q, %v; want the byte", r.n, r.b, r.err)
			}
		})
	}
}

// TestHeldReadGoesOn: a background read held back longer than the
// hold-back reads the socket, so it sees what comes (a byte, or the
// client going away).
func TestHeldReadGoesOn(t *testing.T) {
	c, client := pair(t, 20*time.Millisecond)
	buf := make([]byte, 1)
	var n int
	var err error
	go func() {
		time.Sleep(100 * time.Millisecond)
		client.Write([]byte("x"))
	}()
	within(t, 5*time.Second, "a held-back read with a byte coming", func() { n, err = c.Read(buf) })
	if n != 1 || buf[0] != 'x' || err != nil {
		t.Fatalf("Read = %d %q, %v; want the byte", n, buf[:n], err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		client.Close()
	}()
	within(t, 5*time.Second, "a held-back read with the client gone", func() { n, err = c.Read(buf) })
	if n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v; want EOF", n, err)
	}
}

func TestCloseEndsHeldRead(t *testing.T) {
	c, _ := pair(t, time.Hour)
	var err error
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}()
	within(t, 5*time.Second, "a held-back read of a connection closed", func() {
		_, err = c.Read(make([]byte, 1))
	})
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read = %v, want net.ErrClosed", err)
	}
}

// serve serves h with tokend's HTTP timeouts (shortened by the caller)
// on a Listener with the given hold-back, and returns its address.
func serve(t *testing.T, holdBack time.Duration, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(newListener(ln, holdBack))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dial connects to addr, until the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waiting answers after the handler waited on another goroutine, as
// tokend's mint waits for its audit record.
func waiting(w http.ResponseWriter, r *http.Request) {
	done := make(chan struct{})
	go func() { time.Sleep(time.Millisecond); close(done) }()
	<-done
	io.Copy(io.Discard, r.Body)
	fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
}

// TestKeepAliveAndPipelining: many requests on one connection, GET and
// POST, and pipelined requests, all answered in order.
func TestKeepAliveAndPipelining(t *testing.T) {
	addr := serve(t, time.Hour, &http.Server{Handler: http.HandlerFunc(waiting), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != want {
			t.Fatalf("answer %q, want %q", b, want)
		}
	}
	for i := range 50 {
		if i%2 == 0 {
			fmt.Fprintf(c, "GET /a%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
			read(fmt.Sprintf("GET /a%d", i))
		} else {
			fmt.Fprintf(c, "POST /b%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", i)
			read(fmt.Sprintf("POST /b%d", i))
		}
	}
	fmt.Fprintf(c, "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}GET /p3 HTTP/1.1\r\nHost: x\r\n\r\n")
	read("GET /p1")
	read("POST /p2")
	read("GET /p3")
}

// TestServerTimeouts: the header, idle and write timeouts close the
// connection as they do on the socket's own connections.
func TestServerTimeouts(t *testing.T) {
	big := strings.Repeat("x", 64<<20)
	writeErr := make(chan error, 1)
	addr := serve(t, time.Hour, &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				_, err := io.WriteString(w, big)
				writeErr <- err
				return
			}
			waiting(w, r)
		}),
		ReadHeaderTimeout: 150 * time.Millisecond,
		WriteTimeout:      300 * time.Millisecond,
		IdleTimeout:       150 * time.Millisecond,
	})
	closedWithin := func(c net.Conn, what string) {
		t.Helper()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if d := time.Since(start); err != nil || d > 3*time.Second {
			t.Fatalf("%s: connection not closed by the server (%v after %v)", what, err, d)
		}
	}

	// A header that never ends.
	c := dial(t, addr)
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	closedWithin(c, "an unfinished header")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("unfinished header: closed after %v, before ReadHeaderTimeout", d)
	}

	// An idle keep-alive connection.
	c2 := dial(t, addr)
	io.WriteString(c2, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("request before idling: %v", err)
	}
	start = time.Now()
	closedWithin(c2, "an idle connection")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("idle connection: closed after %v, before IdleTimeout", d)
	}

	// An answer the client does not read.
	c3 := dial(t, addr)
	io.WriteString(c3, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-writeErr:
		if !isTimeout(err) {
			t.Fatalf("writing to a client that does not read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("writing to a client that does not read: still writing after 5s (WriteTimeout 300ms)")
	}
}

// TestDisconnectCancelsLongHandler: a handler that runs longer than the
// hold-back still has its context cancelled when the client goes away.
func TestDisconnectCancelsLongHandler(t *testing.T) {
	cancelled := make(chan time.Time, 1)
	addr := serve(t, 30*time.Millisecond, &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			cancelled <- time.Now()
		case <-time.After(10 * time.Second):
		}
	})})
	c := dial(t, addr)
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	gone := time.Now()
	c.Close()
	select {
	case at := <-cancelled:
		if at.Before(gone) {
			t.Fatal("the context was cancelled before the client went away")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client went away and the handler's context was not cancelled within 5s")
	}
}

// TestListenerPassesOtherConns: a listener whose connections are not TCP
// ones hands them on unwrapped.
func TestListenerPassesOtherConns(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Skip("no unix sockets:", err)
	}
	l := Listener(ln)
	defer l.Close()
	go func() {
		c, err := net.Dial("unix", dir+"/s")
		if err == nil {
			defer c.Close()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*Conn); ok {
		t.Fatal("a unix connection was wrapped")
	}
}

func TestCloseEnough(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name       string
		want, sock time.Time
		ok         bool
	}{
		{"same", now.Add(time.Minute), now.Add(time.Minute), true},
		{"both none", time.Time{}, time.Time{}, true},
		{"a little earlier", now.Add(30 * time.Second), now.Add(29 * time.Second), true},
		{"a sixteenth earlier", now.Add(32 * time.Second), now.Add(30*time.Second + 100*time.Millisecond), true},
		{"more than a sixteenth earlier", now.Add(32 * time.Second), now.Add(29 * time.Second), false},
		{"later", now.Add(30 * time.Second), now.Add(30*time.Second + time.Millisecond), false},
		{"none wanted", time.Time{}, now.Add(time.Hour), false},
		{"the socket has none", now.Add(time.Second), time.Time{}, false},
		{"past wanted", time.Unix(1, 0), now.Add(-time.Second), false},
		{"past wanted, socket later", time.Unix(1, 0), now.Add(time.Second), false},
	} {
		if got := closeEnough(tc.want, tc.sock); got != tc.ok {
			t.Errorf("%s: closeEnough = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestDeadlineNeverLater: a socket keeping an earlier deadline for a
// while still holds a read to the new one when it is earlier, or further
// off by more than a sixteenth.
func TestDeadlineNeverLater(t *testing.T) {
	c, client := pair(t, time.Hour)
	buf := make([]byte, 4)
	client.Write([]byte("a"))
	c.SetReadDeadline(time.Now().Add(time.Hour))
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("first Read = %d, %v", n, err)
	}
	// The socket has the hour's deadline now.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	var err error
	within(t, 5*time.Second, "a read after its deadline came nearer", func() { _, err = c.Read(buf) })
	if !isTimeout(err) {
		t.Fatalf("Read = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Read timed out after %v, want about 50ms", d)
	}
}

// TestReadAfterWriteYields: the first read after a write yields once
// before it reads; other reads (the first of a connection, one after a
// read, a held-back one) do not, and what is read is the same.
func TestReadAfterWriteYields(t *testing.T) {
	l := listen(t, time.Hour)
	var yields atomic.Int32
	l.yield = func() { yields.Add(1) }
	c, client := connect(t, l)

	buf := make([]byte, 64)
	readWant := func(want string, wantYields int32) {
		t.Helper()
		n, err := io.ReadAtLeast(c, buf, len(want))
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
		if got := yields.Load(); got != wantYields {
			t.Fatalf("after reading %q: %d yields, want %d", want, got, wantYields)
		}
	}
	client.Write([]byte("one"))
	readWant("one", 0) // the connection's first read
	client.Write([]byte("two"))
	readWant("two", 0) // a read after a read
	if _, err := c.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	client.Write([]byte("three"))
	readWant("three", 1) // the first read after a write
	client.Write([]byte("four"))
	readWant("four", 1) // and only the first
	c.Write([]byte("answer"))
	c.Write([]byte("answer"))
	client.Write([]byte("five"))
	readWant("five", 2) // one yield however many writes

	// A held-back read (one byte, no deadline) after a write does not
	// yield: it waits for a deadline instead, as before.
	c.Write([]byte("answer"))
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Unix(1, 0))
	within(t, 5*time.Second, "held-back read", func() {
		if err := <-done; !isTimeout(err) {
			t.Errorf("held-back read: %v, want a timeout", err)
		}
	})
	if got := yields.Load(); got != 2 {
		t.Fatalf("held-back read: %d yields, want 2", got)
	}
}
