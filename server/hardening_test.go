package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/tokend/tokend/server"
)

// hostRequest sends method path to h with the Host header host and returns
// the status, the headers and the body.
func hostRequest(t *testing.T, h *harness, method, path, host string, hdr map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %q): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, resp.Header, sb.String()
}

// TestDevModeLoopbackHost: development mode answers only loopback Host
// names, on every route; policy mode answers any Host.
func TestDevModeLoopbackHost(t *testing.T) {
	dev := adminHarness(t, server.Config{})
	pol, _, _ := callerHarness(t, newIssuer(t), "127.0.0.1/32", nil)
	routes := []struct{ method, path, body string }{
		{"POST", "/token", `{}`},
		{"GET", "/token", ""},
		{"POST", "/v1/tokens:verify", `{"token":"x"}`},
		{"GET", "/v1/applications", ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/metrics", ""},
		{"GET", "/openapi.json", ""},
		{"GET", "/", ""},
		{"GET", "/assets/app.js", ""},
		{"GET", "/no/such/route", ""},
		{"OPTIONS", "/token", ""},
	}
	hosts := []struct {
		host     string
		loopback bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LOCALHOST:8080", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8080", true},
		{"[::1]", true},
		{"[::1]:8080", true},
		{"evil.example", false},
		{"evil.example:8080", false},
		{"localhost.evil.example:8080", false},
		{"localhost.", false},
		{"localhost.:8080", false},
		{"127.0.0.2:8080", false},
		{"127.1:8080", false},
		{"0.0.0.0:8080", false},
		{"[::1]x", false},
		{"[::2]:8080", false},
		{"[::ffff:127.0.0.1]:8080", false},
		{"localhost:", false},
		{"localhost:0", false},
		{"localhost:65536", false},
		{"localhost:08080", false},
		{"localhost:8080:1", false},
		{"192.168.1.10:8080", false},
	}
	for _, hc := range hosts {
		for _, rt := range routes {
			name := strings.NewReplacer("/", "_", ":", "_", "[", "", "]", "").Replace(hc.host + rt.method + rt.path)
			t.Run(name, func(t *testing.T) {
				code, hdr, body := hostRequest(t, dev, rt.method, rt.path, hc.host, nil, rt.body)
				if !hc.loopback {
					if code != http.StatusMisdirectedRequest {
						t.Fatalf("dev mode, Host %q: %s %s = %d, want 421: %s", hc.host, rt.method, rt.path, code, body)
					}
					var st map[string]any
					if err := json.Unmarshal([]byte(body), &st); err != nil || !strings.Contains(st["message"].(string), "development mode answers only") {
						t.Errorf("dev mode refusal body %q does not say why", body)
					}
					if hdr.Get("X-Request-Id") == "" {
						t.Errorf("refusal has no X-Request-Id")
					}
					// Policy mode serves any name.
					if code, _, body := hostRequest(t, pol, rt.method, rt.path, hc.host, nil, rt.body); code == http.StatusMisdirectedRequest {
						t.Errorf("policy mode, Host %q: %s %s = 421, want it served: %s", hc.host, rt.method, rt.path, body)
					}
					return
				}
				if code == http.StatusMisdirectedRequest {
					t.Fatalf("dev mode, Host %q: %s %s = 421, want it served: %s", hc.host, rt.method, rt.path, body)
				}
			})
		}
	}
	// A loopback mint in development mode still works.
	code, _, body := hostRequest(t, dev, "POST", "/token", "localhost:8080", nil, `{"identity":"dev"}`)
	if code != http.StatusOK || !strings.Contains(body, `"token"`) {
		t.Fatalf("dev mode loopback mint = %d %s, want a token", code, body)
	}
}

