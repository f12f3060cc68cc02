package tokenapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/requestid"
)

// MaxVerifyTokenBytes is the largest token Verify accepts.
const MaxVerifyTokenBytes = 16 << 10

// Twilio's error codes for access tokens, as Verify names them.
const (
	CodeInvalidToken     = 20101 // not a JWT, or a claim of the wrong shape
	CodeInvalidHeader    = 20102 // alg, typ, cty or twr
	CodeInvalidIssuer    = 20103 // iss or sub
	CodeExpired          = 20104 // expired, or exp missing or not a number
	CodeNotYetValid      = 20105 // before nbf, or nbf not a number
	CodeInvalidGrants    = 20106 // grants or identity
	CodeInvalidSignature = 20107 // no held key's secret signed it
	CodeLifetimeTooLong  = 20157 // exp more than 24 h after iat (or now)
)

// twilioContentType is the cty header of every Twilio access token.
const twilioContentType = "twilio-fpa;v=1"

// maxUnixSeconds bounds the times Verify accepts (year 9999), so that
// they fit a Timestamp and sums of them cannot overflow.
const maxUnixSeconds = 253402300799

var strictB64 = base64.RawURLEncoding.Strict()

// Verify decodes a token, checks its header, issuer, signature, times,
// grants and jti in that order, and names the first Twilio error code
// that applies. Only an empty or oversized token is an RPC error
// (InvalidArgument); any other token gets a response with valid=false.
// Neither the response nor an error ever holds a secret.
//
// A sub that is not the account of any held key with the token's iss is
// 20103 (bad issuer/subject), decided before the signature is checked.
// An iat that is not a number is 20101; an nbf that is not a number is
// 20105.
func (s *Service) Verify(ctx context.Context, req *tokenv1.VerifyRequest) (*tokenv1.VerifyResponse, error) {
	// In policy mode anonymous callers are admitted only for an anonymous
	// rule's mints: Verify still needs a credential.
	if caller, _ := auth.FromContext(ctx); s.cfg.Policy != nil && caller.Kind == auth.KindAnonymous {
		return nil, status.Error(codes.Unauthenticated, "authentication required: anonymous callers may only mint")
	}
	tok := req.GetToken()
	var v Violations
	switch {
	case tok == "":
		v.Add("token", "must not be empty")
	case len(tok) > MaxVerifyTokenBytes:
		v.Add("token", "must be at most %d bytes, got %d", MaxVerifyTokenBytes, len(tok))
	}
	if err := v.Err("verify request"); err != nil {
		return nil, err
	}
	resp := &tokenv1.VerifyResponse{}
	var reach policy.Reach
	code, reason := s.verify(tok, resp, &reach)
	resp.Valid = code == 0
	resp.TwilioErrorCode = int32(code)
	resp.Reason = reason
	caller, _ := auth.FromContext(ctx)
	app := resp.GetApplicationSid()
	disclosed := s.mayMintFor(caller, app)
	if !disclosed {
		// Which application holds the key, and whether it is active, is
		// for callers that may mint for that application; others get the
		// Twilio error code only.
		resp.ApplicationSid, resp.KeyState = "", ""
		// A signature that does not match a held key is answered as a key
		// tokend does not hold: 20107 against 20103 would tell a caller
		// holding no token of the application, only a forged one, that
		// tokend holds the key its iss names.
		if code == CodeInvalidSignature {
			resp.TwilioErrorCode = CodeInvalidIssuer
		}
		if resp.TwilioErrorCode == CodeInvalidIssuer && reason != reasonIssuerFormat && reason != reasonSubjectFormat {
			resp.Reason = reasonUnknownKey
		}
	}
	if s.cfg.Audit != nil {
		r := audit.Record{
			Event: audit.EventVerify, Principal: caller.Name, PrincipalKind: caller.Kind.String(),
			Identity: reach.Identity, ApplicationSID: app,
			OutgoingApplicationSID: reach.OutgoingApplication, OutgoingParams: reach.ParamKeys(), PushCredentialSID: reach.PushCredential,
			Room: reach.Room, ChatServiceSID: reach.ChatService, ChatPushCredentialSID: reach.ChatPushCredential,
			ChatDeploymentRoleSID: reach.ChatDeploymentRole, SyncServiceSID: reach.SyncService,
			WorkspaceSID: reach.Workspace, WorkerSID: reach.Worker, TaskRouterRole: reach.Role,
			Decision: audit.Allow, Code: "OK",
			// The code found, which the operator may know even when the
			// caller was told another.
			Reason:     fmt.Sprintf("valid=%t twilio_error_code=%d details_disclosed=%t", resp.GetValid(), code, disclosed),
			ClientAddr: auth.ClientAddr(ctx), RequestID: requestid.FromContext(ctx),
		}
		if jti, ok := resp.GetClaims().GetFields()["jti"]; ok {
			r.JTI = jti.GetStringValue()
		}
		s.cfg.Audit.Log(r)
	}
	return resp, nil
}

