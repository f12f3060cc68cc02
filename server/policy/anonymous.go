package policy

import (
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tokend/tokend/server/ratelimit"
)

// Anonymous rules
//
// A rule whose kinds are ["anonymous"] lets callers that present no
// credentials at all mint, as the public Twilio Function tokend replaces
// did. Because anyone who reaches tokend is such a caller, an anonymous
// rule must be explicit and tight:
//
//	- name: public-page
//	  kinds: ["anonymous"]            # and no other selector
//	  applications: ["AP…"]
//	  identities: {fixed: user}        # or {generate: "guest_"}
//	  grants: {voice: {outgoing: true}}
//	  rate_limit: {per_second: 0.2, burst: 5}   # required
//	  max_ttl_seconds: 3600
//
//   - it selects anonymous callers only (kinds: ["anonymous"], no
//     principals, groups or other kinds);
//   - the caller never chooses its identity: identities is {fixed: name}
//     (a request naming another identity is denied; naming none gets it)
//     or {generate: prefix} (each token gets prefix and 20 random hex
//     digits; a request naming any identity is denied);
//   - grants are checked like any rule's, over the token's whole reach
//     (see Reach): {voice: {outgoing: true}} lets outgoing calls run
//     through the signing application only, with no params, unless the
//     rule lists other applications or params;
//   - rate_limit is required: a token bucket of per_second (0.001 to
//     1000) and burst (1 to 1000) per client address (the TCP peer's IP:
//     behind a reverse proxy every caller shares the proxy's bucket). The
//     buckets start full when the policy is (re)loaded.
//
// tokend admits anonymous callers in policy mode only while the policy has
// such a rule, and logs a warning naming it at every load. An explanation
// (validate_only) by an anonymous caller is charged to its address in the
// bucket of the rule that allows it (or, denied, that came closest), as a
// mint is.

// Limits of anonymous rules.
const (
	maxFixedIdentity   = 121 // Twilio's voice identity limit
	maxGeneratePrefix  = 64
	generatedSuffixLen = 20 // hex digits: 80 random bits
	maxAnonRate        = 1000
	minAnonRate        = 0.001
	maxAnonBurst       = 1000
	// anonLimiterKeys bounds the client addresses an anonymous rule keeps
	// a bucket for.
	anonLimiterKeys = 100_000
)

var validAnonIdentity = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// RateLimit is an anonymous rule's token bucket, per client address.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// String is "0.2/s burst 5".
func (r RateLimit) String() string {
	return strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s burst " + strconv.Itoa(r.Burst)
}

// Anonymous reports whether the rule selects anonymous callers.
func (r *Rule) Anonymous() bool { return r.kinds[KindAnonymous] }

// AnonymousIdentity describes the identity an anonymous rule gives:
// "fixed user" or "generated guest_…".
func (r *Rule) AnonymousIdentity() string {
	if r.identities.fixed != "" {
		return "fixed " + r.identities.fixed
	}
	return "generated " + r.identities.generate + "…"
}

