// Package ratelimit limits request rates per key (a caller, a client
// address) with token buckets.
//
// Memory is bounded: at most maxKeys buckets are kept, least recently used
// first out, and a bucket unused for longer than the idle timeout (10
// minutes by default) is dropped. A dropped bucket comes back full, which
// is what an idle bucket would be anyway once idle for burst/rps; with
// more active keys than maxKeys, the least recently seen keys lose their
// history, so maxKeys should exceed the number of keys active at once.
//
// Several replicas can share one limit: SetShare(n) makes a Limiter
// enforce its share of it, the rate divided by n and the burst divided by
// n (rounded up, at least 1), so that n replicas together allow about the
// configured rate. Buckets take a new share at their next use.
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// DefaultMaxKeys is maxKeys when New is given less than 1.
	DefaultMaxKeys = 10000
	// DefaultIdleTimeout is how long an unused bucket is kept.
	DefaultIdleTimeout = 10 * time.Minute
)

// Limiter holds one token bucket per key. It is safe for concurrent use.
type Limiter struct {
	// baseLimit and baseBurst are the limits of the whole deployment, as
	// configured; limit and burst are this limiter's share of them.
	baseLimit rate.Limit
	baseBurst int
	maxKeys   int
	idle      time.Duration
	now       func() time.Time

	mu sync.Mutex
	// limit and burst are the share in force (guarded by mu, but for a
	// limit of rate.Inf, which never changes); share is the n of
	// SetShare, and generation counts the changes of share, so that a
	// bucket made before the last change takes the new limits at its next
	// use.
	limit      rate.Limit
	burst      int
	share      int
	generation uint64
	keys       map[string]*list.Element // of *entry
	lru        list.List                // most recently used at the front
}

type entry struct {
	key        string
	lim        *rate.Limiter
	lastUsed   time.Time
	generation uint64
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock makes the Limiter read the time from now (for tests).
func WithClock(now func() time.Time) Option {
	return func(l *Limiter) { l.now = now }
}

// WithIdleTimeout sets how long an unused bucket is kept (default 10
// minutes).
func WithIdleTimeout(d time.Duration) Option {
	return func(l *Limiter) { l.idle = d }
}

// New returns a Limiter allowing each key rps requests per second on
// average and burst at once, keeping at most maxKeys buckets (default
// DefaultMaxKeys when maxKeys < 1). rps <= 0 (or +Inf) means no limit:
// Allow always allows and keeps nothing. burst < 1 is taken as 1.
func New(rps float64, burst int, maxKeys int, opts ...Option) *Limiter {
	l := &Limiter{
		baseLimit: rate.Limit(rps),
		baseBurst: max(burst, 1),
		maxKeys:   maxKeys,
		idle:      DefaultIdleTimeout,
		now:       time.Now,
		keys:      map[string]*list.Element{},
		share:     1,
	}
	if rps <= 0 || math.IsInf(rps, 1) || math.IsNaN(rps) {
		l.baseLimit = rate.Inf
	}
	l.limit, l.burst = l.baseLimit, l.baseBurst
	if l.maxKeys < 1 {
		l.maxKeys = DefaultMaxKeys
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow takes one token from key's bucket. When the bucket is empty it
// takes nothing and returns false and how long until a token will be
// there (for a Retry-After header); retryAfter is 0 when allowed.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if l == nil || l.baseLimit == rate.Inf {
		return true, 0
	}
	now := l.now()
	lim := l.bucket(key, now)
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		// Cannot happen with burst >= 1; be safe rather than allow.
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // give the token back: a denied request costs nothing
		return false, d
	}
	return true, 0
}

// SetShare makes l enforce its share of the configured limits when n
// replicas share them: a rate of rps/n and a burst of burst/n rounded up,
// at least 1 (so n replicas together allow bursts of up to burst+n-1). n
// < 1 is taken as 1, the configured limits themselves. A bucket keeps its
// tokens across a change, capped at the new burst, and refills at the new
// rate from its next use. An unlimited Limiter stays unlimited.
func (l *Limiter) SetShare(n int) {
	if l == nil || l.baseLimit == rate.Inf {
		return
	}
	n = max(n, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == l.share {
		return
	}
	l.share = n
	l.limit = l.baseLimit / rate.Limit(n)
	l.burst = max(1, (l.baseBurst+n-1)/n)
	l.generation++
}

// Share returns the n of the last SetShare (1 if never called) and the
// rate (per second; +Inf: no limit) and burst in force.
func (l *Limiter) Share() (n int, rps float64, burst int) {
	if l == nil {
		return 1, math.Inf(1), 0
	}
	if l.baseLimit == rate.Inf {
		return 1, math.Inf(1), l.baseBurst
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.share, float64(l.limit), l.burst
}

// Len returns how many buckets are kept.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// bucket returns key's limiter, creating it if needed, and evicts idle
// and excess buckets.
func (l *Limiter) bucket(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evictIdle(now)
	if el, ok := l.keys[key]; ok {
		e := el.Value.(*entry)
		e.lastUsed = now
		l.lru.MoveToFront(el)
		if e.generation != l.generation {
			// The share changed since the bucket was last used.
			e.lim.SetLimitAt(now, l.limit)
			e.lim.SetBurstAt(now, l.burst)
			e.generation = l.generation
		}
		return e.lim
	}
	for len(l.keys) >= l.maxKeys {
		l.remove(l.lru.Back())
	}
	e := &entry{key: key, lim: rate.NewLimiter(l.limit, l.burst), lastUsed: now, generation: l.generation}
	l.keys[key] = l.lru.PushFront(e)
	return e.lim
}

// evictIdle drops buckets unused for longer than the idle timeout. The
// list is in order of use, so it stops at the first recent one: the cost
// is proportional to what is dropped.
func (l *Limiter) evictIdle(now time.Time) {
	if l.idle <= 0 {
		return
	}
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		if now.Sub(el.Value.(*entry).lastUsed) <= l.idle {
			return
		}
		l.remove(el)
	}
}

func (l *Limiter) remove(el *list.Element) {
	e := l.lru.Remove(el).(*entry)
	delete(l.keys, e.key)
}
