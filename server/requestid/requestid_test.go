package requestid_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"

	"github.com/tokend/tokend/server/requestid"
)

func TestEnsure(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, id := range []string{"abc123", "6f1c0b3e-52a4-4d7e-9d41-2a0f7a9b1c33", "a.b_c:d", strings.Repeat("x", requestid.MaxLen)} {
		if got := requestid.Ensure(id); got != id {
			t.Errorf("Ensure(%q) = %q, want it kept", id, got)
		}
	}
	for _, id := range []string{"", strings.Repeat("x", requestid.MaxLen+1), "a b", "a\nlevel=ERROR", "é", `"`} {
		if got := requestid.Ensure(id); !hex32.MatchString(got) {
			t.Errorf("Ensure(%q) = %q, want a new 32-hex id", id, got)
		}
	}
	if a, b := requestid.New(), requestid.New(); a == b {
		t.Error("New() returned the same id twice")
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(requestid.NewHandler(slog.NewTextHandler(&buf, nil))).With("k", "v")
	ctx := requestid.NewContext(context.Background(), "abc123")
	log.InfoContext(ctx, "one")
	log.InfoContext(ctx, "two", requestid.LogKey, "abc123")
	log.Info("three")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	for i, l := range lines[:2] {
		if n := strings.Count(l, "request_id=abc123"); n != 1 {
			t.Errorf("line %d %q has request_id %d times, want once", i, l, n)
		}
	}
	if strings.Contains(lines[2], "request_id") {
		t.Errorf("line without a request context %q has a request_id", lines[2])
	}
}

// TestNewUnique: ids made concurrently never repeat (New is on every
// request that comes without one).
func TestNewUnique(t *testing.T) {
	const workers, each = 8, 5000
	ids := make(chan string, workers*each)
	done := make(chan struct{})
	for range workers {
		go func() {
			for range each {
				ids <- requestid.New()
			}
			done <- struct{}{}
		}()
	}
	for range workers {
		<-done
	}
	close(ids)
	seen := make(map[string]bool, workers*each)
	for id := range ids {
		if seen[id] {
			t.Fatalf("New() returned %q twice in %d ids", id, workers*each)
		}
		seen[id] = true
	}
}

type otherKey struct{}

// TestContext: the id is found through contexts derived from the one
// NewContext returns, the innermost id wins, other values pass through,
// and a context without one gives "".
func TestContext(t *testing.T) {
	parent := context.WithValue(context.Background(), otherKey{}, "kept")
	if got := requestid.FromContext(parent); got != "" {
		t.Errorf("FromContext(no id) = %q, want empty", got)
	}
	ctx := requestid.NewContext(parent, "abc")
	ctx, cancel := context.WithCancel(context.WithValue(ctx, struct{ k int }{1}, 1))
	defer cancel()
	if got := requestid.FromContext(ctx); got != "abc" {
		t.Errorf("FromContext(derived) = %q, want abc", got)
	}
	if got := ctx.Value(otherKey{}); got != "kept" {
		t.Errorf("Value(other key) = %v, want the parent's", got)
	}
	if got := requestid.FromContext(requestid.NewContext(ctx, "def")); got != "def" {
		t.Errorf("FromContext(inner id) = %q, want def", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = requestid.FromContext(requestid.NewContext(parent, "x")) }); n > 1 {
		t.Errorf("NewContext + FromContext: %v allocations, want 1", n)
	}
}

// TestTapHandle: the tap gives a call the caller's well-formed id, or a
// new one when there is none or it is malformed, and StartUnary keeps
// the id the tap gave rather than making another.
func TestTapHandle(t *testing.T) {
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, tc := range []struct {
		name string
		md   metadata.MD
		want string // "" for a generated id
	}{
		{"caller's id", metadata.MD{"x-request-id": {"caller-1"}, "authorization": {"Bearer x"}}, "caller-1"},
		{"first of two", metadata.MD{"x-request-id": {"first", "second"}}, "first"},
		{"none", metadata.MD{"authorization": {"Bearer x"}}, ""},
		{"no header at all", nil, ""},
		{"malformed", metadata.MD{"x-request-id": {"bad id\n{"}}, ""},
		{"too long", metadata.MD{"x-request-id": {strings.Repeat("a", requestid.MaxLen+1)}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := requestid.TapHandle(context.Background(), &tap.Info{FullMethodName: "/token.v1.TokenService/Mint", Header: tc.md})
			if err != nil {
				t.Fatalf("TapHandle: %v", err)
			}
			got := requestid.FromContext(ctx)
			switch {
			case tc.want != "" && got != tc.want:
				t.Errorf("id = %q, want %q", got, tc.want)
			case tc.want == "" && !generated.MatchString(got):
				t.Errorf("id = %q, want a generated one (32 hex digits)", got)
			}
			// StartUnary (outside a gRPC call it sets no header) keeps it.
			if again := requestid.FromContext(requestid.StartUnary(ctx)); again != got {
				t.Errorf("StartUnary changed the id from %q to %q", got, again)
			}
		})
	}
}

// TestBuf: an id made in a Buf is a new 32-hex id (or the caller's, when
// valid), ids made in different Bufs differ, the id stays what it was
// (the Buf is not reused), and making one allocates nothing.
func TestBuf(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	bufs := make([]requestid.Buf, 2000)
	ids := make(map[string]bool, len(bufs))
	var first string
	for i := range bufs {
		id := bufs[i].New()
		if !hex32.MatchString(id) {
			t.Fatalf("Buf.New() = %q; want 32 hex digits", id)
		}
		if ids[id] {
			t.Fatalf("Buf.New() returned %q twice", id)
		}
		ids[id] = true
		if i == 0 {
			first = strings.Clone(id)
		}
	}
	if got := unsafeFirst(&bufs[0]); got != first {
		t.Errorf("first id now %q; was %q", got, first)
	}
	var b requestid.Buf
	if got := b.Ensure("abc-1"); got != "abc-1" {
		t.Errorf("Buf.Ensure(valid) = %q; want it kept", got)
	}
	if got := b.Ensure("a b"); !hex32.MatchString(got) {
		t.Errorf("Buf.Ensure(invalid) = %q; want a new id", got)
	}
	var sink string
	if n := testing.AllocsPerRun(100, func() { sink = b.New() }); n != 0 {
		t.Errorf("Buf.New allocates %v times; want 0", n)
	}
	_ = sink
}

func unsafeFirst(b *requestid.Buf) string { return string(b[:]) }
