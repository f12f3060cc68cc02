package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	app1 = "AP0123456789abcdef0123456789abcdef"
	app2 = "APffffffffffffffffffffffffffffffff"
)

const examplePolicy = `
rules:
  - name: backend-voice
    principals: ["spiffe://example.org/backend", "credential:billing"]
    groups: ["voice-agents"]
    applications: ["AP0123456789abcdef0123456789abcdef"]
    identities: {pattern: "agent_[0-9]+"}
    grants:
      voice: {incoming: false, outgoing: true}
      video: {rooms: "^support-.*$"}
      chat: true
      data_sync: true
      task_router: true
      player: false
    max_ttl_seconds: 3600
  - name: browsers
    kinds: ["oidc", "proxy"]
    applications: ["*"]
    identities: {self: true}
    grants:
      voice: true
      video: {rooms: ".*"}
    max_ttl_seconds: 600
  - name: support-staff
    principals: ["oidc:carol"]
    applications: ["*"]
    identities: {list: ["alice", "bob"]}
    grants: {chat: true}
`

func TestParseExample(t *testing.T) {
	p, err := Parse([]byte(examplePolicy), "policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 3 {
		t.Fatalf("got %d rules", len(p.Rules))
	}
	r := p.Rules[0]
	if r.Name != "backend-voice" || r.Line != 3 || r.MaxTTLSeconds != 3600 {
		t.Errorf("rule 0 = %q line %d ttl %d", r.Name, r.Line, r.MaxTTLSeconds)
	}
	if got := p.Rules[2].MaxTTLSeconds; got != DefaultMaxTTLSeconds {
		t.Errorf("default max ttl = %d", got)
	}
	if !r.grants.voice || r.grants.voiceIncoming || !r.grants.voiceOutgoing || !r.grants.video || r.grants.anyRoom || r.grants.player {
		t.Errorf("grants of rule 0 = %+v", r.grants)
	}
	if !p.Rules[1].grants.anyRoom {
		t.Errorf(`rooms ".*" should allow any room`)
	}
	if p.Source != "policy.yaml" || len(p.Digest) != 64 {
		t.Errorf("source %q digest %q", p.Source, p.Digest)
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"empty rules", "rules: []"},
		{"bool grants", `rules:
- name: a
  kinds: [proxy]
  applications: ["*"]
  identities: {self: true, list: [x], pattern: "y.*"}
  grants: {voice: false, video: true, chat: false}
  max_ttl_seconds: 86400`},
		{"mtls prefix", `rules:
- name: a
  principals: ["mtls:spiffe://x/y", "proxy:alice", "oidc:https://issuer#sub"]
  applications: ["APABCDEF0123456789abcdef0123456789"]
  identities: {list: ["a"]}`},
		{"comments and anchors without aliases", `# policy
rules: &r
- name: a   # first
  groups: [g]
  applications: ["*"]
  identities: {self: true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.yaml), "p.yaml"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const head = "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings, all required
	}{
		{"empty", "", []string{"p.yaml:1: policy: empty document"}},
		{"comment only", "# nothing\n", []string{"p.yaml:1: policy: empty document"}},
		{"syntax", "rules:\n  - name: a\n    kinds: [oidc\n", []string{"p.yaml:"}},
		{"tab", "rules:\n\t- name: a\n", []string{"p.yaml:2: found character that cannot start any token"}},
		// yaml.v3 names the line where the block starts (1): the error
		// names the line where the fault is.
		{"indentation on line 4", "rules:\n  - name: a\n    principals: [x]\n   applications: [\"*\"]\n    identities: {self: true}\n",
			[]string{"p.yaml:4: did not find expected '-' indicator (in the block that starts at line 1)"}},
		{"deeper indentation on line 4", "rules:\n  - name: a\n    principals: [x]\n      applications: [\"*\"]\n",
			[]string{"p.yaml:4: did not find expected key (in the block that starts at line 1)"}},
		{"unclosed list on line 4", "rules:\n  - name: a\n    principals: [x]\n    applications: [y\n",
			[]string{"p.yaml:4: did not find expected ',' or ']'"}},
		{"tab on line 3", "rules:\n  - name: a\n\tprincipals: [x]\n", []string{"p.yaml:3: found a tab character that violates indentation"}},
		{"unclosed mapping on line 3", "rules:\n  - name: a\n    grants: {voice: {incoming: true}\n    max_ttl_seconds: 3\n",
			[]string{"p.yaml:3: did not find expected ',' or '}'"}},
		{"indentation after a list over two lines", "rules:\n  - name: a\n    principals: [a,\n      b]\n    applications: [\"*\"]\n  identities: {self: true}\n",
			[]string{"p.yaml:6: did not find expected '-' indicator"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"p.yaml:2: policy: only one YAML document"}},
		{"not a mapping", "- a\n", []string{"p.yaml:1: policy: must be a mapping"}},
		{"unknown top", "rules: []\nversion: 2\n", []string{"p.yaml:2: version: unknown field"}},
		{"no rules", "{}\n", []string{"p.yaml:1: rules: is required"}},
		{"rules not list", "rules: {}\n", []string{"p.yaml:1: rules: must be a list"}},
		{"unknown rule key", head + "  color: red\n", []string{"p.yaml:6: rules[0].color: unknown field"}},
		{"duplicate key", head + "  kinds: [proxy]\n", []string{"p.yaml:6: rules[0].kinds: duplicate field"}},
		{"missing name", "rules:\n- kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:2: rules[0].name: is required"}},
		{"empty name", "rules:\n- name: \"\"\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:2: rules[0].name: must not be empty"}},
		{"reserved name", "rules:\n- name: default-deny\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"rules[0].name: default-deny is reserved"}},
		{"duplicate name", head + head[len("rules:\n"):], []string{"p.yaml:6: rules[1].name: duplicate rule name a (first at line 2)"}},
		{"no selector", "rules:\n- name: a\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:2: rules[0]: needs at least one selector"}},
		{"empty selectors", "rules:\n- name: a\n  groups: []\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:2: rules[0]: needs at least one selector"}},
		{"unknown kind", "rules:\n- name: a\n  kinds: [oidc, ldap]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:3: rules[0].kinds[1]: unknown kind ldap"}},
		{"anonymous principal", "rules:\n- name: a\n  principals: [\"anonymous:x\"]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:3: rules[0].principals[0]: anonymous callers have no name"}},
		{"kind without name", "rules:\n- name: a\n  principals: [\"credential:\"]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"rules[0].principals[0]: credential: needs a name"}},
		{"bad sid", "rules:\n- name: a\n  kinds: [oidc]\n  applications:\n  - AP0123\n  identities: {self: true}\n", []string{"p.yaml:5: rules[0].applications[0]: must be \"*\" or a TwiML application SID"}},
		{"wrong sid prefix", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [AC0123456789abcdef0123456789abcdef]\n  identities: {self: true}\n", []string{"p.yaml:4: rules[0].applications[0]: must be"}},
		{"no applications", "rules:\n- name: a\n  kinds: [oidc]\n  identities: {self: true}\n", []string{"p.yaml:2: rules[0].applications: is required"}},
		{"empty applications", "rules:\n- name: a\n  kinds: [oidc]\n  applications: []\n  identities: {self: true}\n", []string{"p.yaml:4: rules[0].applications: must not be empty"}},
		{"applications not list", "rules:\n- name: a\n  kinds: [oidc]\n  applications: \"*\"\n  identities: {self: true}\n", []string{"p.yaml:4: rules[0].applications: must be a list of strings"}},
		{"no identities", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n", []string{"p.yaml:2: rules[0].identities: is required"}},
		{"self false only", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: false}\n", []string{"p.yaml:5: rules[0].identities: must allow some identities"}},
		{"self not bool", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: yes please}\n", []string{"p.yaml:5: rules[0].identities.self: must be true or false"}},
		{"empty list", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {list: []}\n", []string{"rules[0].identities.list: must not be empty"}},
		{"bad identity pattern", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities:\n    pattern: \"agent_(\"\n", []string{"p.yaml:6: rules[0].identities.pattern: invalid regexp: missing closing )"}},
		{"unknown identity key", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {all: true}\n", []string{"rules[0].identities.all: unknown field"}},
		{"bad rooms", head + "  grants:\n    chat: true\n    video:\n      rooms: \"[a-\"\n", []string{"p.yaml:9: rules[0].grants.video.rooms: invalid regexp"}},
		{"rooms missing", head + "  grants:\n    video: {}\n", []string{"p.yaml:7: rules[0].grants.video.rooms: is required"}},
		{"voice unknown", head + "  grants:\n    voice: {incoming: true, push: true}\n", []string{"p.yaml:7: rules[0].grants.voice.push: unknown field"}},
		{"grant not bool", head + "  grants:\n    chat: 1\n", []string{"p.yaml:7: rules[0].grants.chat: must be true or false"}},
		{"outgoing applications null", head + "  grants:\n    voice: {outgoing: {applications: null}}\n", []string{`p.yaml:7: rules[0].grants.voice.outgoing.applications: must be "*" or a list of "self" and AP SIDs`}},
		{"params number", head + "  grants:\n    voice: {outgoing: {params: 5}}\n", []string{`p.yaml:7: rules[0].grants.voice.outgoing.params: must be "*" or a list of names (got int 5; quote it`}},
		{"services word", head + "  grants:\n    chat: {services: any}\n", []string{`p.yaml:7: rules[0].grants.chat.services: must be "*" or a list of IS SIDs`}},
		{"params key format char", head + "  grants:\n    voice:\n      outgoing: {params: [\"t\\u200bo\"]}\n", []string{"p.yaml:8: rules[0].grants.voice.outgoing.params[0]: must not contain Unicode format characters (category Cf): found U+200B"}},
		{"role format char", head + "  grants:\n    task_router: {roles: [\"worker\\u202e\"]}\n", []string{"p.yaml:7: rules[0].grants.task_router.roles[0]: must not contain Unicode format characters (category Cf): found U+202E"}},
		{"rooms format char", head + "  grants:\n    video: {rooms: \"support-\\u202e.*\"}\n", []string{"p.yaml:7: rules[0].grants.video.rooms: must not contain Unicode format characters", "found U+202E"}},
		{"identity pattern format char", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {pattern: \"ali\\u200dce\"}\n", []string{"p.yaml:5: rules[0].identities.pattern: must not contain Unicode format characters"}},
		{"unknown grant", head + "  grants:\n    fax: true\n", []string{"p.yaml:7: rules[0].grants.fax: unknown field"}},
		{"ttl zero", head + "  max_ttl_seconds: 0\n", []string{"p.yaml:6: rules[0].max_ttl_seconds: must be between 1 and 86400, got 0"}},
		{"ttl high", head + "  max_ttl_seconds: 86401\n", []string{"rules[0].max_ttl_seconds: must be between 1 and 86400"}},
		{"ttl string", head + "  max_ttl_seconds: \"60\"\n", []string{"rules[0].max_ttl_seconds: must be an integer"}},
		{"ttl huge", head + "  max_ttl_seconds: 99999999999999999999999\n", []string{"rules[0].max_ttl_seconds: must be an integer"}},
		{"number as name", "rules:\n- name: 42\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"rules[0].name: must be a string (got int 42; quote it"}},
		{"aliases rejected", "rules:\n- name: a\n  kinds: &k [oidc]\n  groups: *k\n  applications: [\"*\"]\n  identities: {self: true}\n", []string{"p.yaml:4: policy: aliases (*k) are not allowed"}},
		{"several errors", "rules:\n- name: a\n  kinds: [oidc]\n  applications: [bad]\n  identities: {pattern: \"(\"}\n", []string{"p.yaml:4: rules[0].applications[0]", "p.yaml:5: rules[0].identities.pattern"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "p.yaml")
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain %q", err, w)
				}
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "p.yaml:") {
					t.Errorf("error line %q does not start with the file name and line", line)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(examplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != path || len(p.Rules) != 3 {
		t.Errorf("source %q, %d rules", p.Source, len(p.Rules))
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n- name: a\n  kinds: [oidc]\n  applications: [\"*\"]\n  identities: {self: true}\n  grants: {video: {rooms: \"(\"}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.HasPrefix(err.Error(), bad+":6: rules[0].grants.video.rooms: invalid regexp") {
		t.Errorf("Load(bad) = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", MaxPolicyBytes)+"\nrules: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}
