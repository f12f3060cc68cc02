package policy

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decide decides a token signed by app for identity carrying g.
func decide(p *Policy, c Caller, g *tokenv1.Grants, identity, app string, ttl int64) Decision {
	r := ReachOf(app, identity, g)
	return p.Decide(c, &r, ttl)
}

func voice(incoming bool, outgoingApp string) *tokenv1.Grants {
	v := &tokenv1.VoiceGrant{}
	if incoming {
		v.Incoming = &tokenv1.VoiceGrant_Incoming{Allow: true}
	}
	if outgoingApp != "" {
		v.Outgoing = &tokenv1.VoiceGrant_Outgoing{ApplicationSid: outgoingApp}
	}
	return &tokenv1.Grants{Voice: v}
}

func video(room string) *tokenv1.Grants {
	return &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: room}}
}

func TestDecide(t *testing.T) {
	p := mustParse(t, examplePolicy)
	backend := Caller{Kind: KindMTLS, Name: "spiffe://example.org/backend"}
	billing := Caller{Kind: KindCredential, Name: "billing"}
	agentGroup := Caller{Kind: KindOIDC, Name: "dave", Groups: []string{"staff", "voice-agents"}}
	alice := Caller{Kind: KindOIDC, Name: "alice", Identity: "alice", Browser: true}
	aliceAPI := Caller{Kind: KindProxy, Name: "alice", Identity: "alice"}
	carol := Caller{Kind: KindOIDC, Name: "carol", Identity: "carol"}
	carolBrowser := Caller{Kind: KindOIDC, Name: "carol", Identity: "carol", Browser: true}
	anon := Caller{Kind: KindAnonymous}
	other := Caller{Kind: KindCredential, Name: "spiffe://example.org/backend"} // not mTLS: a bare name selects only mTLS

	for _, tc := range []struct {
		name     string
		c        Caller
		g        *tokenv1.Grants
		identity string
		app      string
		ttl      int64
		allowed  bool
		rule     string
		reason   string // substring when denied
	}{
		{"mtls backend outgoing", backend, voice(false, app1), "agent_7", app1, 3600, true, "backend-voice", ""},
		{"outgoing through another application", backend, voice(false, app2), "agent_7", app1, 3600, false, RuleDefaultDeny, "rule backend-voice: voice.outgoing.application_sid " + app2 + " is not allowed: outgoing calls may run through the signing application " + app1},
		{"credential outgoing", billing, voice(false, app1), "agent_1", app1, 60, true, "backend-voice", ""},
		{"group member", agentGroup, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, "agent_2", app1, 60, true, "backend-voice", ""},
		{"voice without incoming or outgoing", backend, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{EndpointId: "e"}}, "agent_1", app1, 60, true, "backend-voice", ""},
		{"incoming denied", backend, voice(true, ""), "agent_7", app1, 60, false, RuleDefaultDeny, "rule backend-voice: grant voice.incoming is not allowed"},
		{"incoming allow false is not incoming", backend, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{}}}, "agent_7", app1, 60, true, "backend-voice", ""},
		{"wrong app", backend, nil, "agent_7", app2, 60, false, RuleDefaultDeny, "rule backend-voice: application " + app2 + " is not allowed"},
		{"app case-insensitive", backend, nil, "agent_7", strings.ToUpper(app1[:2]) + strings.ToUpper(app1[2:]), 60, true, "backend-voice", ""},
		{"no app", backend, nil, "agent_7", "", 60, false, RuleDefaultDeny, "no application given"},
		{"identity pattern anchored", backend, nil, "xagent_7", app1, 60, false, RuleDefaultDeny, "rule backend-voice: identity xagent_7 does not match agent_[0-9]+"},
		{"identity pattern anchored end", backend, nil, "agent_7x", app1, 60, false, RuleDefaultDeny, "does not match"},
		{"video room ok", backend, video("support-12"), "agent_7", app1, 60, true, "backend-voice", ""},
		{"video room mismatch", backend, video("sales-1"), "agent_7", app1, 60, false, RuleDefaultDeny, "rule backend-voice: video room sales-1 does not match ^support-.*$"},
		{"video any room needs .*", backend, video(""), "agent_7", app1, 60, false, RuleDefaultDeny, `needs rooms ".*"`},
		{"player denied", backend, &tokenv1.Grants{Player: &structpb.Struct{}}, "agent_7", app1, 60, false, RuleDefaultDeny, "grant player is not allowed"},
		{"ttl over max", backend, nil, "agent_7", app1, 3601, false, RuleDefaultDeny, "rule backend-voice: ttl 3601 exceeds max_ttl_seconds 3600"},
		{"ttl unnamed", backend, nil, "agent_7", app1, 0, true, "backend-voice", ""},
		{"ttl negative", backend, nil, "agent_7", app1, -1, false, RuleDefaultDeny, "ttl -1 is not positive"},
		{"browser self", alice, video(""), "alice", app2, 600, true, "browsers", ""},
		{"browser self voice", alice, voice(true, app2), "alice", app2, 600, true, "browsers", ""},
		{"browser voice through another application", alice, voice(true, app1), "alice", app2, 600, false, RuleDefaultDeny, "voice.outgoing.application_sid " + app1 + " is not allowed"},
		{"browser other identity", alice, nil, "bob", app1, 60, false, RuleBrowserIdentity, "identity bob is not the caller's own identity alice"},
		{"browser without identity", Caller{Kind: KindOIDC, Name: "x", Browser: true}, nil, "x", app1, 60, false, RuleBrowserIdentity, "(the caller has none)"},
		{"browser ttl", alice, nil, "alice", app1, 601, false, RuleDefaultDeny, "rule browsers: ttl 601 exceeds max_ttl_seconds 600"},
		{"self mismatch names rule", aliceAPI, nil, "bob", app1, 60, false, RuleDefaultDeny, "rule browsers: identity bob is not the caller's own identity alice"},
		{"chat not in browsers rule", aliceAPI, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, "alice", app1, 60, false, RuleDefaultDeny, "rule browsers: grant chat is not allowed"},
		{"list identity via later rule", carol, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, "bob", app1, 60, true, "support-staff", ""},
		// browsers and support-staff both fail the identity check: on a tie
		// the earlier rule is named.
		{"list identity denied", carol, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, "mallory", app1, 60, false, RuleDefaultDeny, "rule browsers: identity mallory is not the caller's own identity carol"},
		{"list identity denied alone", Caller{Kind: KindMTLS, Name: "carol"}, nil, "mallory", app1, 60, false, RuleDefaultDeny, "no rule selects caller mtls:carol"},
		// The closest rule is the one that got furthest: support-staff
		// passes the identity check, browsers does not.
		{"closest rule", carol, &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{}}, "bob", app1, 60, false, RuleDefaultDeny, "rule support-staff: grant task_router is not allowed"},
		// A browser caller may only mint for itself even when a rule lists
		// the identity.
		{"browser overrides list", carolBrowser, &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}, "bob", app1, 60, false, RuleBrowserIdentity, "identity bob is not the caller's own identity carol"},
		{"anonymous default deny", anon, nil, "user", app1, 60, false, RuleDefaultDeny, "no rule selects caller anonymous"},
		{"bare name selects only mtls", other, nil, "agent_1", app1, 60, false, RuleDefaultDeny, "no rule selects caller credential:spiffe://example.org/backend"},
		{"empty identity", backend, nil, "", app1, 60, false, RuleDefaultDeny, "no identity given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(p, tc.c, tc.g, tc.identity, tc.app, tc.ttl)
			if d.Allowed != tc.allowed || d.Rule != tc.rule {
				t.Fatalf("Decide = %+v; want allowed=%v rule=%s", d, tc.allowed, tc.rule)
			}
			if tc.allowed && d.Reason != "" {
				t.Errorf("allowed with reason %q", d.Reason)
			}
			if !tc.allowed && !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestDecideNilPolicy(t *testing.T) {
	var p *Policy
	d := decide(p, Caller{Kind: KindMTLS, Name: "x"}, nil, "u", app1, 60)
	if d.Allowed || d.Rule != RuleDefaultDeny {
		t.Errorf("nil policy: %+v", d)
	}
	r := ReachOf(app1, "u", nil)
	if d := NewHolder(nil).Decide(Caller{}, &r, 60); d.Allowed {
		t.Errorf("nil holder policy: %+v", d)
	}
}

func TestDecideEmptyPolicyDeniesAll(t *testing.T) {
	p := mustParse(t, "rules: []")
	for _, c := range []Caller{{Kind: KindAnonymous}, {Kind: KindMTLS, Name: "a"}, {Kind: KindOIDC, Name: "b", Identity: "b"}} {
		if d := decide(p, c, nil, "b", app1, 60); d.Allowed || d.Rule != RuleDefaultDeny {
			t.Errorf("%v: %+v", c, d)
		}
	}
}

func TestFirstMatchingRuleWins(t *testing.T) {
	p := mustParse(t, `rules:
- name: narrow
  kinds: [credential]
  applications: ["*"]
  identities: {list: [a]}
  max_ttl_seconds: 60
- name: wide
  kinds: [credential]
  applications: ["*"]
  identities: {pattern: ".*"}
  grants: {video: true}
  max_ttl_seconds: 86400
`)
	c := Caller{Kind: KindCredential, Name: "ci"}
	for _, tc := range []struct {
		identity string
		ttl      int64
		g        *tokenv1.Grants
		rule     string
	}{
		{"a", 60, nil, "narrow"},
		{"a", 61, nil, "wide"}, // narrow fails on ttl, wide allows
		{"a", 60, video(""), "wide"},
		{"b", 60, nil, "wide"},
	} {
		if d := decide(p, c, tc.g, tc.identity, app1, tc.ttl); !d.Allowed || d.Rule != tc.rule {
			t.Errorf("%s ttl %d: %+v; want %s", tc.identity, tc.ttl, d, tc.rule)
		}
	}
}

func TestCallerString(t *testing.T) {
	for _, tc := range []struct {
		c    Caller
		want string
	}{
		{Caller{Kind: "credential", Name: "billing"}, "credential:billing"},
		{Caller{Kind: "anonymous"}, "anonymous"},
		{Caller{Name: "x"}, "x"},
		{Caller{}, "unknown caller"},
	} {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("%#v.String() = %q; want %q", tc.c, got, tc.want)
		}
	}
}

func TestDecideReasons(t *testing.T) {
	p := mustParse(t, `rules:
- name: listed
  principals: ["credential:ci"]
  applications: ["*"]
  identities: {list: [a, b], pattern: "bot_[0-9]+"}
- name: mine
  principals: ["proxy:alice"]
  applications: ["*"]
  identities: {self: true}
`)
	for _, tc := range []struct {
		c        Caller
		identity string
		want     string
	}{
		{Caller{Kind: KindCredential, Name: "ci"}, "mallory", "rule listed: identity mallory is not listed; identity mallory does not match bot_[0-9]+"},
		{Caller{Kind: KindProxy, Name: "alice", Identity: "alice"}, "bob", "rule mine: identity bob is not the caller's own identity alice"},
		{Caller{Kind: KindProxy, Name: "alice"}, "alice", "rule mine: identity alice is not the caller's own identity (the caller has none)"},
	} {
		d := decide(p, tc.c, nil, tc.identity, app1, 60)
		if d.Allowed || d.Rule != RuleDefaultDeny || d.Reason != tc.want {
			t.Errorf("%v for %s: %+v; want reason %q", tc.c, tc.identity, d, tc.want)
		}
	}
}
