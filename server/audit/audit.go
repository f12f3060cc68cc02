// Package audit writes the audit log: one JSON object per line for every
// mint, verification and admin action, saying who asked for what and what
// was decided.
//
// A record never holds a token or a secret: Record has no field for one,
// and a test pins its JSON keys.
//
// # Writing
//
// Logger (writer.go) queues records for one goroutine that writes them in
// batches; see its doc for what it guarantees, the optional fail-closed
// mode (Commit) and rotation (file.go).
package audit

import (
	"strings"
	"time"
	"unicode/utf8"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
)

// Events.
const (
	EventMint   = "mint"
	EventAdmin  = "admin"
	EventVerify = "verify"
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
	// Event is EventMint, EventVerify or EventAdmin.
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
// and empty ones left out: what encoding/json makes of Record's tags,
// without reflection (the audit writer shares the CPU with minting).
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
			b = mint.AppendString(b, v)
		}
	}
	tm := func(name string, t time.Time) {
		if !t.IsZero() {
			key(name)
			b = append(b, '"')
			b = t.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		}
	}
	tm("time", r.Time)
	str("event", r.Event)
	str("principal", r.Principal)
	str("principal_kind", r.PrincipalKind)
	str("identity", r.Identity)
	str("application_sid", r.ApplicationSID)
	str("grants", r.Grants)
	str("jti", r.JTI)
	tm("exp", r.Exp)
	str("decision", r.Decision)
	str("rule", r.Rule)
	str("reason", r.Reason)
	str("action", r.Action)
	str("client_addr", r.ClientAddr)
	str("request_id", r.RequestID)
	str("code", r.Code)
	return append(b, '}', '\n')
}

// clean bounds the record's strings and puts its times in UTC.
func clean(r Record) Record {
	r.Time = r.Time.UTC()
	if !r.Exp.IsZero() {
		r.Exp = r.Exp.UTC()
	}
	for _, s := range []*string{&r.Event, &r.Principal, &r.PrincipalKind, &r.Identity, &r.ApplicationSID, &r.Grants, &r.JTI, &r.Decision, &r.Rule, &r.Reason, &r.Action, &r.ClientAddr, &r.RequestID, &r.Code} {
		*s = clip(*s)
	}
	return r
}

// clip makes s valid UTF-8 of at most maxFieldLen bytes.
func clip(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= maxFieldLen {
		return s
	}
	cut := maxFieldLen - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// GrantsSummary names the grants g carries, in a fixed order, such as
// "voice:incoming+outgoing,video,chat": voice lists incoming and outgoing
// when the token carries them. Empty for no grants.
func GrantsSummary(g *tokenv1.Grants) string {
	if g == nil {
		return ""
	}
	var parts []string
	if v := g.GetVoice(); v != nil {
		var sub []string
		if v.GetIncoming().GetAllow() {
			sub = append(sub, "incoming")
		}
		if v.GetOutgoing().GetApplicationSid() != "" {
			sub = append(sub, "outgoing")
		}
		if len(sub) > 0 {
			parts = append(parts, "voice:"+strings.Join(sub, "+"))
		} else {
			parts = append(parts, "voice")
		}
	}
	if g.GetVideo() != nil {
		parts = append(parts, "video")
	}
	if g.GetChat() != nil {
		parts = append(parts, "chat")
	}
	if g.GetDataSync() != nil {
		parts = append(parts, "data_sync")
	}
	if g.GetTaskRouter() != nil {
		parts = append(parts, "task_router")
	}
	if g.GetPlayer() != nil {
		parts = append(parts, "player")
	}
	return strings.Join(parts, ",")
}
