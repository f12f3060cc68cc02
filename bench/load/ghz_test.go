package main

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ghzOutput is a ghz JSON report (-O json, as v0.93.0 writes it) of n
// calls over 2 s whose latencies are 1..n µs, the last failed of them
// answered with failedCode (none when empty); with details or not.
func ghzOutput(n, failed int, failedCode string, details bool) string {
	codes := map[string]int{"OK": n - failed}
	if failed > 0 {
		codes[failedCode] = failed
	}
	var ds []map[string]any
	if details {
		for i := 1; i <= n; i++ {
			st := "OK"
			if i > n-failed {
				st = failedCode
			}
			ds = append(ds, map[string]any{"timestamp": "2026-12-04T20:12:44.204105879Z", "latency": i * 1000, "error": "", "status": st})
		}
	}
	var pcts []map[string]any
	for _, p := range []int{10, 25, 50, 75, 90, 95, 99} {
		pcts = append(pcts, map[string]any{"percentage": p, "latency": p * n * 10})
	}
	b, _ := json.Marshal(map[string]any{
		"date": "2026-12-04T20:12:44Z", "endReason": "normal", "count": n, "total": 2_000_000_000,
		"average": 1_000_000, "rps": float64(n) / 2, "errorDistribution": map[string]int{},
		"statusCodeDistribution": codes, "latencyDistribution": pcts, "details": ds,
	})
	return string(b)
}

func TestParseGhzOutput(t *testing.T) {
	r, err := parseGhzOutput([]byte(ghzOutput(1000, 3, "Unavailable", true)))
	if err != nil {
		t.Fatalf("parseGhzOutput: %v", err)
	}
	if r.total != 2*time.Second || r.count != 1000 || r.ok != 997 {
		t.Errorf("run = %v, %d calls, %d OK; want 2s, 1000, 997", r.total, r.count, r.ok)
	}
	if got := r.errs(); got != 3 {
		t.Errorf("errs() = %d, want 3", got)
	}
	if got := r.errKinds["ghz: Unavailable"]; got != 3 || len(r.errKinds) != 1 {
		t.Errorf("errKinds = %v, want 3× ghz: Unavailable", r.errKinds)
	}
	// Every call's latency (1..1000 µs): the quantiles are the calls'
	// own, to within the histogram's bucket.
	if r.lat.n != 1000 {
		t.Fatalf("latency histogram holds %d calls, want 1000", r.lat.n)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}} {
		if got := r.lat.quantile(c.q); got < c.want*95/100 || got > c.want*105/100 {
			t.Errorf("quantile(%v) = %v, want about %v", c.q, got, c.want)
		}
	}
}

// TestParseGhzOutputNoDetails: without per-call details the latency comes
// from the percentiles ghz gives (up to p99), and covers every call.
func TestParseGhzOutputNoDetails(t *testing.T) {
	r, err := parseGhzOutput([]byte(ghzOutput(1000, 0, "", false)))
	if err != nil {
		t.Fatalf("parseGhzOutput: %v", err)
	}
	if r.ok != 1000 || r.errs() != 0 || len(r.errKinds) != 0 {
		t.Errorf("ok = %d, errs = %d, kinds %v; want 1000, 0, none", r.ok, r.errs(), r.errKinds)
	}
	if r.lat.n != 1000 {
		t.Fatalf("latency histogram holds %d calls, want 1000", r.lat.n)
	}
	// The percentile p's latency is p·10 µs here (p·n·10 ns for n calls).
	if got, want := r.lat.quantile(0.5), 500*time.Microsecond; got < want*95/100 || got > want*105/100 {
		t.Errorf("quantile(0.5) = %v, want about %v", got, want)
	}
}

func TestParseGhzOutputRefuses(t *testing.T) {
	for _, out := range []string{
		"",
		"Summary:\n  Count: 10\n",
		`{"count":0,"total":0}`,
		`{"count":10,"total":1000,"statusCodeDistribution":{"OK":11}}`,
	} {
		if r, err := parseGhzOutput([]byte(out)); err == nil {
			t.Errorf("parseGhzOutput(%q) = %+v, want an error", out, r)
		}
	}
}

