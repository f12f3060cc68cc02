package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/auth"
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
	dev := adminHarness(t, server.Config{CORSOrigins: []string{origin}})
	pol, _, _ := callerHarness(t, newIssuer(t), "10.0.0.0/8", func(cfg *server.Config) { cfg.CORSOrigins = []string{origin} })
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
		policyStatus             int // in policy mode, when not status
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
		{name: "token_mint", method: "POST", path: "/token", body: `{}`, hdr: withOrigin(false), status: 200, policyStatus: 401, wantCORS: true},
	}
	for _, mode := range []struct {
		name   string
		h      *harness
		policy bool
	}{{"dev", dev, false}, {"policy", pol, true}} {
		for _, tc := range cases {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				want := tc.status
				if mode.policy && tc.policyStatus != 0 {
					want = tc.policyStatus
				}
				code, hdr, body := hostRequest(t, mode.h, tc.method, tc.path, "", tc.hdr, tc.body)
				if code != want {
					t.Fatalf("%s %s = %d, want %d: %s", tc.method, tc.path, code, want, body)
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
	dev := adminHarness(t, server.Config{
		OIDC:  &auth.OIDCConfig{Issuer: is.name, Audience: "tokend", JWKSURL: is.url, IdentityClaim: "email"},
		Proxy: &auth.ProxyConfig{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
	})

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
		{name: "dev_oidc_email_verified", h: dev, caller: caller{bearer: email(true)}, body: `{}`, want: codes.OK},
		{name: "dev_oidc_email_unverified", h: dev, caller: caller{bearer: email(nil)}, body: `{}`, want: codes.Unauthenticated, msg: unverified},
		{name: "dev_oidc_email_verified_false", h: dev, caller: caller{bearer: email(false)}, body: `{"identity":"x"}`, want: codes.Unauthenticated, msg: unverified},
		{name: "dev_anonymous", h: dev, body: `{}`, want: codes.OK},
		{name: "dev_proxy_user_repeated", h: dev, headers: map[string][]string{"X-Auth-Request-User": {"carol", "admin"}}, body: `{}`, want: codes.Unauthenticated, msg: "proxy header X-Auth-Request-User given 2 times: want it once"},
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

// TestAuthFailureThrottle: failed authentication is audited and, past the
// burst, refused per client address with 429 / ResourceExhausted and
// Retry-After, good credentials from that address included, while other
// addresses go on. REST comes from 127.0.0.1, gRPC over bufconn from an
// unknown address: two addresses. Policy mode, development mode and the
// admin API.
func TestAuthFailureThrottle(t *testing.T) {
	is := newIssuer(t)
	throttle := func(cfg *server.Config) { cfg.AuthFailureRate, cfg.AuthFailureBurst = 0.001, 3 }
	pol, cred, polAudit := callerHarness(t, is, "10.0.0.0/8", throttle)
	admin, _, adminAudit := callerHarness(t, is, "10.0.0.0/8", throttle)
	devAudit := filepath.Join(t.TempDir(), "audit.log")
	dev := adminHarness(t, server.Config{AuditLog: devAudit, AuthFailureRate: 0.001, AuthFailureBurst: 3})

	badCred := caller{bearer: "tkd_" + strings.Repeat("A", 43)}
	badOIDC := caller{bearer: is.token(t, func(c jwt.MapClaims) { c["aud"] = "someone-else" })}
	good := caller{bearer: cred}
	type step struct {
		name   string
		h      *harness
		path   string // grpc, rest, admin-grpc, admin-rest
		caller caller
		admin  string // admin-*: the bearer sent
		want   codes.Code
	}
	steps := []step{
		{"policy_rest_good", pol, "rest", good, "", codes.OK},
		{"policy_rest_bad_1", pol, "rest", badCred, "", codes.Unauthenticated},
		{"policy_rest_bad_2", pol, "rest", badOIDC, "", codes.Unauthenticated},
		{"policy_rest_none_not_counted", pol, "rest", caller{}, "", codes.Unauthenticated},
		{"policy_rest_bad_3", pol, "rest", caller{bearer: "not-a-credential"}, "", codes.Unauthenticated},
		{"policy_rest_bad_throttled", pol, "rest", badCred, "", codes.ResourceExhausted},
		{"policy_rest_good_throttled", pol, "rest", good, "", codes.ResourceExhausted},
		{"policy_grpc_other_address_good", pol, "grpc", good, "", codes.OK},
		{"policy_grpc_bad_1", pol, "grpc", badOIDC, "", codes.Unauthenticated},
		{"policy_grpc_bad_2", pol, "grpc", badCred, "", codes.Unauthenticated},
		{"policy_grpc_bad_3", pol, "grpc", badCred, "", codes.Unauthenticated},
		{"policy_grpc_good_throttled", pol, "grpc", good, "", codes.ResourceExhausted},

		{"dev_rest_anonymous", dev, "rest", caller{}, "", codes.OK},
		{"dev_rest_bad_1", dev, "rest", badCred, "", codes.Unauthenticated},
		{"dev_rest_bad_2", dev, "rest", badCred, "", codes.Unauthenticated},
		{"dev_rest_bad_3", dev, "rest", caller{bearer: "not-a-credential"}, "", codes.Unauthenticated},
		{"dev_rest_anonymous_throttled", dev, "rest", caller{}, "", codes.ResourceExhausted},
		{"dev_grpc_other_address", dev, "grpc", caller{}, "", codes.OK},

		{"admin_rest_good", admin, "admin-rest", caller{}, adminToken, codes.OK},
		{"admin_rest_wrong_1", admin, "admin-rest", caller{}, "wrong-admin-token-1", codes.Unauthenticated},
		{"admin_rest_none_not_counted", admin, "admin-rest", caller{}, "", codes.Unauthenticated},
		{"admin_rest_wrong_2", admin, "admin-rest", caller{}, "wrong-admin-token-2", codes.Unauthenticated},
		{"admin_rest_wrong_3", admin, "admin-rest", caller{}, "wrong-admin-token-3", codes.Unauthenticated},
		{"admin_rest_good_throttled", admin, "admin-rest", caller{}, adminToken, codes.ResourceExhausted},
		{"admin_rest_mint_throttled_too", admin, "rest", good, "", codes.ResourceExhausted},
		{"admin_grpc_other_address_good", admin, "admin-grpc", caller{}, adminToken, codes.OK},
		{"admin_grpc_wrong_1", admin, "admin-grpc", caller{}, "wrong-admin-token-4", codes.Unauthenticated},
		{"admin_grpc_wrong_2", admin, "admin-grpc", caller{}, "wrong-admin-token-5", codes.Unauthenticated},
		{"admin_grpc_wrong_3", admin, "admin-grpc", caller{}, "wrong-admin-token-6", codes.Unauthenticated},
		{"admin_grpc_good_throttled", admin, "admin-grpc", caller{}, adminToken, codes.ResourceExhausted},
	}
	for _, st := range steps {
		var code codes.Code
		var msg, retryAfter string
		switch st.path {
		case "grpc":
			ctx := context.Background()
			if st.caller.bearer != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+st.caller.bearer)
			}
			var hdr metadata.MD
			_, err := st.h.token.Mint(ctx, &tokenv1.MintRequest{Identity: proto.String("agent_7")}, grpc.Header(&hdr))
			code, msg = status.Code(err), status.Convert(err).Message()
			if v := hdr.Get("retry-after"); len(v) > 0 {
				retryAfter = v[0]
			}
		case "admin-grpc":
			ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+st.admin)
			var hdr metadata.MD
			_, err := tokenv1.NewAdminServiceClient(st.h.conn).ListApplications(ctx, &tokenv1.ListApplicationsRequest{}, grpc.Header(&hdr))
			code, msg = status.Code(err), status.Convert(err).Message()
			if v := hdr.Get("retry-after"); len(v) > 0 {
				retryAfter = v[0]
			}
		case "rest", "admin-rest":
			method, path, body, authz := "POST", "/token", `{"identity":"agent_7"}`, ""
			if st.caller.bearer != "" {
				authz = "Bearer " + st.caller.bearer
			}
			if st.path == "admin-rest" {
				method, path, body, authz = "GET", "/v1/applications", "", "Bearer "+st.admin
			}
			hdr := map[string]string{}
			if authz != "Bearer " && authz != "" {
				hdr["Authorization"] = authz
			}
			status, h, raw := hostRequest(t, st.h, method, path, "", hdr, body)
			var m map[string]any
			json.Unmarshal([]byte(raw), &m)
			code, msg, retryAfter = codes.OK, raw, h.Get("Retry-After")
			if status != http.StatusOK {
				c, _ := m["code"].(float64)
				code = codes.Code(c)
			}
			want := map[codes.Code]int{codes.OK: 200, codes.Unauthenticated: 401, codes.ResourceExhausted: 429}[st.want]
			if status != want {
				t.Errorf("%s: HTTP status %d, want %d", st.name, status, want)
			}
		}
		if code != st.want {
			t.Fatalf("%s: code %v (%s), want %v", st.name, code, msg, st.want)
		}
		if st.want == codes.ResourceExhausted {
			if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 {
				t.Errorf("%s: retry-after %q, want whole seconds", st.name, retryAfter)
			}
			if !strings.Contains(msg, "too many failed authentication attempts from this address") {
				t.Errorf("%s: message %q does not say why", st.name, msg)
			}
		}
		for _, secret := range []string{cred, badCred.bearer, badOIDC.bearer, adminToken, "wrong-admin-token"} {
			if strings.Contains(msg, secret) {
				t.Errorf("%s: answer holds a credential", st.name)
			}
		}
	}

	// Throttled refusals are counted (public /metrics: not throttled).
	for _, m := range []struct {
		name string
		h    *harness
		want string
	}{{"policy", pol, "3"}, {"dev", dev, "1"}, {"admin", admin, "3"}} {
		code, _, body := hostRequest(t, m.h, "GET", "/metrics", "", nil, "")
		if line := `tokend_rate_limited_total{scope="auth_failure"} ` + m.want; code != 200 || !strings.Contains(body, line) {
			t.Errorf("%s: /metrics = %d, lacks %q", m.name, code, line)
		}
	}

	// Every failure is audited, with address and request id, and no
	// credential.
	for _, c := range []struct {
		name                 string
		h                    *harness
		path                 string
		unauth, throttled    int
		anyCall, wantClients []string
	}{
		{name: "policy", h: pol, path: polAudit, unauth: 7, throttled: 3, wantClients: []string{"127.0.0.1:", "bufconn"}},
		{name: "dev", h: dev, path: devAudit, unauth: 3, throttled: 1, wantClients: []string{"127.0.0.1:"}},
		{name: "admin", h: admin, path: adminAudit, unauth: 7, throttled: 3, wantClients: []string{"127.0.0.1:", "bufconn"}},
	} {
		c.h.srv.Close()
		raw, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		unauth, throttled := 0, 0
		clients := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("%s: audit line %q: %v", c.name, line, err)
			}
			if r["event"] != "auth-failure" {
				continue
			}
			for _, k := range []string{"time", "client_addr", "request_id", "reason", "action", "decision"} {
				if r[k] == nil || r[k] == "" {
					t.Errorf("%s: auth-failure record %v lacks %s", c.name, r, k)
				}
			}
			for _, w := range c.wantClients {
				if strings.HasPrefix(fmt.Sprint(r["client_addr"]), w) {
					clients[w] = true
				}
			}
			switch r["code"] {
			case "Unauthenticated":
				unauth++
			case "ResourceExhausted":
				throttled++
			default:
				t.Errorf("%s: auth-failure record with code %v", c.name, r["code"])
			}
		}
		if unauth != c.unauth || throttled != c.throttled {
			t.Errorf("%s: audit has %d Unauthenticated and %d ResourceExhausted auth failures, want %d and %d", c.name, unauth, throttled, c.unauth, c.throttled)
		}
		for _, w := range c.wantClients {
			if !clients[w] {
				t.Errorf("%s: no auth-failure record from client %s", c.name, w)
			}
		}
		for _, secret := range []string{cred, badCred.bearer, badOIDC.bearer, adminToken, "wrong-admin-token"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("%s: the audit log holds a credential", c.name)
			}
		}
	}
}

