package httpapi

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestLimitBodyClosesWhatItReadWhole: limitBody closes the body net/http
// gave it once it has read all of it (so net/http does not look for
// unread bytes after the handler), and only then: a body cut short is
// left to net/http. The connection of a whole body stays open for the
// next request, with a Content-Length or chunked.
func TestLimitBodyClosesWhatItReadWhole(t *testing.T) {
	var mu sync.Mutex
	var closed []bool // per request: was net/http's body closed after the handler?
	var seen []string // per request: the body the handler read
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		w.Write([]byte("ok"))
	})
	h := limitBody(64, inner)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orig := r.Body
		h.ServeHTTP(w, r)
		_, err := orig.Read(make([]byte, 1))
		mu.Lock()
		closed = append(closed, errors.Is(err, http.ErrBodyReadAfterClose))
		mu.Unlock()
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	send := func(raw string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	body := `{"identity":"alice"}`
	post := "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	chunked := "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"a\r\n{\"identity\r\n" + "a\r\n\":\"alice\"}\r\n0\r\n\r\n"
	for i, raw := range []string{post, chunked, post} {
		if resp := send(raw); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: status %d, close %v; want 200 on a connection kept open", i, resp.StatusCode, resp.Close)
		}
	}
	// A body cut short: the client declares more than it sends.
	if _, err := io.WriteString(conn, "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	if resp, err := http.ReadResponse(br, nil); err == nil {
		io.Copy(io.Discard, resp.Body)
	}
	// The wrapper records a request after its handler returns, which can
	// be after the client has read the answer: wait for all four.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(closed)
		mu.Unlock()
		if n == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{true, true, true, false}; !slices.Equal(closed, want) {
		t.Errorf("net/http's body closed after the handler: %v, want %v (read whole: closed; cut short: left open)", closed, want)
	}
	if len(seen) < 3 || seen[0] != body || seen[1] != body || seen[2] != body {
		t.Errorf("bodies the handler read: %q; want %q three times", seen, body)
	}
}
