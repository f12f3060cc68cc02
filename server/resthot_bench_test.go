package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/tokenapi"
)

// discardWriter is a ResponseWriter that keeps nothing but the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkRESTHandler runs GET /token through tokend's whole REST
// handler (request id, routing, CORS, authentication by a service
// credential, policy, rate limits, mint, fail-closed audit), in process:
// what tokend adds on top of net/http's connection handling. cpu-ns/op is
// the process's CPU per request (getrusage): the handler, the audit
// writer and the collector, and the benchmark's own request building.
func BenchmarkRESTHandler(b *testing.B) {
	for _, method := range []string{"GET", "POST"} {
		b.Run(method, func(b *testing.B) {
			srv, credential := benchServer(b)
			h := srv.HTTPHandler()
			body := `{"identity":"agent_7"}`
			b.ReportAllocs()
			b.SetParallelism(16)
			cpu0 := processCPU()
			defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					var r *http.Request
					if method == "GET" {
						r, _ = http.NewRequest("GET", "http://127.0.0.1:8080/token", nil)
					} else {
						r, _ = http.NewRequest("POST", "http://127.0.0.1:8080/token", strings.NewReader(body))
						r.Header.Set("Content-Type", "application/json")
					}
					r.RemoteAddr = "127.0.0.1:40000"
					r.Header.Set("Authorization", "Bearer "+credential)
					clear(w.h)
					w.code = 0
					h.ServeHTTP(w, r)
					if w.code != 0 && w.code != 200 {
						b.Fatalf("status %d", w.code)
					}
				}
			})
		})
	}
}

// benchServer starts tokend as make load does (the policy, a service
// credential, the fail-closed audit log, warnings only, the default
// identity) in process, without listeners, and returns it with the
// credential's token. The server is closed when the benchmark ends.
func benchServer(b *testing.B) (*server.Server, string) {
	b.Helper()
	dir := b.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(testPolicy), 0o600); err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Config{
		DataDir:         dir,
		MasterKey:       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		Logger:          slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		PolicyFile:      policyFile,
		AuditLog:        filepath.Join(dir, "audit.log"),
		AuditRequired:   true,
		AdminToken:      adminToken,
		DefaultIdentity: tokenapi.DefaultIdentity,
		Seed:            server.Seed{AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv, server.CreateCredential(b, srv.HTTPHandler(), adminToken, "backend")
}