// Reasons of 20103 that Verify words the same for every caller (the
// token's own shape), and the one it gives callers that may not learn
// whether tokend holds the key.
const (
	reasonIssuerFormat  = "iss must be an API key SID: SK followed by 32 hex digits"
	reasonSubjectFormat = "sub must be an account SID: AC followed by 32 hex digits"
	reasonUnknownKey    = "iss and sub are not an API key and account this caller may ask about"
)

// verify fills resp with what decodes and returns the error code and
// reason (0 and "" when the token is valid).
// The reach of the token's grants goes to rc once they decode.
func (s *Service) verify(tok string, resp *tokenv1.VerifyResponse, rc *policy.Reach) (int, string) {
	// Three unpadded base64url parts; header and payload JSON objects.
	if n := strings.Count(tok, ".") + 1; n != 3 {
		return CodeInvalidToken, fmt.Sprintf("a token is three base64url parts separated by dots; this has %d", n)
	}
	parts := strings.Split(tok, ".")
	var raw [3][]byte
	for i, name := range []string{"header", "payload", "signature"} {
		b, err := strictB64.DecodeString(parts[i])
		if err != nil || i < 2 && len(b) == 0 { // an empty signature is checked as one
			return CodeInvalidToken, "the " + name + " is not unpadded base64url"
		}
		raw[i] = b
	}
	header, headerStruct, ok := decodeObject(raw[0])
	if !ok {
		return CodeInvalidToken, "the header is not a JSON object"
	}
	resp.Header = headerStruct
	claims, claimsStruct, ok := decodeObject(raw[1])
	if !ok {
		return CodeInvalidToken, "the payload is not a JSON object"
	}
	resp.Claims = claimsStruct
	exp, expErr := unixClaim(claims, "exp")
	if expErr == "" {
		resp.ExpiresAt = &timestamppb.Timestamp{Seconds: exp}
	}

	// Header.
	switch alg, ok := stringClaim(header, "alg"); {
	case !ok:
		return CodeInvalidHeader, `the header has no alg (want "HS256")`
	case alg == "HS256":
	case strings.EqualFold(alg, "none"):
		return CodeInvalidHeader, `the header's alg is "none": the token is unsigned (want "HS256")`
	default:
		return CodeInvalidHeader, fmt.Sprintf(`the header's alg is %q, want "HS256"`, clip(alg))
	}
	if typ, ok := stringClaim(header, "typ"); !ok || typ != "JWT" {
		return CodeInvalidHeader, `the header's typ must be "JWT"`
	}
	if cty, ok := stringClaim(header, "cty"); !ok || cty != twilioContentType {
		return CodeInvalidHeader, `the header's cty must be "` + twilioContentType + `"`
	}
	if _, has := header["twr"]; has {
		if twr, ok := stringClaim(header, "twr"); !ok || !ValidRegion(twr) {
			return CodeInvalidHeader, "the header's twr must be a Twilio region such as us1, ie1 or au1"
		}
	}

	// Issuer and subject.
	iss, ok := stringClaim(claims, "iss")
	if !ok || !ValidSID(iss, "SK") {
		return CodeInvalidIssuer, reasonIssuerFormat
	}
	resp.ApiKeySid = iss
	sub, ok := stringClaim(claims, "sub")
	if !ok || !ValidSID(sub, "AC") {
		return CodeInvalidIssuer, reasonSubjectFormat
	}
	refs := s.cfg.Keys.FindKey(iss)
	if len(refs) == 0 {
		return CodeInvalidIssuer, "tokend holds no API key " + iss
	}
	var candidates []keystore.KeyRef
	for _, r := range refs {
		if r.Key.AccountSID() == sub {
			candidates = append(candidates, r)
		}
	}
	if len(candidates) == 0 {
		describeKey(resp, refs[0])
		return CodeInvalidIssuer, "sub " + sub + " is not the account that owns API key " + iss
	}

	// Signature.
	signingInput := []byte(tok[:len(parts[0])+1+len(parts[1])])
	var signer *keystore.KeyRef
	for i := range candidates {
		if candidates[i].Key.Verify(signingInput, raw[2]) {
			signer = &candidates[i]
			break
		}
	}
	if signer == nil {
		describeKey(resp, candidates[0])
		return CodeInvalidSignature, "the signature does not match the secret of API key " + iss
	}
	describeKey(resp, *signer)

	// Times.
	if expErr != "" {
		return CodeExpired, expErr
	}
	now := s.cfg.Now().Unix()
	start, startName := now, "now"
	if _, has := claims["iat"]; has {
		iat, err := unixClaim(claims, "iat")
		if err != "" {
			return CodeInvalidToken, err
		}
		start, startName = iat, "iat"
	}
	if exp-start > mint.MaxTTLSeconds {
		return CodeLifetimeTooLong, fmt.Sprintf("exp is %d s after %s; the longest lifetime Twilio accepts is %d s", exp-start, startName, mint.MaxTTLSeconds)
	}
	if now > exp {
		return CodeExpired, fmt.Sprintf("the token expired %d s ago", now-exp)
	}
	if _, has := claims["nbf"]; has {
		nbf, err := unixClaim(claims, "nbf")
		if err != "" {
			return CodeNotYetValid, err
		}
		if now < nbf {
			return CodeNotYetValid, fmt.Sprintf("the token is not valid for another %d s (nbf)", nbf-now)
		}
	}

	// Grants.
	if code, reason := checkTokenGrants(claims["grants"], signer.App.SID, rc); code != 0 {
		return code, reason
	}

	// jti.
	if jti, ok := stringClaim(claims, "jti"); !ok || !strings.HasPrefix(jti, iss+"-") {
		return CodeInvalidToken, "jti must be a string starting with " + iss + "-"
	}
	return 0, ""
}

