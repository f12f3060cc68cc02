package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"go.uber.org/goleak"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

const (
	mintMethod  = "/token.v1.TokenService/Mint"
	testAppSID  = "APdddddddddddddddddddddddddddddddd"
	defaultTTL  = time.Hour
	defaultWnd  = 6 * time.Minute // max(10% of an hour, 30 s)
	fastBackoff = time.Millisecond
)

// tokend is a real tokend (seeded with the conformance credentials,
// served over bufconn) and a client whose interceptor counts the Mint
// attempts and can fail or hold them.
type tokend struct {
	c *client.Client

	attempts atomic.Int32 // Mint calls that reached the interceptor

	mu   sync.Mutex
	fail func(attempt int32) error // if it returns an error, the attempt fails with it
	hold chan struct{}             // if set, attempts wait for it to close
}

// setFail makes attempts fail as f says (nil: let them through).
func (td *tokend) setFail(f func(attempt int32) error) {
	td.mu.Lock()
	defer td.mu.Unlock()
	td.fail = f
}

// setHold makes attempts wait until ch is closed (nil: do not wait).
func (td *tokend) setHold(ch chan struct{}) {
	td.mu.Lock()
	defer td.mu.Unlock()
	td.hold = ch
}

func (td *tokend) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method != mintMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	n := td.attempts.Add(1)
	td.mu.Lock()
	fail, hold := td.fail, td.hold
	td.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if fail != nil {
		if err := fail(n); err != nil {
			return err
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// newTokend starts a tokend and a client for it; both are closed, and the
// absence of leaked goroutines checked, when the test ends.
func newTokend(t *testing.T) *tokend {
	t.Helper()
	// Registered first, so it runs after every other cleanup.
	t.Cleanup(verifyNoNewGoroutines(t))

	srv, err := server.New(context.Background(), server.Config{
		DataDir:   t.TempDir(),
		MasterKey: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Seed: server.Seed{
			AccountSID:  "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			APIKey:      "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
			APISecret:   "cccccccccccccccccccccccccccccccc",
			TwiMLAppSID: testAppSID,
		},
	})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	served := make(chan struct{})
	go func() { defer close(served); srv.GRPCServer().Serve(lis) }()
	td := &tokend{}
	c, err := client.New("passthrough:///bufnet", client.WithDialOptions(
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithUnaryInterceptor(td.intercept),
	))
	if err != nil {
		srv.GRPCServer().Stop()
		srv.Close()
		t.Fatalf("client.New: %v", err)
	}
	td.c = c
	t.Cleanup(func() {
		c.Close()
		srv.GRPCServer().Stop()
		<-served
		srv.Close()
	})
	return td
}

// clock is a settable clock: real time plus an offset.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = d
}

// failWith returns a fail function failing the attempts up to n (all of
// them if n < 0) with code.
func failWith(code codes.Code, n int32) func(int32) error {
	return func(attempt int32) error {
		if n < 0 || attempt <= n {
			return status.Error(code, "injected "+code.String())
		}
		return nil
	}
}

func mustToken(t *testing.T, ts *client.TokenSource) *tokenv1.MintResponse {
	t.Helper()
	resp, err := ts.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if resp.GetToken() == "" || resp.GetJti() == "" || resp.GetExpiresAt() == nil {
		t.Fatalf("Token returned an incomplete response: jti %q, expires_at %v", resp.GetJti(), resp.GetExpiresAt())
	}
	return resp
}

func TestTokenSourceReusesFreshToken(t *testing.T) {
	td := newTokend(t)
	req := &tokenv1.MintRequest{Identity: proto.String("alice")}
	ts := td.c.TokenSource(req)
	req.Identity = proto.String("bob") // the source cloned the request

	first := mustToken(t, ts)
	if first.GetIdentity() != "alice" {
		t.Errorf("identity = %q, want alice", first.GetIdentity())
	}
	if first.GetApplicationSid() != testAppSID {
		t.Errorf("application = %q, want %s", first.GetApplicationSid(), testAppSID)
	}
	for range 5 {
		if got := mustToken(t, ts); got.GetJti() != first.GetJti() || got.GetToken() != first.GetToken() {
			t.Fatalf("jti = %q, want the cached %q", got.GetJti(), first.GetJti())
		}
	}
	if n := td.attempts.Load(); n != 1 {
		t.Errorf("%d mints, want 1", n)
	}

	// The caller's copy is its own: changing it does not touch the cache.
	first.Jti = "changed"
	if got := mustToken(t, ts); got.GetJti() == "changed" {
		t.Error("changing a returned token changed the cached one")
	}
}

func TestTokenSourceRefreshesInWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ttl    time.Duration
		opts   []client.TokenSourceOption
		window time.Duration // the expected refresh window
	}{
		{"default an hour", defaultTTL, nil, defaultWnd},
		{"default 10 min: 30 s floor", 10 * time.Minute, nil, time.Minute},
		{"default 100 s: 30 s floor", 100 * time.Second, nil, 30 * time.Second},
		{"default 40 s: half the lifetime", 40 * time.Second, nil, 20 * time.Second},
		{"WithRefreshBefore", defaultTTL, []client.TokenSourceOption{client.WithRefreshBefore(20 * time.Minute)}, 20 * time.Minute},
		{"WithRefreshBefore capped", 10 * time.Minute, []client.TokenSourceOption{client.WithRefreshBefore(time.Hour)}, 5 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			td := newTokend(t)
			clk := &clock{}
			ttl := int32(tc.ttl / time.Second)
			ts := td.c.TokenSource(&tokenv1.MintRequest{TtlSeconds: &ttl},
				append([]client.TokenSourceOption{client.WithClock(clk.now)}, tc.opts...)...)
			first := mustToken(t, ts)

			// Just outside the window (iat is whole seconds, so allow 2 s).
			clk.set(tc.ttl - tc.window - 2*time.Second)
			if got := mustToken(t, ts); got.GetJti() != first.GetJti() {
				t.Fatalf("outside the window: jti = %q, want the cached %q", got.GetJti(), first.GetJti())
			}
			if n := td.attempts.Load(); n != 1 {
				t.Fatalf("outside the window: %d mints, want 1", n)
			}

			// Inside it.
			clk.set(tc.ttl - tc.window + 2*time.Second)
			second := mustToken(t, ts)
			if second.GetJti() == first.GetJti() {
				t.Fatalf("inside the window: jti = %q, want a new one", second.GetJti())
			}
			if n := td.attempts.Load(); n != 2 {
				t.Fatalf("inside the window: %d mints, want 2", n)
			}

			// Back to now: the new token is cached.
			clk.set(0)
			if got := mustToken(t, ts); got.GetJti() != second.GetJti() {
				t.Fatalf("after the refresh: jti = %q, want the new %q", got.GetJti(), second.GetJti())
			}
			if n := td.attempts.Load(); n != 2 {
				t.Fatalf("after the refresh: %d mints, want 2", n)
			}
		})
	}
}

