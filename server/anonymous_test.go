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
    rate_limit: {per_second: 0.01, burst: 3}
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
			// Naming the fixed identity is allowed; the burst of 3 is then
			// used up (denied mints take nothing).
			if code, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"user"}`); code != codes.OK {
				t.Fatalf("anonymous mint naming user = %v %v", code, resp)
			}
			h.mintAs(t, path, caller{}, `{}`)
			code, resp, hdr := h.mintAs(t, path, caller{}, `{}`)
			if msg, _ := resp["message"].(string); code != codes.ResourceExhausted || !strings.Contains(msg, "rate limit of the anonymous reached") {
				t.Errorf("fourth anonymous mint = %v %v, want ResourceExhausted of the anonymous rate limit", code, resp)
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
