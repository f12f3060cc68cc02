package tokenapi

import (
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/sid"
)

// Limits on what a request may carry. They keep tokens small (a token
// travels in every SDK connection) and bound the work per request.
const (
	MaxIdentityLen      = 256 // characters; Twilio's limit for chat, sync and others
	MaxVoiceIdentityLen = 121 // Twilio Voice
	MaxVideoIdentityLen = 128 // Twilio Video
	MaxEndpointIDLen    = 256
	MaxRoomLen          = 128
	MaxRoleLen          = 64
	MaxParams           = 32
	MaxParamKeyLen      = 128
	MaxParamValueLen    = 1024
	MaxParamsBytes      = 4096 // keys and values together
	MaxPlayerBytes      = 4096 // the player object as JSON
	MaxPlayerDepth      = 16
	DefaultTTLSeconds   = 3600
)

// Violations collects field violations of one request.
type Violations []*errdetails.BadRequest_FieldViolation

// Add records that field breaks a rule, described in lowercase words.
func (v *Violations) Add(field, format string, args ...any) {
	*v = append(*v, &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// Err returns nil, or an InvalidArgument status whose message names every
// field and rule and whose details hold a google.rpc.BadRequest.
func (v Violations) Err(what string) error {
	if len(v) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("invalid ")
	b.WriteString(what)
	b.WriteString(": ")
	for i, f := range v {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Field)
		b.WriteString(": ")
		b.WriteString(f.Description)
	}
	st := status.New(codes.InvalidArgument, b.String())
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: v}); err == nil {
		st = d
	}
	return st.Err()
}

// ValidSID reports whether s is prefix followed by 32 hexadecimal digits,
// the shape of every Twilio SID.
func ValidSID(s, prefix string) bool { return sid.Valid(s, prefix) }

// CheckSID records a violation unless s is empty (when optional) or a
// well-formed SID with the prefix.
func (v *Violations) CheckSID(field, s, prefix string, required bool) {
	switch {
	case s == "" && !required:
	case s == "":
		v.Add(field, "is required: %s SID (%s followed by 32 hex digits)", article(sidKind(prefix)), prefix)
	case !ValidSID(s, prefix):
		v.Add(field, "must be %s SID: %s followed by 32 hex digits", article(sidKind(prefix)), prefix)
	}
}

// article puts "a" or "an" before a word.
func article(w string) string {
	if w != "" && strings.ContainsRune("aeiouAEIOU", rune(w[0])) {
		return "an " + w
	}
	return "a " + w
}

func sidKind(prefix string) string {
	switch prefix {
	case "AP":
		return "TwiML application"
	case "AC":
		return "account"
	case "SK":
		return "API key"
	case "CR":
		return "push credential"
	case "IS":
		return "service"
	case "RL":
		return "role"
	case "WS":
		return "workspace"
	case "WK":
		return "worker"
	}
	return prefix
}