func TestTokenSourceConcurrentCallersShareOneMint(t *testing.T) {
	td := newTokend(t)
	clk := &clock{}
	ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithClock(clk.now))
	first := mustToken(t, ts)

	// Move into the refresh window and hold the refresh until every
	// caller is waiting for it.
	clk.set(defaultTTL - time.Minute)
	hold := make(chan struct{})
	td.setHold(hold)

	const callers = 20
	var started, done sync.WaitGroup
	started.Add(callers)
	jtis := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		done.Go(func() {
			started.Done()
			resp, err := ts.Token(context.Background())
			jtis[i], errs[i] = resp.GetJti(), err
		})
	}
	started.Wait()
	time.Sleep(100 * time.Millisecond) // let every caller reach the shared refresh
	// A caller that came late anyway sees the old token as fresh, rather
	// than the new one as due for refresh.
	clk.set(0)
	close(hold)
	done.Wait()

	if n := td.attempts.Load(); n != 2 {
		t.Errorf("%d mints for %d concurrent callers in the window, want 1 (plus the first)", n-1, callers)
	}
	for i := range callers {
		if errs[i] != nil {
			t.Errorf("caller %d: %v", i, errs[i])
		} else if jtis[i] == first.GetJti() || jtis[i] != jtis[0] {
			t.Errorf("caller %d got jti %q; first token %q, caller 0 got %q", i, jtis[i], first.GetJti(), jtis[0])
		}
	}
}