// TestParseGhzOutputConnectionErrors: calls that never got a status (the
// connection failed) are named by ghz's error distribution.
func TestParseGhzOutputConnectionErrors(t *testing.T) {
	out := `{"count":10,"total":1000000,"statusCodeDistribution":{"OK":8},` +
		`"errorDistribution":{"connection refused":2},"details":[]}`
	r, err := parseGhzOutput([]byte(out))
	if err != nil {
		t.Fatalf("parseGhzOutput: %v", err)
	}
	if r.errs() != 2 || r.errKinds["ghz: connection refused"] != 2 {
		t.Errorf("errs = %d, kinds %v; want 2× ghz: connection refused", r.errs(), r.errKinds)
	}
}

func TestGhzArgs(t *testing.T) {
	s := &ghzSpec{addr: "127.0.0.1:9000", call: "token.v1.TokenService.Mint", bearer: "tkd_x", conns: 2}
	got := ghzArgs(s, 50, 12345)
	want := []string{
		"--insecure", "--call", "token.v1.TokenService.Mint", "-d", "{}", "-c", "50", "--connections", "2",
		"-n", "12345", "-t", "10s", "-O", "json", "-m", `{"authorization":"Bearer tkd_x"}`, "127.0.0.1:9000",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ghzArgs =\n%q\nwant\n%q", got, want)
	}
	// More connections than workers: ghz needs a worker per connection.
	s = &ghzSpec{addr: "a:1", call: "grpc.health.v1.Health.Check", protoFile: "/tmp/h.proto", conns: 8}
	got = ghzArgs(s, 4, 100)
	if i := slices.Index(got, "--connections"); i < 0 || got[i+1] != "4" {
		t.Errorf("ghzArgs with 8 connections for 4 workers = %q, want --connections 4", got)
	}
	if i := slices.Index(got, "--proto"); i < 0 || got[i+1] != "/tmp/h.proto" || slices.Contains(got, "-m") {
		t.Errorf("ghzArgs = %q, want --proto /tmp/h.proto and no metadata", got)
	}
	if last := got[len(got)-1]; last != "a:1" {
		t.Errorf("ghzArgs ends with %q, want the address", last)
	}
}

func TestGhzCalls(t *testing.T) {
	for _, c := range []struct {
		rate float64
		d    time.Duration
		want uint64
	}{
		{0, 0, 1000},
		{0, 10 * time.Second, 1000},
		{20000, 2 * time.Second, 40000},
		{20000, time.Millisecond, 100},
	} {
		if got := ghzCalls(c.rate, c.d); got != c.want {
			t.Errorf("ghzCalls(%v, %v) = %d, want %d", c.rate, c.d, got, c.want)
		}
	}
}

// TestRunGhzAgainstHealth drives a bare health server (as the gRPC
// ceiling is) with the ghz on $PATH, given the description the harness
// writes; it is skipped where ghz is not installed.
func TestRunGhzAgainstHealth(t *testing.T) {
	bin, err := exec.LookPath("ghz")
	if err != nil {
		t.Skip("ghz is not installed")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	defer gs.Stop()
	proto, err := writeHealthProto(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := &ghzSpec{addr: lis.Addr().String(), call: "grpc.health.v1.Health.Check", bearer: "x", protoFile: proto, conns: 1}
	r, err := runGhz(context.Background(), bin, s, 4, 200)
	if err != nil {
		t.Fatalf("runGhz: %v", err)
	}
	if r.count != 200 || r.ok != 200 || r.lat.n != 200 || s.rate <= 0 {
		t.Errorf("run = %d calls, %d OK, %d latencies, rate %v; want 200, 200, 200, > 0", r.count, r.ok, r.lat.n, s.rate)
	}
}

// TestRunTool: a generator's failure names it and carries what it
// printed; a success gives its output and its CPU time.
func TestRunTool(t *testing.T) {
	_, err := runTool(context.Background(), "gen", "sh", "-c", "echo said-out; echo said-err >&2; exit 3")
	if err == nil {
		t.Fatal("runTool of a command that exits 3: no error")
	}
	for _, want := range []string{"gen: exit status 3", "said-out", "said-err"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	r, err := runTool(context.Background(), "gen", "sh", "-c", "echo fine")
	if err != nil || string(r.out) != "fine\n" {
		t.Errorf("runTool = %q, %v; want \"fine\\n\", no error", r.out, err)
	}
}
