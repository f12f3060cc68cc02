package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Config says which credentials an Authenticator accepts. Each kind is off
// while its field is nil (or false).
type Config struct {
	// Credentials resolves "Bearer tkd_…" service credentials; nil refuses
	// them.
	Credentials CredentialLookup
	// OIDC accepts other bearer tokens as OIDC JWTs; nil refuses them.
	OIDC *OIDCConfig
	// Proxy trusts an authenticating reverse proxy's headers on REST
	// requests from its addresses; nil ignores such headers.
	Proxy *ProxyConfig
	// Anonymous admits callers that present no credentials at all, as
	// KindAnonymous. Callers that present bad credentials are refused
	// either way.
	Anonymous bool
	// AnonymousIf, when set and Anonymous is not, is asked at each call
	// that presents no credentials: true admits the caller as
	// KindAnonymous (policy mode, while the policy has an anonymous
	// rule). It must be cheap and safe for concurrent use.
	AnonymousIf func() bool

	// PublicGRPC reports the gRPC methods (full names, "/pkg.Service/Method")
	// served without authentication; nil means IsPublicGRPC.
	PublicGRPC func(fullMethod string) bool
	// PublicHTTP reports the HTTP requests served without authentication;
	// nil means IsPublicHTTP.
	PublicHTTP func(r *http.Request) bool
	// Logger receives spoofing warnings, JWKS fetch failures and, at debug
	// level, refused requests; nil means slog.Default().
	Logger *slog.Logger
	// Failures, if set, slows down addresses that fail to authenticate
	// again and again (see FailureLimiter). New makes the trusted proxy's
	// prefixes exempt from it: every browser user comes from there, and
	// one user's failures must not lock the others out.
	Failures *FailureLimiter
	// OnFailure, if set, is told of every refused request (for the audit
	// log): failed authentication and requests refused by Failures alike.
	OnFailure func(ctx context.Context, f Failure)
}

// Failure describes a request refused by the Authenticator. It never
// holds the credentials presented.
type Failure struct {
	// Transport is "grpc" or "http" (the Authenticator), or "admin" (the
	// admin API's own credential check, on either); Call the gRPC method
	// or "METHOD /path".
	Transport, Call string
	// Peer is the client's address (the zero Addr when unknown).
	Peer netip.Addr
	// Reason is the refusal's message, as the caller got it.
	Reason string
	// Throttled is true when the request was refused, credentials unread,
	// because its address failed too often (ResourceExhausted).
	Throttled bool
}

// Request is what Authenticate needs to know of a call, whatever its
// transport.
type Request struct {
	// Peer is the address the connection comes from; the zero Addr when it
	// is unknown (a pipe, bufconn), which is never a trusted proxy.
	Peer netip.Addr
	// TLS is the connection's TLS state; nil on a plaintext connection.
	TLS *tls.ConnectionState
	// Authorization is the Authorization header (REST) or "authorization"
	// metadata (gRPC): "Bearer …", or "".
	Authorization string
	// Header returns a request header (REST) or metadata (gRPC) value by
	// name, "" when absent; nil when there are none. HTTPHeader, when
	// set, is read instead.
	Header func(name string) string
	// HTTPHeader is the REST request's header, to refuse a repeated proxy
	// header; nil: each header is taken to appear at most once. (A map,
	// not a func: a method value would cost an allocation per request.)
	HTTPHeader http.Header
	// REST is true for requests that came in over HTTP rather than gRPC.
	// Only REST requests authenticate through the proxy headers.
	REST bool
}

// header returns the first value of the header (or metadata) name, ""
// when absent.
func (r Request) header(name string) string {
	if r.HTTPHeader != nil {
		return r.HTTPHeader.Get(name)
	}
	if r.Header != nil {
		return r.Header(name)
	}
	return ""
}

// headerCount returns how many times the header name appears.
func (r Request) headerCount(name string) int {
	if r.HTTPHeader != nil {
		return len(r.HTTPHeader.Values(name))
	}
	if r.Header != nil && r.Header(name) != "" {
		return 1
	}
	return 0
}

// Authenticator authenticates requests as Config says. It is safe for
// concurrent use.
type Authenticator struct {
	cfg        Config
	failures   *FailureLimiter
	log        *slog.Logger
	oidc       *oidcVerifier
	proxy      *ProxyConfig
	publicGRPC func(string) bool
	publicHTTP func(*http.Request) bool
}

