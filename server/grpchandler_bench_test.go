package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/metrics"
	"github.com/tokend/tokend/server/requestid"
)

// fakeStream is the part of grpc-go's server stream the interceptors use:
// SetHeader joins, as grpc-go's does.
type fakeStream struct{ header metadata.MD }

func (f *fakeStream) Method() string { return "/token.v1.TokenService/Mint" }
func (f *fakeStream) SetHeader(md metadata.MD) error {
	f.header = metadata.Join(f.header, md)
	return nil
}
func (f *fakeStream) SendHeader(md metadata.MD) error { return f.SetHeader(md) }
func (f *fakeStream) SetTrailer(metadata.MD) error    { return nil }

// BenchmarkGRPCMintHandler runs a Mint through the server's unary
// interceptors and the token service as grpc-go calls them once a request
// is decoded (a service credential, policy, rate limits; the audit log
// off, the fail-closed wait for it being another matter), without the
// transport: one goroutine, so ns/op is CPU. "merged" is the server's
// interceptor, "chained" the chain of the separate interceptors it
// replaced.
func BenchmarkGRPCMintHandler(b *testing.B) {
	dir := b.TempDir()
	const admin = "admin-token-for-benchmarks-0123456789"
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`rules:
  - name: backend
    principals: ["credential:backend"]
    applications: ["*"]
    identities: {pattern: "^[a-z0-9_]+$"}
    grants:
      voice: {incoming: false, outgoing: true}
`), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := New(context.Background(), Config{
		DataDir:         dir,
		MasterKey:       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		Logger:          slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		PolicyFile:      policyFile,
		AdminToken:      admin,
		DefaultIdentity: "load_user",
		Seed: Seed{AccountSID: "AC" + strings.Repeat("a", 32), APIKey: "SK" + strings.Repeat("b", 32),
			APISecret: strings.Repeat("c", 32), TwiMLAppSID: "AP" + strings.Repeat("d", 32)},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	credential := CreateCredential(b, s.HTTPHandler(), admin, "backend")
	svc := s.metrics.TokenService(s.token, metrics.PathGRPC, s.token.ApplicationFor)
	desc := tokenv1.TokenService_ServiceDesc.Methods[0]
	if desc.MethodName != "Mint" {
		b.Fatalf("first method is %s, not Mint", desc.MethodName)
	}
	base := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
	base = metadata.NewIncomingContext(base, metadata.MD{
		":authority": {"127.0.0.1:9090"}, "content-type": {"application/grpc"},
		"user-agent": {"grpc-go/1.85.0"}, "authorization": {"Bearer " + credential},
	})
	dec := func(v any) error { return nil } // an empty MintRequest
	for _, tt := range []struct {
		name string
		ic   grpc.UnaryServerInterceptor
	}{
		{"merged", s.unaryInterceptor()},
		{"chained", chainUnary(
			unaryDecodeInterceptor(),
			requestid.UnaryServerInterceptor(),
			s.metrics.GRPC.UnaryServerInterceptor(),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
			callLogger(s.log),
			s.auth.UnaryServerInterceptor(),
		)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx := grpc.NewContextWithServerTransportStream(base, &fakeStream{})
				resp, err := desc.Handler(svc, ctx, dec, tt.ic)
				if err != nil {
					b.Fatal(err)
				}
				if strings.Count(resp.(*tokenv1.MintResponse).GetToken(), ".") != 2 {
					b.Fatal("no JWT")
				}
			}
		})
	}
}

// chainUnary chains interceptors as grpc.ChainUnaryInterceptor does (a
// closure per layer and call).
func chainUnary(ics ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return ics[0](ctx, req, info, chainHandler(ics, 0, info, handler))
	}
}

func chainHandler(ics []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(ics)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ics[i+1](ctx, req, info, chainHandler(ics, i+1, info, final))
	}
}
