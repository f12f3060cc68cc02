// Package auth authenticates tokend's callers, once, for both of tokend's
// front doors.
//
// tokend serves gRPC and, in the same process, a grpc-gateway REST API whose
// handlers call the gRPC services in process: gRPC interceptors never run for
// REST requests. So authentication is one function, [Authenticator.Authenticate],
// fed a transport-neutral [Request] by two adapters:
//
//   - [Authenticator.UnaryServerInterceptor] (and
//     [Authenticator.StreamServerInterceptor]) for gRPC: the peer address and
//     TLS state from grpc/peer, the authorization from the metadata;
//   - [Authenticator.HTTPMiddleware] for REST and everything else on the HTTP
//     listener: r.RemoteAddr, r.TLS and r.Header.
//
// Both put the resulting [Principal] in the context ([NewContext],
// [FromContext]) for the services to authorize against.
//
// # Who a caller can be
//
// Authenticate tries, in this order, and the first kind of credential the
// request carries decides (a credential that is present but wrong is an
// error, never a fall-through to a weaker kind):
//
//  1. a verified client certificate (mutual TLS): [KindMTLS], named by the
//     certificate's first URI SAN (a SPIFFE ID, say) or else its first DNS
//     SAN;
//  2. "Authorization: Bearer tkd_…": a tokend service credential, looked up
//     by its SHA-256 hash ([CredentialLookup], [HashCredential]):
//     [KindCredential];
//  3. any other bearer token, when OIDC is configured: a JWT verified against
//     the issuer's JWKS ([OIDCConfig]): [KindOIDC], a browser user;
//  4. an identity header set by a trusted authenticating reverse proxy such as
//     oauth2-proxy ([ProxyConfig]), on REST requests only: [KindProxy], a
//     browser user (a request carrying that header, or the groups header,
//     more than once is refused);
//  5. nothing: [KindAnonymous] when [Config].Anonymous allows it, else an
//     error.
//
// Service callers (mTLS, credentials) mint for whatever identity they ask
// for, subject to tokend's authorization; browser callers (OIDC, proxy) carry
// in [Principal].Identity the one Twilio identity they may mint for, derived
// from their user name by [SafeIdentity].
//
// An OIDC identity that is an email address needs the token's
// email_verified to be true unless [OIDCConfig].AllowUnverifiedEmail.
//
// Every error is a gRPC status error with code Unauthenticated whose message
// never contains the presented token or secret; the HTTP middleware writes
// it as a google.rpc.Status JSON body with status 401 and a
// "WWW-Authenticate: Bearer" challenge.
//
// # Failed authentication
//
// Every refusal is reported to [Config].OnFailure (tokend audits it) as a
// [Failure], which has no field for the credentials presented. With
// [Config].Failures, a [FailureLimiter] counts failures per client address:
// once an address has spent its burst, its requests are refused with
// ResourceExhausted (HTTP 429 and Retry-After) before their credentials are
// read, until its bucket refills; other addresses are not affected, and the
// trusted proxy's addresses are never slowed down. While no address has
// failed recently, the check is one atomic load. The admin API, which checks
// its own credential, shares the same FailureLimiter ([ThrottledError]).
//
// # Public endpoints
//
// Health and reflection RPCs ([IsPublicGRPC]) and, on HTTP, GET and HEAD of
// /healthz, /readyz, /metrics, /openapi.json, / and /assets/… and CORS
// preflights ([IsPublicHTTP]) are served without authentication and without
// a Principal in the context; [Config].PublicGRPC and [Config].PublicHTTP
// replace those lists.
//
// # TLS
//
// [NewTLSConfig] builds a server tls.Config whose certificate, key and client
// CA bundle are re-read when their files change, so a renewed certificate is
// served without a restart.
package auth
