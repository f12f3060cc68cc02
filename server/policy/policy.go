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
//	      voice:
//	        incoming: false
//	        outgoing: {applications: [self, "AP1111111111111111111111111111111a"], params: [to]}
//	        push_credentials: "*"
//	      video: {rooms: "^support-.*$"}
//	      chat: {services: ["IS0123456789abcdef0123456789abcdef"]}
//	      data_sync: true
//	      task_router: {workspaces: ["WS0123456789abcdef0123456789abcdef"], roles: [worker]}
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
//   - grants: what the token may reach (see Reach); an absent grant is not
//     allowed. voice is true, false or {incoming, outgoing,
//     push_credentials} (a voice grant with neither incoming nor outgoing
//     only needs the key). outgoing is true, false or {applications,
//     params}: the application outgoing calls run through must be the
//     signing application ("self") unless applications lists others or is
//     "*"; params lists the keys voice.outgoing.params may have (absent or
//     []: none; "*": any). video is true (any room) or {rooms: pattern}
//     where a token for any room (empty room) needs the pattern ".*". chat
//     is true, false or {services, push_credentials, deployment_roles};
//     data_sync true, false or {services}; task_router true, false or
//     {workspaces, workers, roles}; each a list of SIDs (names for roles)
//     or "*", any when left out; a listed service, workspace, worker or
//     role must be given. push_credentials (voice and chat) and
//     deployment_roles may always be left out of a token. player is true
//     or false.
//   - max_ttl_seconds: 1 to 86400; default 3600.
//
// A browser caller may only ever mint for its own identity, whatever the
// rules say. Patterns use Go's RE2 syntax, so matching is linear in time.
// Listed identities, patterns, params keys and roles may not hold a
// Unicode format character (category Cf; a pattern may name one as an
// escape such as \x{202e}): tokend refuses them in tokens, and they would
// make a rule read as something else.
package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

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
	// bucket, to be taken from per client address before signing. When an
	// anonymous caller is denied it is the bucket of the anonymous rule
	// named in Reason (the one that came closest), which an explanation
	// (validate_only) is charged to whether allowed or not.
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
	fast    *classRun // decides as pattern when the pattern is a class run
	source  string    // the pattern as written
	// Anonymous rules only: the one identity, or the prefix of generated
	// ones.
	fixed, generate string
}

type grantRule struct {
	voice, voiceIncoming, voiceOutgoing bool
	// outgoingApps: the applications outgoing calls may run through, besides
	// the signing application when outgoingSelf.
	outgoingSelf                      bool
	outgoingApps                      scope
	params                            scope // keys of voice.outgoing.params
	voicePush                         scope
	video, anyRoom                    bool
	rooms                             *regexp.Regexp // nil when anyRoom
	roomsSource                       string
	chat                              bool
	chatServices, chatPush, chatRoles scope
	dataSync                          bool
	syncServices                      scope
	taskRouter                        bool
	workspaces, workers, roles        scope
	player                            bool
}

// scope is the values a rule allows for one SID or name a grant carries:
// any, or those listed (none when the list is empty).
type scope struct {
	any  bool
	list []string
	fold bool // SIDs: compared without regard to case, as applications are
}

// anyScope allows every value.
var anyScope = scope{any: true}

func (s scope) allows(v string) bool {
	if s.any {
		return true
	}
	for _, a := range s.list {
		if a == v || s.fold && strings.EqualFold(a, v) {
			return true
		}
	}
	return false
}

// describe names what the scope allows, for a denial reason.
func (s scope) describe() string {
	if len(s.list) == 0 {
		return "none"
	}
	return strings.Join(s.list, ", ")
}

