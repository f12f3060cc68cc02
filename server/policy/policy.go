// Package policy decides which callers may mint which tokens.
//
// A policy is a YAML file of rules, tried in order; the first rule whose
// selectors match the caller and that permits the request allows it.
// Nothing else is allowed (default deny):
//
//	rules:
//	  - name: backend-voice
//	    principals: ["spiffe://example.org/backend", "credential:billing"]
//	    groups: ["voice-agents"]
//	    applications: ["AP0123456789abcdef0123456789abcdef", "*"]
//	    identities: {self: true}   # or {list: [alice, bob]} or {pattern: "^agent_[0-9]+$"}
//	    grants:
//	      voice: {incoming: false, outgoing: true}
//	      video: {rooms: "^support-.*$"}
//	      chat: true
//	      data_sync: true
//	      task_router: true
//	      player: false
//	    max_ttl_seconds: 3600
//	  - name: browsers
//	    kinds: ["oidc", "proxy"]
//	    applications: ["*"]
//	    identities: {self: true}
//	    grants: {video: true}
//
// Selectors (at least one per rule; a caller matching any of them is
// selected):
//
//   - principals: a bare entry is the exact name of an mTLS caller (its
//     certificate identity, such as a SPIFFE ID); "kind:name" names a caller
//     of another kind ("credential:billing", "oidc:alice@example.org",
//     "proxy:alice"), and "mtls:name" is the same as the bare form.
//   - groups: the caller is in any of these groups.
//   - kinds: the caller authenticated this way (anonymous, mtls, credential,
//     oidc, proxy). A rule of kinds [anonymous] is an anonymous rule, with
//     its own constraints (a fixed or generated identity, a required
//     rate_limit; see anonymous.go).
//
// What a selected rule permits:
//
//   - applications (required): TwiML application SIDs, or "*" for any.
//   - identities (required): self (the caller's own identity), list (exact
//     identities), pattern (a Go regexp, anchored implicitly); any of those
//     that is set may match.
//   - grants: what may be requested; an absent grant is not allowed. voice
//     is true, false or {incoming, outgoing} (a voice grant with neither
//     incoming nor outgoing only needs the key); video is true (any room) or
//     {rooms: pattern} where a token for any room (empty room) needs the
//     pattern ".*"; chat, data_sync, task_router and player are true or false.
//   - max_ttl_seconds: 1 to 86400; default 3600.
//
// A browser caller may only ever mint for its own identity, whatever the
// rules say. Patterns use Go's RE2 syntax, so matching is linear in time.
package policy

import (
	"fmt"
	"regexp"
	"strings"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/ratelimit"
)

// Caller kinds, as the authentication layer names them.
const (
	KindAnonymous  = "anonymous"
	KindMTLS       = "mtls"
	KindCredential = "credential"
	KindOIDC       = "oidc"
	KindProxy      = "proxy"
)

// Built-in rule names used in decisions that no policy rule made. They are
// reserved: no policy rule may use them.
const (
	// RuleDefaultDeny decides every request no rule allows.
	RuleDefaultDeny = "default-deny"
	// RuleBrowserIdentity denies a browser caller a token for an identity
	// other than its own.
	RuleBrowserIdentity = "browser-own-identity"
)

// Defaults and limits.
const (
	// DefaultMaxTTLSeconds is a rule's max_ttl_seconds when it has none.
	DefaultMaxTTLSeconds = 3600
	// MaxTTLSeconds is the largest max_ttl_seconds (Twilio's limit).
	MaxTTLSeconds = 86400
	// MaxPolicyBytes is the largest policy file accepted.
	MaxPolicyBytes = 1 << 20
	// maxPatternLen bounds a pattern's source.
	maxPatternLen = 1024
)

var knownKinds = []string{KindAnonymous, KindMTLS, KindCredential, KindOIDC, KindProxy}

// Caller is who asks for a token, as the authentication layer established.
type Caller struct {
	// Kind is how the caller authenticated: one of the Kind constants.
	Kind string
	// Name is the caller's principal name: certificate identity for mtls,
	// credential name, OIDC subject, proxy user; empty for anonymous.
	Name string
	// Identity is the caller's own client identity, for browser callers
	// (and any caller that has one); empty when it has none.
	Identity string
	// Groups the caller belongs to.
	Groups []string
	// Browser marks a caller in a browser session. It may only mint for
	// its own Identity.
	Browser bool
}

// String names the caller as kind:name, the kind alone when there is no
// name, or the name alone when there is no kind.
func (c Caller) String() string {
	switch {
	case c.Kind == "" && c.Name == "":
		return "unknown caller"
	case c.Name == "":
		return c.Kind
	case c.Kind == "":
		return c.Name
	}
	return c.Kind + ":" + c.Name
}

