package gctune

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{4 * mib, 24 * mib, 600},   // small heap: 24 MiB of room, 6x
		{24 * mib, 24 * mib, 100},  // the default already gives the room
		{200 * mib, 24 * mib, 100}, // large heap: never below the default
		{0, 24 * mib, 600},         // nothing live yet: as if 4 MiB, the runtime's minimum
		{1 * mib, 24 * mib, 600},
		{1 * mib, 4096 * mib, 102400},
	} {
		if got := Percent(c.live, c.headroom); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

func TestRunSetsAndRestoresGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, 1<<40); close(done) }() // a terabyte of room: far above 100
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p := gogc(); p > 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after Run started", gogc())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC after Run = %d, want the 100 it found", p)
	}
}

func TestOperatorGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "50")
	if Enabled(24 << 20) {
		t.Error("Enabled with GOGC set")
	}
	if Enabled(0) {
		t.Error("Enabled with no headroom")
	}
}

// gogc reads the current GOGC without setting it.
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestRunFollowsEachCollection: when the live heap grows, the collection
// that finds it is followed by the GOGC for it, without waiting for an
// Interval.
func TestRunFollowsEachCollection(t *testing.T) {
	t.Setenv("GOGC", "")
	defer func(i time.Duration) { interval = i }(interval)
	interval = time.Hour // only the collections
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	const mib = 1 << 20
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, 256*mib); close(done) }()
	defer func() { cancel(); <-done }()
	waitGOGC := func(ok func(int) bool, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(gogc()) {
			if time.Now().After(deadline) {
				t.Fatalf("GOGC %d, want %s", gogc(), what)
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitGOGC(func(p int) bool { return p >= 2000 }, "at least 2000 for a small heap and 256 MiB of room")
	live := make([]byte, 128*mib) // pointer-free: counted live, not scanned
	for i := range live {
		live[i] = 1
	}
	// 256 MiB of room over about 128 MiB live: about 200.
	waitGOGC(func(p int) bool { return p >= 150 && p <= 220 }, "about 200 once 128 MiB are live")
	runtime.KeepAlive(live)
}
