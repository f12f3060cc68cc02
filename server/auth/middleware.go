package auth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// publicGRPCServices are the services IsPublicGRPC lets through.
var publicGRPCServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// IsPublicGRPC is the default Config.PublicGRPC: the health service and
// server reflection (v1 and v1alpha) need no authentication.
func IsPublicGRPC(fullMethod string) bool {
	for _, s := range publicGRPCServices {
		if strings.HasPrefix(fullMethod, s) {
			return true
		}
	}
	return false
}

// IsPublicHTTP is the default Config.PublicHTTP: GET and HEAD of /healthz,
// /readyz, /metrics, /openapi.json, the web page (/) and its assets
// (/assets/…), and CORS preflights (OPTIONS with Origin and
// Access-Control-Request-Method, which browsers send without credentials and
// which never reach a service) need no authentication. Everything else, the
// REST API in particular, does.
func IsPublicHTTP(r *http.Request) bool {
	if r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "" {
		return true
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch p := r.URL.Path; p {
	case "/", "/healthz", "/readyz", "/metrics", "/openapi.json":
		return true
	default:
		return strings.HasPrefix(p, "/assets/") && !strings.Contains(p, "..")
	}
}

// UnaryServerInterceptor authenticates every unary call but the public
// ones (Config.PublicGRPC) and puts the Principal in the handler's context;
// a refused call fails with the Unauthenticated status.
//
// The peer address and TLS state (credentials.TLSInfo) come from
// grpc/peer, the authorization from the "authorization" metadata. Proxy
// headers are never honoured on gRPC (see ProxyConfig). A peer whose
// address is not an IP (bufconn, a pipe) is unknown: never a trusted proxy.
func (a *Authenticator) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.AuthenticateUnary(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// AuthenticateUnary is what UnaryServerInterceptor does before it calls
// the handler, for a server that runs its interceptors as one: it records
// the peer's address (ClientAddr) and, unless fullMethod is public,
// authenticates the call and returns ctx with its Principal, or the
// refusal (an Unauthenticated or ResourceExhausted status error).
func (a *Authenticator) AuthenticateUnary(ctx context.Context, fullMethod string) (context.Context, error) {
	c := &callContext{Context: ctx}
	p, _ := peer.FromContext(ctx)
	if p != nil {
		c.addr, c.hasAddr = peerAddrString(p.Addr), true
	}
	if a.publicGRPC(fullMethod) {
		return c, nil
	}
	// Authenticate reads no ClientAddr; a refusal is told with it (see
	// principalGRPC). So c is handed out only once, complete.
	principal, err := a.principalGRPC(ctx, p, fullMethod, c)
	if err != nil {
		return nil, err
	}
	c.p, c.hasP = principal, true
	return c, nil
}

// callContext is a unary gRPC call's context as the interceptor passes it
// on: the peer's address (ClientAddr) and, once authenticated, the
// Principal (FromContext), in one node: one allocation, where two
// context.WithValue nodes and the two values boxed into them were four,
// on every call. Value answers with the node itself (a pointer: no
// allocation) and ClientAddr and FromContext read it. It is not changed
// once handed out.
type callContext struct {
	context.Context
	addr          string
	p             Principal
	hasAddr, hasP bool
}

func (c *callContext) Value(key any) any {
	switch key.(type) {
	case clientAddrKey:
		if c.hasAddr {
			return c
		}
	case principalKey:
		if c.hasP {
			return c
		}
	}
	return c.Context.Value(key)
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls.
func (a *Authenticator) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if a.publicGRPC(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		p, _ := peer.FromContext(ctx)
		principal, err := a.principalGRPC(ctx, p, info.FullMethod, nil)
		if err != nil {
			return err
		}
		return handler(srv, &contextStream{ServerStream: ss, ctx: NewContext(ctx, principal)})
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// principalGRPC authenticates a gRPC call of method from peer p. A
// refusal is logged and told (Config.OnFailure) with refusedCtx when it
// is not nil (the unary interceptor's: it carries the peer's address),
// else with ctx.
func (a *Authenticator) principalGRPC(ctx context.Context, p *peer.Peer, method string, refusedCtx context.Context) (Principal, error) {
	if refusedCtx == nil {
		refusedCtx = ctx
	}
	var req Request
	if p != nil {
		req.Peer = addrOf(p.Addr)
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st := ti.State
			req.TLS = &st
		}
	}
	if blocked, wait := a.blocked(req.Peer); blocked {
		return Principal{}, a.refused(refusedCtx, "grpc", method, req.Peer, ThrottledError(ctx, wait))
	}
	// ValueFromIncomingContext copies one value, where FromIncomingContext
	// would copy the whole metadata map on every call.
	switch v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) {
	case 0:
	case 1:
		req.Authorization = v[0]
	default:
		return Principal{}, a.refused(refusedCtx, "grpc", method, req.Peer, unauthenticated("more than one authorization value"))
	}
	if a.proxy != nil {
		// Only the proxy headers are read by name, and only on REST
		// requests (see authenticateProxy): the function (an allocation)
		// is made only when they may be.
		req.Header = func(name string) string {
			if v := metadata.ValueFromIncomingContext(ctx, name); len(v) > 0 {
				return v[0]
			}
			return ""
		}
	}
	principal, err := a.Authenticate(ctx, req)
	if err != nil {
		return Principal{}, a.refused(refusedCtx, "grpc", method, req.Peer, err)
	}
	return principal, nil
}

// HTTPMiddleware authenticates every request but the public ones
// (Config.PublicHTTP) and passes it on with the Principal in its context.
// A refused request is answered 401 with "WWW-Authenticate: Bearer" and a
// google.rpc.Status JSON body, {"code":16,"message":"…"}, as the REST
// gateway writes its errors.
//
// The peer address comes from r.RemoteAddr (the TCP peer: put no header-
// rewriting middleware before this one), the TLS state from r.TLS, the
// credentials from r.Header.
func (a *Authenticator) HTTPMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The client address and, once known, the principal go in the
		// slot the request's context offers (HTTPSlot), and the request
		// is handed on as it is; else in one context of their own
		// (httpContext), in one copy of the request (r.WithContext copies
		// the whole request).
		var ctx context.Context
		var slot *HTTPSlot
		if h, ok := r.Context().(interface{ AuthSlot() *HTTPSlot }); ok {
			slot = h.AuthSlot()
			*slot = HTTPSlot{addr: r.RemoteAddr}
			ctx = r.Context()
		} else {
			hc := &httpContext{Context: r.Context()}
			hc.addr = r.RemoteAddr
			slot, ctx = &hc.HTTPSlot, hc
			r = r.WithContext(hc)
		}
		if a.publicHTTP(r) {
			next.ServeHTTP(w, r)
			return
		}
		req := Request{
			Peer:       remoteAddr(r.RemoteAddr),
			TLS:        r.TLS,
			HTTPHeader: r.Header,
			REST:       true,
		}
		if blocked, wait := a.blocked(req.Peer); blocked {
			secs := retryAfterSeconds(wait)
			err := a.refused(ctx, "http", r.Method+" "+r.URL.Path, req.Peer, throttled(secs))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			writeError(w, err, false)
			return
		}
		authz := r.Header.Values("Authorization")
		var err error
		switch len(authz) {
		case 0:
		case 1:
			req.Authorization = authz[0]
		default:
			err = unauthenticated("more than one Authorization header")
		}
		var p Principal
		if err == nil {
			p, err = a.Authenticate(ctx, req)
		}
		if err != nil {
			err = a.refused(ctx, "http", r.Method+" "+r.URL.Path, req.Peer, err)
			writeError(w, err, len(authz) > 0)
			return
		}
		slot.p, slot.hasP = p, true
		next.ServeHTTP(w, r)
	})
}

