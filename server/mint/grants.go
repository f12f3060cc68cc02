package mint

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// AppendGrants appends the members of the grants object that follow
// identity, each led by a comma, in Twilio's JSON names: what
// Claims.Grants holds. A grant that is set with no fields is `{}`;
// voice.incoming is written only when allow is true, as the helper
// libraries do; voice.outgoing only with an application SID. g may be nil.
func AppendGrants(dst []byte, g *tokenv1.Grants) []byte {
	if g == nil {
		return dst
	}
	if v := g.GetVoice(); v != nil {
		dst = append(dst, `,"voice":{`...)
		n := 0
		if v.GetIncoming().GetAllow() {
			dst = append(dst, `"incoming":{"allow":true}`...)
			n++
		}
		if o := v.GetOutgoing(); o.GetApplicationSid() != "" {
			dst = comma(dst, &n)
			dst = append(dst, `"outgoing":{"application_sid":`...)
			dst = AppendString(dst, o.GetApplicationSid())
			if len(o.GetParams()) > 0 {
				dst = append(dst, `,"params":{`...)
				keys := make([]string, 0, len(o.GetParams()))
				for k := range o.GetParams() {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for i, k := range keys {
					if i > 0 {
						dst = append(dst, ',')
					}
					dst = AppendString(dst, k)
					dst = append(dst, ':')
					dst = AppendString(dst, o.GetParams()[k])
				}
				dst = append(dst, '}')
			}
			dst = append(dst, '}')
		}
		dst = member(dst, &n, "push_credential_sid", v.GetPushCredentialSid())
		dst = member(dst, &n, "endpoint_id", v.GetEndpointId())
		dst = append(dst, '}')
	}
	if v := g.GetVideo(); v != nil {
		dst = append(dst, `,"video":{`...)
		n := 0
		dst = member(dst, &n, "room", v.GetRoom())
		dst = append(dst, '}')
	}
	if c := g.GetChat(); c != nil {
		dst = append(dst, `,"chat":{`...)
		n := 0
		dst = member(dst, &n, "service_sid", c.GetServiceSid())
		dst = member(dst, &n, "endpoint_id", c.GetEndpointId())
		dst = member(dst, &n, "deployment_role_sid", c.GetDeploymentRoleSid())
		dst = member(dst, &n, "push_credential_sid", c.GetPushCredentialSid())
		dst = append(dst, '}')
	}
	if s := g.GetDataSync(); s != nil {
		dst = append(dst, `,"data_sync":{`...)
		n := 0
		dst = member(dst, &n, "service_sid", s.GetServiceSid())
		dst = member(dst, &n, "endpoint_id", s.GetEndpointId())
		dst = append(dst, '}')
	}
	if t := g.GetTaskRouter(); t != nil {
		dst = append(dst, `,"task_router":{`...)
		n := 0
		dst = member(dst, &n, "workspace_sid", t.GetWorkspaceSid())
		dst = member(dst, &n, "worker_sid", t.GetWorkerSid())
		dst = member(dst, &n, "role", t.GetRole())
		dst = append(dst, '}')
	}
	if p := g.GetPlayer(); p != nil {
		dst = append(dst, `,"player":`...)
		dst = AppendStruct(dst, p)
	}
	return dst
}

func comma(dst []byte, n *int) []byte {
	if *n > 0 {
		dst = append(dst, ',')
	}
	*n++
	return dst
}

// member appends "name":"value" when value is not empty.
func member(dst []byte, n *int, name, value string) []byte {
	if value == "" {
		return dst
	}
	dst = comma(dst, n)
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return AppendString(dst, value)
}

// AppendStruct appends a google.protobuf.Struct as a JSON object with its
// keys sorted. Non-finite numbers, which JSON cannot hold, are written as
// null; callers reject them before minting.
func AppendStruct(dst []byte, s *structpb.Struct) []byte {
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendString(dst, k)
		dst = append(dst, ':')
		dst = appendValue(dst, s.GetFields()[k])
	}
	return append(dst, '}')
}

func appendValue(dst []byte, v *structpb.Value) []byte {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return AppendString(dst, k.StringValue)
	case *structpb.Value_NumberValue:
		return appendNumber(dst, k.NumberValue)
	case *structpb.Value_BoolValue:
		return strconv.AppendBool(dst, k.BoolValue)
	case *structpb.Value_StructValue:
		return AppendStruct(dst, k.StructValue)
	case *structpb.Value_ListValue:
		dst = append(dst, '[')
		for i, e := range k.ListValue.GetValues() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, e)
		}
		return append(dst, ']')
	default: // null, or a Value with no kind set
		return append(dst, "null"...)
	}
}

// appendNumber writes a float64 the way encoding/json (and JavaScript's
// JSON.stringify) does: integers without a fraction or exponent.
func appendNumber(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// PlainPrefix returns the length of s's longest prefix of bytes that
// AppendString copies as they are: ASCII from 0x20 up, but '"' and '\\'.
// It tests sixteen bytes, then eight, at a time (escapes), and finishes
// the first flagged word byte by byte.
func PlainPrefix(s string) int {
	i := 0
	for ; i+16 <= len(s); i += 16 {
		if escapes(load64(s, i))|escapes(load64(s, i+8)) != 0 {
			break
		}
	}
	for ; i+8 <= len(s); i += 8 {
		if escapes(load64(s, i)) != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			break
		}
	}
	return i
}

// load64 reads s[i:i+8] as a little-endian word: one bounds check, one
// load once compiled.
func load64(s string, i int) uint64 {
	b := s[i : i+8]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// escapes is not zero when one of w's eight bytes is below 0x20, '"',
// '\\' or not ASCII, and zero when none is. Without a borrow from the
// byte below, a byte's top bit is set in w-0x20·ones only when the byte is
// below 0x20 or not ASCII, and in (w^c·ones)-ones only when it equals c or
// is not ASCII; w's own top bits flag what is not ASCII. A borrow starts
// only at a byte below 0x20 or equal to c, so it can flag a byte after one
// that must be escaped, never a word with none: whether a word is flagged
// is exact, and its first such byte is found byte by byte.
func escapes(w uint64) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	return ((w - 0x20*ones) | ((w ^ '"'*ones) - ones) | ((w ^ '\\'*ones) - ones) | w) & highs
}

// AppendString appends s as a JSON string. Quotes, backslashes and control
// characters are escaped; U+2028 and U+2029 too, so a token's JSON is also
// safe inside JavaScript source. Invalid UTF-8 becomes U+FFFD (callers
// reject it before minting).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Most strings (a token, a SID, an identity) need no escaping at all:
	// find the plain prefix eight bytes at a time, then go byte by byte.
	start := 0 // s[start:i] is plain and not yet appended
	for i := PlainPrefix(s); i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