// TestUnknownFieldPolicyMode: in policy mode too, gRPC refuses a request
// with an unknown field, naming its number, whoever the caller is; the
// same request without it mints.
func TestUnknownFieldPolicyMode(t *testing.T) {
	h, cred, _ := callerHarness(t, newIssuer(t), "10.0.0.0/8", nil)
	withCred := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+cred)
	cases := []struct {
		name string
		ctx  context.Context
		req  []byte
		want codes.Code
	}{
		{"credential_unknown_top_level", withCred, append(pbString(1, "agent_7"), pbString(42, "x")...), codes.InvalidArgument},
		{"credential_unknown_in_voice", withCred, append(pbString(1, "agent_7"), pbMsg(5, pbMsg(1, pbVarint(77, 1)))...), codes.InvalidArgument},
		{"anonymous_unknown_field", context.Background(), append(pbString(1, "agent_7"), pbString(42, "x")...), codes.InvalidArgument},
		{"credential_known_fields", withCred, pbString(1, "agent_7"), codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, out := tc.req, []byte(nil)
			err := h.conn.Invoke(tc.ctx, catMint, &in, &out, grpc.ForceCodecV2(rawCodec{}))
			if status.Code(err) != tc.want {
				t.Fatalf("Mint = %v, want %v", err, tc.want)
			}
			if tc.want == codes.InvalidArgument && !strings.Contains(status.Convert(err).Message(), "unknown field number") {
				t.Errorf("message %q does not name the field number", status.Convert(err).Message())
			}
		})
	}
}
