package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// Defaults of a TokenSource.
const (
	// DefaultMaxAttempts is how many times a TokenSource tries to mint
	// before giving up on a transient error.
	DefaultMaxAttempts = 4
	// DefaultRetryInitial is the backoff before the second attempt.
	DefaultRetryInitial = 100 * time.Millisecond
	// DefaultRetryMax bounds the backoff between attempts.
	DefaultRetryMax = 2 * time.Second
	// DefaultMinRefreshBefore is the least time before expiry at which a
	// token is refreshed when no WithRefreshBefore is given; the default
	// is the larger of this and a tenth of the token's lifetime.
	DefaultMinRefreshBefore = 30 * time.Second
	// ExpiryMargin is how close to its expiry a token may be and still be
	// handed out from the cache. A cached token that expires sooner is
	// never returned.
	ExpiryMargin = 5 * time.Second
)

// TokenSourceOption configures a TokenSource.
type TokenSourceOption func(*tokenSourceOptions)

type tokenSourceOptions struct {
	refreshBefore    time.Duration
	hasRefreshBefore bool
	maxAttempts      int
	initial, max     time.Duration
	now              func() time.Time
}

// WithRefreshBefore sets how long before its expiry a cached token is
// replaced by a new one. Without it, the window is the larger of a tenth
// of the token's lifetime and 30 s. Either way the window is capped at
// half the token's lifetime, so that a token is always used for a while.
// A negative d means the default.
func WithRefreshBefore(d time.Duration) TokenSourceOption {
	return func(o *tokenSourceOptions) {
		if d < 0 {
			o.hasRefreshBefore = false
			return
		}
		o.refreshBefore, o.hasRefreshBefore = d, true
	}
}

// WithRetry sets how transient errors (Unavailable, ResourceExhausted,
// Aborted) are retried: at most maxAttempts attempts in all, waiting
// between them an exponentially growing backoff that starts at initial,
// is capped at maxBackoff and is jittered (each wait is between half and
// all of the current backoff); a wait ends early when ctx ends. maxAttempts
// below 1 means 1 (no retry); a maxBackoff below initial means initial.
// Defaults: 4 attempts, 100 ms, 2 s. Other errors (InvalidArgument, NotFound,
// FailedPrecondition, PermissionDenied, Unauthenticated, a deadline or a
// cancellation, ...) are never retried.
func WithRetry(maxAttempts int, initial, maxBackoff time.Duration) TokenSourceOption {
	return func(o *tokenSourceOptions) {
		o.maxAttempts = max(1, maxAttempts)
		o.initial = max(0, initial)
		o.max = max(o.initial, maxBackoff)
	}
}

// WithClock sets the clock that tells whether a cached token is fresh,
// for tests. It defaults to time.Now. Backoff waits use real time.
func WithClock(now func() time.Time) TokenSourceOption {
	return func(o *tokenSourceOptions) {
		if now != nil {
			o.now = now
		}
	}
}

// TokenSource mints tokens of one request shape and caches the latest,
// in the manner of oauth2.TokenSource: Token returns the cached token
// while it is fresh and mints a new one ahead of its expiry. It is safe
// for concurrent use; concurrent callers share one refresh.
type TokenSource struct {
	c    *Client
	req  *tokenv1.MintRequest
	opts tokenSourceOptions

	mu      sync.Mutex
	tok     *tokenv1.MintResponse // the cached token, nil before the first mint
	lastErr error                 // the error of the latest refresh, nil after a success
	flight  *refresh              // the refresh in progress, if any
}

// refresh is one in-flight mint shared by every caller that waits for it.
type refresh struct {
	done    chan struct{} // closed when resp and err are set
	resp    *tokenv1.MintResponse
	err     error
	waiters int                // callers still waiting; guarded by TokenSource.mu
	cancel  context.CancelFunc // stops the mint once no caller waits
}

