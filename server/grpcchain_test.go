package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/metrics"
	"github.com/tokend/tokend/server/requestid"
)

// probeDesc is a test service taking tokend's MintRequest (so that the
// strict decoding applies to it): its handler answers by the request's
// identity: "ok" a response naming what the handler saw in its context,
// "fail" InvalidArgument, "plain" a non-status error, "panic" a panic.
var probeDesc = grpc.ServiceDesc{
	ServiceName: "tokend.test.Probe",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(tokenv1.MintRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/tokend.test.Probe/Call"}
			return interceptor(ctx, in, info, probeHandler)
		},
	}},
}

func probeHandler(ctx context.Context, req any) (any, error) {
	switch id := req.(*tokenv1.MintRequest).GetIdentity(); id {
	case "ok":
		p, _ := auth.FromContext(ctx)
		return &tokenv1.MintResponse{Token: fmt.Sprintf("id=%s principal=%s addr=%t",
			requestid.FromContext(ctx), p.Name, strings.HasPrefix(auth.ClientAddr(ctx), "127.0.0.1:"))}, nil
	case "fail":
		return nil, status.Error(codes.InvalidArgument, "identity: bad")
	case "plain":
		return nil, errors.New("plain failure")
	case "panic":
		panic("boom")
	default:
		return nil, status.Errorf(codes.Unimplemented, "probe: %q", id)
	}
}

func probe(identity string) *tokenv1.MintRequest {
	return &tokenv1.MintRequest{Identity: &identity}
}

// chainServer is a server's unary interceptors and what they record.
type chainServer struct {
	s    *Server
	logs *bytes.Buffer
	mu   *sync.Mutex
	conn *grpc.ClientConn
}

