package httpconn

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkServer serves GET requests over loopback with net/http's
// server and tokend's timeouts, from 16 keep-alive connections, one
// request in flight each, with a handler that waits for another goroutine
// before it answers (as tokend's waits for its audit record): on the
// socket's own connections (plain) and on a Listener's (httpconn).
// cpu-ns/op is the process's CPU per request, client included (the same
// for both).
func BenchmarkServer(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "plain"
		if wrap {
			name = "httpconn"
		}
		b.Run(name, func(b *testing.B) { benchServer(b, wrap) })
	}
}

func benchServer(b *testing.B, wrap bool) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var sln net.Listener = ln
	if wrap {
		sln = Listener(ln)
	}
	work := make(chan chan struct{}, 64)
	go func() {
		for done := range work {
			close(done)
		}
	}()
	defer close(work)
	body := bytes.Repeat([]byte("x"), 800)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			done := make(chan struct{})
			work <- done
			<-done
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go srv.Serve(sln)
	defer srv.Close()
	req := []byte("GET /token HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n")
	b.SetParallelism(8)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readResponse(br); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// readResponse reads one response with a Content-Length.
func readResponse(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(n)
	return err
}

func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
