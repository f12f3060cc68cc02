package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// text returns what was logged so far.
func (s *syncBuffer) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// anonHarness runs tokend in policy mode with the seed application and
// the given policy, logging into the returned buffer.
func anonHarness(t *testing.T, policyText string) (*harness, *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	h := adminHarness(t, server.Config{PolicyFile: policyFile, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	h.policyDir = dir
	return h, logs
}

// TestAnonymousRule: a page calling GET /token "as before" gets a token in
// policy mode through an explicit anonymous rule: fixed identity, tight
// grants, a rate limit per client address; over gRPC and REST alike.
func TestAnonymousRule(t *testing.T) {
	const fixedPolicy = `rules:
  - name: public-page
    kinds: ["anonymous"]
    applications: ["*"]
    identities: {fixed: user}
    grants: {voice: {outgoing: true}}
    rate_limit: {per_second: 0.01, burst: 6}
    max_ttl_seconds: 600
`
	for _, path := range []string{"grpc", "rest"} {
		t.Run(path, func(t *testing.T) {
			h, logs := anonHarness(t, fixedPolicy)
			if l := logs.text(); !strings.Contains(l, "ANONYMOUS MINTING") || !strings.Contains(l, "rule=public-page") || !strings.Contains(l, "grants=voice:outgoing") {
				t.Errorf("no warning naming the anonymous rule at start:\n%s", l)
			}
			// No identity: the fixed one; the lifetime capped by the rule.
			code, resp, _ := h.mintAs(t, path, caller{}, `{}`)
			if code != codes.OK || resp["identity"] != "user" || resp["application_sid"] != testApp {
				t.Fatalf("anonymous mint = %v %v, want a token for user", code, resp)
			}
			_, claims := decodeJWT(t, resp["token"].(string))
			if ttl := claims["exp"].(float64) - claims["iat"].(float64); ttl != 600 {
				t.Errorf("token lifetime %v, want the rule's 600", ttl)
			}
			denied := []struct{ name, body, want string }{
				{"other_identity", `{"identity":"admin"}`, "anonymous callers get the identity user, not admin"},
				{"incoming", `{"grants":{"voice":{"incoming":{"allow":true}}}}`, "grant voice.incoming is not allowed"},
				{"long_ttl", `{"ttl_seconds":3600}`, "exceeds max_ttl_seconds 600"},
			}
			for _, d := range denied {
				code, resp, _ := h.mintAs(t, path, caller{}, d.body)
				if msg, _ := resp["message"].(string); code != codes.PermissionDenied || !strings.Contains(msg, d.want) {
					t.Errorf("%s: anonymous mint %s = %v %v, want PermissionDenied containing %q", d.name, d.body, code, resp, d.want)
				}
			}
			// Naming the fixed identity is allowed; the burst of 6 is then
			// used up (denied mints take a token too, so that probing the
			// policy is rate limited: 1 + 3 denied + 2).
			if code, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"user"}`); code != codes.OK {
				t.Fatalf("anonymous mint naming user = %v %v", code, resp)
			}
			h.mintAs(t, path, caller{}, `{}`)
			code, resp, hdr := h.mintAs(t, path, caller{}, `{}`)
			if msg, _ := resp["message"].(string); code != codes.ResourceExhausted || !strings.Contains(msg, "rate limit of the anonymous reached") {
				t.Errorf("seventh anonymous mint = %v %v, want ResourceExhausted of the anonymous rate limit", code, resp)
			}
			if path == "rest" && hdr.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			// Verify still needs a credential.
			if path == "rest" {
				code, resp := h.do(t, "POST", "/v1/tokens:verify", "application/json", `{"token":"a.b.c"}`)
				if code != 401 {
					t.Errorf("anonymous POST /v1/tokens:verify = %d %v, want 401", code, resp)
				}
			} else if _, err := h.token.Verify(context.Background(), &tokenv1.VerifyRequest{Token: "a.b.c"}); status.Code(err) != codes.Unauthenticated {
				t.Errorf("anonymous Verify = %v, want Unauthenticated", err)
			}
			// A bad credential is still refused, never treated as anonymous.
			if code, _, _ := h.mintAs(t, path, caller{bearer: "tkd_not-a-real-credential-aaaaaaaaaaaaaaaaaaaaaa"}, `{}`); code != codes.Unauthenticated {
				t.Errorf("mint with a bad credential = %v, want Unauthenticated", code)
			}
		})
	}
}

// TestAnonymousGET is the README's migration example: a plain GET /token,
// no credential, no body, answered {"token": ...} for identity user.
func TestAnonymousGET(t *testing.T) {
	h, _ := anonHarness(t, `rules:
  - name: public-page
    kinds: ["anonymous"]
    applications: ["`+testApp+`"]
    identities: {fixed: user}
    grants: {voice: {outgoing: true}}
    rate_limit: {per_second: 1, burst: 10}
`)
	code, resp := h.do(t, "GET", "/token?_=1733280000000", "", "")
	if code != 200 || resp["identity"] != "user" {
		t.Fatalf("GET /token = %d %v, want 200 for user", code, resp)
	}
	verifyJWT(t, resp["token"].(string), testSecret)
}

// TestAnonymousGenerated: a generate rule gives every token its own
// identity and refuses one the caller names.
func TestAnonymousGenerated(t *testing.T) {
	h, _ := anonHarness(t, `rules:
  - name: guests
    kinds: ["anonymous"]
    applications: ["*"]
    identities: {generate: "guest_"}
    grants: {voice: {outgoing: true}}
    rate_limit: {per_second: 100, burst: 100}
`)
	re := regexp.MustCompile(`^guest_[0-9a-f]{20}$`)
	for _, path := range []string{"grpc", "rest"} {
		seen := map[any]bool{}
		for range 3 {
			code, resp, _ := h.mintAs(t, path, caller{}, `{}`)
			id, _ := resp["identity"].(string)
			if code != codes.OK || !re.MatchString(id) || seen[id] {
				t.Fatalf("%s: anonymous mint = %v %v, want a new generated guest_ identity", path, code, resp)
			}
			seen[id] = true
			_, claims := decodeJWT(t, resp["token"].(string))
			if got := claims["grants"].(map[string]any)["identity"]; got != id {
				t.Errorf("%s: token identity %v, response %v", path, got, id)
			}
		}
		code, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"guest_00000000000000000000"}`)
		if msg, _ := resp["message"].(string); code != codes.PermissionDenied || !strings.Contains(msg, "may not choose their identity") {
			t.Errorf("%s: anonymous mint naming an identity = %v %v, want PermissionDenied", path, code, resp)
		}
	}
}

// TestNoAnonymousRule: without an anonymous rule, policy mode refuses
// callers without credentials with 401, as before.
func TestNoAnonymousRule(t *testing.T) {
	h, _ := anonHarness(t, testPolicy)
	for _, path := range []string{"grpc", "rest"} {
		if code, resp, _ := h.mintAs(t, path, caller{}, `{}`); code != codes.Unauthenticated {
			t.Errorf("%s: anonymous mint without an anonymous rule = %v %v, want Unauthenticated", path, code, resp)
		}
	}
	req, _ := http.NewRequest("GET", h.httpURL+"/token", nil)
	if code, _ := h.doRaw(t, req); code != http.StatusUnauthorized {
		t.Errorf("GET /token = %d, want 401", code)
	}
	_, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{})
	if err == nil {
		t.Error("gRPC anonymous mint allowed")
	}
}

// TestAnonymousRuleReload: an anonymous rule added by a policy reload
// admits anonymous callers from then on, with the warning logged again;
// removing it refuses them again (401).
func TestAnonymousRuleReload(t *testing.T) {
	h, logs := anonHarness(t, testPolicy)
	if code, _, _ := h.mintAs(t, "rest", caller{}, `{}`); code != codes.Unauthenticated {
		t.Fatalf("anonymous mint before the reload = %v, want Unauthenticated", code)
	}
	if strings.Contains(logs.text(), "ANONYMOUS MINTING") {
		t.Fatal("anonymous warning logged for a policy without an anonymous rule")
	}
	policyFile := filepath.Join(h.policyDir, "policy.yaml")
	write := func(text string) {
		t.Helper()
		tmp := policyFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policyFile); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, want codes.Code) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, resp, _ := h.mintAs(t, "grpc", caller{}, `{}`)
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: anonymous mint = %v %v, want %v", what, code, resp, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	write(testPolicy + `  - name: public-page
    kinds: ["anonymous"]
    applications: ["*"]
    identities: {generate: "guest_"}
    grants: {voice: {outgoing: true}}
    rate_limit: {per_second: 10, burst: 10}
`)
	waitFor("after adding the anonymous rule", codes.OK)
	if l := logs.text(); !strings.Contains(l, "ANONYMOUS MINTING") || !strings.Contains(l, "rule=public-page") {
		t.Errorf("no warning naming the anonymous rule after the reload:\n%s", l)
	}
	write(testPolicy)
	waitFor("after removing the anonymous rule", codes.Unauthenticated)
}

// anonReachPolicy: anonymous callers may mint for the seed application
// only, as web_visitor (not the default identity user), with the reach
// grammar's defaults for outgoing calls (through the signing application,
// no params).
const anonReachPolicy = `rules:
  - name: public-page
    kinds: ["anonymous"]
    applications: ["` + testApp + `"]
    identities: {fixed: web_visitor}
    grants: {voice: {outgoing: true}}
    rate_limit: {per_second: 100, burst: 100}
`

// TestAnonymousReach: an anonymous rule's grants go through the same
// reach checks as any rule's (the outgoing application and params), and
// the audit record of an allowed mint names the rule's identity and the
// token's reach.
func TestAnonymousReach(t *testing.T) {
	h, _, auditLog := reachHarness(t, anonReachPolicy, nil)
	cases := []struct {
		name, body string
		want       codes.Code
		reason     string // with PermissionDenied: a substring of the message
		outgoing   string // the token's (and audit record's) outgoing application
	}{
		{"defaults", `{}`, codes.OK, "", testApp},
		{"outgoing_self", `{"grants":` + voiceOut(testApp, "") + `}`, codes.OK, "", testApp},
		{"outgoing_other_app", `{"grants":` + voiceOut(reachApp2, "") + `}`, codes.PermissionDenied,
			"rule public-page: voice.outgoing.application_sid " + reachApp2 + " is not allowed: outgoing calls may run through the signing application " + testApp, reachApp2},
		{"outgoing_third_app", `{"grants":` + voiceOut(reachApp3, "") + `}`, codes.PermissionDenied, "voice.outgoing.application_sid " + reachApp3 + " is not allowed", reachApp3},
		{"params", `{"grants":` + voiceOut(testApp, `{"to":"bob"}`) + `}`, codes.PermissionDenied, `voice.outgoing.params key "to" is not allowed (allowed keys: none)`, testApp},
		{"signer_not_allowed", `{"application_sid":"` + reachApp2 + `"}`, codes.PermissionDenied, "application " + reachApp2 + " is not allowed", reachApp2},
		{"incoming", `{"grants":{"voice":{"incoming":{"allow":true}}}}`, codes.PermissionDenied, "grant voice.incoming is not allowed", ""},
	}
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				code, resp, _ := h.mintAs(t, path, caller{}, tc.body)
				if code != tc.want {
					t.Fatalf("anonymous mint %s = %v %v, want %v", tc.body, code, resp, tc.want)
				}
				if code == codes.PermissionDenied {
					if msg, _ := resp["message"].(string); !strings.Contains(msg, tc.reason) {
						t.Errorf("denial %q does not say %q", msg, tc.reason)
					}
					return
				}
				_, claims := decodeJWT(t, resp["token"].(string))
				if resp["identity"] != "web_visitor" || get(claims, "grants", "identity") != "web_visitor" {
					t.Errorf("identity %v, token identity %v, want the rule's web_visitor", resp["identity"], get(claims, "grants", "identity"))
				}
				if got := get(claims, "grants", "voice", "outgoing", "application_sid"); got != tc.outgoing {
					t.Errorf("token's outgoing application = %v, want %s", got, tc.outgoing)
				}
			})
		}
	}

	records, _ := readAudit(t, h, auditLog)
	count := map[string]int{} // decision, identity, outgoing application
	for _, r := range records {
		if r["event"] != "mint" || r["principal_kind"] != "anonymous" {
			continue
		}
		id, _ := r["identity"].(string)
		out, _ := r["outgoing_application_sid"].(string)
		count[r["decision"].(string)+" "+id+" "+out]++
		if r["decision"] == "allow" && id != "web_visitor" {
			t.Errorf("allowed anonymous mint audited for identity %q, want the rule's web_visitor: %v", id, r)
		}
	}
	want := map[string]int{
		"allow web_visitor " + testApp: 4, // defaults and outgoing_self, over both paths
		"deny user " + reachApp2:       2, // outgoing_other_app
		"deny user " + reachApp3:       2,
		"deny user " + testApp:         2, // params
		// incoming, and signer_not_allowed: an application the caller may
		// not mint for is denied before it is looked up, so its default
		// grants (and their outgoing application) are not read.
		"deny user ": 4,
	}
	if diff := cmp.Diff(want, count); diff != "" {
		t.Errorf("anonymous audit records (decision identity outgoing) differ (-want +got):\n%s", diff)
	}
}

// TestAnonymousExplain: an anonymous caller's explanation (validate_only)
// is decided with the rule's identity, audited, and charged to its
// address in the anonymous rule's bucket, allowed or denied, as its mints
// are; nothing is signed.
func TestAnonymousExplain(t *testing.T) {
	for _, path := range []string{"grpc", "rest"} {
		t.Run(path, func(t *testing.T) {
			h, _, auditLog := reachHarness(t, strings.Replace(anonReachPolicy, "{per_second: 100, burst: 100}", "{per_second: 0.001, burst: 3}", 1), nil)
			code, resp, _ := h.mintAs(t, path, caller{}, `{"validate_only":true}`)
			if code != codes.OK || resp["token"] != nil || resp["identity"] != "web_visitor" ||
				get(resp, "decision", "rule") != "public-page" || get(resp, "decision", "claims", "grants", "identity") != "web_visitor" {
				t.Fatalf("anonymous explanation = %v %v, want the public-page decision for web_visitor and no token", code, resp)
			}
			code, resp, _ = h.mintAs(t, path, caller{}, `{"validate_only":true,"grants":{"voice":{"incoming":{"allow":true}}}}`)
			if code != codes.PermissionDenied || resp["claims"] != nil {
				t.Fatalf("denied anonymous explanation = %v %v, want PermissionDenied", code, resp)
			}
			// The burst of 3 had one token left for a mint.
			if code, resp, _ := h.mintAs(t, path, caller{}, `{}`); code != codes.OK {
				t.Fatalf("mint after two explanations in a burst of 3 = %v %v, want OK", code, resp)
			}
			code, resp, hdr := h.mintAs(t, path, caller{}, `{"validate_only":true}`)
			if msg, _ := resp["message"].(string); code != codes.ResourceExhausted || !strings.Contains(msg, "rate limit of the anonymous reached") {
				t.Fatalf("explanation past the anonymous burst = %v %v, want ResourceExhausted of the anonymous rate limit", code, resp)
			}
			if path == "rest" && hdr.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			records, _ := readAudit(t, h, auditLog)
			var got []string
			for _, r := range records {
				if r["principal_kind"] == "anonymous" {
					if r["jti"] != nil && r["event"] == "explain" {
						t.Errorf("explain record %v has a jti: nothing was signed", r)
					}
					got = append(got, r["event"].(string)+" "+r["decision"].(string)+" "+r["code"].(string)+" "+r["identity"].(string))
				}
			}
			want := []string{
				"explain allow OK web_visitor",
				"explain deny PermissionDenied user",
				"mint allow OK web_visitor",
				"explain deny ResourceExhausted web_visitor",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("anonymous audit records differ (-want +got):\n%s", diff)
			}
		})
	}
}
