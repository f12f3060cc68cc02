package gctune

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Interval is how often Run re-reads the live heap, besides after every
// collection.
const Interval = time.Second

// interval is Interval; tests lengthen it, to see the reads that follow
// collections alone.
var interval = Interval

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
	cycles := afterEachGC(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		case <-cycles:
			apply()
		}
	}
}

// afterEachGC returns a channel that receives soon after each collection
// ends, until ctx ends. A load that grows the live heap is then met at
// the next collection with the GOGC for the new heap: GOGC is a multiple
// of the live heap, and one kept for a small heap for up to an Interval
// let the heap of a burst (400 new connections) grow to five times its
// live size, 50 MB, where it needed 16 MiB of room.
func afterEachGC(ctx context.Context) <-chan struct{} {
	c := make(chan struct{}, 1)
	var arm func()
	arm = func() {
		// A sentinel the next collection finds unreachable: its cleanup
		// runs after that collection, tells Run, and arms the next one.
		runtime.AddCleanup(new(sentinel), func(struct{}) {
			select {
			case c <- struct{}{}:
			default:
			}
			if ctx.Err() == nil {
				arm()
			}
		}, struct{}{})
	}
	arm()
	return c
}

// sentinel holds a pointer so that it is allocated on its own (the tiny
// allocator packs pointer-free objects together, and one of them lives
// as long as its neighbours).
type sentinel struct{ _ *byte }
