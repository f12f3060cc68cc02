package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

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
