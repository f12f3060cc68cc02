package policy

import (
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

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
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	anon := Caller{Kind: KindAnonymous, Name: "anonymous"}
	outgoing := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: "AP11111111111111111111111111111111"}}}
	incoming := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}}
	const app1, app2 = "AP11111111111111111111111111111111", "AP22222222222222222222222222222222"
	guest := regexp.MustCompile(`^guest_[0-9a-f]{20}$`)
	for _, tc := range []struct {
		name      string
		req       *tokenv1.MintRequest
		g         *tokenv1.Grants
		app       string
		ttl       int64
		wantRule  string
		wantID    *regexp.Regexp // nil: denied
		wantInWhy string
	}{
		{"fixed_default", &tokenv1.MintRequest{}, outgoing, app1, 0, "fixed", regexp.MustCompile(`^user$`), ""},
		{"fixed_named", &tokenv1.MintRequest{Identity: proto.String("user")}, outgoing, app1, 0, "fixed", regexp.MustCompile(`^user$`), ""},
		{"other_app_generated", &tokenv1.MintRequest{}, outgoing, app2, 0, "gen", guest, ""},
		{"incoming_falls_to_gen", &tokenv1.MintRequest{}, incoming, app1, 0, "gen", guest, ""},
		{"named_other", &tokenv1.MintRequest{Identity: proto.String("root")}, outgoing, app2, 0, RuleDefaultDeny, nil, "may not choose their identity"},
		{"ttl", &tokenv1.MintRequest{}, incoming, app2, 120, RuleDefaultDeny, nil, "ttl 120 exceeds max_ttl_seconds 60"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(anon, tc.req, tc.g, "user", tc.app, tc.ttl)
			if d.Rule != tc.wantRule || d.Allowed != (tc.wantID != nil) {
				t.Fatalf("Decide = %+v, want rule %s allowed %v", d, tc.wantRule, tc.wantID != nil)
			}
			if tc.wantID != nil && (!tc.wantID.MatchString(d.Identity) || d.RateLimit == nil) {
				t.Errorf("Decide identity %q (rate limit %v), want %v and a rate limit", d.Identity, d.RateLimit, tc.wantID)
			}
			if !strings.Contains(d.Reason, tc.wantInWhy) {
				t.Errorf("Decide reason %q, want it to contain %q", d.Reason, tc.wantInWhy)
			}
		})
	}
	// Other callers are not selected by anonymous rules.
	if d := p.Decide(Caller{Kind: KindOIDC, Name: "alice", Identity: "alice", Browser: true}, &tokenv1.MintRequest{}, outgoing, "alice", app1, 0); d.Allowed {
		t.Errorf("an OIDC caller was allowed by an anonymous rule: %+v", d)
	}
}