// TokenSource returns a source of tokens minted for req. The request is
// cloned, so later changes to req do not affect the source. Each source
// caches one token; create one source per request shape and reuse it.
func (c *Client) TokenSource(req *tokenv1.MintRequest, opts ...TokenSourceOption) *TokenSource {
	o := tokenSourceOptions{
		maxAttempts: DefaultMaxAttempts,
		initial:     DefaultRetryInitial,
		max:         DefaultRetryMax,
		now:         time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if req == nil {
		req = &tokenv1.MintRequest{}
	}
	return &TokenSource{c: c, req: proto.Clone(req).(*tokenv1.MintRequest), opts: o}
}

// Token returns a token for the source's request. It returns the cached
// token while more than the refresh window remains before its expiry, and
// otherwise mints a new one, retrying transient errors. Concurrent callers
// share one mint: it carries the values (such as outgoing metadata) of the
// context of the caller that started it, but not its deadline, and it is
// stopped once the contexts of all the callers waiting for it have ended.
//
// Token never returns a token that expires within ExpiryMargin. If the
// refresh fails (or ctx ends first) while the cached token is still valid
// beyond that margin, Token returns the cached token and a nil error; the
// failure is kept (see LastError) and the next call tries again. Otherwise
// it returns the error: a gRPC status error from tokend (status.Code tells
// which), or ctx's error.
//
// The returned message is the caller's own copy.
func (ts *TokenSource) Token(ctx context.Context) (*tokenv1.MintResponse, error) {
	ts.mu.Lock()
	now := ts.opts.now()
	if ts.tok != nil && ts.remaining(ts.tok, now) > max(ts.refreshBefore(ts.tok), ExpiryMargin) {
		tok := ts.tok
		ts.mu.Unlock()
		return proto.Clone(tok).(*tokenv1.MintResponse), nil
	}
	if err := ctx.Err(); err != nil {
		defer ts.mu.Unlock()
		return ts.fallback(err)
	}
	f := ts.flight
	if f == nil {
		f = ts.startRefresh(ctx)
	}
	f.waiters++
	ts.mu.Unlock()

	select {
	case <-f.done:
		if f.err == nil {
			return proto.Clone(f.resp).(*tokenv1.MintResponse), nil
		}
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.fallback(f.err)
	case <-ctx.Done():
		ts.mu.Lock()
		defer ts.mu.Unlock()
		f.waiters--
		if f.waiters == 0 && ts.flight == f {
			// Nobody waits any more: stop the mint (and its backoff),
			// and let the next caller start afresh.
			f.cancel()
			ts.flight = nil
		}
		return ts.fallback(ctx.Err())
	}
}

// LastError returns the error of the latest refresh, or nil if it
// succeeded (or none has run). It tells why Token is still handing out an
// older token.
func (ts *TokenSource) LastError() error {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.lastErr
}

// fallback returns the cached token if it is valid beyond ExpiryMargin,
// and err otherwise. ts.mu must be held.
func (ts *TokenSource) fallback(err error) (*tokenv1.MintResponse, error) {
	if ts.tok != nil && ts.remaining(ts.tok, ts.opts.now()) > ExpiryMargin {
		return proto.Clone(ts.tok).(*tokenv1.MintResponse), nil
	}
	return nil, err
}

// startRefresh starts a mint in its own goroutine, so that it outlives
// the caller that started it as long as another caller waits for it. The
// mint's context keeps ctx's values (metadata) but not its cancellation;
// it is cancelled when every waiter has given up. ts.mu must be held.
func (ts *TokenSource) startRefresh(ctx context.Context) *refresh {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &refresh{done: make(chan struct{}), cancel: cancel}
	ts.flight = f
	go func() {
		defer cancel()
		resp, err := ts.mint(rctx)
		ts.mu.Lock()
		f.resp, f.err = resp, err
		if ts.flight == f {
			ts.flight = nil
			if err == nil {
				ts.tok, ts.lastErr = resp, nil
			} else {
				ts.lastErr = err
			}
		}
		ts.mu.Unlock()
		close(f.done)
	}()
	return f
}

// mint calls tokend, retrying transient errors with jittered exponential
// backoff until ctx ends or the attempts run out.
func (ts *TokenSource) mint(ctx context.Context) (*tokenv1.MintResponse, error) {
	backoff := ts.opts.initial
	for attempt := 1; ; attempt++ {
		resp, err := ts.c.Mint(ctx, ts.req)
		if err == nil {
			if resp.GetExpiresAt() == nil || resp.GetToken() == "" {
				return nil, status.Error(codes.Internal, "tokend token source: tokend returned a token without an expiry")
			}
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !transient(err) {
			return nil, fmt.Errorf("tokend token source: mint: %w", err)
		}
		if attempt >= ts.opts.maxAttempts {
			return nil, fmt.Errorf("tokend token source: mint failed after %d attempts: %w", attempt, err)
		}
		if err := sleep(ctx, jitter(backoff)); err != nil {
			return nil, err
		}
		backoff = min(ts.opts.max, 2*backoff)
	}
}

// transient reports whether err is worth retrying: the server is down or
// overloaded, or the call was aborted by a conflict.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// jitter returns a random duration between d/2 and d.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits for d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// remaining is how long tok stays valid after now.
func (ts *TokenSource) remaining(tok *tokenv1.MintResponse, now time.Time) time.Duration {
	return tok.GetExpiresAt().AsTime().Sub(now)
}

// refreshBefore is the refresh window of tok: the configured or default
// window, capped at half its lifetime.
func (ts *TokenSource) refreshBefore(tok *tokenv1.MintResponse) time.Duration {
	var lifetime time.Duration // unknown without an issue time
	if tok.GetIssuedAt() != nil {
		lifetime = max(0, tok.GetExpiresAt().AsTime().Sub(tok.GetIssuedAt().AsTime()))
	}
	d := ts.opts.refreshBefore
	if !ts.opts.hasRefreshBefore {
		d = max(lifetime/10, DefaultMinRefreshBefore)
	}
	if lifetime > 0 {
		d = min(d, lifetime/2)
	}
	return d
}