// Decision is the outcome of deciding one request.
type Decision struct {
	// Allowed is whether the caller may mint the token.
	Allowed bool
	// Rule is the rule that allowed it, or RuleDefaultDeny or
	// RuleBrowserIdentity when it is denied.
	Rule string
	// Reason says, when denied, which check failed, naming the rule that
	// came closest to allowing the request. Empty when allowed.
	Reason string
	// MaxTTLSeconds is the allowing rule's max_ttl_seconds: the lifetime
	// of a request that named none is capped to it.
	MaxTTLSeconds int64
	// Identity, when not empty, is the identity the token must carry: an
	// anonymous rule's fixed or generated identity (see anonymous.go).
	Identity string
	// RateLimit, when not nil, is the allowing anonymous rule's token
	// bucket, to be taken from per client address before signing.
	RateLimit *ratelimit.Limiter
}

// Policy is a parsed, validated policy. It is immutable and safe for
// concurrent use.
type Policy struct {
	// Source names where the policy came from (the file name).
	Source string
	// Digest is the SHA-256 of the policy's bytes, in hex, to tell
	// versions apart (in logs and metrics).
	Digest string
	// Rules in the order they are tried.
	Rules []*Rule

	// anonymous is set when a rule selects anonymous callers.
	anonymous bool
}

// Rule is one validated policy rule.
type Rule struct {
	// Name is the rule's unique name.
	Name string
	// Line is where the rule starts in the policy file.
	Line int
	// MaxTTLSeconds is the longest token lifetime the rule allows.
	MaxTTLSeconds int64
	// RateLimit is an anonymous rule's rate limit per client address
	// (zero for other rules).
	RateLimit RateLimit
	limiter   *ratelimit.Limiter

	principals   []principal
	groups       map[string]bool
	kinds        map[string]bool
	anyApp       bool
	applications []string
	identities   identityRule
	grants       grantRule
}

type principal struct {
	kind string // never empty: a bare name is stored as mtls
	name string
}

type identityRule struct {
	self    bool
	list    map[string]bool
	pattern *regexp.Regexp
	source  string // the pattern as written
	// Anonymous rules only: the one identity, or the prefix of generated
	// ones.
	fixed, generate string
}

type grantRule struct {
	voice, voiceIncoming, voiceOutgoing bool
	video, anyRoom                      bool
	rooms                               *regexp.Regexp // nil when anyRoom
	roomsSource                         string
	chat, dataSync, taskRouter, player  bool
}

// Decide decides whether c may mint a token for identity, signed by the
// application applicationSID, carrying effectiveGrants (the grants that
// will be signed: the request's, or the application's defaults; when nil,
// req's grants are used) and living ttl seconds; ttl 0 means the request
// named no lifetime, which any rule permits (capped to its MaxTTLSeconds).
//
// The first rule that selects c and permits the application, identity,
// every requested grant and ttl allows the request. Otherwise the request
// is denied by RuleDefaultDeny and Reason names the failing check of the
// selecting rule that got furthest. A browser caller asking for another
// identity than its own is always denied (RuleBrowserIdentity). A nil
// Policy denies everything.
func (p *Policy) Decide(c Caller, req *tokenv1.MintRequest, effectiveGrants *tokenv1.Grants, identity, applicationSID string, ttl int64) Decision {
	g := effectiveGrants
	if g == nil {
		g = req.GetGrants()
	}
	if c.Browser && (c.Identity == "" || identity != c.Identity) {
		return Decision{Rule: RuleBrowserIdentity, Reason: "browser callers may only mint for their own identity: " + notOwn(identity, c.Identity)}
	}
	if p == nil {
		return Decision{Rule: RuleDefaultDeny, Reason: "no policy is loaded"}
	}
	bestStage, best, selected := -1, "", false
	requested := req != nil && req.Identity != nil
	for _, r := range p.Rules {
		if !r.selects(c) {
			continue
		}
		selected = true
		if r.Anonymous() && c.Kind == KindAnonymous {
			stage, reason, id := r.permitsAnonymous(g, identity, requested, applicationSID, ttl)
			if reason == "" {
				return Decision{Allowed: true, Rule: r.Name, MaxTTLSeconds: r.MaxTTLSeconds, Identity: id, RateLimit: r.limiter}
			}
			if stage > bestStage {
				bestStage, best = stage, "rule "+r.Name+": "+reason
			}
			continue
		}
		stage, reason := r.permits(c, g, identity, applicationSID, ttl)
		if reason == "" {
			return Decision{Allowed: true, Rule: r.Name, MaxTTLSeconds: r.MaxTTLSeconds}
		}
		if stage > bestStage {
			bestStage, best = stage, "rule "+r.Name+": "+reason
		}
	}
	if !selected {
		return Decision{Rule: RuleDefaultDeny, Reason: "no rule selects caller " + c.String()}
	}
	return Decision{Rule: RuleDefaultDeny, Reason: best}
}