// Decide decides whether c may mint a token whose reach is r (see
// ReachOf: the grants that will be signed, the signing application and
// the identity) living ttl seconds; ttl 0 means the request named no
// lifetime, which any rule permits (capped to its MaxTTLSeconds).
//
// The first rule that selects c and permits the application, identity,
// everything the grants reach and ttl allows the request. Otherwise the
// request is denied by RuleDefaultDeny and Reason names the failing check
// of the selecting rule that got furthest. A browser caller asking for
// another identity than its own is always denied (RuleBrowserIdentity). A
// nil Policy denies everything.
//
// An anonymous rule deciding an anonymous caller checks everything but
// the identity the same way; it gives the token its own fixed or
// generated identity (Decision.Identity, which the caller must put in
// place of r.Identity in the token and the audit record) and denies a
// request that named another (r.IdentityRequested). See anonymous.go.
func (p *Policy) Decide(c Caller, r *Reach, ttl int64) Decision {
	if r == nil {
		r = &Reach{} // reaches nothing: no application, no identity
	}
	identity := r.Identity
	if c.Browser && (c.Identity == "" || identity != c.Identity) {
		return Decision{Rule: RuleBrowserIdentity, Reason: "browser callers may only mint for their own identity: " + notOwn(identity, c.Identity)}
	}
	if p == nil {
		return Decision{Rule: RuleDefaultDeny, Reason: "no policy is loaded"}
	}
	bestStage, best, selected := -1, "", false
	var bestLimit *ratelimit.Limiter // the anonymous bucket of the best rule
	for _, rule := range p.Rules {
		if !rule.selects(c) {
			continue
		}
		selected = true
		if rule.Anonymous() && c.Kind == KindAnonymous {
			stage, reason, id := rule.permitsAnonymous(r, ttl)
			if reason == "" {
				return Decision{Allowed: true, Rule: rule.Name, MaxTTLSeconds: rule.MaxTTLSeconds, Identity: id, RateLimit: rule.limiter}
			}
			if stage > bestStage {
				bestStage, best, bestLimit = stage, "rule "+rule.Name+": "+reason, rule.limiter
			}
			continue
		}
		stage, reason := rule.permits(c, r, ttl)
		if reason == "" {
			return Decision{Allowed: true, Rule: rule.Name, MaxTTLSeconds: rule.MaxTTLSeconds}
		}
		if stage > bestStage {
			bestStage, best, bestLimit = stage, "rule "+rule.Name+": "+reason, nil
		}
	}
	if !selected {
		return Decision{Rule: RuleDefaultDeny, Reason: "no rule selects caller " + c.String()}
	}
	return Decision{Rule: RuleDefaultDeny, Reason: best, RateLimit: bestLimit}
}

