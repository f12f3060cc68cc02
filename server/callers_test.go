package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/auth"
)

const testPolicy = `rules:
  - name: backend
    principals: ["credential:backend"]
    applications: ["*"]
    identities: {pattern: "^[a-z0-9_]+$"}
    grants:
      voice: {incoming: true, outgoing: true}
      video: {rooms: ".*"}
    max_ttl_seconds: 3600
  - name: browsers
    kinds: ["oidc", "proxy"]
    applications: ["` + testApp + `"]
    identities: {self: true}
    grants:
      voice: {incoming: false, outgoing: true}
    max_ttl_seconds: 600
`

// issuer is a test OIDC provider: an RSA key behind a JWKS endpoint.
type issuer struct {
	key  *rsa.PrivateKey
	url  string
	name string
}

func newIssuer(t *testing.T) *issuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks := map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jwks)
	}))
	t.Cleanup(srv.Close)
	return &issuer{key: key, url: srv.URL, name: "https://login.example.test"}
}

// token signs claims for sub alice unless changed by edit.
func (is *issuer) token(t *testing.T, edit func(jwt.MapClaims)) string {
	now := time.Now()
	c := jwt.MapClaims{"iss": is.name, "aud": "tokend", "sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(is.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func callerHarness(t *testing.T, is *issuer, trusted string, extra func(*server.Config)) (*harness, string, string) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		PolicyFile: policyFile,
		OIDC:       &auth.OIDCConfig{Issuer: is.name, Audience: "tokend", JWKSURL: is.url},
		Proxy:      &auth.ProxyConfig{Trusted: []netip.Prefix{netip.MustParsePrefix(trusted)}},
		AuditLog:   filepath.Join(dir, "audit.log"),
	}
	if extra != nil {
		extra(&cfg)
	}
	h := adminHarness(t, cfg)
	resp, err := tokenv1.NewAdminServiceClient(h.conn).CreateCredential(adminCtx(), &tokenv1.CreateCredentialRequest{Name: "backend"})
	if err != nil {
		t.Fatal(err)
	}
	return h, resp.GetToken(), cfg.AuditLog
}

// caller is how a test case authenticates: a bearer token, or a header a
// proxy would set.
type caller struct {
	bearer    string
	proxyUser string // REST only
}

// mintAs mints through path ("grpc" or "rest") as c and returns the gRPC
// code, the response (or error) as JSON and, for REST, the headers.
func (h *harness) mintAs(t *testing.T, path string, c caller, body string) (codes.Code, map[string]any, http.Header) {
	t.Helper()
	if path == "grpc" {
		req := &tokenv1.MintRequest{}
		if err := jsonToProto(body, req); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if c.bearer != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.bearer)
		}
		var hdr metadata.MD
		resp, err := h.token.Mint(ctx, req, grpcHeader(&hdr))
		if err != nil {
			return status.Code(err), map[string]any{"message": status.Convert(err).Message()}, nil
		}
		return codes.OK, jsonOf(t, resp), nil
	}
	req, _ := http.NewRequest("POST", h.httpURL+"/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.proxyUser != "" {
		req.Header.Set("X-Auth-Request-User", c.proxyUser)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode == 200 {
		return codes.OK, m, resp.Header
	}
	code, _ := m["code"].(float64)
	return codes.Code(code), m, resp.Header
}

