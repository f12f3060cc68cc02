// Package mint builds and signs Twilio access tokens: the hot path of
// tokend. It writes the JWT header and claims by appending bytes, encodes
// them with SIMD base64url (github.com/segmentio/asm) and signs them with
// HMAC-SHA256 from SHA-256 states each key computes once, reusing pooled
// buffers, so that a token costs one allocation. Callers validate requests
// first (package
// tokenapi); mint trusts its input to be valid UTF-8 and within limits.
//
// The format is Twilio's (see testdata/conformance.json and
// ../shared/spec/access-token.md): header {"alg":"HS256","typ":"JWT",
// "cty":"twilio-fpa;v=1"} plus "twr" when a region is given; claims jti,
// grants, iat, exp, iss, sub. Tests verify every token with
// github.com/golang-jwt/jwt/v5.
package mint
