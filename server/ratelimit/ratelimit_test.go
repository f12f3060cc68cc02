package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

// clock is a fake time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestBurstThenDenyThenRecover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rps   float64
		burst int
		retry time.Duration // retryAfter of the first denial
	}{
		{"1 per second burst 3", 1, 3, time.Second},
		{"10 per second burst 5", 10, 5, 100 * time.Millisecond},
		{"one per minute", 1.0 / 60, 1, time.Minute},
		{"burst 0 means 1", 2, 0, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := New(tc.rps, tc.burst, 100, WithClock(c.now))
			burst := max(tc.burst, 1)
			for i := range burst {
				if ok, ra := l.Allow("k"); !ok || ra != 0 {
					t.Fatalf("request %d of the burst: ok=%v retryAfter=%v", i, ok, ra)
				}
			}
			ok, ra := l.Allow("k")
			if ok {
				t.Fatal("allowed beyond the burst")
			}
			if ra <= 0 || absDiff(ra, tc.retry) > time.Millisecond {
				t.Fatalf("retryAfter = %v; want %v", ra, tc.retry)
			}
			// Denials cost nothing: asking again right away gives the same wait.
			if ok, ra2 := l.Allow("k"); ok || absDiff(ra2, ra) > time.Millisecond {
				t.Fatalf("second denial: ok=%v retryAfter=%v; want %v", ok, ra2, ra)
			}
			// Half the wait is not enough.
			c.advance(ra / 2)
			if ok, ra3 := l.Allow("k"); ok || absDiff(ra3, ra/2) > time.Millisecond {
				t.Fatalf("after half the wait: ok=%v retryAfter=%v", ok, ra3)
			}
			c.advance(ra - ra/2)
			if ok, _ := l.Allow("k"); !ok {
				t.Fatal("denied after waiting retryAfter")
			}
			if ok, _ := l.Allow("k"); ok {
				t.Fatal("allowed twice after one token's worth of waiting")
			}
			// A long wait refills the whole burst, no more.
			c.advance(time.Hour)
			for i := range burst {
				if ok, _ := l.Allow("k"); !ok {
					t.Fatalf("after refill, request %d denied", i)
				}
			}
			if ok, _ := l.Allow("k"); ok {
				t.Fatal("refill exceeded the burst")
			}
		})
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

func TestKeysAreIndependent(t *testing.T) {
	c := newClock()
	l := New(1, 2, 100, WithClock(c.now))
	for range 2 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatal("a denied within its burst")
		}
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a allowed beyond its burst")
	}
	for range 2 {
		if ok, _ := l.Allow("b"); !ok {
			t.Fatal("b denied: a's use leaked into b")
		}
	}
	if ok, _ := l.Allow(""); !ok {
		t.Fatal("the empty key is a key like any other")
	}
}

func TestUnlimited(t *testing.T) {
	for _, rps := range []float64{0, -1, math.Inf(1), math.NaN()} {
		l := New(rps, 1, 10)
		for i := range 1000 {
			if ok, ra := l.Allow(fmt.Sprint(i % 3)); !ok || ra != 0 {
				t.Fatalf("rps %v: denied", rps)
			}
		}
		if l.Len() != 0 {
			t.Errorf("rps %v: unlimited limiter keeps %d buckets", rps, l.Len())
		}
	}
	var nilLimiter *Limiter
	if ok, _ := nilLimiter.Allow("x"); !ok {
		t.Error("nil limiter denied")
	}
}

func TestEvictionBounded(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxKeys int
		keys    int
		want    int
	}{
		{"under the cap", 10, 5, 5},
		{"at the cap", 10, 10, 10},
		{"over the cap", 10, 1000, 10},
		{"default cap", 0, DefaultMaxKeys + 50, DefaultMaxKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := New(1, 1, tc.maxKeys, WithClock(c.now))
			for i := range tc.keys {
				l.Allow(fmt.Sprint("k", i))
			}
			if got := l.Len(); got != tc.want {
				t.Errorf("Len = %d; want %d", got, tc.want)
			}
		})
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := newClock()
	l := New(1, 1, 2, WithClock(c.now))
	l.Allow("a") // a's bucket is now empty
	l.Allow("b")
	l.Allow("a") // a used most recently (denied, still used)
	l.Allow("c") // evicts b, not a
	if ok, _ := l.Allow("a"); ok {
		t.Error("a was evicted (its empty bucket came back full) though b was older")
	}
	if l.Len() != 2 {
		t.Errorf("Len = %d", l.Len())
	}
}

func TestEvictsIdle(t *testing.T) {
	c := newClock()
	l := New(1, 1, 100, WithClock(c.now), WithIdleTimeout(10*time.Minute))
	for i := range 50 {
		l.Allow(fmt.Sprint("old", i))
	}
	c.advance(9 * time.Minute)
	l.Allow("recent")
	if l.Len() != 51 {
		t.Fatalf("Len = %d; want 51 (nothing idle yet)", l.Len())
	}
	c.advance(2 * time.Minute) // old*: 11 min idle; recent: 2 min
	l.Allow("new")
	if got := l.Len(); got != 2 {
		t.Errorf("Len = %d; want 2 (recent and new)", got)
	}
}

