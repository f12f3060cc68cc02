package httpapi

import (
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
)

// jsonMarshaler is the gateway's JSON marshaler (protojson with the proto
// field names) with a hand-written path for the one message on the hot
// path: a MintResponse without a Decision, the answer to every /token
// call. protojson walks the message by reflection and was about a tenth
// of a REST mint's CPU under load; this appends the same JSON (the fields
// in field-number order, empty ones left out, Timestamps in RFC 3339 UTC
// with 0, 3, 6 or 9 fractional digits), which a test holds equal to
// protojson's for generated and edge-case responses. Anything else, and
// any response with a string that is not valid UTF-8 (protojson's error
// stays the error), goes to protojson.
type jsonMarshaler struct {
	*runtime.JSONPb
}

func (m jsonMarshaler) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*tokenv1.MintResponse); ok && r != nil && r.Decision == nil {
		if b, ok := appendMintResponse(make([]byte, 0, 512+len(r.Token)), r); ok {
			return b, nil
		}
	}
	return m.JSONPb.Marshal(v)
}

// appendMintResponse appends r as protojson would (UseProtoNames, no
// Decision); ok is false when protojson must do it instead.
func appendMintResponse(b []byte, r *tokenv1.MintResponse) (_ []byte, ok bool) {
	b = append(b, '{')
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	str := func(name, v string) bool {
		if v == "" {
			return true
		}
		field(name)
		if n := mint.PlainPrefix(v); n == len(v) {
			// Printable ASCII with nothing to escape (a token, SIDs): one
			// pass over it, not a UTF-8 check and an escaping pass.
			b = append(b, '"')
			b = append(b, v...)
			b = append(b, '"')
		} else if utf8.ValidString(v[n:]) {
			b = mint.AppendString(b, v)
		} else {
			return false
		}
		return true
	}
	ts := func(name string, t *timestamppb.Timestamp, c *mint.SecondText) bool {
		if t == nil {
			return true
		}
		// protojson's range: 0001-01-01 to 9999-12-31, nanos in [0, 1e9).
		if t.Seconds < -62135596800 || t.Seconds > 253402300799 || t.Nanos < 0 || t.Nanos >= 1e9 {
			return false
		}
		field(name)
		b = append(b, '"')
		b = appendTimestamp(b, t.Seconds, t.Nanos, c)
		b = append(b, '"')
		return true
	}
	if !str("token", r.Token) || !str("identity", r.Identity) || !str("application_sid", r.ApplicationSid) ||
		!str("account_sid", r.AccountSid) || !str("api_key_sid", r.ApiKeySid) || !str("jti", r.Jti) ||
		!ts("issued_at", r.IssuedAt, &issuedText) || !ts("expires_at", r.ExpiresAt, &expiresText) || !str("region", r.Region) {
		return nil, false
	}
	return append(b, '}'), true
}

// issuedText and expiresText cache the seconds of the answers' issued_at
// and expires_at.
var issuedText, expiresText mint.SecondText

// appendTimestamp appends seconds+nanos as protojson formats a
// google.protobuf.Timestamp: RFC 3339 in UTC, "Z", and the fraction with
// 0, 3, 6 or 9 digits, the fewest that hold it. secs is in protojson's
// range (years 1 to 9999); c caches the text of the second.
func appendTimestamp(b []byte, secs int64, nanos int32, c *mint.SecondText) []byte {
	b = c.Append(b, secs)
	if nanos != 0 {
		var frac [10]byte
		frac[0] = '.'
		n := nanos
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + n%10)
			n /= 10
		}
		digits := 9
		switch {
		case nanos%1e6 == 0:
			digits = 3
		case nanos%1e3 == 0:
			digits = 6
		}
		b = append(b, frac[:1+digits]...)
	}
	return append(b, 'Z')
}

// appendMint appends r's JSON to b when the hand-written path covers it
// (see Marshal); ok false means Marshal must encode it.
func (jsonMarshaler) appendMint(b []byte, r *tokenv1.MintResponse) (_ []byte, ok bool) {
	if r == nil || r.Decision != nil {
		return b, false
	}
	return appendMintResponse(b, r)
}
