package auth

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// whoAmI answers with the principal in the context, or "-".
func whoAmI(ctx context.Context) string {
	p, ok := FromContext(ctx)
	if !ok {
		return "-"
	}
	return p.String()
}

func TestHTTPMiddleware(t *testing.T) {
	lookup, tokens := credentialStore(t, "backend")
	log, logs := testLogger(t)
	a, err := New(Config{
		Credentials: lookup,
		Proxy:       &ProxyConfig{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Logger:      log,
	})
	if err != nil {
		t.Fatal(err)
	}
	anon, err := New(Config{Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, whoAmI(r.Context()))
	})
	bad, _, _ := NewCredentialToken()

	tests := []struct {
		name     string
		a        *Authenticator
		method   string
		path     string
		remote   string
		header   map[string]string
		authz    []string
		wantCode int
		wantBody string // for 200
		wantMsg  string // for 401
	}{
		{name: "credential", a: a, method: "POST", path: "/v1/token", authz: []string{"Bearer " + tokens["backend"]}, wantCode: 200, wantBody: `credential "backend" groups=[svc-backend]`},
		{name: "no credentials", a: a, method: "POST", path: "/v1/token", wantCode: 401, wantMsg: "authentication required"},
		{name: "unknown credential", a: a, method: "POST", path: "/v1/token", authz: []string{"Bearer " + bad}, wantCode: 401, wantMsg: "unknown or revoked service credential"},
		{name: "two Authorization headers", a: a, method: "POST", path: "/v1/token", authz: []string{"Bearer " + tokens["backend"], "Bearer " + bad}, wantCode: 401, wantMsg: "more than one Authorization header"},
		{name: "trusted proxy", a: a, method: "POST", path: "/v1/token", remote: "10.0.0.5:4000", header: map[string]string{"X-Auth-Request-User": "alice"}, wantCode: 200, wantBody: `proxy "proxy:alice" identity=alice`},
		{name: "spoofed proxy header", a: a, method: "POST", path: "/v1/token", remote: "192.0.2.1:4000", header: map[string]string{"X-Auth-Request-User": "alice"}, wantCode: 401, wantMsg: "proxy header from an untrusted address"},
		{name: "anonymous", a: anon, method: "GET", path: "/v1/token", wantCode: 200, wantBody: `anonymous "anonymous"`},
		{name: "healthz is public", a: a, method: "GET", path: "/healthz", wantCode: 200, wantBody: "-"},
		{name: "readyz is public", a: a, method: "GET", path: "/readyz", wantCode: 200, wantBody: "-"},
		{name: "metrics is public", a: a, method: "GET", path: "/metrics", wantCode: 200, wantBody: "-"},
		{name: "openapi is public", a: a, method: "GET", path: "/openapi.json", wantCode: 200, wantBody: "-"},
		{name: "page is public", a: a, method: "GET", path: "/", wantCode: 200, wantBody: "-"},
		{name: "HEAD page is public", a: a, method: "HEAD", path: "/", wantCode: 200},
		{name: "assets are public", a: a, method: "GET", path: "/assets/app.js", wantCode: 200, wantBody: "-"},
		{name: "public even with a bad token", a: a, method: "GET", path: "/healthz", authz: []string{"Bearer " + bad}, wantCode: 200, wantBody: "-"},
		{name: "POST healthz is not public", a: a, method: "POST", path: "/healthz", wantCode: 401},
		{name: "dot-dot out of assets", a: a, method: "GET", path: "/assets/../v1/token", wantCode: 401},
		{name: "CORS preflight is public", a: a, method: "OPTIONS", path: "/v1/token", header: map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, wantCode: 200, wantBody: "-"},
		{name: "plain OPTIONS is not", a: a, method: "OPTIONS", path: "/v1/token", wantCode: 401},
	}
	for _, tt := range tests {
		// Each case twice: with a plain request, and with one whose
		// context has room for the caller (an HTTPSlot, as tokend's REST
		// handler gives each request), which the middleware fills and
		// hands on as it is.
		for _, slotted := range []bool{false, true} {
			name := tt.name
			if slotted {
				name += " (slot)"
			}
			t.Run(name, func(t *testing.T) {
				r := httptest.NewRequest(tt.method, "http://tokend"+tt.path, nil)
				r.URL.Path = tt.path // keep dot-dots
				if tt.remote != "" {
					r.RemoteAddr = tt.remote
				}
				for k, v := range tt.header {
					r.Header.Set(k, v)
				}
				for _, v := range tt.authz {
					r.Header.Add("Authorization", v)
				}
				var sc *slotContext
				if slotted {
					sc = &slotContext{Context: r.Context()}
					r = r.WithContext(sc)
				}
				var handed *http.Request
				w := httptest.NewRecorder()
				tt.a.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					handed = r
					if got := ClientAddr(r.Context()); got != r.RemoteAddr {
						t.Errorf("ClientAddr = %q, want %q", got, r.RemoteAddr)
					}
					next.ServeHTTP(w, r)
				})).ServeHTTP(w, r)
				if w.Code != tt.wantCode {
					t.Fatalf("status %d, want %d; body %s", w.Code, tt.wantCode, w.Body)
				}
				if slotted && handed != nil && handed != r {
					t.Error("the request was copied though its context has a slot for the caller")
				}
				if slotted && tt.wantCode == 200 && tt.method != "HEAD" && tt.wantBody != "-" && !sc.slot.hasP {
					t.Error("the slot holds no principal after the request was let through")
				}
				if tt.wantCode == 200 {
					if tt.method != "HEAD" && w.Body.String() != tt.wantBody {
						t.Fatalf("body %q, want %q", w.Body, tt.wantBody)
					}
					return
				}
				if ch := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Bearer") {
					t.Errorf("WWW-Authenticate %q", ch)
				}
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				var st struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
					t.Fatalf("body %q: %v", w.Body, err)
				}
				if st.Code != int(codes.Unauthenticated) || (tt.wantMsg != "" && st.Message != tt.wantMsg) {
					t.Fatalf("body %+v, want code 16 message %q", st, tt.wantMsg)
				}
				for _, v := range tt.authz {
					if strings.Contains(w.Body.String(), strings.TrimPrefix(v, "Bearer ")) {
						t.Fatalf("body %q quotes the token", w.Body)
					}
				}
			})
		}
	}
	if l := logs.String(); !strings.Contains(l, "spoofing") || !strings.Contains(l, "peer=192.0.2.1") {
		t.Errorf("spoofing attempt not logged:\n%s", l)
	}
	if l := logs.String(); strings.Contains(l, tokens["backend"]) || strings.Contains(l, bad) {
		t.Errorf("a token was logged:\n%s", l)
	}
}