// HTTPSlot holds what HTTPMiddleware learns of a request: the caller's
// address (ClientAddr) and principal (FromContext). A request context
// that has room for it (a method AuthSlot() *HTTPSlot, and a Value that
// asks the slot's Value first) saves the middleware a context and a copy
// of the request: it fills the slot and hands the request on as it is.
// The slot must be the request's own, zero or reset, and its context
// must be the one that reaches the handlers.
type HTTPSlot struct {
	addr string
	p    Principal
	hasP bool
}

// Value answers ClientAddr's and FromContext's keys from the slot, with
// pointers into it (no allocation); ok is false for any other key, and
// for the principal's before the caller is known.
func (s *HTTPSlot) Value(key any) (v any, ok bool) {
	switch key.(type) {
	case clientAddrKey:
		return &s.addr, true
	case principalKey:
		if s.hasP {
			return &s.p, true
		}
	}
	return nil, false
}

// httpContext is the context HTTPMiddleware hands on when the request's
// own has no slot: the slot and the parent in one allocation, where a
// value context each would take four (two contexts, two boxed values).
type httpContext struct {
	context.Context
	HTTPSlot
}

func (c *httpContext) Value(key any) any {
	if v, ok := c.HTTPSlot.Value(key); ok {
		return v
	}
	return c.Context.Value(key)
}

