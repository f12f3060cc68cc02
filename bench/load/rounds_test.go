package main

import (
	"strings"
	"testing"
	"time"
)

// TestPerRoundCPU: each measured slice's server CPU per call is kept, and
// the report prints the ratio to the ceiling's slice by slice (a slice
// with no call on the ceiling's side prints "-", not a division by zero).
func TestPerRoundCPU(t *testing.T) {
	var r, ceil result
	r.addRoundCPU(600*time.Microsecond, 10) // 60 µs
	r.addRoundCPU(450*time.Microsecond, 10) // 45 µs
	r.addRoundCPU(time.Millisecond, 0)      // no call
	ceil.addRoundCPU(300*time.Microsecond, 10)
	ceil.addRoundCPU(300*time.Microsecond, 10)
	ceil.addRoundCPU(time.Millisecond, 0)
	if want := []time.Duration{60 * time.Microsecond, 45 * time.Microsecond, 0}; len(r.perRoundCPU) != 3 ||
		r.perRoundCPU[0] != want[0] || r.perRoundCPU[1] != want[1] || r.perRoundCPU[2] != want[2] {
		t.Fatalf("perRoundCPU = %v; want %v", r.perRoundCPU, want)
	}
	var b strings.Builder
	perRoundCPU(&b, "x", &r, &ceil)
	if got := strings.Fields(b.String()); len(got) != 4 || got[1] != "2.00x" || got[2] != "1.50x" || got[3] != "-" {
		t.Errorf("perRoundCPU printed %q; want x 2.00x 1.50x -", b.String())
	}
}