// New checks cfg and returns an Authenticator for it. Nothing is fetched
// yet: the OIDC provider's keys are fetched on the first token.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{cfg: cfg, log: cfg.Logger, publicGRPC: cfg.PublicGRPC, publicHTTP: cfg.PublicHTTP, failures: cfg.Failures}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.publicGRPC == nil {
		a.publicGRPC = IsPublicGRPC
	}
	if a.publicHTTP == nil {
		a.publicHTTP = IsPublicHTTP
	}
	if cfg.OIDC != nil {
		v, err := newOIDCVerifier(*cfg.OIDC, a.log)
		if err != nil {
			return nil, err
		}
		a.oidc = v
	}
	if cfg.Proxy != nil {
		p := cfg.Proxy.withDefaults()
		for _, pr := range p.Trusted {
			if !pr.IsValid() {
				return nil, errors.New("auth: invalid trusted proxy prefix")
			}
		}
		a.proxy = &p
		a.failures.Exempt(p.Trusted...)
	}
	return a, nil
}

// blocked reports whether peer's requests are refused for its failures.
func (a *Authenticator) blocked(peer netip.Addr) (bool, time.Duration) {
	return a.failures.Blocked(peer)
}

// fail counts a failed authentication against peer.
func (a *Authenticator) fail(peer netip.Addr) { a.failures.Fail(peer) }

// unauthenticated returns the Unauthenticated status error every refusal
// is.
func unauthenticated(msg string) error {
	return status.Error(codes.Unauthenticated, msg)
}

// Authenticate says who the caller of req is. It tries, in this order:
//
//  1. a verified client certificate (req.TLS.VerifiedChains non-empty):
//     KindMTLS, named by the leaf's first URI SAN, else its first DNS SAN
//     (a certificate with neither is refused);
//  2. "Authorization: Bearer tkd_…": the service credential with that
//     hash, KindCredential;
//  3. any other bearer token: an OIDC JWT when OIDC is configured,
//     KindOIDC. Without OIDC, such a token is ignored when a trusted proxy
//     vouches for the request (proxies may pass the user's token along),
//     and refused otherwise;
//  4. the proxy's user header on a REST request from a trusted address:
//     KindProxy. From any other address the header is refused and logged;
//  5. no credentials: KindAnonymous if Config.Anonymous (or AnonymousIf)
//     says so, else refused.
//
// Any other Authorization scheme is refused. The first credential present
// decides: a bad one is an error, never a fall-through to the next kind.
// Every error is a gRPC status with code Unauthenticated whose message
// never contains the token.
func (a *Authenticator) Authenticate(ctx context.Context, req Request) (Principal, error) {
	if req.TLS != nil && len(req.TLS.VerifiedChains) > 0 && len(req.TLS.VerifiedChains[0]) > 0 {
		return mtlsPrincipal(req.TLS.VerifiedChains[0][0])
	}
	if authz := strings.TrimSpace(req.Authorization); authz != "" {
		scheme, token, _ := strings.Cut(authz, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return Principal{}, unauthenticated("unsupported authorization scheme: use Bearer")
		}
		token = strings.TrimSpace(token)
		switch {
		case token == "":
			return Principal{}, unauthenticated("empty bearer token")
		case strings.HasPrefix(token, CredentialPrefix):
			return a.authenticateCredential(token)
		case a.oidc != nil:
			return a.oidc.verify(ctx, token)
		}
		p, present, err := a.authenticateProxy(ctx, req)
		if present {
			return p, err
		}
		return Principal{}, unauthenticated("bearer token not accepted: not a tokend credential, and OIDC is not configured")
	}
	if p, present, err := a.authenticateProxy(ctx, req); present {
		return p, err
	}
	if a.cfg.Anonymous || (a.cfg.AnonymousIf != nil && a.cfg.AnonymousIf()) {
		return Principal{Kind: KindAnonymous, Name: "anonymous"}, nil
	}
	return Principal{}, errNoCredentials
}

// errNoCredentials refuses a request that presents no credentials at all.
// It is audited but not counted by the FailureLimiter: it guesses nothing.
var errNoCredentials = unauthenticated("authentication required")

// mtlsPrincipal names a service by its verified client certificate.
func mtlsPrincipal(cert *x509.Certificate) (Principal, error) {
	switch {
	case len(cert.URIs) > 0:
		return Principal{Kind: KindMTLS, Name: cert.URIs[0].String()}, nil
	case len(cert.DNSNames) > 0:
		return Principal{Kind: KindMTLS, Name: cert.DNSNames[0]}, nil
	}
	return Principal{}, unauthenticated("client certificate has no URI or DNS subject alternative name")
}
