package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// wrkOutput is what wrkScript's done() prints for a run of n requests
// whose latencies are uniform from 1 to 1000 µs (the latency at
// percentile p is 10·p µs), with the given error counts.
func wrkOutput(n, status, timeouts uint64) string {
	var b strings.Builder
	b.WriteString("Running 2s test @ http://127.0.0.1:1/token\n  2 threads and 32 connections\n")
	fmt.Fprintf(&b, "WRK %d %d %d %d %d %d %d %d\n", 2_000_000, n, n*900, 0, 1, 0, status, timeouts)
	for _, p := range strings.Split(wrkPercentileList(), ", ") {
		var f float64
		fmt.Sscan(p, &f)
		fmt.Fprintf(&b, "P %s %d\n", p, int(10*f))
	}
	b.WriteString("Requests/sec: 5000.00\n")
	return b.String()
}

func TestParseWrkOutput(t *testing.T) {
	r, err := parseWrkOutput(wrkOutput(10000, 3, 2))
	if err != nil {
		t.Fatalf("parseWrkOutput: %v", err)
	}
	if r.duration != 2*time.Second || r.requests != 10000 || r.read != 1 || r.status != 3 || r.timeout != 2 {
		t.Errorf("summary = %+v, want 2s, 10000 requests, 1 read error, 3 status, 2 timeouts", r)
	}
	if got, want := r.errs(), uint64(6); got != want {
		t.Errorf("errs() = %d, want %d", got, want)
	}
	if got, want := r.answered(), uint64(9997); got != want {
		t.Errorf("answered() = %d, want %d", got, want)
	}
	if r.lat.n != 10000 {
		t.Errorf("histogram holds %d requests, want 10000", r.lat.n)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 500 * time.Microsecond},
		{0.99, 990 * time.Microsecond},
		{0.999, 999 * time.Microsecond},
		{1, 1000 * time.Microsecond},
	} {
		got := r.lat.quantile(tc.q)
		if d := got - tc.want; d < -tc.want/100 || d > tc.want/100 {
			t.Errorf("quantile(%v) = %v, want %v within 1%%", tc.q, got, tc.want)
		}
	}
}

func TestParseWrkOutputRefusesGarbage(t *testing.T) {
	for name, out := range map[string]string{
		"no_summary":  "Running 2s test\nRequests/sec: 1\n",
		"bad_summary": "WRK 1 2 3 x 5 6 7 8\n",
		"bad_latency": wrkOutput(10, 0, 0) + "P 50 soon\n",
	} {
		t.Run(name, func(t *testing.T) {
			if r, err := parseWrkOutput(out); err == nil {
				t.Errorf("parseWrkOutput(%q) = %+v, want an error", out, r)
			}
		})
	}
}

func TestWrkScript(t *testing.T) {
	s := wrkScript(wrkSpec{method: "POST", body: `{"identity":"a"}`, bearer: "tkd_x"})
	for _, want := range []string{
		`wrk.method = "POST"`,
		`wrk.headers["Authorization"] = "Bearer tkd_x"`,
		`wrk.body = "{\"identity\":\"a\"}"`,
		`wrk.headers["Content-Type"] = "application/json"`,
		"function done(summary, latency, requests)",
		"99.9, 99.95, 99.99, 100",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("wrkScript lacks %q:\n%s", want, s)
		}
	}
	if g := wrkScript(wrkSpec{method: "GET", bearer: "b"}); strings.Contains(g, "wrk.body") || strings.Contains(g, "Content-Type") {
		t.Errorf("GET script sets a body:\n%s", g)
	}
}