// slotContext is a request context with room for the caller, as
// tokend's REST handler gives each request.
type slotContext struct {
	context.Context
	slot HTTPSlot
}

func (c *slotContext) AuthSlot() *HTTPSlot { return &c.slot }

func (c *slotContext) Value(key any) any {
	if v, ok := c.slot.Value(key); ok {
		return v
	}
	return c.Context.Value(key)
}

func TestRemoteAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:80":          "10.0.0.1",
		"[::1]:80":             "::1",
		"[::ffff:10.0.0.1]:80": "10.0.0.1",
		"10.0.0.1":             "10.0.0.1",
		"pipe":                 "invalid IP",
		"":                     "invalid IP",
		"@":                    "invalid IP",
	} {
		if got := remoteAddr(in).String(); got != want {
			t.Errorf("remoteAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

// The test service: authtest.Who/Who (unary) and authtest.Who/Stream
// (server streaming) answer with the caller's principal.
const (
	whoMethod    = "/authtest.Who/Who"
	streamMethod = "/authtest.Who/Stream"
)

var whoService = grpc.ServiceDesc{
	ServiceName: "authtest.Who",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Who",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) { return wrapperspb.String(whoAmI(ctx)), nil }
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: whoMethod}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			in := new(emptypb.Empty)
			if err := stream.RecvMsg(in); err != nil {
				return err
			}
			return stream.SendMsg(wrapperspb.String(whoAmI(stream.Context())))
		},
	}},
}

// serveGRPC serves the Who and health services through a's interceptors
// on a bufconn listener and returns a client connection.
func serveGRPC(t *testing.T, a *Authenticator) *grpc.ClientConn {
	t.Helper()
	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(a.StreamServerInterceptor()),
	)
	srv.RegisterService(&whoService, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func callWho(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, whoMethod, new(emptypb.Empty), out)
	return out.GetValue(), err
}

