// Package audit writes the audit log: one JSON object per line for every
// mint, verification and admin action, saying who asked for what and what
// was decided.
//
// A record never holds a token or a secret: Record has no field for one,
// and a test pins its JSON keys. A mint or explain record names what the
// token authorizes (its reach: the outgoing application, service SIDs,
// workspace, worker and role, room, push credentials), not only its
// grant kinds; those are plain strings copied from the request, so the
// record costs no more to build.
//
// # Writing
//
// Logger (writer.go) encodes each record in the caller's goroutine into
// the current batch, which one goroutine writes; see its doc for what it
// guarantees, the optional fail-closed mode (Commit) and rotation
// (file.go).
package audit

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
)

// Events.
const (
	EventMint   = "mint"
	EventAdmin  = "admin"
	EventVerify = "verify"
	// EventExplain is a mint request with validate_only: decided,
	// audited and rate limited like a mint, but nothing is signed.
	EventExplain = "explain"

	// EventAuthFailure is a request refused because its caller failed to
	// authenticate (Code Unauthenticated: no, bad or unknown credentials,
	// including a wrong admin token) or had failed too often from its
	// address (Code ResourceExhausted). Action names the call, Reason
	// the refusal as the caller saw it, ClientAddr and RequestID where it
	// came from; the credentials presented are never recorded.
	EventAuthFailure = "auth-failure"
	// EventDropped is written by the Logger itself after records were
	// dropped; Reason says how many.
	EventDropped = "audit-dropped"
)

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
)

// DefaultQueueSize is how many records may wait to be written.
const DefaultQueueSize = 4096

// maxFieldLen bounds each string field of a record, in bytes.
const maxFieldLen = 1024