// TestCallerDecisions: one table of (caller, request) → decision, run
// against gRPC and REST alike.
func TestCallerDecisions(t *testing.T) {
	is := newIssuer(t)
	h, cred, auditLog := callerHarness(t, is, "127.0.0.1/32", nil)
	alice := is.token(t, nil)
	cases := []struct {
		name     string
		caller   caller
		body     string
		restOnly bool
		want     codes.Code
		identity string // of the token, when allowed
	}{
		{name: "anonymous_refused", body: `{}`, want: codes.Unauthenticated},
		{name: "credential_allowed", caller: caller{bearer: cred}, body: `{"identity":"agent_7"}`, want: codes.OK, identity: "agent_7"},
		{name: "credential_incoming_voice", caller: caller{bearer: cred}, body: `{"identity":"agent_7","grants":{"voice":{"incoming":{"allow":true}}}}`, want: codes.OK, identity: "agent_7"},
		{name: "credential_identity_outside_pattern", caller: caller{bearer: cred}, body: `{"identity":"Agent_7"}`, want: codes.PermissionDenied},
		{name: "credential_grant_not_allowed", caller: caller{bearer: cred}, body: `{"identity":"agent_7","grants":{"chat":{}}}`, want: codes.PermissionDenied},
		{name: "credential_unknown", caller: caller{bearer: "tkd_" + strings.Repeat("A", 43)}, body: `{}`, want: codes.Unauthenticated},
		{name: "oidc_own_identity", caller: caller{bearer: alice}, body: `{}`, want: codes.OK, identity: "alice"},
		{name: "oidc_other_identity", caller: caller{bearer: alice}, body: `{"identity":"bob"}`, want: codes.PermissionDenied},
		{name: "oidc_incoming_voice", caller: caller{bearer: alice}, body: `{"grants":{"voice":{"incoming":{"allow":true}}}}`, want: codes.PermissionDenied},
		{name: "oidc_ttl_over_rule", caller: caller{bearer: alice}, body: `{"ttl_seconds":3600}`, want: codes.PermissionDenied},
		// Browsers may mint for testApp only: whether tokend holds another
		// application is not theirs to learn (denied, not NotFound).
		{name: "oidc_other_application", caller: caller{bearer: alice}, body: `{"application_sid":"` + server.DemoApplicationSID + `"}`, want: codes.PermissionDenied},
		// The rule allows only testApp: outgoing calls through another
		// application are denied although testApp signs.
		{name: "oidc_outgoing_through_other_application", caller: caller{bearer: alice}, body: `{"grants":{"voice":{"outgoing":{"application_sid":"APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}}}}`, want: codes.PermissionDenied},
		{name: "oidc_outgoing_params", caller: caller{bearer: alice}, body: `{"grants":{"voice":{"outgoing":{"application_sid":"` + testApp + `","params":{"to":"+15550100"}}}}}`, want: codes.PermissionDenied},
		{name: "proxy_outgoing_through_other_application", caller: caller{proxyUser: "carol"}, body: `{"grants":{"voice":{"outgoing":{"application_sid":"APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"}}}}`, restOnly: true, want: codes.PermissionDenied},
		{name: "oidc_expired", caller: caller{bearer: is.token(t, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })}, body: `{}`, want: codes.Unauthenticated},
		{name: "oidc_wrong_issuer", caller: caller{bearer: is.token(t, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })}, body: `{}`, want: codes.Unauthenticated},
		{name: "oidc_wrong_audience", caller: caller{bearer: is.token(t, func(c jwt.MapClaims) { c["aud"] = "someone-else" })}, body: `{}`, want: codes.Unauthenticated},
		{name: "oidc_alg_none", caller: caller{bearer: algNone(alice)}, body: `{}`, want: codes.Unauthenticated},
		{name: "oidc_forged", caller: caller{bearer: forge(t, alice)}, body: `{}`, want: codes.Unauthenticated},
		{name: "proxy_user", caller: caller{proxyUser: "carol"}, body: `{}`, restOnly: true, want: codes.OK, identity: "carol"},
		{name: "proxy_user_other_identity", caller: caller{proxyUser: "carol"}, body: `{"identity":"alice"}`, restOnly: true, want: codes.PermissionDenied},
	}
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			if tc.restOnly && path == "grpc" {
				continue
			}
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				code, resp, _ := h.mintAs(t, path, tc.caller, tc.body)
				if code != tc.want {
					t.Fatalf("mint as %s = %v %v, want %v", tc.name, code, resp, tc.want)
				}
				if code == codes.OK && resp["identity"] != tc.identity {
					t.Errorf("token for %v, want %s", resp["identity"], tc.identity)
				}
				if code == codes.PermissionDenied && !strings.Contains(resp["message"].(string), "rule") {
					t.Errorf("denial %q does not name the rule", resp["message"])
				}
			})
		}
	}

	// A browser asking for no lifetime gets its rule's cap (600 s).
	if code, resp, _ := h.mintAs(t, "rest", caller{bearer: alice}, `{}`); code != codes.OK {
		t.Errorf("mint as alice = %v %v", code, resp)
	} else {
		iat, _ := time.Parse(time.RFC3339, resp["issued_at"].(string))
		exp, _ := time.Parse(time.RFC3339, resp["expires_at"].(string))
		if d := exp.Sub(iat); d != 600*time.Second {
			t.Errorf("browser token lifetime %v, want the rule's 600 s", d)
		}
	}

	// validate_only explains without signing.
	code, resp, _ := h.mintAs(t, "grpc", caller{bearer: cred}, `{"identity":"agent_7","validate_only":true}`)
	if code != codes.OK || resp["token"] != nil || get(resp, "decision", "rule") != "backend" || get(resp, "decision", "claims", "grants", "identity") != "agent_7" || get(resp, "decision", "token_size") == nil {
		t.Errorf("validate_only = %v %v, want the decision of rule backend, the claims and the size, and no token", code, resp)
	}

	// A denied request explained: the 403 a mint gets, saying why and
	// naming the rule, and nothing of the application.
	code, resp, _ = h.mintAs(t, "rest", caller{bearer: alice}, `{"identity":"bob","validate_only":true}`)
	if msg, _ := resp["message"].(string); code != codes.PermissionDenied || !strings.Contains(msg, "(rule browser-own-identity)") ||
		!strings.Contains(msg, "identity bob is not the caller's own identity alice") || resp["decision"] != nil || resp["account_sid"] != nil {
		t.Errorf("validate_only of a denied request = %v %v, want PermissionDenied naming the rule and the reason", code, resp)
	}

	// Every decision is in the audit log, without a token or credential.
	h.srv.Close()
	raw, err := os.ReadFile(auditLog)
	if err != nil {
		t.Fatal(err)
	}
	allow, deny := 0, 0
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line is not JSON: %v", err)
		}
		if r["event"] != "mint" {
			continue
		}
		for _, k := range []string{"time", "principal", "identity", "application_sid", "decision", "rule", "request_id"} {
			if r[k] == nil {
				t.Errorf("audit record %v lacks %s", r, k)
			}
		}
		switch r["decision"] {
		case "allow":
			allow++
			if r["jti"] == nil || r["exp"] == nil {
				t.Errorf("allowed mint record %v lacks jti or exp", r)
			}
		case "deny":
			deny++
		}
	}
	if allow < 7 || deny < 10 {
		t.Errorf("audit log has %d allowed and %d denied mints, want at least 7 and 10", allow, deny)
	}
	for _, secret := range []string{cred, alice, testSecret} {
		if strings.Contains(string(raw), secret) {
			t.Error("the audit log contains a credential or secret")
		}
	}
}