func streamWho(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	s, err := conn.NewStream(ctx, &whoService.Streams[0], streamMethod)
	if err != nil {
		return "", err
	}
	if err := s.SendMsg(new(emptypb.Empty)); err != nil {
		return "", err
	}
	if err := s.CloseSend(); err != nil {
		return "", err
	}
	out := new(wrapperspb.StringValue)
	if err := s.RecvMsg(out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

func TestGRPCInterceptors(t *testing.T) {
	lookup, tokens := credentialStore(t, "backend")
	// Trusting every address: bufconn's peer is still unknown, and gRPC
	// never honours proxy headers anyway.
	a, err := New(Config{
		Credentials: lookup,
		Proxy:       &ProxyConfig{Trusted: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	conn := serveGRPC(t, a)
	anonConn := serveGRPC(t, mustNew(t, Config{Anonymous: true}))
	bad, _, _ := NewCredentialToken()
	withMD := func(kv ...string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), kv...)
	}

	tests := []struct {
		name     string
		conn     *grpc.ClientConn
		ctx      context.Context
		want     string // "" for Unauthenticated
		wantMsg  string
		noStream bool
	}{
		{name: "credential", conn: conn, ctx: withMD("authorization", "Bearer "+tokens["backend"]), want: `credential "backend" groups=[svc-backend]`},
		{name: "no credentials", conn: conn, ctx: context.Background(), wantMsg: "authentication required"},
		{name: "unknown credential", conn: conn, ctx: withMD("authorization", "Bearer "+bad), wantMsg: "unknown or revoked service credential"},
		{name: "two authorization values", conn: conn, ctx: withMD("authorization", "Bearer "+tokens["backend"], "authorization", "Bearer x"), wantMsg: "more than one authorization value"},
		{name: "proxy header over gRPC is ignored", conn: conn, ctx: withMD("x-auth-request-user", "alice"), wantMsg: "authentication required"},
		{name: "anonymous", conn: anonConn, ctx: context.Background(), want: `anonymous "anonymous"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, call := range []struct {
				kind string
				f    func(context.Context, *grpc.ClientConn) (string, error)
			}{{"unary", callWho}, {"stream", streamWho}} {
				got, err := call.f(tt.ctx, tt.conn)
				if tt.want == "" {
					st := status.Convert(err)
					if st.Code() != codes.Unauthenticated || st.Message() != tt.wantMsg {
						t.Fatalf("%s: error %v, want Unauthenticated %q", call.kind, err, tt.wantMsg)
					}
					if strings.Contains(st.Message(), bad) || strings.Contains(st.Message(), tokens["backend"]) {
						t.Fatalf("%s: message %q quotes a token", call.kind, st.Message())
					}
					continue
				}
				if err != nil || got != tt.want {
					t.Fatalf("%s: got %q, %v; want %q", call.kind, got, err, tt.want)
				}
			}
		})
	}

	// Health is public.
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v, %v", resp, err)
	}
}

func TestIsPublicGRPC(t *testing.T) {
	for m, want := range map[string]bool{
		"/grpc.health.v1.Health/Check":                                   true,
		"/grpc.health.v1.Health/Watch":                                   true,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
		"/tokend.token.v1.TokenService/CreateToken":                      false,
		"/grpc.health.v1.HealthX/Check":                                  false,
	} {
		if got := IsPublicGRPC(m); got != want {
			t.Errorf("IsPublicGRPC(%q) = %v", m, got)
		}
	}
}

func mustNew(t *testing.T, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestCustomPublic(t *testing.T) {
	a := mustNew(t, Config{
		PublicHTTP: func(r *http.Request) bool { return r.URL.Path == "/open" },
		PublicGRPC: func(string) bool { return false },
	})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	for path, want := range map[string]int{"/open": 200, "/healthz": 401} {
		w := httptest.NewRecorder()
		a.HTTPMiddleware(next).ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != want {
			t.Errorf("GET %s: %d, want %d", path, w.Code, want)
		}
	}
	conn := serveGRPC(t, a)
	_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("health check with no public methods: %v", err)
	}
}