// describeKey fills what resp says about the key that was found.
func describeKey(resp *tokenv1.VerifyResponse, r keystore.KeyRef) {
	resp.ApplicationSid = r.App.SID
	resp.KeyState = "retired"
	if r.Active {
		resp.KeyState = "active"
	}
}

// decodeObject decodes a JSON object: its members raw, and as a Struct for
// the response.
func decodeObject(b []byte) (map[string]json.RawMessage, *structpb.Struct, bool) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil || members == nil {
		return nil, nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, false
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil, nil, false
	}
	return members, st, true
}

// stringClaim returns the member name if it is a JSON string.
func stringClaim(obj map[string]json.RawMessage, name string) (string, bool) {
	b, has := obj[name]
	if !has || len(b) == 0 || b[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}

// unixClaim returns the member name as whole unix seconds, or a reason it
// is missing or not a time. Fractions are truncated.
func unixClaim(obj map[string]json.RawMessage, name string) (int64, string) {
	b, has := obj[name]
	if !has {
		return 0, name + " is missing"
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || !(b[0] == '-' || '0' <= b[0] && b[0] <= '9') {
		return 0, name + " must be a number of unix seconds"
	}
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		if n < 0 || n > maxUnixSeconds {
			return 0, name + " is out of range"
		}
		return n, ""
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxUnixSeconds {
		return 0, name + " must be a number of unix seconds"
	}
	return int64(f), ""
}

// grantsDesc describes what grants may hold besides identity.
var grantsDesc = (&tokenv1.Grants{}).ProtoReflect().Descriptor()

// checkTokenGrants checks the grants claim: an object with a valid
// identity and known grants, each valid. Once they decode, their reach
// (signed by app) goes to rc.
func checkTokenGrants(raw json.RawMessage, app string, rc *policy.Reach) (int, string) {
	if raw == nil {
		return CodeInvalidGrants, "grants is missing"
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return CodeInvalidGrants, "grants must be an object"
	}
	if _, has := members["identity"]; !has {
		return CodeInvalidGrants, "grants.identity is missing"
	}
	identity, ok := stringClaim(members, "identity")
	if !ok {
		return CodeInvalidGrants, "grants.identity must be a string"
	}
	delete(members, "identity")
	if reason := checkProtoNames("grants", members, grantsDesc); reason != "" {
		return CodeInvalidGrants, reason
	}
	rest, err := json.Marshal(members)
	if err != nil {
		return CodeInvalidGrants, "grants must be an object"
	}
	g := &tokenv1.Grants{}
	if err := protojson.Unmarshal(rest, g); err != nil {
		return CodeInvalidGrants, "grants do not decode: " + clip(err.Error())
	}
	*rc = policy.ReachOf(app, identity, g)
	var v Violations
	v.CheckIdentity(identity, g)
	v.CheckGrants("grants", g)
	if len(v) > 0 {
		var b strings.Builder
		for i, f := range v {
			if i > 0 {
				b.WriteString("; ")
			}
			if f.Field == "identity" {
				b.WriteString("grants.")
			}
			b.WriteString(f.Field)
			b.WriteString(" ")
			b.WriteString(f.Description)
		}
		return CodeInvalidGrants, b.String()
	}
	return 0, ""
}

// checkProtoNames reports a member of obj (at path) that is not a field
// of md by its proto name, recursing into message fields, so that only
// the names Twilio reads pass (protojson would also take lowerCamelCase
// names). Maps and google.protobuf.Struct are not checked; what does not
// decode as an object is left to protojson.
func checkProtoNames(path string, obj map[string]json.RawMessage, md protoreflect.MessageDescriptor) string {
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		val := obj[name]
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil || fd.TextName() != name {
			return fmt.Sprintf("%s has an unknown key %q", path, clip(name))
		}
		if fd.Kind() != protoreflect.MessageKind || fd.IsMap() || fd.IsList() ||
			fd.Message().FullName() == "google.protobuf.Struct" {
			continue
		}
		var sub map[string]json.RawMessage
		if json.Unmarshal(val, &sub) != nil || sub == nil {
			continue
		}
		if reason := checkProtoNames(path+"."+name, sub, fd.Message()); reason != "" {
			return reason
		}
	}
	return ""
}

// clip shortens text taken from a token for a reason.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if s[i]&0xC0 != 0x80 {
			return s[:i] + "…"
		}
	}
	return s[:max] + "…"
}