// ValidRegion reports whether s looks like a Twilio region: two lowercase
// letters and one or two digits (us1, ie1, au1, jp1, ...).
func ValidRegion(s string) bool {
	if len(s) < 3 || len(s) > 4 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i < 2 && !('a' <= c && c <= 'z') || i >= 2 && !('0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// CheckText records a violation unless s is valid UTF-8 of at most max
// characters without control characters, line or paragraph separators
// (U+2028, U+2029) or Unicode format characters
// (category Cf: a right-to-left override or a zero-width character would
// make what a token carries read as something else, in an SDK and in the
// audit log). Empty is allowed. An ASCII string costs one pass over its
// bytes.
func (v *Violations) CheckText(field, s string, max int) bool {
	if !utf8.ValidString(s) {
		v.Add(field, "must be valid UTF-8")
		return false
	}
	n, ctrl, format := textScan(s)
	switch {
	case n > max:
		v.Add(field, "must be at most %d characters, got %d", max, n)
		return false
	case ctrl:
		v.Add(field, "must not contain control characters")
		return false
	case format == '\u2028' || format == '\u2029':
		v.Add(field, "must not contain line or paragraph separators: found %U", format)
		return false
	case format != 0:
		v.Add(field, "must not contain Unicode format characters (category Cf, such as right-to-left overrides and zero-width joiners): found %U", format)
		return false
	}
	return true
}

// textScan returns the number of characters of s, whether it holds a
// control character, and its first Unicode format character or line or
// paragraph separator (U+2028, U+2029: line breaks, as a newline is)
// (0: none).
func textScan(s string) (n int, ctrl bool, format rune) {
	i := 0
	for ; i < len(s) && s[i] < utf8.RuneSelf; i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			ctrl = true
		}
	}
	n = i
	for _, r := range s[i:] {
		n++
		switch {
		case unicode.IsControl(r):
			ctrl = true
		case format == 0 && (unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'):
			format = r
		}
	}
	return n, ctrl, format
}

// CheckIdentity applies Twilio's identity rules for the grants the token
// will carry, and refuses, besides what CheckText does, the other
// characters Unicode says to render as nothing (default-ignorable code
// points such as U+3164 HANGUL FILLER, U+034F COMBINING GRAPHEME JOINER
// and variation selectors): an identity names a person, and one must not
// pass for another.
func (v *Violations) CheckIdentity(identity string, g *tokenv1.Grants) {
	const field = "identity"
	if identity == "" {
		v.Add(field, "must not be empty")
		return
	}
	if !v.CheckText(field, identity, MaxIdentityLen) {
		return
	}
	if r, ok := invisibleChar(identity); ok {
		v.Add(field, "must not contain invisible characters (Unicode default-ignorable code points, such as Hangul fillers and variation selectors): found %U", r)
		return
	}
	if g.GetVoice() != nil {
		if len(identity) > MaxVoiceIdentityLen {
			v.Add(field, "must be at most %d characters with a voice grant, got %d", MaxVoiceIdentityLen, utf8.RuneCountInString(identity))
			return
		}
		for i := 0; i < len(identity); i++ {
			c := identity[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
				v.Add(field, "must contain only letters, digits and underscore with a voice grant")
				return
			}
		}
	}
	if g.GetVideo() != nil {
		if n := utf8.RuneCountInString(identity); n > MaxVideoIdentityLen {
			v.Add(field, "must be at most %d characters with a video grant, got %d", MaxVideoIdentityLen, n)
		}
	}
}

// invisibleChar returns the first default-ignorable code point of s that
// is not a format character (CheckText refuses those): Unicode's
// Other_Default_Ignorable_Code_Point and Variation_Selector. ASCII holds
// none, so an ASCII identity costs one pass over its bytes.
func invisibleChar(s string) (rune, bool) {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	for _, r := range s[i:] {
		if unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector) {
			return r, true
		}
	}
	return 0, false
}

// CheckTTL records a violation unless ttl is within 1..max seconds.
func (v *Violations) CheckTTL(field string, ttl, max int64) {
	if ttl < 1 || ttl > max {
		if max == mint.MaxTTLSeconds {
			v.Add(field, "must be between 1 and %d seconds, got %d", max, ttl)
		} else {
			v.Add(field, "must be between 1 and %d seconds (the application's maximum), got %d", max, ttl)
		}
	}
}