// MayMintFor reports whether some rule selects c and permits the
// application app: whether c may mint some token signed by app. Verify
// tells only such callers which application a key belongs to. A nil
// Policy allows nobody.
func (p *Policy) MayMintFor(c Caller, app string) bool {
	if p == nil {
		return false
	}
	for _, rule := range p.Rules {
		if rule.selects(c) && rule.permitsApp(app) {
			return true
		}
	}
	return false
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
func (r *Rule) permits(c Caller, rc *Reach, ttl int64) (int, string) {
	app := rc.Application
	if !r.permitsApp(app) {
		if app == "" {
			return 0, "no application given"
		}
		return 0, "application " + app + " is not allowed"
	}
	if why := r.identities.check(c, rc.Identity); why != "" {
		return 1, why
	}
	if why := r.grants.check(rc); why != "" {
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
// rule's (fixed or generated), never the caller's choice (rc.Identity is
// only checked when rc.IdentityRequested); everything the grants reach is
// checked as for any rule. It also returns that identity.
func (r *Rule) permitsAnonymous(rc *Reach, ttl int64) (int, string, string) {
	app, identity := rc.Application, rc.Identity
	if !r.permitsApp(app) {
		if app == "" {
			return 0, "no application given", ""
		}
		return 0, "application " + app + " is not allowed", ""
	}
	if identity == "" {
		return 1, "no identity given", ""
	}
	id, why := r.identities.anonymousIdentity(identity, rc.IdentityRequested)
	if why != "" {
		return 1, why, ""
	}
	if why := r.grants.check(rc); why != "" {
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
	if ir.fast != nil {
		if ir.fast.match(identity) {
			return ""
		}
	} else if ir.pattern != nil && ir.pattern.MatchString(identity) {
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

// check returns why the rule does not allow everything rc reaches, or "".
func (gr *grantRule) check(rc *Reach) string {
	if rc.Voice {
		if !gr.voice {
			return "grant voice is not allowed"
		}
		if rc.Incoming && !gr.voiceIncoming {
			return "grant voice.incoming is not allowed"
		}
		if out := rc.OutgoingApplication; out != "" || len(rc.OutgoingParams) > 0 {
			if !gr.voiceOutgoing {
				return "grant voice.outgoing is not allowed"
			}
			self := out != "" && strings.EqualFold(out, rc.Application)
			if !(self && gr.outgoingSelf) && !gr.outgoingApps.allows(out) {
				return "voice.outgoing.application_sid " + out + " is not allowed: outgoing calls may run through " + gr.describeOutgoing(rc.Application)
			}
			if !gr.params.any {
				for k := range rc.OutgoingParams {
					if !gr.params.allows(k) {
						return "voice.outgoing.params key " + strconv.Quote(k) + " is not allowed (allowed keys: " + gr.params.describe() + ")"
					}
				}
			}
		}
		if p := rc.PushCredential; p != "" && !gr.voicePush.allows(p) {
			return "voice.push_credential_sid " + p + " is not allowed (allowed: " + gr.voicePush.describe() + ")"
		}
	}
	if rc.Video {
		if !gr.video {
			return "grant video is not allowed"
		}
		if !gr.anyRoom {
			if rc.Room == "" {
				return `grant video for any room (no room) is not allowed: it needs rooms ".*"`
			}
			if !gr.rooms.MatchString(rc.Room) {
				return "video room " + rc.Room + " does not match " + gr.roomsSource
			}
		}
	}
	if rc.Chat {
		if !gr.chat {
			return "grant chat is not allowed"
		}
		if why := required("chat.service_sid", rc.ChatService, gr.chatServices); why != "" {
			return why
		}
		if why := optional("chat.push_credential_sid", rc.ChatPushCredential, gr.chatPush); why != "" {
			return why
		}
		if why := optional("chat.deployment_role_sid", rc.ChatDeploymentRole, gr.chatRoles); why != "" {
			return why
		}
	}
	if rc.Sync {
		if !gr.dataSync {
			return "grant data_sync is not allowed"
		}
		if why := required("data_sync.service_sid", rc.SyncService, gr.syncServices); why != "" {
			return why
		}
	}
	if rc.TaskRouter {
		if !gr.taskRouter {
			return "grant task_router is not allowed"
		}
		if why := required("task_router.workspace_sid", rc.Workspace, gr.workspaces); why != "" {
			return why
		}
		if why := required("task_router.worker_sid", rc.Worker, gr.workers); why != "" {
			return why
		}
		if why := required("task_router.role", rc.Role, gr.roles); why != "" {
			return why
		}
	}
	if rc.Player && !gr.player {
		return "grant player is not allowed"
	}
	return ""
}

// describeOutgoing names the applications outgoing calls may run through.
func (gr *grantRule) describeOutgoing(signer string) string {
	var parts []string
	if gr.outgoingSelf {
		parts = append(parts, "the signing application "+signer)
	}
	if len(gr.outgoingApps.list) > 0 {
		parts = append(parts, gr.outgoingApps.list...)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// required checks a value a restricting rule needs the grant to name.
func required(field, v string, s scope) string {
	if s.any {
		return ""
	}
	if v == "" {
		return field + " is required by this rule, which allows only: " + s.describe()
	}
	if !s.allows(v) {
		return field + " " + v + " is not allowed (allowed: " + s.describe() + ")"
	}
	return ""
}

// optional checks a value a grant may leave out.
func optional(field, v string, s scope) string {
	if v == "" || s.allows(v) {
		return ""
	}
	return field + " " + v + " is not allowed (allowed: " + s.describe() + ")"
}
