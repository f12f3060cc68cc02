package policy

import (
	"strings"
	"testing"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// FuzzParse checks that Parse never panics, that every error names the
// source and a line, and that a policy that parses can decide anything
// without panicking and never allows what it should not.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		examplePolicy,
		reach,
		"rules: []",
		"",
		"rules:\n- name: a\n  kinds: [anonymous]\n  applications: [\"*\"]\n  identities: {pattern: \"u.*\"}\n  grants: {voice: true, video: true, chat: true, data_sync: true, task_router: true, player: true}\n  max_ttl_seconds: 86400\n",
		"rules:\n- name: a\n  principals: [\"credential:x\", \"spiffe://a/b\"]\n  groups: [g]\n  applications: [AP0123456789abcdef0123456789abcdef]\n  identities: {self: true, list: [a, b]}\n  grants: {voice: {incoming: true}, video: {rooms: \"r-[0-9]+\"}}\n",
		badPolicy,
		"rules:\n- name: a\n  kinds: &k [oidc]\n  groups: *k\n",
		"rules: [{name: a, kinds: [oidc], applications: ['*'], identities: {self: true}}]\n---\nrules: []\n",
		"rules:\n\t- x",
		"{rules: [{name: 1, kinds: {}, applications: null, identities: [], grants: 5, max_ttl_seconds: 1e9}]}",
		"rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n  name: b\n",
		"? [a]\n: b\n",
		"!!binary rules: x",
		"rules:\n- name: pub\n  kinds: [anonymous]\n  applications: [\"*\"]\n  identities: {fixed: user}\n  grants: {voice: {outgoing: true}}\n  rate_limit: {per_second: 0.5, burst: 5}\n",
		"rules:\n- name: g\n  kinds: [anonymous]\n  applications: [\"*\"]\n  identities: {generate: guest_}\n  grants: {voice: true}\n  rate_limit: {per_second: 1e3, burst: 1000}\n  max_ttl_seconds: 60\n",
	} {
		f.Add([]byte(seed))
	}
	callers := []Caller{
		{Kind: KindAnonymous},
		{Kind: KindMTLS, Name: "spiffe://a/b"},
		{Kind: KindCredential, Name: "x", Groups: []string{"g"}},
		{Kind: KindOIDC, Name: "alice", Identity: "alice", Browser: true, Groups: []string{"oidc"}},
	}
	grants := []*tokenv1.Grants{
		nil,
		voice(true, app1),
		video(""),
		video("r-1"),
		outgoing(app2, map[string]string{"to": "x"}),
		{Voice: &tokenv1.VoiceGrant{PushCredentialSid: cr1}, Chat: &tokenv1.ChatGrant{ServiceSid: is1}, TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: ws1, WorkerSid: wk1, Role: "worker"}},
		{Chat: &tokenv1.ChatGrant{}, DataSync: &tokenv1.SyncGrant{}, TaskRouter: &tokenv1.TaskRouterGrant{}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.yaml")
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml:") {
					t.Fatalf("error line %q does not name the source", line)
				}
			}
			return
		}
		names := map[string]bool{}
		for _, r := range p.Rules {
			if r.Name == "" || names[r.Name] || r.Name == RuleDefaultDeny || r.Name == RuleBrowserIdentity {
				t.Fatalf("bad rule name %q", r.Name)
			}
			names[r.Name] = true
			if r.MaxTTLSeconds < 1 || r.MaxTTLSeconds > MaxTTLSeconds {
				t.Fatalf("rule %s: max ttl %d", r.Name, r.MaxTTLSeconds)
			}
			if len(r.principals)+len(r.groups)+len(r.kinds) == 0 {
				t.Fatalf("rule %s has no selector", r.Name)
			}
			if r.Anonymous() && (r.limiter == nil || len(r.kinds) != 1 || (r.identities.fixed == "") == (r.identities.generate == "")) {
				t.Fatalf("anonymous rule %s without a rate limit, with other selectors, or without exactly one of fixed and generate: %+v", r.Name, r)
			}
		}
		for _, c := range callers {
			for _, g := range grants {
				for _, id := range []string{"alice", "bob", "", "user"} {
					r := ReachOf(app1, id, g)
					r.IdentityRequested = id != "user" // "user" stands for the default identity
					d := p.Decide(c, &r, 60)
					if d.Allowed && c.Browser && id != c.Identity {
						t.Fatalf("browser caller allowed identity %q: %+v", id, d)
					}
					if d.Allowed && (id == "" || !names[d.Rule]) {
						t.Fatalf("allowed %q by %+v", id, d)
					}
					if !d.Allowed && d.Reason == "" {
						t.Fatalf("denied without reason: %+v", d)
					}
					if d.Allowed && c.Kind == KindAnonymous && (d.RateLimit == nil || d.Identity == "") {
						t.Fatalf("anonymous caller allowed without a rate limit or a rule's identity: %+v", d)
					}
					if c.Kind != KindAnonymous && (d.RateLimit != nil || d.Identity != "") {
						t.Fatalf("caller %v decided by an anonymous rule: %+v", c, d)
					}
					if d.Allowed && d.Identity != "" && r.IdentityRequested && d.Identity != id {
						t.Fatalf("identity %q requested, allowed with another %q: %+v", id, d.Identity, d)
					}
				}
			}
		}
	})
}
