package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// TestAuditRequired: with a required audit log whose destination stops
// accepting writes (a FIFO nobody reads), mints are refused with
// Unavailable (HTTP 503) on both paths and every token handed out has its
// record in the log; without it, every mint succeeds and the lost records
// are counted in /metrics.
func TestAuditRequired(t *testing.T) {
	for _, tc := range []struct {
		name     string
		required bool
		each     int // mints per goroutine: enough to fill the pipe, and the queue when not required
	}{
		{"required", true, 60},
		{"not_required", false, 700},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fifo, r := stalledFIFO(t)
			h := newHarness(t, server.Config{AuditLog: fifo, AuditRequired: tc.required, AuditCommitTimeout: 100 * time.Millisecond})

			var (
				mu      sync.Mutex
				issued  = map[string]bool{} // jti of the tokens handed out
				refused = map[string]int{}  // by path
			)
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					path := []string{"grpc", "rest"}[g%2]
					for range tc.each {
						code, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"agent_7","ttl_seconds":600}`)
						mu.Lock()
						switch code {
						case codes.OK:
							issued[resp["jti"].(string)] = true
						case codes.Unavailable:
							refused[path]++
						default:
							t.Errorf("%s mint = %v %v; want OK or Unavailable", path, code, resp)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			samples := h.scrape(t)
			lost, _ := find(samples, "tokend_audit_records_dropped_total", nil)
			failed, _ := find(samples, "tokend_audit_records_failed_total", nil)
			if _, ok := find(samples, "tokend_audit_records_written_total", nil); !ok {
				t.Error("no tokend_audit_records_written_total in /metrics")
			}
			unavailable, _ := find(samples, "tokend_mints_total", map[string]string{"code": "Unavailable"})

			// Read what was written: start reading, close the server.
			var data []byte
			done := make(chan struct{})
			go func() { defer close(done); data, _ = io.ReadAll(r) }()
			h.srv.GRPCServer().Stop()
			if err := h.srv.Close(); err != nil {
				t.Logf("Close: %v", err)
			}
			<-done
			logged := map[string]bool{}
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("torn audit line %q: %v", sc.Text(), err)
				}
				if jti, ok := m["jti"].(string); ok {
					logged[jti] = true
				}
			}
			t.Logf("issued %d, refused %v, dropped %v, failed %v, logged %d", len(issued), refused, lost, failed, len(logged))
			if tc.required {
				if refused["grpc"] == 0 || refused["rest"] == 0 {
					t.Fatalf("refused %v: want mints refused on both paths once the audit log stalls", refused)
				}
				if unavailable == 0 {
					t.Error("tokend_mints_total{code=Unavailable} not counted")
				}
				for jti := range issued {
					if !logged[jti] {
						t.Fatalf("token %s was handed out without its audit record", jti)
					}
				}
			} else {
				if len(refused) != 0 {
					t.Errorf("refused %v without --audit-required", refused)
				}
				if lost == 0 {
					t.Errorf("tokend_audit_records_dropped_total = 0 on a stalled audit log (issued %d, logged %d)", len(issued), len(logged))
				}
			}
		})
	}
}

// TestAuditRequiredRESTStatus: the refusal is HTTP 503 with the gRPC code
// Unavailable in the body.
func TestAuditRequiredRESTStatus(t *testing.T) {
	// A FIFO whose reader has gone: every write fails (EPIPE), as on a
	// full disk.
	fifo, r := stalledFIFO(t)
	h := newHarness(t, server.Config{AuditLog: fifo, AuditRequired: true})
	r.Close() // no reader: every write fails (EPIPE; Go ignores SIGPIPE on non-stdio files)
	resp, body := h.restCall(t, "POST", "/token", `{"identity":"agent_7"}`, nil)
	if resp.StatusCode != 503 {
		t.Fatalf("POST /token = %d %s; want 503", resp.StatusCode, body)
	}
	var m map[string]any
	json.Unmarshal(body, &m)
	if m["code"] != float64(codes.Unavailable) || bytes.Contains(body, []byte("eyJ")) {
		t.Errorf("body = %s; want code %d and no token", body, codes.Unavailable)
	}
	samples := h.scrape(t)
	if v, _ := find(samples, "tokend_audit_records_failed_total", nil); v < 1 {
		t.Errorf("tokend_audit_records_failed_total = %v; want the failed record counted", v)
	}
}

// TestAuditRequiredCallerGone: a caller whose deadline passes while its
// record waits on a stalled audit log gets DeadlineExceeded, and the
// server counts it DeadlineExceeded or Canceled, not Unavailable (the log
// is not known to be down, the caller stopped waiting); no token.
func TestAuditRequiredCallerGone(t *testing.T) {
	fifo, _ := stalledFIFO(t)
	h := newHarness(t, server.Config{AuditLog: fifo, AuditRequired: true, AuditCommitTimeout: time.Minute})
	for i := range 2000 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		resp, err := h.token.Mint(ctx, &tokenv1.MintRequest{Identity: proto.String("agent_7")})
		cancel()
		if err == nil {
			continue // the pipe's buffer still takes records
		}
		if code := status.Code(err); code != codes.DeadlineExceeded || resp != nil {
			t.Fatalf("mint %d on a stalled audit log with a 300 ms deadline = %v %v; want DeadlineExceeded and no token", i, resp, err)
		}
		// The client gives up at its deadline whatever the server says:
		// what the server made of it is in its metrics.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			samples := h.scrape(t)
			exceeded, _ := find(samples, "tokend_mints_total", map[string]string{"code": "DeadlineExceeded"})
			canceled, _ := find(samples, "tokend_mints_total", map[string]string{"code": "Canceled"})
			unavailable, _ := find(samples, "tokend_mints_total", map[string]string{"code": "Unavailable"})
			if unavailable > 0 {
				t.Fatalf("tokend_mints_total{code=Unavailable} = %v: a caller that stopped waiting counted as an audit outage", unavailable)
			}
			if exceeded+canceled >= 1 { // the server's deadline, or the client's cancel, came first
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("tokend_mints_total{code=DeadlineExceeded or Canceled} not counted")
			}
		}
	}
	t.Fatal("2000 mints went through a FIFO nobody reads")
}

// stalledFIFO returns the path of a FIFO and its reader, open until the
// test ends, which reads nothing unless the test reads it: once the pipe's
// buffer is full, writes block.
func stalledFIFO(t *testing.T) (string, *os.File) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "audit.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return fifo, r
}