func TestConcurrent(t *testing.T) {
	c := newClock()
	l := New(1, 10, 50, WithClock(c.now))
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := map[string]int{}
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				key := fmt.Sprint(i % 20)
				if g%2 == 0 {
					key = fmt.Sprint("g", g, "-", i) // churn to force evictions
				}
				if ok, _ := l.Allow(key); ok && g%2 == 1 {
					mu.Lock()
					allowed[key]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if l.Len() > 50 {
		t.Errorf("Len = %d over the cap", l.Len())
	}
	// Each key shared by the steady goroutines (100 attempts, clock
	// stopped) gets its burst of 10, plus a fresh burst each time churn
	// evicted it.
	if len(allowed) != 20 {
		t.Errorf("%d steady keys allowed; want 20", len(allowed))
	}
	for k, n := range allowed {
		if n < 10 {
			t.Errorf("key %s: %d allowed; want at least the burst", k, n)
		}
	}
}

// allowedOver asks for a token every step for d and returns how many were
// allowed.
func allowedOver(l *Limiter, c *clock, key string, d, step time.Duration) int {
	n := 0
	for elapsed := time.Duration(0); elapsed < d; elapsed += step {
		if ok, _ := l.Allow(key); ok {
			n++
		}
		c.advance(step)
	}
	return n
}

func TestSetShare(t *testing.T) {
	const (
		rps    = 30
		burst  = 10
		window = 10 * time.Second
	)
	for _, tc := range []struct {
		name      string
		n         int
		wantBurst int
		wantRPS   float64
	}{
		{"alone", 1, 10, 30},
		{"zero is one", 0, 10, 30},
		{"two", 2, 5, 15},
		{"three rounds the burst up", 3, 4, 10},
		{"four", 4, 3, 7.5},
		{"more replicas than burst", 20, 1, 1.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			l := New(rps, burst, 100, WithClock(c.now))
			l.SetShare(tc.n)
			if n, gotRPS, gotBurst := l.Share(); n != max(tc.n, 1) || gotRPS != tc.wantRPS || gotBurst != tc.wantBurst {
				t.Errorf("Share() = %d, %v, %d; want %d, %v, %d", n, gotRPS, gotBurst, max(tc.n, 1), tc.wantRPS, tc.wantBurst)
			}
			// A new bucket holds the share's burst.
			got := 0
			for range burst + 5 {
				if ok, _ := l.Allow("k"); ok {
					got++
				}
			}
			if got != tc.wantBurst {
				t.Errorf("burst after SetShare(%d) = %d, want %d", tc.n, got, tc.wantBurst)
			}
			// Then it refills at the share's rate.
			got = allowedOver(l, c, "k", window, 10*time.Millisecond)
			want := int(tc.wantRPS * window.Seconds())
			if got < want-1 || got > want+1 {
				t.Errorf("allowed over %v after SetShare(%d) = %d, want %d ± 1", window, tc.n, got, want)
			}
		})
	}
}

// TestSetShareExistingBuckets: buckets made before a change of share take
// it at their next use, keeping their tokens up to the new burst.
func TestSetShareExistingBuckets(t *testing.T) {
	c := newClock()
	l := New(30, 10, 100, WithClock(c.now))
	// A full bucket: 10 tokens.
	if ok, _ := l.Allow("full"); !ok {
		t.Fatal("first request denied")
	}
	c.advance(time.Hour)
	// An empty one.
	for range 20 {
		l.Allow("empty")
	}
	l.SetShare(2) // 15 per second, burst 5
	got := 0
	for range 20 {
		if ok, _ := l.Allow("full"); ok {
			got++
		}
	}
	if got != 5 {
		t.Errorf("full bucket after SetShare(2): %d allowed at once, want 5 (the new burst)", got)
	}
	if got := allowedOver(l, c, "empty", 2*time.Second, 10*time.Millisecond); got < 29 || got > 31 {
		t.Errorf("empty bucket after SetShare(2): %d allowed over 2 s, want 30 ± 1", got)
	}
	// A replica leaves: back to the whole limit; tokens are not given at
	// once, they refill at the new rate.
	l.SetShare(1)
	if got := allowedOver(l, c, "empty", 2*time.Second, 10*time.Millisecond); got < 59 || got > 61 {
		t.Errorf("empty bucket after SetShare(1): %d allowed over 2 s, want 60 ± 1", got)
	}
}

func TestSetShareUnlimited(t *testing.T) {
	for _, l := range []*Limiter{New(0, 10, 100), nil} {
		l.SetShare(3)
		for i := range 1000 {
			if ok, _ := l.Allow("k"); !ok {
				t.Fatalf("unlimited limiter after SetShare(3) denied request %d", i)
			}
		}
		if n, rps, _ := l.Share(); n != 1 || !math.IsInf(rps, 1) {
			t.Errorf("Share() of an unlimited limiter = %d, %v; want 1, +Inf", n, rps)
		}
	}
}

// TestSetShareConcurrent runs SetShare against Allow under the race
// detector.
func TestSetShareConcurrent(t *testing.T) {
	l := New(1000, 10, 100)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				l.Allow(fmt.Sprint("k", (g+i)%7))
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			l.SetShare(1 + i%4)
		}
	})
	wg.Wait()
	l.SetShare(2)
	if n, rps, burst := l.Share(); n != 2 || rps != 500 || burst != 5 {
		t.Errorf("Share() = %d, %v, %d; want 2, 500, 5", n, rps, burst)
	}
}

// BenchmarkAllow is the cost of a check on a hot key, with the share in
// force since the bucket was made (the common case) and with a share
// that changes now and then.
func BenchmarkAllow(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		l := New(1e9, 1e6, 100)
		l.SetShare(3)
		for b.Loop() {
			l.Allow("k")
		}
	})
	b.Run("share-changes", func(b *testing.B) {
		l := New(1e9, 1e6, 100)
		i := 0
		for b.Loop() {
			if i++; i%1000 == 0 {
				l.SetShare(1 + i/1000%3)
			}
			l.Allow("k")
		}
	})
}
