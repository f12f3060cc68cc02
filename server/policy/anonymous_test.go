package policy

import (
	"regexp"
	"strings"
	"testing"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

const anonHead = "rules:\n- name: pub\n  kinds: [anonymous]\n  applications: [\"*\"]\n"

func TestParseAnonymousRule(t *testing.T) {
	p, err := Parse([]byte(anonHead+"  identities: {fixed: user}\n  grants: {voice: {outgoing: true}}\n  rate_limit: {per_second: 0.5, burst: 5}\n"), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !p.AdmitsAnonymous() || len(p.AnonymousRules()) != 1 {
		t.Fatalf("AdmitsAnonymous() = %v, AnonymousRules() = %v, want one rule", p.AdmitsAnonymous(), p.AnonymousRules())
	}
	r := p.AnonymousRules()[0]
	if r.RateLimit != (RateLimit{PerSecond: 0.5, Burst: 5}) || r.AnonymousIdentity() != "fixed user" || r.AllowedGrants() != "voice:outgoing" {
		t.Errorf("rule = %+v, %s, %s; want 0.5/s burst 5, fixed user, voice:outgoing", r.RateLimit, r.AnonymousIdentity(), r.AllowedGrants())
	}
	other, err := Parse([]byte("rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n"), "p.yaml")
	if err != nil || other.AdmitsAnonymous() {
		t.Errorf("a policy without anonymous rules: AdmitsAnonymous() = %v, %v; want false", other.AdmitsAnonymous(), err)
	}
}

func TestAnonymousAllowedGrants(t *testing.T) {
	for _, tc := range []struct{ name, grants, want string }{
		{"outgoing_default", "{voice: {outgoing: true}}", "voice:outgoing"},
		{"voice_video", "{voice: true, video: {rooms: \"^support-.*$\"}}", "voice:incoming+outgoing,video:^support-.*$"},
		{"params", "{voice: {outgoing: {params: [to, from]}}}", "voice:outgoing[applications=self;params=to,from]"},
		{"other_app", "{voice: {outgoing: {applications: [\"AP11111111111111111111111111111111\"]}}}", "voice:outgoing[applications=AP11111111111111111111111111111111;params=none]"},
		{"any", "{voice: {incoming: true, outgoing: {applications: \"*\", params: \"*\"}}}", "voice:incoming+outgoing[applications=*;params=*]"},
		{"none", "{}", "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(anonHead+"  identities: {fixed: user}\n  grants: "+tc.grants+"\n  rate_limit: {per_second: 1, burst: 1}\n"), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if got := p.AnonymousRules()[0].AllowedGrants(); got != tc.want {
				t.Errorf("AllowedGrants() of %s = %q, want %q", tc.grants, got, tc.want)
			}
		})
	}
}