// Record is one audit log line. Empty fields are left out.
type Record struct {
	// Time of the event; Log sets it to now when zero.
	Time time.Time `json:"time,omitzero"`
	// Event is EventMint, EventExplain, EventVerify, EventAdmin or EventAuthFailure.
	Event string `json:"event,omitempty"`
	// Principal is the caller's principal name; PrincipalKind how it
	// authenticated (anonymous, mtls, credential, oidc, proxy).
	Principal     string `json:"principal,omitempty"`
	PrincipalKind string `json:"principal_kind,omitempty"`
	// Identity is the token's identity.
	Identity string `json:"identity,omitempty"`
	// ApplicationSID is the TwiML application whose key signs the token.
	ApplicationSID string `json:"application_sid,omitempty"`
	// Grants summarizes the token's grants (see GrantsSummary).
	Grants string `json:"grants,omitempty"`
	// What the token authorizes besides its signer (see policy.Reach):
	// the TwiML application its outgoing calls run through and the keys
	// (never the values) of the params passed to it, comma-separated; the
	// voice push credential; the video room; the chat service, push
	// credential and deployment role; the Sync service; the TaskRouter
	// workspace, worker and role.
	OutgoingApplicationSID string `json:"outgoing_application_sid,omitempty"`
	OutgoingParams         string `json:"outgoing_params,omitempty"`
	PushCredentialSID      string `json:"push_credential_sid,omitempty"`
	Room                   string `json:"room,omitempty"`
	ChatServiceSID         string `json:"chat_service_sid,omitempty"`
	ChatPushCredentialSID  string `json:"chat_push_credential_sid,omitempty"`
	ChatDeploymentRoleSID  string `json:"chat_deployment_role_sid,omitempty"`
	SyncServiceSID         string `json:"sync_service_sid,omitempty"`
	WorkspaceSID           string `json:"workspace_sid,omitempty"`
	WorkerSID              string `json:"worker_sid,omitempty"`
	TaskRouterRole         string `json:"task_router_role,omitempty"`
	// JTI is the token's id (not a secret: the API key SID and a nonce).
	JTI string `json:"jti,omitempty"`
	// Exp is when the token expires.
	Exp time.Time `json:"exp,omitzero"`
	// Decision is Allow or Deny; Rule the policy rule that decided and
	// Reason why, when denied.
	Decision string `json:"decision,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Action is the admin action (for EventAdmin).
	Action string `json:"action,omitempty"`
	// ClientAddr is the caller's network address.
	ClientAddr string `json:"client_addr,omitempty"`
	// RequestID is the request's id (see package requestid).
	RequestID string `json:"request_id,omitempty"`
	// Code is the outcome as a gRPC code name ("OK", "PermissionDenied").
	Code string `json:"code,omitempty"`
}

// appendRecord writes r as one JSON line, fields in the order of Record
// and empty ones left out: what encoding/json makes of Record's tags, its
// strings clipped (clip), without reflection (the audit log shares the
// CPU with minting).
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, '{')
	n := 0
	key := func(name string) {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	str := func(name, v string) {
		if v != "" {
			key(name)
			b = appendField(b, v)
		}
	}
	tm := func(name string, t time.Time, c *mint.SecondText) {
		if !t.IsZero() {
			key(name)
			b = append(b, '"')
			b = appendTime(b, t, c)
			b = append(b, '"')
		}
	}
	tm("time", r.Time, &timeText)
	str("event", r.Event)
	str("principal", r.Principal)
	str("principal_kind", r.PrincipalKind)
	str("identity", r.Identity)
	str("application_sid", r.ApplicationSID)
	str("grants", r.Grants)
	str("outgoing_application_sid", r.OutgoingApplicationSID)
	str("outgoing_params", r.OutgoingParams)
	str("push_credential_sid", r.PushCredentialSID)
	str("room", r.Room)
	str("chat_service_sid", r.ChatServiceSID)
	str("chat_push_credential_sid", r.ChatPushCredentialSID)
	str("chat_deployment_role_sid", r.ChatDeploymentRoleSID)
	str("sync_service_sid", r.SyncServiceSID)
	str("workspace_sid", r.WorkspaceSID)
	str("worker_sid", r.WorkerSID)
	str("task_router_role", r.TaskRouterRole)
	str("jti", r.JTI)
	tm("exp", r.Exp, &expText)
	str("decision", r.Decision)
	str("rule", r.Rule)
	str("reason", r.Reason)
	str("action", r.Action)
	str("client_addr", r.ClientAddr)
	str("request_id", r.RequestID)
	str("code", r.Code)
	return append(b, '}', '\n')
}

// timeText and expText cache the seconds of the records' time and exp.
var timeText, expText mint.SecondText

// appendTime appends t as time.RFC3339Nano does, without interpreting the
// layout for every record: a UTC time of years 0 to 9999 (all the log
// holds; clean puts times in UTC) is written from c, the text of its
// second, and its fraction digit by digit.
func appendTime(b []byte, t time.Time, c *mint.SecondText) []byte {
	secs := t.Unix()
	if t.Location() != time.UTC || secs < mint.MinSecond || secs > mint.MaxSecond {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	b = c.Append(b, secs)
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n-- // RFC3339Nano drops trailing zeros
		}
		b = append(b, frac[:n]...)
	}
	return append(b, 'Z')
}

// appendField appends v, clipped (clip), as a JSON string. A field of
// printable ASCII with nothing to escape (most are: SIDs, names, codes)
// is copied after one pass over it, a word at a time (mint.PlainPrefix).
func appendField(b []byte, v string) []byte {
	if len(v) <= maxFieldLen && plain(v) {
		b = append(b, '"')
		b = append(b, v...)
		return append(b, '"')
	}
	return mint.AppendString(b, clip(v))
}

// plain reports whether s is printable ASCII without '"' or '\\': valid
// UTF-8 with no format character, written in JSON as it is.
func plain(s string) bool { return mint.PlainPrefix(s) == len(s) }

// clean puts the record's times in UTC (appendRecord clips its strings).
func clean(r *Record) {
	r.Time = r.Time.UTC()
	if !r.Exp.IsZero() {
		r.Exp = r.Exp.UTC()
	}
}

// clip makes s valid UTF-8 of at most maxFieldLen bytes, with any Unicode
// format character (category Cf) written as <U+XXXX>: tokend mints none,
// but a token given to Verify or a caller's name may hold one, and a
// right-to-left override or a zero-width character would make a record
// read as another.
func clip(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = showFormatChars(s)
	if len(s) <= maxFieldLen {
		return s
	}
	cut := maxFieldLen - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// showFormatChars returns s with each format character (category Cf)
// written as <U+XXXX>. It allocates only when there is one.
func showFormatChars(s string) string {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf {
		i++
	}
	if strings.IndexFunc(s[i:], isFormat) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if isFormat(r) {
			fmt.Fprintf(&b, "<%U>", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isFormat(r rune) bool { return unicode.Is(unicode.Cf, r) }

// GrantsSummary names the grants g carries, in a fixed order, such as
// "voice:incoming+outgoing,video,chat": voice lists incoming and outgoing
// when the token carries them. Empty for no grants. It does not allocate:
// the summaries are few (grantSummaries), built once.
func GrantsSummary(g *tokenv1.Grants) string {
	if g == nil {
		return ""
	}
	i := 0
	if v := g.GetVoice(); v != nil {
		i = voiceAny
		if v.GetIncoming().GetAllow() {
			i |= voiceIncoming
		}
		if v.GetOutgoing().GetApplicationSid() != "" {
			i |= voiceOutgoing
		}
	}
	for bit, set := range [...]bool{g.GetVideo() != nil, g.GetChat() != nil, g.GetDataSync() != nil, g.GetTaskRouter() != nil, g.GetPlayer() != nil} {
		if set {
			i |= 1 << (3 + bit)
		}
	}
	return grantSummaries[i]
}

// The bits indexing grantSummaries: voice (and its incoming, outgoing),
// then video, chat, data_sync, task_router and player from bit 3 up.
const (
	voiceAny      = 1 << 0
	voiceIncoming = 1 << 1
	voiceOutgoing = 1 << 2
)

// grantSummaries holds GrantsSummary's answer for every combination of
// grants.
var grantSummaries = func() (s [1 << 8]string) {
	others := [...]string{"video", "chat", "data_sync", "task_router", "player"}
	for i := range s {
		if i&voiceAny == 0 && i&(voiceIncoming|voiceOutgoing) != 0 {
			continue // never indexed
		}
		var parts []string
		if i&voiceAny != 0 {
			var sub []string
			if i&voiceIncoming != 0 {
				sub = append(sub, "incoming")
			}
			if i&voiceOutgoing != 0 {
				sub = append(sub, "outgoing")
			}
			if len(sub) > 0 {
				parts = append(parts, "voice:"+strings.Join(sub, "+"))
			} else {
				parts = append(parts, "voice")
			}
		}
		for bit, name := range others {
			if i&(1<<(3+bit)) != 0 {
				parts = append(parts, name)
			}
		}
		s[i] = strings.Join(parts, ",")
	}
	return s
}()
