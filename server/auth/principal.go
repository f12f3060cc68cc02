package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Kind says how a caller authenticated.
type Kind int

// The kinds of caller. The zero Kind is no kind: a zero Principal is not an
// authenticated caller, not even an anonymous one.
const (
	// KindAnonymous is a caller that presented no credentials, admitted
	// because Config.Anonymous is set.
	KindAnonymous Kind = iota + 1
	// KindMTLS is a service that presented a client certificate verified
	// against the client CA bundle.
	KindMTLS
	// KindCredential is a service that presented a tokend credential
	// ("Bearer tkd_…").
	KindCredential
	// KindOIDC is a browser user that presented an OIDC JWT.
	KindOIDC
	// KindProxy is a browser user vouched for by a trusted authenticating
	// reverse proxy's identity header.
	KindProxy
)

// String returns the kind's lower-case name: "anonymous", "mtls",
// "credential", "oidc", "proxy", or "none" for the zero Kind.
func (k Kind) String() string {
	switch k {
	case 0:
		return "none"
	case KindAnonymous:
		return "anonymous"
	case KindMTLS:
		return "mtls"
	case KindCredential:
		return "credential"
	case KindOIDC:
		return "oidc"
	case KindProxy:
		return "proxy"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Principal is an authenticated caller.
type Principal struct {
	// Kind says how the caller authenticated.
	Kind Kind
	// Name names the caller for authorization and audit logs: the
	// certificate's URI or DNS SAN (mTLS), the credential's name in the store
	// (credential), "oidc:"+sub (OIDC), "proxy:"+user (proxy), or
	// "anonymous".
	Name string
	// Identity is the Twilio identity a browser caller may mint tokens for,
	// already passed through SafeIdentity; "" for service callers, which may
	// ask for any identity their authorization allows.
	Identity string
	// Groups are the caller's groups: from the OIDC groups claim, the proxy's
	// groups header, or the credential's record; nil for mTLS and anonymous
	// callers.
	Groups []string
	// Browser is true for callers that are a person in a browser (OIDC and
	// proxy), who may only mint for Identity.
	Browser bool
}

// String describes the principal for logs, e.g. `oidc "oidc:alice"
// identity=alice groups=[ops]`. It never contains a secret.
func (p Principal) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q", p.Kind, p.Name)
	if p.Identity != "" {
		fmt.Fprintf(&b, " identity=%s", p.Identity)
	}
	if len(p.Groups) > 0 {
		fmt.Fprintf(&b, " groups=%v", p.Groups)
	}
	return b.String()
}

// HasGroup reports whether the principal is in group g.
func (p Principal) HasGroup(g string) bool {
	for _, have := range p.Groups {
		if have == g {
			return true
		}
	}
	return false
}

type principalKey struct{}

// NewContext returns a copy of ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the Principal that NewContext put in ctx, and false
// when there is none (a public endpoint, or a context that never passed
// through the interceptor or middleware).
func FromContext(ctx context.Context) (Principal, bool) {
	switch v := ctx.Value(principalKey{}).(type) {
	case Principal:
		return v, true
	case *Principal: // httpContext's
		return *v, true
	case *callContext:
		return v.p, true
	}
	return Principal{}, false
}

// MaxIdentityLen is the longest identity SafeIdentity returns: Twilio Voice's
// limit on a client identity.
const MaxIdentityLen = 121

// identityHashHex is how many hex digits of the SHA-256 of the input end a
// shortened identity (128 bits).
const identityHashHex = 32

// SafeIdentity maps a user name (an OIDC claim, a proxy header) to a Twilio
// identity valid for every Twilio product, Voice included: only ASCII
// letters, digits and underscores, at most MaxIdentityLen characters.
//
// The mapping is one-to-one, so two different users never share an identity:
//
//   - ASCII letters and digits are kept;
//   - an underscore becomes two underscores, "__";
//   - every other byte (of the UTF-8 text) becomes "_" and two upper-case hex
//     digits: "alice@example.com" → "alice_40example_2Ecom", "a_b" → "a__b".
//
// It is decoded by reading "__" as "_" and "_XX" as the byte 0xXX.
//
// When the result would be longer than MaxIdentityLen, it is cut (never in
// the middle of an escape) to leave room for "_h" and the first 32 lower-case
// hex digits of the SHA-256 of the input: still unique in practice, still
// recognisable by its prefix, and never equal to an uncut mapping, in which
// "_" is never followed by "h". The empty string maps to "".
func SafeIdentity(s string) string {
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s))
	// cuts[i] is the length of b after the input byte i was encoded: the
	// places the output may be cut without splitting an escape.
	cuts := make([]int, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			b = append(b, c)
		case c == '_':
			b = append(b, '_', '_')
		default:
			b = append(b, '_', hexDigits[c>>4], hexDigits[c&0x0f])
		}
		cuts = append(cuts, len(b))
	}
	if len(b) <= MaxIdentityLen {
		return string(b)
	}
	room := MaxIdentityLen - 2 - identityHashHex
	keep := 0
	for _, n := range cuts {
		if n > room {
			break
		}
		keep = n
	}
	sum := sha256.Sum256([]byte(s))
	return string(b[:keep]) + "_h" + hex.EncodeToString(sum[:])[:identityHashHex]
}