func notOwn(identity, own string) string {
	if own == "" {
		return "identity " + identity + " is not the caller's own identity (the caller has none)"
	}
	return "identity " + identity + " is not the caller's own identity " + own
}

// selects reports whether any of the rule's selectors matches c.
func (r *Rule) selects(c Caller) bool {
	if r.kinds[c.Kind] {
		return true
	}
	for _, p := range r.principals {
		if p.kind == c.Kind && p.name == c.Name && c.Name != "" {
			return true
		}
	}
	if len(r.groups) > 0 {
		for _, g := range c.Groups {
			if r.groups[g] {
				return true
			}
		}
	}
	return false
}

// permits checks the request against the rule in a fixed order and
// returns how many checks passed and, if one failed, why.
func (r *Rule) permits(c Caller, g *tokenv1.Grants, identity, app string, ttl int64) (int, string) {
	if !r.permitsApp(app) {
		if app == "" {
			return 0, "no application given"
		}
		return 0, "application " + app + " is not allowed"
	}
	if why := r.identities.check(c, identity); why != "" {
		return 1, why
	}
	if why := r.grants.check(g); why != "" {
		return 2, why
	}
	if why := r.checkTTL(ttl); why != "" {
		return 3, why
	}
	return 4, ""
}

// checkTTL checks a requested lifetime (0: none named) against the rule.
func (r *Rule) checkTTL(ttl int64) string {
	if ttl < 0 {
		return fmt.Sprintf("ttl %d is not positive", ttl)
	}
	if ttl > r.MaxTTLSeconds {
		return fmt.Sprintf("ttl %d exceeds max_ttl_seconds %d", ttl, r.MaxTTLSeconds)
	}
	return ""
}

// permitsAnonymous is permits for an anonymous rule: the identity is the
// rule's (fixed or generated), never the caller's choice. It also returns
// that identity.
func (r *Rule) permitsAnonymous(g *tokenv1.Grants, identity string, requested bool, app string, ttl int64) (int, string, string) {
	if !r.permitsApp(app) {
		if app == "" {
			return 0, "no application given", ""
		}
		return 0, "application " + app + " is not allowed", ""
	}
	if identity == "" {
		return 1, "no identity given", ""
	}
	id, why := r.identities.anonymousIdentity(identity, requested)
	if why != "" {
		return 1, why, ""
	}
	if why := r.grants.check(g); why != "" {
		return 2, why, ""
	}
	if why := r.checkTTL(ttl); why != "" {
		return 3, why, ""
	}
	return 4, "", id
}

func (r *Rule) permitsApp(app string) bool {
	if app == "" {
		return false
	}
	if r.anyApp {
		return true
	}
	for _, a := range r.applications {
		if strings.EqualFold(a, app) {
			return true
		}
	}
	return false
}

func (ir *identityRule) check(c Caller, identity string) string {
	if identity == "" {
		return "no identity given"
	}
	if ir.self && c.Identity != "" && identity == c.Identity {
		return ""
	}
	if ir.list[identity] {
		return ""
	}
	if ir.pattern != nil && ir.pattern.MatchString(identity) {
		return ""
	}
	var parts []string
	if ir.self {
		parts = append(parts, notOwn(identity, c.Identity))
	}
	if ir.list != nil {
		parts = append(parts, "identity "+identity+" is not listed")
	}
	if ir.pattern != nil {
		parts = append(parts, "identity "+identity+" does not match "+ir.source)
	}
	return strings.Join(parts, "; ")
}

func (gr *grantRule) check(g *tokenv1.Grants) string {
	if v := g.GetVoice(); v != nil {
		if !gr.voice {
			return "grant voice is not allowed"
		}
		if v.GetIncoming().GetAllow() && !gr.voiceIncoming {
			return "grant voice.incoming is not allowed"
		}
		if o := v.GetOutgoing(); o != nil && (o.GetApplicationSid() != "" || len(o.GetParams()) > 0) && !gr.voiceOutgoing {
			return "grant voice.outgoing is not allowed"
		}
	}
	if v := g.GetVideo(); v != nil {
		if !gr.video {
			return "grant video is not allowed"
		}
		if !gr.anyRoom {
			room := v.GetRoom()
			if room == "" {
				return `grant video for any room (no room) is not allowed: it needs rooms ".*"`
			}
			if !gr.rooms.MatchString(room) {
				return "video room " + room + " does not match " + gr.roomsSource
			}
		}
	}
	if g.GetChat() != nil && !gr.chat {
		return "grant chat is not allowed"
	}
	if g.GetDataSync() != nil && !gr.dataSync {
		return "grant data_sync is not allowed"
	}
	if g.GetTaskRouter() != nil && !gr.taskRouter {
		return "grant task_router is not allowed"
	}
	if g.GetPlayer() != nil && !gr.player {
		return "grant player is not allowed"
	}
	return ""
}