// TestAdminNoCORS: the admin API sends no CORS header to any origin, an
// allowed one included, and refuses its preflights; the token API still
// answers allowed origins.
func TestAdminNoCORS(t *testing.T) {
	const origin = "https://app.example.com"
	h := adminHarness(t, server.Config{CORSOrigins: []string{origin}})
	cors := []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
		"Access-Control-Max-Age", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers"}
	preflight := map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
	withOrigin := func(authz bool) map[string]string {
		m := map[string]string{"Origin": origin}
		if authz {
			m["Authorization"] = "Bearer " + adminToken
		}
		return m
	}
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		wantCORS                 bool
	}{
		{name: "admin_list_allowed_origin", method: "GET", path: "/v1/applications", hdr: withOrigin(true), status: 200},
		{name: "admin_list_no_token", method: "GET", path: "/v1/applications", hdr: withOrigin(false), status: 401},
		{name: "admin_create_credential", method: "POST", path: "/v1/credentials", body: `{"name":"x"}`, hdr: withOrigin(true), status: 200},
		{name: "admin_keyring_preflight", method: "OPTIONS", path: "/v1/keyring:rewrap", hdr: preflight, status: 403},
		{name: "admin_applications_preflight", method: "OPTIONS", path: "/v1/applications", hdr: preflight, status: 403},
		{name: "admin_application_preflight", method: "OPTIONS", path: "/v1/applications/" + testApp, hdr: preflight, status: 403},
		{name: "admin_credentials_preflight", method: "OPTIONS", path: "/v1/credentials", hdr: preflight, status: 403},
		{name: "token_preflight", method: "OPTIONS", path: "/token", hdr: preflight, status: 204, wantCORS: true},
		{name: "token_mint", method: "POST", path: "/token", body: `{}`, hdr: withOrigin(false), status: 200, wantCORS: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := hostRequest(t, h, tc.method, tc.path, "", tc.hdr, tc.body)
			if code != tc.status {
				t.Fatalf("%s %s = %d, want %d: %s", tc.method, tc.path, code, tc.status, body)
			}
			if tc.wantCORS {
				if got := hdr.Get("Access-Control-Allow-Origin"); got != origin {
					t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, origin)
				}
				return
			}
			for _, k := range cors {
				if v := hdr.Values(k); len(v) > 0 {
					t.Errorf("admin %s %s sent %s: %q", tc.method, tc.path, k, v)
				}
			}
			if tc.status == 403 && !strings.Contains(body, "admin API does not answer cross-origin") {
				t.Errorf("preflight refusal %q does not say why", body)
			}
		})
	}
}

// groupsPolicy gives the group "admins" incoming calls; other browser
// callers outgoing only.
const groupsPolicy = `rules:
  - name: admins
    groups: ["admins"]
    applications: ["*"]
    identities: {pattern: ".*"}
    grants:
      voice: {incoming: true, outgoing: true}
    max_ttl_seconds: 3600
  - name: browsers
    kinds: ["oidc", "proxy"]
    applications: ["` + testApp + `"]
    identities: {self: true}
    grants:
      voice: {incoming: false, outgoing: true}
    max_ttl_seconds: 600
`