func TestParseAnonymousErrors(t *testing.T) {
	const rl = "  rate_limit: {per_second: 1, burst: 5}\n"
	for _, tc := range []struct{ name, yaml, want string }{
		{"no_rate_limit", anonHead + "  identities: {fixed: user}\n", "p.yaml:2: rules[0].rate_limit: is required for an anonymous rule"},
		{"rate_zero", anonHead + "  identities: {fixed: user}\n  rate_limit: {per_second: 0, burst: 5}\n", "rules[0].rate_limit.per_second: must be between 0.001 and 1000"},
		{"rate_string", anonHead + "  identities: {fixed: user}\n  rate_limit: {per_second: fast, burst: 5}\n", "rules[0].rate_limit.per_second: must be a number"},
		{"burst_missing", anonHead + "  identities: {fixed: user}\n  rate_limit: {per_second: 1}\n", "rules[0].rate_limit.burst: is required"},
		{"burst_zero", anonHead + "  identities: {fixed: user}\n  rate_limit: {per_second: 1, burst: 0}\n", "rules[0].rate_limit.burst: must be between 1 and 1000"},
		{"rate_unknown", anonHead + "  identities: {fixed: user}\n  rate_limit: {per_minute: 1, burst: 1}\n", "rules[0].rate_limit.per_minute: unknown field"},
		{"self", anonHead + "  identities: {self: true}\n" + rl, "rules[0].identities: anonymous callers may not choose their identity"},
		{"pattern", anonHead + "  identities: {pattern: \".*\"}\n" + rl, "anonymous callers may not choose their identity"},
		{"both", anonHead + "  identities: {fixed: user, generate: g_}\n" + rl, "rules[0].identities: give fixed or generate, not both"},
		{"bad_fixed", anonHead + "  identities: {fixed: \"a b\"}\n" + rl, "rules[0].identities.fixed: must be 1 to 121 letters, digits or _"},
		{"bad_prefix", anonHead + "  identities: {generate: \"guest-\"}\n" + rl, "rules[0].identities.generate: must be a prefix of 1 to 64"},
		{"mixed_kinds", "rules:\n- name: pub\n  kinds: [anonymous, oidc]\n  applications: [\"*\"]\n  identities: {fixed: user}\n" + rl, "rules[0].kinds: an anonymous rule selects anonymous callers only"},
		{"with_groups", anonHead + "  groups: [g]\n  identities: {fixed: user}\n" + rl, "an anonymous rule selects anonymous callers only"},
		{"rate_limit_elsewhere", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n" + rl, "rules[0].rate_limit: is only for anonymous rules"},
		{"fixed_elsewhere", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {fixed: user}\n", "rules[0].identities: fixed and generate are only for anonymous rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "p.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestDecideAnonymous(t *testing.T) {
	p, err := Parse([]byte(`rules:
- name: fixed
  kinds: [anonymous]
  applications: ["`+"AP11111111111111111111111111111111"+`"]
  identities: {fixed: user}
  grants: {voice: {outgoing: true}}
  rate_limit: {per_second: 1, burst: 1}
- name: gen
  kinds: [anonymous]
  applications: ["*"]
  identities: {generate: guest_}
  grants: {voice: true}
  rate_limit: {per_second: 1, burst: 1}
  max_ttl_seconds: 60
- name: params
  kinds: [anonymous]
  applications: ["AP33333333333333333333333333333333"]
  identities: {fixed: caller}
  grants: {voice: {outgoing: {applications: [self, "AP11111111111111111111111111111111"], params: [to]}}}
  rate_limit: {per_second: 1, burst: 1}
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	anon := Caller{Kind: KindAnonymous, Name: "anonymous"}
	const app1, app2, app3 = "AP11111111111111111111111111111111", "AP22222222222222222222222222222222", "AP33333333333333333333333333333333"
	out := func(app string, params map[string]string) *tokenv1.Grants {
		return &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app, Params: params}}}
	}
	incoming := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}}
	guest := regexp.MustCompile(`^guest_[0-9a-f]{20}$`)
	for _, tc := range []struct {
		name      string
		identity  string // requested; empty: none, the default "user"
		g         *tokenv1.Grants
		app       string
		ttl       int64
		wantRule  string
		wantID    *regexp.Regexp // nil: denied
		wantInWhy string
	}{
		{"fixed_default", "", out(app1, nil), app1, 0, "fixed", regexp.MustCompile(`^user$`), ""},
		{"fixed_named", "user", out(app1, nil), app1, 0, "fixed", regexp.MustCompile(`^user$`), ""},
		{"other_app_generated", "", out(app2, nil), app2, 0, "gen", guest, ""},
		{"incoming_falls_to_gen", "", incoming, app1, 0, "gen", guest, ""},
		{"named_other", "root", out(app2, nil), app2, 0, RuleDefaultDeny, nil, "may not choose their identity"},
		{"ttl", "", incoming, app2, 120, RuleDefaultDeny, nil, "ttl 120 exceeds max_ttl_seconds 60"},
		// The reach grammar applies to anonymous rules as to any: outgoing
		// calls through the signing application only, with no params,
		// unless the rule says otherwise.
		{"outgoing_through_other_app", "", out(app1, nil), app2, 0, RuleDefaultDeny, nil, "rule gen: voice.outgoing.application_sid " + app1 + " is not allowed: outgoing calls may run through the signing application " + app2},
		{"outgoing_params", "", out(app1, map[string]string{"to": "+15550100"}), app1, 0, RuleDefaultDeny, nil, `voice.outgoing.params key "to" is not allowed (allowed keys: none)`},
		{"listed_app_and_param", "", out(app1, map[string]string{"to": "+15550100"}), app3, 0, "params", regexp.MustCompile(`^caller$`), ""},
		{"listed_app_other_param", "caller", out(app3, map[string]string{"from": "x"}), app3, 0, RuleDefaultDeny, nil, `rule params: voice.outgoing.params key "from" is not allowed (allowed keys: to)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			identity := tc.identity
			if identity == "" {
				identity = "user" // the default identity
			}
			r := ReachOf(tc.app, identity, tc.g)
			r.IdentityRequested = tc.identity != ""
			d := p.Decide(anon, &r, tc.ttl)
			if d.Rule != tc.wantRule || d.Allowed != (tc.wantID != nil) {
				t.Fatalf("Decide = %+v, want rule %s allowed %v", d, tc.wantRule, tc.wantID != nil)
			}
			if tc.wantID != nil && !tc.wantID.MatchString(d.Identity) {
				t.Errorf("Decide identity %q, want %v", d.Identity, tc.wantID)
			}
			// Allowed or denied, an anonymous caller's decision names the
			// bucket its explanations are charged to.
			if d.RateLimit == nil {
				t.Errorf("Decide = %+v, want a rate limit", d)
			}
			if !strings.Contains(d.Reason, tc.wantInWhy) {
				t.Errorf("Decide reason %q, want it to contain %q", d.Reason, tc.wantInWhy)
			}
		})
	}
	// Other callers are not selected by anonymous rules.
	r := ReachOf(app1, "alice", out(app1, nil))
	if d := p.Decide(Caller{Kind: KindOIDC, Name: "alice", Identity: "alice", Browser: true}, &r, 0); d.Allowed || d.RateLimit != nil {
		t.Errorf("an OIDC caller was allowed by an anonymous rule, or got its bucket: %+v", d)
	}
}