// AllowedGrants summarizes the grants the rule allows, for logs:
// "voice:outgoing", "voice:incoming+outgoing,video:support-.*", "none";
// outgoing calls that may run through other applications than the
// signing one, or carry params, are named:
// "voice:outgoing[applications=self,AP…;params=to]".
func (r *Rule) AllowedGrants() string {
	g := &r.grants
	var parts []string
	if g.voice {
		v := "voice"
		switch {
		case g.voiceIncoming && g.voiceOutgoing:
			v += ":incoming+outgoing"
		case g.voiceIncoming:
			v += ":incoming"
		case g.voiceOutgoing:
			v += ":outgoing"
		}
		if g.voiceOutgoing {
			v += g.outgoingSummary()
		}
		parts = append(parts, v)
	}
	if g.video {
		if g.anyRoom {
			parts = append(parts, "video")
		} else {
			parts = append(parts, "video:"+g.roomsSource)
		}
	}
	for _, b := range []struct {
		on   bool
		name string
	}{{g.chat, "chat"}, {g.dataSync, "data_sync"}, {g.taskRouter, "task_router"}, {g.player, "player"}} {
		if b.on {
			parts = append(parts, b.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// outgoingSummary names the applications and params outgoing calls may
// have, in brackets, or "" for the default (the signing application, no
// params).
func (g *grantRule) outgoingSummary() string {
	if g.outgoingSelf && !g.outgoingApps.any && len(g.outgoingApps.list) == 0 && !g.params.any && len(g.params.list) == 0 {
		return ""
	}
	var apps []string
	if g.outgoingSelf {
		apps = append(apps, selfApplication)
	}
	switch {
	case g.outgoingApps.any:
		apps = append(apps, "*")
	default:
		apps = append(apps, g.outgoingApps.list...)
	}
	params := "none"
	switch {
	case g.params.any:
		params = "*"
	case len(g.params.list) > 0:
		params = strings.Join(g.params.list, ",")
	}
	if len(apps) == 0 {
		apps = append(apps, "none")
	}
	return "[applications=" + strings.Join(apps, ",") + ";params=" + params + "]"
}

// AnonymousRules returns the rules that let callers without credentials
// mint, in order; nil for a nil policy.
func (p *Policy) AnonymousRules() []*Rule {
	if p == nil {
		return nil
	}
	var out []*Rule
	for _, r := range p.Rules {
		if r.Anonymous() {
			out = append(out, r)
		}
	}
	return out
}

// AdmitsAnonymous reports whether any rule selects anonymous callers: only
// then does tokend, in policy mode, let a caller without credentials in.
func (p *Policy) AdmitsAnonymous() bool {
	if p == nil {
		return false
	}
	return p.anonymous
}

// anonymousRule checks the constraints of an anonymous rule, and that
// fixed, generate and rate_limit appear only in one.
func (p *parser) anonymousRule(n *yaml.Node, path string, f map[string]*yaml.Node, r *Rule) {
	rl, hasRL := f["rate_limit"]
	ids := &r.identities
	if !r.Anonymous() {
		if hasRL {
			p.fail(rl, child(path, "rate_limit"), `is only for anonymous rules (kinds: ["anonymous"]); limit other callers with --rate-limit-principal`)
		}
		if ids.fixed != "" || ids.generate != "" {
			p.fail(f["identities"], child(path, "identities"), `fixed and generate are only for anonymous rules (kinds: ["anonymous"])`)
		}
		return
	}
	if len(r.kinds) != 1 || len(r.principals) > 0 || len(r.groups) > 0 {
		p.fail(f["kinds"], child(path, "kinds"), `an anonymous rule selects anonymous callers only: kinds: ["anonymous"] and no principals, groups or other kinds (write another rule for them)`)
	}
	if v := f["identities"]; v != nil {
		switch {
		case ids.self || ids.list != nil || ids.pattern != nil:
			p.fail(v, child(path, "identities"), "anonymous callers may not choose their identity: use {fixed: name} or {generate: prefix}, not self, list or pattern")
		case ids.fixed != "" && ids.generate != "":
			p.fail(v, child(path, "identities"), "give fixed or generate, not both")
		}
	}
	if !hasRL {
		p.fail(n, child(path, "rate_limit"), "is required for an anonymous rule: {per_second: N, burst: M}, per client address")
		return
	}
	rf, ok := p.fields(rl, child(path, "rate_limit"), "per_second", "burst")
	if !ok {
		return
	}
	var lim RateLimit
	if v, ok := rf["per_second"]; !ok {
		p.fail(rl, child(path, "rate_limit.per_second"), "is required")
	} else if v.Kind != yaml.ScalarNode || (v.ShortTag() != "!!float" && v.ShortTag() != "!!int") || v.Decode(&lim.PerSecond) != nil {
		p.fail(v, child(path, "rate_limit.per_second"), "must be a number")
	} else if !(lim.PerSecond >= minAnonRate && lim.PerSecond <= maxAnonRate) {
		p.fail(v, child(path, "rate_limit.per_second"), "must be between %g and %d, got %s", minAnonRate, maxAnonRate, v.Value)
	}
	if v, ok := rf["burst"]; !ok {
		p.fail(rl, child(path, "rate_limit.burst"), "is required")
	} else if b, ok := p.integer(v, child(path, "rate_limit.burst")); ok {
		if b < 1 || b > maxAnonBurst {
			p.fail(v, child(path, "rate_limit.burst"), "must be between 1 and %d, got %d", maxAnonBurst, b)
		} else {
			lim.Burst = int(b)
		}
	}
	if lim.PerSecond > 0 && lim.Burst > 0 {
		r.RateLimit = lim
		r.limiter = ratelimit.New(lim.PerSecond, lim.Burst, anonLimiterKeys)
	}
}

// anonymousIdentity checks the identity of an anonymous rule: a request
// that named identity (requested) must name the fixed one; otherwise the
// rule gives its identity. It returns the identity to sign or why not.
func (ir *identityRule) anonymousIdentity(identity string, requested bool) (string, string) {
	if ir.fixed != "" {
		if requested && identity != ir.fixed {
			return "", "anonymous callers get the identity " + ir.fixed + ", not " + identity
		}
		return ir.fixed, ""
	}
	if requested {
		return "", "anonymous callers may not choose their identity: the rule generates one (send no identity)"
	}
	b := make([]byte, generatedSuffixLen/2)
	rand.Read(b)
	return ir.generate + hex.EncodeToString(b), ""
}

// ShareAnonymousLimits makes each anonymous rule's rate limit enforce its
// share when n replicas share it (ratelimit.Limiter.SetShare), so that
// the limit per client address holds for the whole deployment as the
// other limits do. The rules keep the limits as configured.
func (p *Policy) ShareAnonymousLimits(n int) {
	if p == nil {
		return
	}
	for _, r := range p.Rules {
		if r.limiter != nil {
			r.limiter.SetShare(n)
		}
	}
}