// TestBrowserCallersProve: an email identity needs email_verified, proxy
// groups come only from a configured header, and a repeated proxy header
// is refused; through gRPC and REST where both apply.
func TestBrowserCallersProve(t *testing.T) {
	is := newIssuer(t)
	withPolicy := func(groupsHeader string, allowUnverified bool) func(*server.Config) {
		return func(cfg *server.Config) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(path, []byte(groupsPolicy), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.PolicyFile = path
			cfg.OIDC.IdentityClaim = "email"
			cfg.OIDC.AllowUnverifiedEmail = allowUnverified
			cfg.Proxy.GroupsHeader = groupsHeader
		}
	}
	strict, _, _ := callerHarness(t, is, "127.0.0.1/32", withPolicy("", false))
	groups, _, _ := callerHarness(t, is, "127.0.0.1/32", withPolicy("X-Auth-Request-Groups", false))
	lax, _, _ := callerHarness(t, is, "127.0.0.1/32", withPolicy("", true))

	email := func(verified any) string {
		return is.token(t, func(c jwt.MapClaims) {
			c["email"] = "alice@example.com"
			if verified != nil {
				c["email_verified"] = verified
			}
		})
	}
	const aliceID = "alice_40example_2Ecom"
	// Only the admins rule allows incoming calls.
	const incoming = `{"grants":{"voice":{"incoming":{"allow":true}}}}`
	const unverified = `the identity claim "email" is an email address the provider has not verified (email_verified is not true)`
	cases := []struct {
		name     string
		h        *harness
		caller   caller
		headers  map[string][]string // REST only: extra headers, repeated as given
		body     string
		want     codes.Code
		identity string
		msg      string
	}{
		{name: "oidc_email_verified", h: strict, caller: caller{bearer: email(true)}, body: `{}`, want: codes.OK, identity: aliceID},
		{name: "oidc_email_verified_string", h: strict, caller: caller{bearer: email("true")}, body: `{}`, want: codes.OK, identity: aliceID},
		{name: "oidc_email_unverified", h: strict, caller: caller{bearer: email(nil)}, body: `{}`, want: codes.Unauthenticated, msg: unverified},
		{name: "oidc_email_verified_false", h: strict, caller: caller{bearer: email(false)}, body: `{}`, want: codes.Unauthenticated, msg: unverified},
		{name: "oidc_email_verified_false_validate_only", h: strict, caller: caller{bearer: email(false)}, body: `{"validate_only":true}`, want: codes.Unauthenticated, msg: unverified},
		{name: "oidc_email_unverified_operator_opted_out", h: lax, caller: caller{bearer: email(false)}, body: `{}`, want: codes.OK, identity: aliceID},
		{name: "proxy_groups_header_off", h: strict, headers: map[string][]string{"X-Auth-Request-User": {"carol"}, "X-Auth-Request-Groups": {"admins"}}, body: incoming, want: codes.PermissionDenied},
		{name: "proxy_groups_header_off_own_identity", h: strict, headers: map[string][]string{"X-Auth-Request-User": {"carol"}, "X-Auth-Request-Groups": {"admins"}}, body: `{}`, want: codes.OK, identity: "carol"},
		{name: "proxy_groups_header_on", h: groups, headers: map[string][]string{"X-Auth-Request-User": {"carol"}, "X-Auth-Request-Groups": {"admins"}}, body: incoming, want: codes.OK, identity: "carol"},
		{name: "proxy_user_repeated", h: strict, headers: map[string][]string{"X-Auth-Request-User": {"carol", "admin"}}, body: `{}`, want: codes.Unauthenticated, msg: "proxy header X-Auth-Request-User given 2 times: want it once"},
		{name: "proxy_user_repeated_case", h: strict, headers: map[string][]string{"X-Auth-Request-User": {"carol"}, "x-auth-request-user": {"admin"}}, body: `{}`, want: codes.Unauthenticated, msg: "given 2 times"},
		{name: "proxy_groups_repeated", h: groups, headers: map[string][]string{"X-Auth-Request-User": {"carol"}, "X-Auth-Request-Groups": {"users", "admins"}}, body: incoming, want: codes.Unauthenticated, msg: "proxy header X-Auth-Request-Groups given 2 times: want it once"},
	}
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			if tc.headers != nil && path == "grpc" {
				continue // proxy headers are REST only
			}
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				var code codes.Code
				var resp map[string]any
				var httpStatus int
				if tc.headers != nil {
					code, resp, httpStatus = restWithHeaders(t, tc.h, tc.headers, tc.body)
				} else {
					code, resp, _ = tc.h.mintAs(t, path, tc.caller, tc.body)
				}
				if code != tc.want {
					t.Fatalf("mint = %v %v, want %v", code, resp, tc.want)
				}
				if code == codes.OK && tc.identity != "" && resp["identity"] != tc.identity {
					t.Errorf("token for %v, want %s", resp["identity"], tc.identity)
				}
				if tc.msg != "" && !strings.Contains(fmt.Sprint(resp["message"]), tc.msg) {
					t.Errorf("message %q does not say %q", resp["message"], tc.msg)
				}
				if httpStatus != 0 && code == codes.Unauthenticated && httpStatus != http.StatusUnauthorized {
					t.Errorf("HTTP status %d, want 401", httpStatus)
				}
			})
		}
	}
}

// restWithHeaders mints over REST with headers sent as given (repeated
// values as repeated header lines), and returns the gRPC code, the body
// and the HTTP status.
func restWithHeaders(t *testing.T, h *harness, hdr map[string][]string, body string) (codes.Code, map[string]any, int) {
	t.Helper()
	req, err := http.NewRequest("POST", h.httpURL+"/token", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header[http.CanonicalHeaderKey(k)] = append(req.Header[http.CanonicalHeaderKey(k)], v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode == http.StatusOK {
		return codes.OK, m, resp.StatusCode
	}
	c, _ := m["code"].(float64)
	return codes.Code(c), m, resp.StatusCode
}
