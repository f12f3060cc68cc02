package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/server"
)

// TestNoStoreHeaders: every REST answer that carries a token or a
// credential (and the API's other answers, errors included) tells caches
// not to keep it; the health and page routes are left alone.
func TestNoStoreHeaders(t *testing.T) {
	h := adminHarness(t, server.Config{})
	tests := []struct {
		name, method, path, body string
		host                     string // the Host header; "" for the harness's own
		contentType              string // "" for application/json with a body
		admin                    bool
		wantCode                 int
		wantNoStore              bool
	}{
		{name: "get_token", method: "GET", path: "/token", wantCode: 200, wantNoStore: true},
		{name: "get_token_cache_bust", method: "GET", path: "/token?_=1733280000000", wantCode: 200, wantNoStore: true},
		{name: "post_token", method: "POST", path: "/token", body: `{"identity":"alice"}`, wantCode: 200, wantNoStore: true},
		{name: "validate_only", method: "POST", path: "/token", body: `{"validate_only":true}`, wantCode: 200, wantNoStore: true},
		{name: "token_error", method: "GET", path: "/token?ttl_seconds=0", wantCode: 400, wantNoStore: true},
		{name: "create_credential", method: "POST", path: "/v1/credentials", body: `{"name":"backend"}`, admin: true, wantCode: 200, wantNoStore: true},
		{name: "list_applications", method: "GET", path: "/v1/applications", admin: true, wantCode: 200, wantNoStore: true},
		{name: "verify", method: "POST", path: "/v1/tokens:verify", body: `{"token":"x.y.z"}`, wantCode: 200, wantNoStore: true},
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantNoStore: false},
		// Refused before any route runs: still an answer of the API.
		{name: "non_loopback_host", method: "GET", path: "/token", host: "evil.example:8080", wantCode: 421, wantNoStore: true},
		{name: "unsupported_media_type", method: "POST", path: "/token", body: `{}`, contentType: "text/plain", wantCode: 415, wantNoStore: true},
		{name: "no_such_path", method: "GET", path: "/no/such/path", wantCode: 404, wantNoStore: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, h.httpURL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			} else if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			if tt.admin {
				req.Header.Set("Authorization", h.authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.wantCode)
			}
			// One Date, the time of the answer (tokend sets it, not
			// net/http: see dateOf).
			if d := resp.Header.Values("Date"); len(d) != 1 {
				t.Errorf("%s %s: Date %q, want one", tt.method, tt.path, d)
			} else if at, err := http.ParseTime(d[0]); err != nil || time.Since(at) > 5*time.Second || time.Until(at) > time.Second {
				t.Errorf("%s %s: Date %q (%v), want now", tt.method, tt.path, d[0], err)
			}
			cc, pragma := resp.Header.Values("Cache-Control"), resp.Header.Values("Pragma")
			if tt.wantNoStore {
				if len(cc) != 1 || cc[0] != "no-store" || len(pragma) != 1 || pragma[0] != "no-cache" {
					t.Errorf("%s %s: Cache-Control %q, Pragma %q, want [no-store], [no-cache]", tt.method, tt.path, cc, pragma)
				}
			} else if len(cc) != 0 || len(pragma) != 0 {
				t.Errorf("%s %s: Cache-Control %q, Pragma %q, want none", tt.method, tt.path, cc, pragma)
			}
		})
	}
}

// TestTTLHint: Twilio's option name ttl is refused with a hint naming
// ttl_seconds, in the query and in a JSON body.
func TestTTLHint(t *testing.T) {
	h := newHarness(t, server.Config{})
	tests := []struct{ name, method, path, body string }{
		{"query", "GET", "/token?ttl=600", ""},
		{"body", "POST", "/token", `{"ttl":600}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := ""
			if tt.body != "" {
				ct = "application/json"
			}
			code, resp := h.do(t, tt.method, tt.path, ct, tt.body)
			msg, _ := resp["message"].(string)
			if code != 400 || !strings.Contains(msg, "ttl: unknown field; did you mean ttl_seconds?") {
				t.Errorf("%s %s %s = %d %v, want 400 naming ttl and suggesting ttl_seconds", tt.method, tt.path, tt.body, code, resp)
			}
		})
	}
	// The cache-busting parameter is ignored, even given twice, but not
	// a parameter that merely starts with it.
	if code, resp := h.do(t, "GET", "/token?_=1&_=2&identity=bob", "", ""); code != 200 || resp["identity"] != "bob" {
		t.Errorf("GET /token?_=1&_=2&identity=bob = %d %v, want 200 for bob", code, resp)
	}
	if code, _ := h.do(t, "GET", "/token?__=1", "", ""); code != 400 {
		t.Errorf("GET /token?__=1 = %d, want 400", code)
	}
}
