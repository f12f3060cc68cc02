package httpapi

import (
	"net/http"
	"testing"
	"time"
)

// TestDateOf: the Date header is the request's start in HTTP's format,
// the same slice (nothing allocated) for every answer of one second, and
// a new one for the next second.
func TestDateOf(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 1, 2, 3, 400, time.FixedZone("CET", 3600))
	v := dateOf(t0)
	if len(v) != 1 || v[0] != "Sat, 05 Dec 2026 00:02:03 GMT" {
		t.Fatalf("dateOf(%v) = %q", t0, v)
	}
	if got, err := http.ParseTime(v[0]); err != nil || !got.Equal(t0.Truncate(time.Second)) {
		t.Errorf("ParseTime(%q) = %v, %v; want %v", v[0], got, err, t0.Truncate(time.Second))
	}
	same := dateOf(t0.Add(500 * time.Millisecond))
	if &same[0] != &v[0] {
		t.Errorf("a second answer within the second got a new slice")
	}
	if n := testing.AllocsPerRun(100, func() { dateOf(t0) }); n != 0 {
		t.Errorf("dateOf within a second: %v allocations, want 0", n)
	}
	next := dateOf(t0.Add(time.Second))
	if next[0] != "Sat, 05 Dec 2026 00:02:04 GMT" || v[0] != "Sat, 05 Dec 2026 00:02:03 GMT" {
		t.Errorf("next second: %q (the last second's now %q)", next, v)
	}
}