func algNone(tok string) string {
	parts := strings.Split(tok, ".")
	return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
}

func forge(t *testing.T, tok string) string {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	f := jwt.NewWithClaims(jwt.SigningMethodRS256, parsed.Claims)
	f.Header["kid"] = "k1"
	s, err := f.SignedString(other)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSpoofedProxyHeader: a proxy header from an address that is not a
// trusted proxy is refused, not believed.
func TestSpoofedProxyHeader(t *testing.T) {
	h, _, _ := callerHarness(t, newIssuer(t), "10.0.0.0/8", nil)
	code, resp, _ := h.mintAs(t, "rest", caller{proxyUser: "mallory"}, `{}`)
	if code != codes.Unauthenticated {
		t.Fatalf("mint with a spoofed proxy header = %v %v, want Unauthenticated", code, resp)
	}
}

// TestRateLimit: past the burst, mints are refused with 429 and
// Retry-After (ResourceExhausted over gRPC), then succeed again.
func TestRateLimit(t *testing.T) {
	for _, path := range []string{"grpc", "rest"} {
		t.Run(path, func(t *testing.T) {
			h := newHarness(t, server.Config{RateLimitIdentity: 1, RateLimitBurst: 2, Seed: server.Seed{
				AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp,
			}})
			var code codes.Code
			var hdr http.Header
			for range 3 {
				code, _, hdr = h.mintAs(t, path, caller{}, `{"identity":"rl_user"}`)
			}
			if code != codes.ResourceExhausted {
				t.Fatalf("third mint in a burst of 2 = %v, want ResourceExhausted", code)
			}
			wait := time.Second
			if path == "rest" {
				secs, err := strconv.Atoi(hdr.Get("Retry-After"))
				if err != nil || secs < 1 {
					t.Fatalf("429 without a Retry-After header: %q", hdr.Get("Retry-After"))
				}
				wait = time.Duration(secs) * time.Second
			}
			if c, _, _ := h.mintAs(t, path, caller{}, `{"identity":"another_user"}`); c != codes.OK {
				t.Errorf("another identity is limited too: %v", c)
			}
			time.Sleep(wait + 100*time.Millisecond)
			if c, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"rl_user"}`); c != codes.OK {
				t.Errorf("mint after Retry-After = %v %v, want OK", c, resp)
			}
		})
	}
}

// TestVerify checks tokens through both paths: a fresh token is valid; a
// tampered one is a bad signature (Twilio 20107).
func TestVerify(t *testing.T) {
	h := seededHarness(t)
	resp, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{Identity: proto.String("alice")})
	if err != nil {
		t.Fatal(err)
	}
	tok := resp.GetToken()
	tampered := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
	for _, tc := range []struct {
		name  string
		token string
		valid bool
		code  float64
	}{{"fresh", tok, true, 0}, {"tampered", tampered, false, 20107}} {
		g, err := h.token.Verify(context.Background(), &tokenv1.VerifyRequest{Token: tc.token})
		if err != nil || g.GetValid() != tc.valid || float64(g.GetTwilioErrorCode()) != tc.code {
			t.Errorf("grpc Verify(%s) = %v, %v, want valid %v code %v", tc.name, g, err, tc.valid, tc.code)
		}
		code, body := h.do(t, "POST", "/v1/tokens:verify", "application/json", `{"token":"`+tc.token+`"}`)
		gotCode, _ := body["twilio_error_code"].(float64)
		gotValid, _ := body["valid"].(bool)
		if code != 200 || gotValid != tc.valid || gotCode != tc.code {
			t.Errorf("POST /v1/tokens:verify (%s) = %d %v, want valid %v code %v", tc.name, code, body, tc.valid, tc.code)
		}
	}
}

func jsonToProto(body string, m proto.Message) error {
	return protojson.Unmarshal([]byte(body), m)
}

func grpcHeader(md *metadata.MD) grpc.CallOption { return grpc.Header(md) }
