package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSeedHalfSetIsAnError(t *testing.T) {
	const secret = "do-not-print-me-0123456789abcdef"
	env := envOf(map[string]string{
		"ACCOUNT_SID":      "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"API_SECRET":       secret,
		"TOKEND_DATA_DIR":  t.TempDir(),
		"TOKEND_GRPC_ADDR": "127.0.0.1:0",
		"TOKEND_HTTP_ADDR": "127.0.0.1:0",
	})
	var stderr bytes.Buffer
	err := run(context.Background(), nil, env, &bytes.Buffer{}, &stderr)
	if err == nil {
		t.Fatal("run with half the seed variables = nil, want an error")
	}
	for _, missing := range []string{"API_KEY", "TWIML_APP_SID"} {
		if !strings.Contains(err.Error(), missing) {
			t.Errorf("error %q does not name the missing %s", err, missing)
		}
	}
	if strings.Contains(err.Error()+stderr.String(), secret) {
		t.Error("the error or the log contains the API secret")
	}
}

func TestParse(t *testing.T) {
	env := envOf(map[string]string{"TOKEND_HTTP_ADDR": "127.0.0.1:1", "TOKEND_DEFAULT_IDENTITY": "alice"})
	o, err := parse([]string{"--http-addr", "127.0.0.1:2"}, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.httpAddr != "127.0.0.1:2" || o.defaultIdentity != "alice" || o.grpcAddr != "127.0.0.1:9090" || o.dataDir != "./data" {
		t.Errorf("parse = %+v, want the flag over the env, the env over the default", o)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--default-application", "AP1"}, "default-application"},
		{[]string{"--default-identity", "a b"}, "default-identity"},
		{[]string{"--max-body-bytes", "1"}, "max-body-bytes"},
		{[]string{"extra"}, "unexpected argument"},
	}
	for _, b := range bad {
		if _, err := parse(b.args, envOf(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("parse(%v) = %v, want an error naming %s", b.args, err, b.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunServesAndShutsDown starts tokend as `make run` does (no seed: the
// demo application), fetches GET /token like the seed's browser page, and
// stops it with a cancelled context (as SIGTERM does).
func TestRunServesAndShutsDown(t *testing.T) {
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	env := envOf(map[string]string{"TOKEND_DATA_DIR": t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--grpc-addr", grpcAddr}, env, &bytes.Buffer{}, lockedWriter{&mu, &stderr})
	}()
	var body map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/token")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET /token = %d %v", resp.StatusCode, body)
			}
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("tokend did not answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tok, _ := body["token"].(string); strings.Count(tok, ".") != 2 {
		t.Errorf("GET /token = %v, want {\"token\": <jwt>}", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tokend did not shut down")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"created a new master key file", "demo application", "shutting down"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log does not mention %q:\n%s", want, stderr.String())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