// CheckGrants validates grants (field is their path, such as "grants").
func (v *Violations) CheckGrants(field string, g *tokenv1.Grants) {
	if g == nil {
		return
	}
	if vo := g.GetVoice(); vo != nil {
		f := field + ".voice"
		if o := vo.GetOutgoing(); o != nil {
			v.CheckSID(f+".outgoing.application_sid", o.GetApplicationSid(), "AP", false)
			if len(o.GetParams()) > 0 {
				if o.GetApplicationSid() == "" {
					v.Add(f+".outgoing.params", "is allowed only with an outgoing application_sid")
				}
				v.checkParams(f+".outgoing.params", o.GetParams())
			}
		}
		v.CheckSID(f+".push_credential_sid", vo.GetPushCredentialSid(), "CR", false)
		v.CheckText(f+".endpoint_id", vo.GetEndpointId(), MaxEndpointIDLen)
	}
	if vi := g.GetVideo(); vi != nil {
		v.CheckText(field+".video.room", vi.GetRoom(), MaxRoomLen)
	}
	if c := g.GetChat(); c != nil {
		f := field + ".chat"
		v.CheckSID(f+".service_sid", c.GetServiceSid(), "IS", false)
		v.CheckText(f+".endpoint_id", c.GetEndpointId(), MaxEndpointIDLen)
		v.CheckSID(f+".deployment_role_sid", c.GetDeploymentRoleSid(), "RL", false)
		v.CheckSID(f+".push_credential_sid", c.GetPushCredentialSid(), "CR", false)
	}
	if s := g.GetDataSync(); s != nil {
		f := field + ".data_sync"
		v.CheckSID(f+".service_sid", s.GetServiceSid(), "IS", false)
		v.CheckText(f+".endpoint_id", s.GetEndpointId(), MaxEndpointIDLen)
	}
	if t := g.GetTaskRouter(); t != nil {
		f := field + ".task_router"
		v.CheckSID(f+".workspace_sid", t.GetWorkspaceSid(), "WS", false)
		v.CheckSID(f+".worker_sid", t.GetWorkerSid(), "WK", false)
		v.CheckText(f+".role", t.GetRole(), MaxRoleLen)
	}
	if p := g.GetPlayer(); p != nil {
		v.checkPlayer(field+".player", p)
	}
}

func (v *Violations) checkParams(field string, params map[string]string) {
	if len(params) > MaxParams {
		v.Add(field, "must have at most %d entries, got %d", MaxParams, len(params))
		return
	}
	total := 0
	for k, val := range params {
		total += len(k) + len(val)
		if k == "" {
			v.Add(field, "keys must not be empty")
			continue
		}
		if !v.CheckText(field, k, MaxParamKeyLen) {
			continue
		}
		v.CheckText(field+"["+k+"]", val, MaxParamValueLen)
	}
	if total > MaxParamsBytes {
		v.Add(field, "must be at most %d bytes of keys and values together, got %d", MaxParamsBytes, total)
	}
}

func (v *Violations) checkPlayer(field string, p *structpb.Struct) {
	size, err := playerSize(p, 1)
	if err != "" {
		v.Add(field, "%s", err)
		return
	}
	if size > MaxPlayerBytes {
		v.Add(field, "must be at most %d bytes as JSON, got more", MaxPlayerBytes)
	}
}

// playerSize estimates the JSON size of a Struct, stopping early when it
// is too deep, too large or holds what JSON cannot (NaN, infinities,
// invalid UTF-8).
func playerSize(s *structpb.Struct, depth int) (int, string) {
	if depth > MaxPlayerDepth {
		return 0, fmt.Sprintf("must be nested at most %d levels deep", MaxPlayerDepth)
	}
	n := 2
	for k, val := range s.GetFields() {
		if !utf8.ValidString(k) {
			return 0, "keys must be valid UTF-8"
		}
		m, err := valueSize(val, depth)
		if err != "" {
			return 0, err
		}
		n += len(k) + 4 + m
		if n > MaxPlayerBytes {
			return n, ""
		}
	}
	return n, ""
}

func valueSize(val *structpb.Value, depth int) (int, string) {
	switch k := val.GetKind().(type) {
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			return 0, "strings must be valid UTF-8"
		}
		return len(k.StringValue) + 2, ""
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return 0, "numbers must be finite"
		}
		return 24, ""
	case *structpb.Value_StructValue:
		return playerSize(k.StructValue, depth+1)
	case *structpb.Value_ListValue:
		if depth+1 > MaxPlayerDepth {
			return 0, fmt.Sprintf("must be nested at most %d levels deep", MaxPlayerDepth)
		}
		n := 2
		for _, e := range k.ListValue.GetValues() {
			m, err := valueSize(e, depth+1)
			if err != "" {
				return 0, err
			}
			n += m + 1
			if n > MaxPlayerBytes {
				return n, ""
			}
		}
		return n, ""
	default:
		return 5, ""
	}
}