// refused logs a refusal at debug level, counts it against the peer
// (unless it is itself a refusal for too many failures, or the request
// presented no credentials at all), tells
// Config.OnFailure, and returns err.
func (a *Authenticator) refused(ctx context.Context, transport, what string, peer netip.Addr, err error) error {
	st := status.Convert(err)
	isThrottled := st.Code() == codes.ResourceExhausted
	a.log.DebugContext(ctx, "auth: request refused", "transport", transport, "call", what,
		"peer", peer.String(), "reason", st.Message())
	if !isThrottled && !errors.Is(err, errNoCredentials) {
		a.fail(peer)
	}
	if a.cfg.OnFailure != nil {
		a.cfg.OnFailure(ctx, Failure{Transport: transport, Call: what, Peer: peer, Reason: st.Message(), Throttled: isThrottled})
	}
	return err
}

// writeError answers a refused HTTP request.
func writeError(w http.ResponseWriter, err error, tokenGiven bool) {
	st := status.Convert(err)
	code := http.StatusUnauthorized
	switch st.Code() {
	case codes.Unauthenticated:
	case codes.ResourceExhausted:
		code = http.StatusTooManyRequests
	default:
		code = http.StatusInternalServerError
	}
	body, merr := protojson.Marshal(st.Proto())
	if merr != nil {
		body = []byte(`{"code":16,"message":"authentication required"}`)
	}
	h := w.Header()
	if code == http.StatusUnauthorized {
		challenge := `Bearer realm="tokend"`
		if tokenGiven {
			challenge += `, error="invalid_token"`
		}
		h.Set("WWW-Authenticate", challenge)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(body)
}

// remoteAddr parses r.RemoteAddr ("ip:port"); the zero Addr when it is not
// an IP address.
func remoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap()
	}
	return netip.Addr{}
}

// addrOf returns the IP of a gRPC peer address; the zero Addr when it has
// none.
func addrOf(addr net.Addr) netip.Addr {
	switch addr := addr.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		return addr.AddrPort().Addr().Unmap()
	}
	return remoteAddr(addr.String())
}

type clientAddrKey struct{}

func withClientAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddrKey{}, addr)
}

// ClientAddr returns the caller's network address (host:port) recorded by
// the interceptor or middleware, or "".
func ClientAddr(ctx context.Context) string {
	switch v := ctx.Value(clientAddrKey{}).(type) {
	case string:
		return v
	case *string: // httpContext's
		return *v
	case *callContext:
		return v.addr
	}
	return ""
}