func TestTokenSourceRetriesTransientErrors(t *testing.T) {
	for _, code := range []codes.Code{codes.Unavailable, codes.ResourceExhausted, codes.Aborted} {
		t.Run(code.String(), func(t *testing.T) {
			td := newTokend(t)
			td.setFail(failWith(code, 2))
			ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithRetry(4, fastBackoff, 2*fastBackoff))
			mustToken(t, ts)
			if n := td.attempts.Load(); n != 3 {
				t.Errorf("%d attempts, want 3 (2 failed, 1 succeeded)", n)
			}
			if err := ts.LastError(); err != nil {
				t.Errorf("LastError after a success = %v", err)
			}
		})
	}

	t.Run("attempts run out", func(t *testing.T) {
		td := newTokend(t)
		td.setFail(failWith(codes.Unavailable, -1))
		ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithRetry(3, fastBackoff, 2*fastBackoff))
		_, err := ts.Token(context.Background())
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Token = %v, want Unavailable", err)
		}
		if n := td.attempts.Load(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
	})

	t.Run("default retry", func(t *testing.T) {
		td := newTokend(t)
		td.setFail(failWith(codes.Unavailable, 3))
		ts := td.c.TokenSource(&tokenv1.MintRequest{})
		mustToken(t, ts)
		if n := td.attempts.Load(); n != 4 {
			t.Errorf("%d attempts, want 4 (the default)", n)
		}
	})
}

func TestTokenSourceDoesNotRetryOtherErrors(t *testing.T) {
	for _, code := range []codes.Code{
		codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied,
		codes.Unauthenticated, codes.Internal, codes.DeadlineExceeded,
	} {
		t.Run("injected "+code.String(), func(t *testing.T) {
			td := newTokend(t)
			td.setFail(failWith(code, -1))
			ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithRetry(4, fastBackoff, fastBackoff))
			_, err := ts.Token(context.Background())
			if status.Code(err) != code {
				t.Errorf("Token = %v, want %v", err, code)
			}
			if n := td.attempts.Load(); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
			if got := ts.LastError(); status.Code(got) != code {
				t.Errorf("LastError = %v, want %v", got, code)
			}
		})
	}

	// The same from tokend itself.
	badTTL := int32(100000)
	for name, tc := range map[string]struct {
		req  *tokenv1.MintRequest
		code codes.Code
	}{
		"real InvalidArgument": {&tokenv1.MintRequest{TtlSeconds: &badTTL}, codes.InvalidArgument},
		"real NotFound":        {&tokenv1.MintRequest{ApplicationSid: "AP" + strings.Repeat("e", 32)}, codes.NotFound},
	} {
		t.Run(name, func(t *testing.T) {
			td := newTokend(t)
			ts := td.c.TokenSource(tc.req, client.WithRetry(4, fastBackoff, fastBackoff))
			_, err := ts.Token(context.Background())
			if status.Code(err) != tc.code {
				t.Errorf("Token = %v, want %v", err, tc.code)
			}
			if n := td.attempts.Load(); n != 1 {
				t.Errorf("%d attempts, want 1", n)
			}
		})
	}
}

