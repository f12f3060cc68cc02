package auth

import (
	"context"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

type otherKey struct{}

// TestAuthenticateUnaryContext: the context AuthenticateUnary passes on
// answers ClientAddr and FromContext (also through contexts derived from
// it), leaves every other value to its parent, and costs few allocations.
func TestAuthenticateUnaryContext(t *testing.T) {
	token, hash, err := NewCredentialToken()
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{"svc"}
	lookup := func(h [32]byte) (string, []string, bool) { return "backend", groups, h == hash }
	log, _ := testLogger(t)
	var failedFrom []string
	a, err := New(Config{Credentials: lookup, Logger: log, OnFailure: func(ctx context.Context, f Failure) {
		failedFrom = append(failedFrom, ClientAddr(ctx))
	}})
	if err != nil {
		t.Fatal(err)
	}
	tcp := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	parent := context.WithValue(context.Background(), otherKey{}, "kept")
	withPeer := peer.NewContext(parent, &peer.Peer{Addr: tcp})
	authed := metadata.NewIncomingContext(withPeer, metadata.Pairs("authorization", "Bearer "+token))
	// A context that already carries an address and a principal (as the
	// HTTP middleware would set them), without a gRPC peer.
	preset := NewContext(withClientAddr(parent, "10.0.0.1:1"), Principal{Kind: KindCredential, Name: "preset"})

	type result struct {
		Addr      string
		Principal string
		Found     bool
		Other     any
		Code      codes.Code
	}
	look := func(ctx context.Context, err error) result {
		if err != nil {
			return result{Code: status.Code(err)}
		}
		// Through contexts derived from it, as handlers make them.
		ctx, cancel := context.WithCancel(context.WithValue(ctx, struct{ k int }{1}, 1))
		defer cancel()
		p, ok := FromContext(ctx)
		return result{Addr: ClientAddr(ctx), Principal: p.Name, Found: ok, Other: ctx.Value(otherKey{})}
	}
	for _, tt := range []struct {
		name   string
		ctx    context.Context
		method string
		want   result
	}{
		{"authenticated", authed, "/token.v1.TokenService/Mint", result{Addr: "127.0.0.1:5000", Principal: "backend", Found: true, Other: "kept"}},
		{"public", withPeer, "/grpc.health.v1.Health/Check", result{Addr: "127.0.0.1:5000", Other: "kept"}},
		{"refused", withPeer, "/token.v1.TokenService/Mint", result{Code: codes.Unauthenticated}},
		{"public-no-peer-keeps-parent", preset, "/grpc.health.v1.Health/Check", result{Addr: "10.0.0.1:1", Principal: "preset", Found: true, Other: "kept"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, err := a.AuthenticateUnary(tt.ctx, tt.method)
			if diff := cmp.Diff(tt.want, look(ctx, err)); diff != "" {
				t.Errorf("AuthenticateUnary(%s) (-want +got):\n%s", tt.method, diff)
			}
		})
	}
	// A refusal is told with the peer's address, port included.
	if want := []string{"127.0.0.1:5000"}; !cmp.Equal(failedFrom, want) {
		t.Errorf("OnFailure saw ClientAddr %q, want %q", failedFrom, want)
	}
	// The peer's text is made once per connection; the call makes one
	// context node and copies the one authorization value.
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.AuthenticateUnary(authed, "/token.v1.TokenService/Mint"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("AuthenticateUnary: %v allocations, want at most 2", allocs)
	}
}
