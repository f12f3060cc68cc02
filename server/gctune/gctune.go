// Package gctune keeps the Go garbage collector from running too often
// when the live heap is small.
//
// The collector's default (GOGC=100) starts a cycle each time the heap
// doubles. tokend's live heap is a few MiB on a small install while every
// call allocates a few KiB (gRPC and HTTP framing, metadata, the token),
// so under load it collects dozens of times a second (in the load
// profile, the collector and allocation slow paths were about a fifth of a
// Mint's CPU). A fixed GOGC high
// enough for that (400) would multiply a large store's heap (100,000
// applications) by five.
//
// Headroom instead sets GOGC so that the collector lets the heap grow by
// at least a fixed number of bytes over the live heap, and never by less
// than the default's 100%: GOGC = max(100, 100·headroom/live). A small
// heap gets room enough to collect rarely; a large heap is left at the
// default. This is what a "heap ballast" did, without the ballast. The
// live heap is re-read every Interval (runtime/metrics), and GOGC is only
// changed when it moves by more than a tenth.
//
// An operator's own GOGC (the environment variable) wins: Run does
// nothing when it is set. GOMEMLIMIT keeps working, as it bounds the heap
// whatever GOGC says.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Interval is how often Run re-reads the live heap.
const Interval = time.Second

const liveHeapMetric = "/gc/heap/live:bytes"

// minLive is the smallest live heap Percent assumes: the runtime's own
// minimum heap (4 MiB at GOGC=100, which it scales by GOGC). Before the
// first collection the live heap reads 0; taking it at face value would
// set a GOGC that lets the heap grow without bound until the next read.
const minLive = 4 << 20

// Percent is the GOGC that gives at least headroom bytes over a live heap
// of live bytes (taken as at least 4 MiB), and never less than 100.
func Percent(live, headroom uint64) int {
	p := headroom * 100 / max(live, minLive)
	return int(max(p, 100))
}

// Enabled reports whether Run would tune: headroom is positive and the
// operator has not set GOGC.
func Enabled(headroom uint64) bool {
	return headroom > 0 && os.Getenv("GOGC") == ""
}

// Run tunes GOGC for headroom bytes until ctx ends, then restores the
// GOGC it found. It returns at once when !Enabled(headroom).
func Run(ctx context.Context, headroom uint64) {
	if !Enabled(headroom) {
		return
	}
	sample := []metrics.Sample{{Name: liveHeapMetric}}
	current := debug.SetGCPercent(100)
	defer debug.SetGCPercent(current)
	current = 100
	apply := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		p := Percent(sample[0].Value.Uint64(), headroom)
		if p*10 < current*9 || p*10 > current*11 {
			debug.SetGCPercent(p)
			current = p
		}
	}
	apply()
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}