func TestTokenSourceFailedRefreshKeepsValidToken(t *testing.T) {
	td := newTokend(t)
	clk := &clock{}
	ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithClock(clk.now), client.WithRetry(2, fastBackoff, fastBackoff))
	first := mustToken(t, ts)

	// In the window, 30 s left: the refresh fails, the cached token is
	// still good.
	clk.set(defaultTTL - 30*time.Second)
	td.setFail(failWith(codes.Unavailable, -1))
	got := mustToken(t, ts)
	if got.GetJti() != first.GetJti() {
		t.Errorf("jti = %q, want the cached %q", got.GetJti(), first.GetJti())
	}
	if n := td.attempts.Load(); n != 3 {
		t.Errorf("%d attempts, want 3 (1 first mint, 2 for the refresh)", n)
	}
	if err := ts.LastError(); status.Code(err) != codes.Unavailable {
		t.Errorf("LastError = %v, want Unavailable", err)
	}

	// The next call tries again, and succeeds.
	td.setFail(nil)
	second := mustToken(t, ts)
	if second.GetJti() == first.GetJti() {
		t.Errorf("after tokend recovered: jti = %q, want a new one", second.GetJti())
	}
	if err := ts.LastError(); err != nil {
		t.Errorf("LastError after a success = %v", err)
	}
}

func TestTokenSourceFailedRefreshWithExpiredToken(t *testing.T) {
	for name, offset := range map[string]time.Duration{
		"expired":                  defaultTTL + time.Minute,
		"within the safety margin": defaultTTL - 2*time.Second,
	} {
		t.Run(name, func(t *testing.T) {
			td := newTokend(t)
			clk := &clock{}
			ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithClock(clk.now), client.WithRetry(2, fastBackoff, fastBackoff))
			first := mustToken(t, ts)

			clk.set(offset)
			td.setFail(failWith(codes.Unavailable, -1))
			resp, err := ts.Token(context.Background())
			if err == nil {
				t.Fatalf("Token = jti %q, want an error", resp.GetJti())
			}
			if resp != nil {
				t.Errorf("Token returned a token with its error")
			}
			if status.Code(err) != codes.Unavailable {
				t.Errorf("Token = %v, want Unavailable", err)
			}
			if msg := err.Error(); strings.Contains(msg, first.GetToken()) || strings.Contains(msg, first.GetJti()) {
				t.Errorf("the error quotes the cached token: %v", err)
			}
		})
	}
}

func TestTokenSourceCancelStopsBackoff(t *testing.T) {
	td := newTokend(t)
	clk := &clock{}
	ts := td.c.TokenSource(&tokenv1.MintRequest{}, client.WithClock(clk.now), client.WithRetry(10, time.Minute, time.Minute))
	td.setFail(failWith(codes.Unavailable, -1))

	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(50*time.Millisecond, cancel)
	defer stop.Stop()
	start := time.Now()
	_, err := ts.Token(ctx)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Token took %v after its context was cancelled", elapsed)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Token = %v, want context.Canceled", err)
	}
	if n := td.attempts.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}

	// An already-cancelled context fails at once, without a mint.
	if _, err := ts.Token(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Token with a cancelled context = %v, want context.Canceled", err)
	}

	// With a still-valid cached token, a cancelled refresh returns it.
	td.setFail(nil)
	first := mustToken(t, ts)
	clk.set(defaultTTL - time.Minute)
	td.setFail(failWith(codes.Unavailable, -1))
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := ts.Token(ctx)
	if err != nil || got.GetJti() != first.GetJti() {
		t.Errorf("Token = jti %q, %v; want the cached %q", got.GetJti(), err, first.GetJti())
	}
	// The goroutine leak check at the end of the test makes sure the
	// abandoned refresh stopped.
}

// verifyNoNewGoroutines returns a check that fails t if a goroutine started
// after the call still runs (goleak retries while goroutines wind down).
func verifyNoNewGoroutines(t *testing.T) func() {
	ignore := goleak.IgnoreCurrent()
	return func() {
		t.Helper()
		goleak.VerifyNone(t, ignore)
	}
}