// newChainServer serves the probe and the health service over loopback
// TCP with the unary interceptors merged (tokend's) or chained (each
// package's own interceptor, as the server had them).
func newChainServer(t *testing.T, merged bool, credential string) *chainServer {
	t.Helper()
	var mu sync.Mutex
	logs := &bytes.Buffer{}
	s := &Server{
		log:     slog.New(requestid.NewHandler(slog.NewJSONHandler(lockedWriter{&mu, logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		metrics: metrics.New(),
	}
	want := auth.HashCredential(credential)
	a, err := auth.New(auth.Config{
		Credentials: func(hash [32]byte) (string, []string, bool) { return "backend", nil, hash == want },
		Logger:      s.log,
		Failures:    auth.NewFailureLimiter(0.001, 2, 10),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.auth = a
	opt := grpc.UnaryInterceptor(s.unaryInterceptor())
	if !merged {
		opt = grpc.ChainUnaryInterceptor(
			unaryDecodeInterceptor(),
			requestid.UnaryServerInterceptor(),
			s.metrics.GRPC.UnaryServerInterceptor(),
			recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
			callLogger(s.log),
			s.auth.UnaryServerInterceptor(),
		)
	}
	opts := []grpc.ServerOption{grpc.ForceServerCodecV2(newRequestCodec()), opt}
	if merged {
		// As server.go has it: the request id is taken from the header
		// before the interceptors run (the chained server finds it in
		// the metadata instead, and must answer the same).
		opts = append(opts, grpc.InTapHandle(requestid.TapHandle))
	}
	gs := grpc.NewServer(opts...)
	gs.RegisterService(&probeDesc, struct{}{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return &chainServer{s: s, logs: logs, mu: &mu, conn: conn}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

var generatedID = regexp.MustCompile(`[0-9a-f]{32}`)

// TestUnaryInterceptorMatchesChain: the merged unary interceptor answers,
// logs and counts every kind of call as the chain of the separate
// interceptors did (OK, handler errors, a panic, decode failures, unknown
// fields, a public method, missing, wrong and throttled credentials,
// caller and generated request ids), and what the handler sees in its
// context is the same.
func TestUnaryInterceptorMatchesChain(t *testing.T) {
	credential, _, err := auth.NewCredentialToken()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := auth.NewCredentialToken()
	unknown := probe("ok")
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	badUTF8 := &tokenv1.MintRequest{} // identity "\xff", as raw bytes: the client would refuse to encode it
	idField := badUTF8.ProtoReflect().Descriptor().Fields().ByName("identity").Number()
	badUTF8.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, idField, protowire.BytesType), "\xff"))
	type call struct {
		name       string
		authz, rid string
		req        *tokenv1.MintRequest
		health     bool
	}
	calls := []call{
		{name: "ok", authz: credential, rid: "caller-id-1", req: probe("ok")},
		{name: "ok-generated-id", authz: credential, req: probe("ok")},
		{name: "ok-malformed-id", authz: credential, rid: "has space", req: probe("ok")},
		{name: "fail", authz: credential, rid: "caller-id-2", req: probe("fail")},
		{name: "plain", authz: credential, req: probe("plain")},
		{name: "panic", authz: credential, rid: "caller-id-3", req: probe("panic")},
		{name: "unknown-field", authz: credential, req: unknown},
		{name: "invalid-utf8", authz: credential, req: badUTF8},
		{name: "health-public", health: true},
		{name: "no-credentials", req: probe("ok")},
		{name: "wrong-credential-1", authz: other, req: probe("ok")},
		{name: "wrong-credential-2", authz: other, req: probe("ok")},
		{name: "throttled", authz: credential, req: probe("ok")},
	}
	results := map[bool][]string{}
	logLines := map[bool][]string{}
	series := map[bool][]string{}
	for _, merged := range []bool{false, true} {
		cs := newChainServer(t, merged, credential)
		for _, c := range calls {
			ctx := context.Background()
			if c.authz != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.authz)
			}
			if c.rid != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", c.rid)
			}
			var hdr metadata.MD
			var answer string
			var err error
			if c.health {
				_, err = healthpb.NewHealthClient(cs.conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
			} else {
				resp := new(tokenv1.MintResponse)
				err = cs.conn.Invoke(ctx, "/tokend.test.Probe/Call", c.req, resp, grpc.Header(&hdr))
				answer = resp.GetToken()
			}
			st := status.Convert(err)
			results[merged] = append(results[merged], generatedID.ReplaceAllString(
				fmt.Sprintf("%s: code=%s message=%q details=%d x-request-id=%q answer=%q",
					c.name, st.Code(), st.Message(), len(st.Details()), hdr.Get("x-request-id"), answer), "<generated>"))
		}
		cs.mu.Lock()
		for _, line := range strings.Split(strings.TrimSpace(cs.logs.String()), "\n") {
			var l map[string]any
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			delete(l, "time")
			if _, ok := l["duration"]; ok {
				l["duration"] = "<duration>"
			}
			if _, ok := l["peer.address"]; ok {
				l["peer.address"] = "<peer>"
			}
			b, _ := json.Marshal(l)
			logLines[merged] = append(logLines[merged], generatedID.ReplaceAllString(string(b), "<generated>"))
		}
		cs.mu.Unlock()
		mfs, err := cs.s.metrics.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if !strings.HasPrefix(mf.GetName(), "grpc_server_") {
				continue
			}
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, lp := range m.GetLabel() {
					labels = append(labels, lp.GetName()+"="+lp.GetValue())
				}
				v := m.GetCounter().GetValue()
				if h := m.GetHistogram(); h != nil {
					v = float64(h.GetSampleCount())
				}
				series[merged] = append(series[merged], fmt.Sprintf("%s{%s} %v", mf.GetName(), strings.Join(labels, ","), v))
			}
		}
		sort.Strings(series[merged])
	}
	// Every decode failure recorded was answered and forgotten.
	if n := pendingDecodeFailures.Load(); n != 0 {
		t.Errorf("%d decode failures still pending", n)
	}
	decodeFailures.Range(func(k, _ any) bool {
		t.Errorf("decode failure of %T still recorded", k)
		return true
	})
	if diff := cmp.Diff(results[false], results[true]); diff != "" {
		t.Errorf("answers: chained (-) vs merged (+):\n%s", diff)
	}
	if diff := cmp.Diff(logLines[false], logLines[true]); diff != "" {
		t.Errorf("log lines: chained (-) vs merged (+):\n%s", diff)
	}
	if diff := cmp.Diff(series[false], series[true]); diff != "" {
		t.Errorf("grpc_server_* series: chained (-) vs merged (+):\n%s", diff)
	}

	// And the answers are the ones the server owes (the comparison alone
	// would pass if both were wrong).
	want := []string{
		`ok: code=OK message="" details=0 x-request-id=["caller-id-1"] answer="id=caller-id-1 principal=backend addr=true"`,
		`ok-generated-id: code=OK message="" details=0 x-request-id=["<generated>"] answer="id=<generated> principal=backend addr=true"`,
		`ok-malformed-id: code=OK message="" details=0 x-request-id=["<generated>"] answer="id=<generated> principal=backend addr=true"`,
		`fail: code=InvalidArgument message="identity: bad" details=0 x-request-id=["caller-id-2"] answer=""`,
		`plain: code=Unknown message="plain failure" details=0 x-request-id=["<generated>"] answer=""`,
		`panic: code=Internal message="internal error" details=0 x-request-id=["caller-id-3"] answer=""`,
	}
	if diff := cmp.Diff(want, results[true][:len(want)]); diff != "" {
		t.Errorf("merged answers (-want +got):\n%s", diff)
	}
	for i, prefix := range []string{
		`unknown-field: code=InvalidArgument message="invalid request: request: unknown field number 99`,
		`invalid-utf8: code=InvalidArgument message="request: invalid protobuf: identity: string field contains invalid UTF-8"`,
		`health-public: code=OK`,
		`no-credentials: code=Unauthenticated message="authentication required"`,
		`wrong-credential-1: code=Unauthenticated message="unknown or revoked service credential"`,
		`wrong-credential-2: code=Unauthenticated message="unknown or revoked service credential"`,
		`throttled: code=ResourceExhausted`,
	} {
		if got := results[true][len(want)+i]; !strings.HasPrefix(got, prefix) {
			t.Errorf("merged answer %d = %s, want it to start %s", len(want)+i, got, prefix)
		}
	}
	joined := strings.Join(logLines[true], "\n")
	for _, s := range []string{`"msg":"panic in handler","panic":"boom","request_id":"caller-id-3"`, `"grpc.code":"Unknown"`, `"grpc.code":"InvalidArgument"`} {
		if !strings.Contains(joined, s) {
			t.Errorf("merged log lines have no %s:\n%s", s, joined)
		}
	}
	if !strings.Contains(strings.Join(series[true], "\n"), `grpc_server_handled_total{grpc_code=Internal,grpc_method=Call,grpc_service=tokend.test.Probe,grpc_type=unary} 1`) {
		t.Errorf("the panic is not counted as Internal:\n%s", strings.Join(series[true], "\n"))
	}
}

// TestUnaryRequestIDsConcurrent: under concurrent calls (the response
// header's metadata is pooled) every call gets its own id back, and the
// handler sees the same one.
func TestUnaryRequestIDsConcurrent(t *testing.T) {
	credential, _, err := auth.NewCredentialToken()
	if err != nil {
		t.Fatal(err)
	}
	cs := newChainServer(t, true, credential)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := fmt.Sprintf("w%d-call%d", w, i)
				ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+credential, "x-request-id", id)
				var hdr metadata.MD
				resp := new(tokenv1.MintResponse)
				if err := cs.conn.Invoke(ctx, "/tokend.test.Probe/Call", probe("ok"), resp, grpc.Header(&hdr)); err != nil {
					t.Errorf("call %s: %v", id, err)
					return
				}
				if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != id {
					t.Errorf("call %s: x-request-id %q", id, got)
				}
				if !strings.HasPrefix(resp.GetToken(), "id="+id+" ") {
					t.Errorf("call %s: handler saw %q", id, resp.GetToken())
				}
			}
		}()
	}
	wg.Wait()
}
