package auth

import (
	"container/list"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Defaults of FailureLimiter.
const (
	// DefaultFailureRate is how many failed authentications per second an
	// address earns back once its burst is spent.
	DefaultFailureRate = 0.2
	// DefaultFailureBurst is how many failed authentications an address
	// may make in a row before it is slowed down.
	DefaultFailureBurst = 10
	// DefaultFailureMaxAddrs bounds the addresses tracked at once.
	DefaultFailureMaxAddrs = 10000
)

// FailureLimiter slows down repeated failed authentications from one
// client address, without affecting other addresses: each address has a
// token bucket (golang.org/x/time/rate) that every failure drains and
// that refills at Rate per second up to Burst. While an address's bucket
// is empty, its requests are refused with ResourceExhausted (HTTP 429 and
// Retry-After) before their credentials are even looked at, so a guesser
// gets Rate guesses per second, whatever it sends; the address's callers
// with good credentials are refused too until the bucket refills (they
// share the address with the guesser, and tokend cannot tell them apart).
//
// IPv6 addresses are grouped by /64 (one host usually holds a whole /64);
// an unknown address (bufconn, a Unix socket) is one key. Memory is
// bounded: at most MaxAddrs buckets, the least recently failed dropped
// first, and buckets that have refilled are dropped as failures come in.
//
// Blocked, on every authenticated request, is one atomic load while no
// address has failed recently, and a map lookup (no allocation) otherwise.
type FailureLimiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	refill  time.Duration // how long an empty bucket takes to refill
	now     func() time.Time
	exempt  []netip.Prefix // set before use (Exempt), read-only after

	tracked atomic.Int64 // len(keys), read without the lock
	mu      sync.Mutex
	keys    map[netip.Addr]*list.Element // of *failureEntry
	lru     list.List                    // most recently failed at the front
}

type failureEntry struct {
	key        netip.Addr
	lim        *rate.Limiter
	lastFailed time.Time
}

// NewFailureLimiter returns a FailureLimiter allowing burst failures in a
// row per address, then rps per second, tracking at most maxAddrs
// addresses (DefaultFailureMaxAddrs when < 1). rps <= 0 returns nil: no
// throttling (a nil *FailureLimiter is valid and never blocks).
func NewFailureLimiter(rps float64, burst, maxAddrs int) *FailureLimiter {
	if rps <= 0 {
		return nil
	}
	burst = max(burst, 1)
	if maxAddrs < 1 {
		maxAddrs = DefaultFailureMaxAddrs
	}
	return &FailureLimiter{
		limit:   rate.Limit(rps),
		burst:   burst,
		maxKeys: maxAddrs,
		refill:  time.Duration(float64(burst) / rps * float64(time.Second)),
		now:     time.Now,
		keys:    map[netip.Addr]*list.Element{},
	}
}

// Exempt makes the addresses inside prefixes never slowed down (a trusted
// proxy: every browser user comes from it, and one user's failures must not
// lock the others out). Call it before the FailureLimiter is used.
func (f *FailureLimiter) Exempt(prefixes ...netip.Prefix) {
	if f == nil {
		return
	}
	for _, p := range prefixes {
		f.exempt = append(f.exempt, p.Masked())
	}
}

func (f *FailureLimiter) exempted(addr netip.Addr) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range f.exempt {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// failureKey is the bucket of addr: itself, or its /64 for IPv6.
func failureKey(addr netip.Addr) netip.Addr {
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

// Blocked reports whether addr has spent its failures and, if so, how
// long until it may try again.
func (f *FailureLimiter) Blocked(addr netip.Addr) (bool, time.Duration) {
	if f == nil || f.tracked.Load() == 0 || f.exempted(addr) {
		return false, 0
	}
	key := failureKey(addr)
	f.mu.Lock()
	defer f.mu.Unlock()
	el, ok := f.keys[key]
	if !ok {
		return false, 0
	}
	now := f.now()
	lim := el.Value.(*failureEntry).lim
	if tokens := lim.TokensAt(now); tokens < 1 {
		wait := time.Duration((1 - tokens) / float64(f.limit) * float64(time.Second))
		return true, max(wait, time.Millisecond)
	}
	return false, 0
}

// Fail records a failed authentication from addr.
func (f *FailureLimiter) Fail(addr netip.Addr) {
	if f == nil || f.exempted(addr) {
		return
	}
	key := failureKey(addr)
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evictRefilled(now)
	el, ok := f.keys[key]
	if ok {
		f.lru.MoveToFront(el)
	} else {
		for len(f.keys) >= f.maxKeys {
			f.remove(f.lru.Back())
		}
		el = f.lru.PushFront(&failureEntry{key: key, lim: rate.NewLimiter(f.limit, f.burst)})
		f.keys[key] = el
		f.tracked.Store(int64(len(f.keys)))
	}
	e := el.Value.(*failureEntry)
	e.lastFailed = now
	e.lim.AllowN(now, 1) // drains one token, if any is left
}

// Len returns how many addresses are tracked.
func (f *FailureLimiter) Len() int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.keys)
}

// evictRefilled drops the buckets whose last failure is long enough ago
// that they are full again: they hold nothing a new bucket would not. The
// list is in order of failure, so the cost is proportional to what is
// dropped.
func (f *FailureLimiter) evictRefilled(now time.Time) {
	for el := f.lru.Back(); el != nil; el = f.lru.Back() {
		if now.Sub(el.Value.(*failureEntry).lastFailed) <= f.refill {
			return
		}
		f.remove(el)
	}
}

func (f *FailureLimiter) remove(el *list.Element) {
	e := f.lru.Remove(el).(*failureEntry)
	delete(f.keys, e.key)
	f.tracked.Store(int64(len(f.keys)))
}

// ThrottledError is the ResourceExhausted status of a request refused
// because its address failed to authenticate too often; it sets the
// retry-after response header (Retry-After on REST) when ctx is a gRPC
// call's or the in-process gateway's.
func ThrottledError(ctx context.Context, wait time.Duration) error {
	secs := retryAfterSeconds(wait)
	grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.FormatInt(secs, 10)))
	return throttled(secs)
}

func throttled(secs int64) error {
	return status.Error(codes.ResourceExhausted, fmt.Sprintf("too many failed authentication attempts from this address: retry after %d s", secs))
}

func retryAfterSeconds(wait time.Duration) int64 {
	return max(1, int64((wait+time.Second-1)/time.Second))
}

// ParseClientAddr returns the IP of a ClientAddr value ("ip:port" or
// "ip"); the zero Addr when it is not an IP address.
func ParseClientAddr(s string) netip.Addr { return remoteAddr(s) }
