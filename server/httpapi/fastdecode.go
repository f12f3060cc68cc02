package httpapi

import (
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// fastMintRequest decodes the common POST /token body, a flat JSON
// object of MintRequest's scalar fields, into req without protojson's
// reflection (about a sixth of a POST's handler CPU under load). It
// accepts a strict subset of what protojson accepts, with the same
// result: each of identity, application_sid, region (printable ASCII
// strings without escapes), ttl_seconds (a plain int32 literal) and
// validate_only (true or false) at most once, by its proto or JSON name.
// Anything else (grants, escapes, other characters, null, quoted or
// exponent numbers, duplicates, unknown fields, malformed JSON) returns
// false with req untouched, for protojson to decode or refuse with its
// own error.
func fastMintRequest(b []byte, req *tokenv1.MintRequest) bool {
	var (
		out  tokenv1.MintRequest
		seen [7]bool // by field number
	)
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			key, j, ok := memberKey(b, i)
			if !ok {
				return false
			}
			i = j
			var field int
			switch string(key) {
			case "identity":
				field = 1
			case "application_sid", "applicationSid":
				field = 2
			case "ttl_seconds", "ttlSeconds":
				field = 3
			case "region":
				field = 4
			case "validate_only", "validateOnly":
				field = 6
			default:
				return false // grants, unknown fields: protojson's
			}
			if seen[field] {
				return false // protojson refuses duplicates
			}
			seen[field] = true
			switch field {
			case 1, 2, 4:
				v, j, ok := plainString(b, i)
				if !ok {
					return false
				}
				i = j
				switch field {
				case 1:
					out.Identity = &v
				case 2:
					out.ApplicationSid = v
				case 4:
					out.Region = v
				}
			case 3:
				n, j, ok := plainInt32(b, i)
				if !ok {
					return false
				}
				i = j
				out.TtlSeconds = &n
			case 6:
				switch {
				case hasAt(b, i, "true"):
					out.ValidateOnly, i = true, i+4
				case hasAt(b, i, "false"):
					out.ValidateOnly, i = false, i+5
				default:
					return false
				}
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return false
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return false
			}
			i = skipWS(b, i+1)
		}
	}
	if skipWS(b, i) != len(b) {
		return false
	}
	req.Reset()
	req.Identity, req.ApplicationSid, req.TtlSeconds, req.Region, req.ValidateOnly =
		out.Identity, out.ApplicationSid, out.TtlSeconds, out.Region, out.ValidateOnly
	return true
}

// skipWS returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasAt(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// plainString reads a JSON string at b[i] made only of printable ASCII
// without escapes, and returns it and the index after its closing quote.
func plainString(b []byte, i int) (string, int, bool) {
	j, ok := skipPlainString(b, i)
	if !ok {
		return "", 0, false
	}
	return string(b[i+1 : j-1]), j, true
}

// memberKey reads an object member's key at b[i] (a plain string, as
// plainString reads it) and the colon after it, and returns the key's
// bytes and the index of the member's value, whitespace skipped.
func memberKey(b []byte, i int) ([]byte, int, bool) {
	j, ok := skipPlainString(b, i)
	if !ok {
		return nil, 0, false
	}
	key := b[i+1 : j-1]
	j = skipWS(b, j)
	if j >= len(b) || b[j] != ':' {
		return nil, 0, false
	}
	return key, skipWS(b, j+1), true
}

// plainInt32 reads a JSON integer literal in int32's range at b[i]
// (-?(0|[1-9][0-9]*), no fraction or exponent) and returns it and the
// index after it.
func plainInt32(b []byte, i int) (int32, int, bool) {
	j := i
	neg := j < len(b) && b[j] == '-'
	if neg {
		j++
	}
	start := j
	var n int64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		n = n*10 + int64(b[j]-'0')
		if n > 1<<31 {
			return 0, 0, false
		}
		j++
	}
	switch {
	case j == start, b[start] == '0' && j-start > 1:
		return 0, 0, false
	case j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E'):
		return 0, 0, false
	}
	if neg {
		n = -n
	}
	if n > 1<<31-1 || n < -1<<31 {
		return 0, 0, false
	}
	return int32(n), j, true
}

// flatObject reports whether b is one flat JSON object and nothing else
// but whitespace: string keys and values that are plain strings (as
// plainString reads them), integers (as plainInt32 reads them, any
// length), true, false or null. It is limitBody's quick answer for the
// common body; false only means "not that shape", and the body is then
// checked the general way (json.Valid, then a decoder).
func flatObject(b []byte) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipWS(b, i+1) == len(b)
	}
	for {
		_, j, ok := memberKey(b, i)
		if !ok || j >= len(b) {
			return false
		}
		i = j
		switch c := b[i]; {
		case c == '"':
			if i, ok = skipPlainString(b, i); !ok {
				return false
			}
		case c == '-' || c >= '0' && c <= '9':
			if i, ok = skipInteger(b, i); !ok {
				return false
			}
		case hasAt(b, i, "true"), hasAt(b, i, "null"):
			i += 4
		case hasAt(b, i, "false"):
			i += 5
		default:
			return false
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '}':
			return skipWS(b, i+1) == len(b)
		case ',':
			i = skipWS(b, i+1)
		default:
			return false
		}
	}
}

// skipPlainString is plainString without the string: the index after
// the closing quote of the plain string at b[i].
func skipPlainString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c == '\\' || c < 0x20 || c > 0x7e:
			return 0, false
		}
	}
	return 0, false
}

// skipInteger returns the index after the JSON integer literal at b[i]
// (-?(0|[1-9][0-9]*)), which must not go on as a fraction or exponent.
func skipInteger(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	switch {
	case i == start, b[start] == '0' && i-start > 1:
		return 0, false
	case i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E'):
		return 0, false
	}
	return i, true
}
