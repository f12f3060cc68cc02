package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// A second application, its key and its account, and SIDs the reach
// tests name.
const (
	reachApp2    = "AP22222222222222222222222222222222"
	reachApp3    = "AP33333333333333333333333333333333"
	reachAcct2   = "AC22222222222222222222222222222222"
	reachKey2    = "SK22222222222222222222222222222222"
	reachSecret2 = "s2s2s2s2s2s2s2s2s2s2s2s2s2s2s2s2"
	reachCR1     = "CR11111111111111111111111111111111"
	reachCR2     = "CR22222222222222222222222222222222"
	reachIS1     = "IS11111111111111111111111111111111"
	reachIS2     = "IS22222222222222222222222222222222"
	reachWS1     = "WS11111111111111111111111111111111"
	reachWS2     = "WS22222222222222222222222222222222"
	reachWK1     = "WK11111111111111111111111111111111"
	reachWK2     = "WK22222222222222222222222222222222"
)

// reachPolicy: "wide" may mint for the seed application every grant, with
// the defaults for what it does not name (outgoing calls only through the
// signing application, no params); "scoped" names the applications,
// params, push credentials, services, workspace, worker, role and rooms
// it allows. Nobody may mint for reachApp2.
const reachPolicy = `rules:
  - name: wide
    principals: ["credential:wide"]
    applications: ["` + testApp + `"]
    identities: {pattern: "[a-z0-9_]+"}
    grants:
      voice: {incoming: true, outgoing: true}
      video: true
      chat: true
      data_sync: true
      task_router: true
  - name: scoped
    principals: ["credential:scoped"]
    applications: ["` + testApp + `"]
    identities: {pattern: "[a-z0-9_]+"}
    grants:
      voice:
        outgoing:
          applications: [self, "` + reachApp3 + `"]
          params: [to]
        push_credentials: ["` + reachCR1 + `"]
      video: {rooms: "support-[0-9]+"}
      chat: {services: ["` + reachIS1 + `"]}
      data_sync: {services: ["` + reachIS1 + `"]}
      task_router: {workspaces: ["` + reachWS1 + `"], workers: ["` + reachWK1 + `"], roles: [worker]}
`

// reachHarness is a policy-mode tokend (or development mode when policy
// is empty) holding the seed application and reachApp2, with the
// credentials wide, scoped and outsider (whom no rule selects).
func reachHarness(t *testing.T, policy string, extra func(*server.Config)) (h *harness, creds map[string]string, auditLog string) {
	t.Helper()
	dir := t.TempDir()
	cfg := server.Config{AuditLog: filepath.Join(dir, "audit.log")}
	if policy != "" {
		cfg.PolicyFile = filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(cfg.PolicyFile, []byte(policy), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if extra != nil {
		extra(&cfg)
	}
	h = adminHarness(t, cfg)
	admin := tokenv1.NewAdminServiceClient(h.conn)
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: reachApp2, AccountSid: reachAcct2}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddKey(adminCtx(), &tokenv1.AddKeyRequest{ApplicationSid: reachApp2, ApiKeySid: reachKey2, Secret: reachSecret2, Activate: true}); err != nil {
		t.Fatal(err)
	}
	creds = map[string]string{}
	if policy != "" {
		for _, name := range []string{"wide", "scoped", "outsider"} {
			resp, err := admin.CreateCredential(adminCtx(), &tokenv1.CreateCredentialRequest{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			creds[name] = resp.GetToken()
		}
	}
	return h, creds, cfg.AuditLog
}

// readAudit closes the server (writing what is queued) and returns the
// audit records.
func readAudit(t *testing.T, h *harness, path string) (records []map[string]any, raw string) {
	t.Helper()
	h.srv.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q is not JSON: %v", sc.Text(), err)
		}
		records = append(records, r)
	}
	return records, string(b)
}

// reachCase is one row of the reach table: a caller, a request and the
// decision and audit record expected of it in policy mode.
type reachCase struct {
	name   string
	caller string
	app    string // signing application; "" the default
	grants string // "" the application's defaults
	want   codes.Code
	reason string            // with PermissionDenied: a substring of the message
	audit  map[string]string // fields of the audit record, when OK or denied
}

func voiceOut(app, params string) string {
	if params != "" {
		params = `,"params":` + params
	}
	return `{"voice":{"outgoing":{"application_sid":"` + app + `"` + params + `}}}`
}

// reachCases covers each dimension of a token's reach, allowed and denied
// under reachPolicy.
func reachCases() []reachCase {
	return []reachCase{
		// The signing application and the outgoing one.
		{name: "defaults", caller: "wide", want: codes.OK, audit: map[string]string{"application_sid": testApp, "outgoing_application_sid": testApp, "grants": "voice:outgoing"}},
		{name: "outgoing_self", caller: "wide", grants: voiceOut(testApp, ""), want: codes.OK},
		{name: "outgoing_other_app", caller: "wide", grants: voiceOut(reachApp2, ""), want: codes.PermissionDenied,
			reason: "voice.outgoing.application_sid " + reachApp2 + " is not allowed", audit: map[string]string{"decision": "deny", "application_sid": testApp, "outgoing_application_sid": reachApp2}},
		{name: "scoped_outgoing_listed", caller: "scoped", grants: voiceOut(reachApp3, ""), want: codes.OK, audit: map[string]string{"outgoing_application_sid": reachApp3}},
		{name: "scoped_outgoing_unlisted", caller: "scoped", grants: voiceOut(reachApp2, ""), want: codes.PermissionDenied, reason: "outgoing calls may run through the signing application " + testApp + ", " + reachApp3},
		{name: "signer_not_allowed", caller: "wide", app: reachApp2, want: codes.PermissionDenied, reason: "application " + reachApp2 + " is not allowed"},
		// Params.
		{name: "params_default_none", caller: "wide", grants: voiceOut(testApp, `{"to":"bob"}`), want: codes.PermissionDenied, reason: `voice.outgoing.params key "to" is not allowed (allowed keys: none)`},
		{name: "scoped_params_listed", caller: "scoped", grants: voiceOut(testApp, `{"to":"bob"}`), want: codes.OK, audit: map[string]string{"outgoing_params": "to"}},
		{name: "scoped_params_unlisted", caller: "scoped", grants: voiceOut(testApp, `{"to":"bob","amount":"100"}`), want: codes.PermissionDenied, reason: `key "amount" is not allowed`, audit: map[string]string{"outgoing_params": "amount,to"}},
		// Incoming.
		{name: "incoming", caller: "wide", grants: `{"voice":{"incoming":{"allow":true}}}`, want: codes.OK, audit: map[string]string{"grants": "voice:incoming"}},
		{name: "scoped_incoming_denied", caller: "scoped", grants: `{"voice":{"incoming":{"allow":true}}}`, want: codes.PermissionDenied, reason: "grant voice.incoming is not allowed"},
		// Push credentials.
		{name: "push_any", caller: "wide", grants: `{"voice":{"push_credential_sid":"` + reachCR2 + `"}}`, want: codes.OK, audit: map[string]string{"push_credential_sid": reachCR2}},
		{name: "scoped_push_listed", caller: "scoped", grants: `{"voice":{"push_credential_sid":"` + reachCR1 + `"}}`, want: codes.OK},
		{name: "scoped_push_unlisted", caller: "scoped", grants: `{"voice":{"push_credential_sid":"` + reachCR2 + `"}}`, want: codes.PermissionDenied, reason: "voice.push_credential_sid " + reachCR2 + " is not allowed", audit: map[string]string{"push_credential_sid": reachCR2}},
		// Chat and Sync services.
		{name: "chat_any", caller: "wide", grants: `{"chat":{"service_sid":"` + reachIS2 + `"}}`, want: codes.OK, audit: map[string]string{"chat_service_sid": reachIS2}},
		{name: "scoped_chat_listed", caller: "scoped", grants: `{"chat":{"service_sid":"` + reachIS1 + `"}}`, want: codes.OK},
		{name: "scoped_chat_unlisted", caller: "scoped", grants: `{"chat":{"service_sid":"` + reachIS2 + `"}}`, want: codes.PermissionDenied, reason: "chat.service_sid " + reachIS2 + " is not allowed"},
		{name: "scoped_chat_no_service", caller: "scoped", grants: `{"chat":{}}`, want: codes.PermissionDenied, reason: "chat.service_sid is required by this rule"},
		{name: "scoped_sync_listed", caller: "scoped", grants: `{"data_sync":{"service_sid":"` + reachIS1 + `"}}`, want: codes.OK, audit: map[string]string{"sync_service_sid": reachIS1}},
		{name: "scoped_sync_unlisted", caller: "scoped", grants: `{"data_sync":{"service_sid":"` + reachIS2 + `"}}`, want: codes.PermissionDenied, reason: "data_sync.service_sid " + reachIS2 + " is not allowed"},
		// TaskRouter.
		{name: "scoped_taskrouter_listed", caller: "scoped", grants: `{"task_router":{"workspace_sid":"` + reachWS1 + `","worker_sid":"` + reachWK1 + `","role":"worker"}}`, want: codes.OK,
			audit: map[string]string{"workspace_sid": reachWS1, "worker_sid": reachWK1, "task_router_role": "worker"}},
		{name: "scoped_taskrouter_workspace", caller: "scoped", grants: `{"task_router":{"workspace_sid":"` + reachWS2 + `","worker_sid":"` + reachWK1 + `","role":"worker"}}`, want: codes.PermissionDenied, reason: "task_router.workspace_sid " + reachWS2},
		{name: "scoped_taskrouter_worker", caller: "scoped", grants: `{"task_router":{"workspace_sid":"` + reachWS1 + `","worker_sid":"` + reachWK2 + `","role":"worker"}}`, want: codes.PermissionDenied, reason: "task_router.worker_sid " + reachWK2},
		{name: "scoped_taskrouter_role", caller: "scoped", grants: `{"task_router":{"workspace_sid":"` + reachWS1 + `","worker_sid":"` + reachWK1 + `","role":"supervisor"}}`, want: codes.PermissionDenied, reason: "task_router.role supervisor is not allowed",
			audit: map[string]string{"task_router_role": "supervisor"}},
		{name: "taskrouter_any", caller: "wide", grants: `{"task_router":{"workspace_sid":"` + reachWS2 + `","worker_sid":"` + reachWK2 + `","role":"supervisor"}}`, want: codes.OK},
		// Video rooms.
		{name: "scoped_room_match", caller: "scoped", grants: `{"video":{"room":"support-12"}}`, want: codes.OK, audit: map[string]string{"room": "support-12"}},
		{name: "scoped_room_other", caller: "scoped", grants: `{"video":{"room":"board"}}`, want: codes.PermissionDenied, reason: "video room board does not match", audit: map[string]string{"room": "board"}},
		{name: "scoped_room_any", caller: "scoped", grants: `{"video":{}}`, want: codes.PermissionDenied, reason: `needs rooms ".*"`},
		{name: "room_any", caller: "wide", grants: `{"video":{}}`, want: codes.OK},
		// Player: no rule allows it.
		{name: "player", caller: "wide", grants: `{"player":{}}`, want: codes.PermissionDenied, reason: "grant player is not allowed"},
		// A caller no rule selects.
		{name: "outsider", caller: "outsider", want: codes.PermissionDenied, reason: "no rule selects caller"},
	}

}

// TestReachDecisions: one table of (caller, request) → decision over every
// dimension of a token's reach, allowed and denied, through gRPC and REST,
// with the audit record each mint leaves.
func TestReachDecisions(t *testing.T) {
	h, creds, auditLog := reachHarness(t, reachPolicy, nil)
	cases := reachCases()
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				body := map[string]any{"identity": tc.name + "_" + path}
				if tc.app != "" {
					body["application_sid"] = tc.app
				}
				if tc.grants != "" {
					body["grants"] = json.RawMessage(tc.grants)
				}
				b, _ := json.Marshal(body)
				code, resp, _ := h.mintAs(t, path, caller{bearer: creds[tc.caller]}, string(b))
				if code != tc.want {
					t.Fatalf("mint %s as %s = %v %v, want %v", b, tc.caller, code, resp, tc.want)
				}
				if code == codes.PermissionDenied {
					msg, _ := resp["message"].(string)
					if !strings.Contains(msg, tc.reason) || !strings.Contains(msg, "rule") {
						t.Errorf("denial %q does not say %q and name the rule", msg, tc.reason)
					}
				}
				if code == codes.OK {
					_, claims := decodeJWT(t, resp["token"].(string))
					if tc.grants != "" && strings.Contains(tc.grants, "outgoing") {
						got := get(claims, "grants", "voice", "outgoing", "application_sid")
						var want map[string]any
						json.Unmarshal([]byte(tc.grants), &want)
						if got != get(want, "voice", "outgoing", "application_sid") {
							t.Errorf("token's outgoing application = %v, want the request's", got)
						}
					}
				}
			})
		}
	}

	records, raw := readAudit(t, h, auditLog)
	byIdentity := map[string]map[string]any{}
	for _, r := range records {
		if r["event"] == "mint" {
			if id, ok := r["identity"].(string); ok {
				byIdentity[id] = r
			}
		}
	}
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			r := byIdentity[tc.name+"_"+path]
			if r == nil {
				t.Errorf("no audit record of %s/%s", tc.name, path)
				continue
			}
			wantDecision := map[bool]string{true: "allow", false: "deny"}[tc.want == codes.OK]
			if r["decision"] != wantDecision || r["code"] != tc.want.String() {
				t.Errorf("audit record of %s/%s: decision %v code %v, want %s %s", tc.name, path, r["decision"], r["code"], wantDecision, tc.want)
			}
			for k, want := range tc.audit {
				if r[k] != want {
					t.Errorf("audit record of %s/%s: %s = %v, want %q (record %v)", tc.name, path, k, r[k], want, r)
				}
			}
		}
	}
	for _, secret := range []string{testSecret, reachSecret2, creds["wide"], creds["scoped"]} {
		if strings.Contains(raw, secret) {
			t.Error("the audit log holds a secret or a credential")
		}
	}
	for _, value := range []string{`"bob"`, `"100"`} {
		if strings.Contains(raw, value) {
			t.Errorf("the audit log holds the param value %s: only keys belong there", value)
		}
	}
}

// TestFormatCharacterIdentities: identities with a Unicode format
// character (category Cf) are refused on every path, with or without a
// voice grant, in policy mode and in development mode.
func TestFormatCharacterIdentities(t *testing.T) {
	policyHarness, creds, _ := reachHarness(t, `rules:
  - name: any
    principals: ["credential:wide"]
    applications: ["*"]
    identities: {pattern: ".*"}
    grants: {voice: true, video: true, chat: true}
`, nil)
	devHarness, _, _ := reachHarness(t, "", nil)
	for _, tc := range []struct {
		name, identity, grants string
	}{
		{"rlo_no_grants", "alice\u202Eevil", `{}`},
		{"zwj_chat", "ali\u200Dce", `{"chat":{}}`},
		{"zwsp_video", "\u200Bbob", `{"video":{}}`},
		{"bom_defaults", "carol\uFEFF", ``},
		{"lrm_voice", "dave\u200E", `{"voice":{"incoming":{"allow":true}}}`},
		{"tag_char", "eve\U000E0041", `{}`},
	} {
		for _, mode := range []string{"policy", "development"} {
			for _, path := range []string{"grpc", "rest"} {
				t.Run(tc.name+"/"+mode+"/"+path, func(t *testing.T) {
					h, c := devHarness, caller{}
					if mode == "policy" {
						h, c = policyHarness, caller{bearer: creds["wide"]}
					}
					body := map[string]any{"identity": tc.identity}
					if tc.grants != "" {
						body["grants"] = json.RawMessage(tc.grants)
					}
					b, _ := json.Marshal(body)
					code, resp, _ := h.mintAs(t, path, c, string(b))
					if code != codes.InvalidArgument {
						t.Fatalf("mint %s = %v %v, want InvalidArgument", b, code, resp)
					}
					msg, _ := resp["message"].(string)
					if !strings.Contains(msg, "identity: must not contain Unicode format characters (category Cf") {
						t.Errorf("refusal %q does not name the field and the rule", msg)
					}
				})
			}
		}
	}
	// Other Unicode stays allowed without a voice grant.
	if code, resp, _ := devHarness.mintAs(t, "rest", caller{}, `{"identity":"zoë","grants":{}}`); code != codes.OK {
		t.Errorf("mint for zoë = %v %v, want OK", code, resp)
	}
}

// TestExplainDisclosure: an explanation is decided, audited and charged
// like a mint; a denied one is a 403 that says why and shows nothing of
// the application (account, key, claims).
func TestExplainDisclosure(t *testing.T) {
	h, creds, auditLog := reachHarness(t, reachPolicy, nil)
	for _, path := range []string{"grpc", "rest"} {
		t.Run("allowed/"+path, func(t *testing.T) {
			code, resp, _ := h.mintAs(t, path, caller{bearer: creds["scoped"]}, `{"identity":"explain_ok_`+path+`","validate_only":true}`)
			if code != codes.OK || resp["token"] != nil || resp["account_sid"] != testAccount || get(resp, "decision", "allowed") != true ||
				get(resp, "decision", "rule") != "scoped" || get(resp, "decision", "claims", "grants", "identity") != "explain_ok_"+path {
				t.Fatalf("allowed explanation = %v %v, want the decision, the account and the claims, and no token", code, resp)
			}
		})
		for _, tc := range []struct {
			name, caller, body, reason string
		}{
			{"outgoing_other_app", "wide", `{"identity":"explain_deny_` + path + `","validate_only":true,"grants":{"voice":{"outgoing":{"application_sid":"` + reachApp2 + `"}}}}`, "voice.outgoing.application_sid " + reachApp2 + " is not allowed"},
			{"other_application", "wide", `{"identity":"explain_app2_` + path + `","validate_only":true,"application_sid":"` + reachApp2 + `"}`, "application " + reachApp2 + " is not allowed"},
			{"outsider", "outsider", `{"identity":"explain_out_` + path + `","validate_only":true}`, "no rule selects caller credential:outsider"},
		} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				code, resp, _ := h.mintAs(t, path, caller{bearer: creds[tc.caller]}, tc.body)
				if code != codes.PermissionDenied {
					t.Fatalf("denied explanation = %v %v, want PermissionDenied", code, resp)
				}
				b, _ := json.Marshal(resp)
				for _, hidden := range []string{testAccount, testKey, reachAcct2, reachKey2, "claims", "header", "account_sid", "api_key_sid"} {
					if strings.Contains(string(b), hidden) {
						t.Errorf("denied explanation %s shows %s", b, hidden)
					}
				}
				if msg, _ := resp["message"].(string); !strings.Contains(msg, tc.reason) || !strings.Contains(msg, "(rule default-deny)") {
					t.Errorf("denied explanation %q does not say why (%q) and name the rule", msg, tc.reason)
				}
			})
		}
	}
	// Metrics count a denied explanation with its code.
	samples := h.scrape(t)
	for _, path := range []string{"grpc", "rest"} {
		if n, _ := find(samples, "tokend_mints_total", map[string]string{"application_sid": testApp, "code": "PermissionDenied", "path": path}); n < 2 {
			t.Errorf("tokend_mints_total{code=PermissionDenied,path=%s} = %v, want at least 2 (the denied explanations)", path, n)
		}
	}

	records, _ := readAudit(t, h, auditLog)
	seen := map[string]string{}
	for _, r := range records {
		if r["event"] == "explain" {
			id, _ := r["identity"].(string)
			seen[id] = r["decision"].(string) + " " + r["code"].(string)
			if r["jti"] != nil || r["exp"] != nil {
				t.Errorf("explain record %v has a jti or exp: nothing was signed", r)
			}
		}
	}
	for _, path := range []string{"grpc", "rest"} {
		for id, want := range map[string]string{
			"explain_ok_" + path:   "allow OK",
			"explain_deny_" + path: "deny PermissionDenied",
			"explain_app2_" + path: "deny PermissionDenied",
			"explain_out_" + path:  "deny PermissionDenied",
		} {
			if seen[id] != want {
				t.Errorf("explain record of %s = %q, want %q", id, seen[id], want)
			}
		}
	}
}

// TestExplainRateLimit: an explanation costs the caller one token, denied
// or not, and leaves the identity's bucket alone.
func TestExplainRateLimit(t *testing.T) {
	for _, path := range []string{"grpc", "rest"} {
		t.Run("principal/"+path, func(t *testing.T) {
			h, creds, _ := reachHarness(t, reachPolicy, func(c *server.Config) { c.RateLimitPrincipal, c.RateLimitBurst = 0.001, 2 })
			c := caller{bearer: creds["wide"]}
			if code, resp, _ := h.mintAs(t, path, c, `{"identity":"a","validate_only":true}`); code != codes.OK {
				t.Fatalf("first explanation = %v %v", code, resp)
			}
			if code, resp, _ := h.mintAs(t, path, c, `{"identity":"a","validate_only":true,"grants":{"player":{}}}`); code != codes.PermissionDenied {
				t.Fatalf("denied explanation = %v %v", code, resp)
			}
			code, resp, hdr := h.mintAs(t, path, c, `{"identity":"a"}`)
			if code != codes.ResourceExhausted {
				t.Fatalf("mint after two explanations in a burst of 2 = %v %v, want ResourceExhausted", code, resp)
			}
			if path == "rest" && hdr.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
		t.Run("identity/"+path, func(t *testing.T) {
			h, creds, _ := reachHarness(t, reachPolicy, func(c *server.Config) { c.RateLimitIdentity, c.RateLimitBurst = 0.001, 1 })
			c := caller{bearer: creds["wide"]}
			for range 3 {
				if code, resp, _ := h.mintAs(t, path, c, `{"identity":"b","validate_only":true}`); code != codes.OK {
					t.Fatalf("explanation = %v %v, want OK (explanations do not use the identity's bucket)", code, resp)
				}
			}
			if code, resp, _ := h.mintAs(t, path, c, `{"identity":"b"}`); code != codes.OK {
				t.Fatalf("mint after explanations = %v %v, want OK", code, resp)
			}
		})
	}
}

// TestExplainDevelopmentMode: in development mode an explanation is
// allowed, audited as one and charged to the (shared anonymous) caller.
func TestExplainDevelopmentMode(t *testing.T) {
	for _, path := range []string{"grpc", "rest"} {
		t.Run(path, func(t *testing.T) {
			h, _, auditLog := reachHarness(t, "", func(c *server.Config) { c.RateLimitPrincipal, c.RateLimitBurst = 0.001, 1 })
			code, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"dev_explain","validate_only":true}`)
			if code != codes.OK || get(resp, "decision", "rule") != "development-mode" || resp["token"] != nil {
				t.Fatalf("explanation = %v %v, want the development-mode decision and no token", code, resp)
			}
			if code, resp, _ := h.mintAs(t, path, caller{}, `{"identity":"dev_mint"}`); code != codes.ResourceExhausted {
				t.Fatalf("mint after an explanation in a burst of 1 = %v %v, want ResourceExhausted", code, resp)
			}
			records, _ := readAudit(t, h, auditLog)
			found := false
			for _, r := range records {
				if r["event"] == "explain" && r["identity"] == "dev_explain" && r["decision"] == "allow" && r["rule"] == "development-mode" &&
					r["outgoing_application_sid"] == testApp {
					found = true
				}
			}
			if !found {
				t.Errorf("no explain record of dev_explain naming its outgoing application in %v", records)
			}
		})
	}
}

// verifyAs verifies tok as c through path and returns the response as
// JSON.
func (h *harness) verifyAs(t *testing.T, path string, c caller, tok string) map[string]any {
	t.Helper()
	if path == "grpc" {
		ctx := context.Background()
		if c.bearer != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.bearer)
		}
		resp, err := h.token.Verify(ctx, &tokenv1.VerifyRequest{Token: tok})
		if err != nil {
			t.Fatalf("Verify: %v", status.Convert(err).Message())
		}
		return jsonOf(t, resp)
	}
	b, _ := json.Marshal(map[string]string{"token": tok})
	req, _ := http.NewRequest("POST", h.httpURL+"/v1/tokens:verify", strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	code, raw := h.doRaw(t, req)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || code != 200 {
		t.Fatalf("POST /v1/tokens:verify = %d %s", code, raw)
	}
	return m
}

// withPayload returns tok with its payload edited (the signature no
// longer matches).
func withPayload(t *testing.T, tok string, edit func(map[string]any)) string {
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	edit(m)
	b, _ := json.Marshal(m)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

// TestVerifyDisclosure: which application holds a key, and whether it is
// active, is told only to callers that may mint for that application;
// every caller gets the Twilio error code.
func TestVerifyDisclosure(t *testing.T) {
	h, creds, auditLog := reachHarness(t, reachPolicy, nil)
	code, resp, _ := h.mintAs(t, "grpc", caller{bearer: creds["wide"]}, `{"identity":"verified"}`)
	if code != codes.OK {
		t.Fatalf("mint = %v %v", code, resp)
	}
	tok := resp["token"].(string)
	wrongSub := withPayload(t, tok, func(m map[string]any) { m["sub"] = reachAcct2 })
	unknownKey := withPayload(t, tok, func(m map[string]any) { m["iss"] = "SK99999999999999999999999999999999" })
	badSignature := withPayload(t, tok, func(m map[string]any) { m["identity"] = "forged" })
	// A token forged for reachApp2's key (nobody may mint for reachApp2):
	// its answer must not tell that tokend holds that key.
	forgedApp2 := withPayload(t, tok, func(m map[string]any) { m["iss"], m["sub"] = reachKey2, reachAcct2 })
	for _, path := range []string{"grpc", "rest"} {
		for _, tc := range []struct {
			name, caller, token string
			code                float64
			disclosed           bool
			reason              string // substring, "" for none
		}{
			{"valid_minter", "wide", tok, 0, true, ""},
			{"valid_outsider", "outsider", tok, 0, false, ""},
			{"wrong_sub_minter", "wide", wrongSub, 20103, true, "is not the account that owns API key"},
			{"wrong_sub_outsider", "outsider", wrongSub, 20103, false, "iss and sub are not an API key and account this caller may ask about"},
			{"unknown_key_minter", "wide", unknownKey, 20103, false, "iss and sub are not an API key and account this caller may ask about"},
			{"unknown_key_outsider", "outsider", unknownKey, 20103, false, "iss and sub are not an API key and account this caller may ask about"},
			{"bad_signature_minter", "wide", badSignature, 20107, true, "the signature does not match"},
			{"bad_signature_outsider", "outsider", badSignature, 20103, false, "iss and sub are not an API key and account this caller may ask about"},
			{"forged_other_app_minter", "wide", forgedApp2, 20103, false, "iss and sub are not an API key and account this caller may ask about"},
			{"forged_other_app_outsider", "outsider", forgedApp2, 20103, false, "iss and sub are not an API key and account this caller may ask about"},
		} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				got := h.verifyAs(t, path, caller{bearer: creds[tc.caller]}, tc.token)
				gotCode, _ := got["twilio_error_code"].(float64)
				if gotCode != tc.code {
					t.Fatalf("Verify = %v, want Twilio error code %v", got, tc.code)
				}
				if tc.disclosed {
					if got["application_sid"] != testApp || got["key_state"] != "active" {
						t.Errorf("Verify as %s = %v, want the application and key state", tc.caller, got)
					}
				} else if got["application_sid"] != nil || got["key_state"] != nil {
					t.Errorf("Verify as %s = %v, shows the application or key state", tc.caller, got)
				}
				reason, _ := got["reason"].(string)
				if !strings.Contains(reason, tc.reason) {
					t.Errorf("reason %q, want %q", reason, tc.reason)
				}
				if !tc.disclosed && strings.Contains(reason, testApp) {
					t.Errorf("reason %q names the application", reason)
				}
			})
		}
	}
	// The audit record of a verification names what the token reaches.
	records, _ := readAudit(t, h, auditLog)
	found := false
	for _, r := range records {
		if r["event"] == "verify" && r["identity"] == "verified" && r["outgoing_application_sid"] == testApp && r["application_sid"] == testApp {
			found = true
		}
	}
	if !found {
		t.Error("no verify record names the token's identity and outgoing application")
	}
	// The operator's record keeps the code found (20107) where the caller
	// was told 20103.
	found = false
	for _, r := range records {
		if reason, _ := r["reason"].(string); r["event"] == "verify" && reason == "valid=false twilio_error_code=20107 details_disclosed=false" {
			found = true
		}
	}
	if !found {
		t.Error("no verify record keeps the bad signature's 20107 for an undisclosed answer")
	}
}

// TestVerifyDevelopmentMode: without a policy every caller is told the
// application and key state.
func TestVerifyDevelopmentMode(t *testing.T) {
	h, _, _ := reachHarness(t, "", nil)
	code, resp, _ := h.mintAs(t, "rest", caller{}, `{"identity":"dev"}`)
	if code != codes.OK {
		t.Fatalf("mint = %v %v", code, resp)
	}
	for _, path := range []string{"grpc", "rest"} {
		got := h.verifyAs(t, path, caller{}, resp["token"].(string))
		if got["valid"] != true || got["application_sid"] != testApp || got["key_state"] != "active" {
			t.Errorf("%s Verify = %v, want valid with the application and key state", path, got)
		}
	}
}

// TestReachDevelopmentMode: without a policy every request of the reach
// table that is valid is allowed (development mode decides nothing), but
// the audit record still names what each token reaches.
func TestReachDevelopmentMode(t *testing.T) {
	h, _, auditLog := reachHarness(t, "", nil)
	cases := reachCases()
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				body := map[string]any{"identity": "dev_" + tc.name + "_" + path}
				if tc.app != "" {
					body["application_sid"] = tc.app
				}
				if tc.grants != "" {
					body["grants"] = json.RawMessage(tc.grants)
				}
				b, _ := json.Marshal(body)
				if code, resp, _ := h.mintAs(t, path, caller{}, string(b)); code != codes.OK {
					t.Fatalf("mint %s in development mode = %v %v, want OK", b, code, resp)
				}
			})
		}
	}
	records, _ := readAudit(t, h, auditLog)
	byIdentity := map[string]map[string]any{}
	for _, r := range records {
		if id, ok := r["identity"].(string); ok && r["event"] == "mint" {
			byIdentity[id] = r
		}
	}
	for _, tc := range cases {
		for _, path := range []string{"grpc", "rest"} {
			r := byIdentity["dev_"+tc.name+"_"+path]
			if r == nil || r["decision"] != "allow" || r["rule"] != "development-mode" {
				t.Errorf("audit record of %s/%s = %v, want allowed by development-mode", tc.name, path, r)
				continue
			}
			for k, want := range tc.audit {
				if k == "decision" {
					continue
				}
				if r[k] != want {
					t.Errorf("audit record of %s/%s: %s = %v, want %q", tc.name, path, k, r[k], want)
				}
			}
		}
	}
}

// TestApplicationExistenceHidden: a caller that may not mint for an
// application gets the same answer whether tokend holds it (reachApp2) or
// not, for a mint and an explanation, through gRPC and REST: nothing of
// the application (its existence, maximum lifetime, default grants) shows.
func TestApplicationExistenceHidden(t *testing.T) {
	h, creds, _ := reachHarness(t, reachPolicy, nil)
	const unknownApp = "AP99999999999999999999999999999999"
	// Settings of reachApp2 that shaped the answer before it was decided:
	// a ttl over its maximum, an identity its default voice grant refuses.
	admin := tokenv1.NewAdminServiceClient(h.conn)
	if _, err := admin.UpdateApplication(adminCtx(), &tokenv1.UpdateApplicationRequest{
		ApplicationSid: reachApp2, MaxTtlSeconds: proto.Int32(600),
		DefaultGrants: &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"grpc", "rest"} {
		for _, who := range []string{"wide", "outsider"} {
			for _, tc := range []struct {
				name, body string
				want       codes.Code
			}{
				{"mint", `{"application_sid":"%s","identity":"probe"}`, codes.PermissionDenied},
				{"explain", `{"application_sid":"%s","identity":"probe","validate_only":true}`, codes.PermissionDenied},
				// Bad input is refused by the rules that do not depend on
				// the application.
				{"ttl_over_twilio_limit", `{"application_sid":"%s","identity":"probe","ttl_seconds":90000}`, codes.InvalidArgument},
				{"no_grants_cf_identity", `{"application_sid":"%s","identity":"pro\u200dbe"}`, codes.InvalidArgument},
				{"voice_identity", `{"application_sid":"%s","identity":"pro-be","grants":{"voice":{}}}`, codes.InvalidArgument},
				{"bad_room", `{"application_sid":"%s","identity":"probe","grants":{"video":{"room":"r\u202e"}}}`, codes.InvalidArgument},
				{"bad_region", `{"application_sid":"%s","identity":"probe","region":"moon"}`, codes.InvalidArgument},
				// The application's own settings do not shape the answer.
				{"ttl_over_application_maximum", `{"application_sid":"%s","identity":"probe","ttl_seconds":1200}`, codes.PermissionDenied},
				{"identity_default_voice_refuses", `{"application_sid":"%s","identity":"pro-be"}`, codes.PermissionDenied},
				{"explain_identity_default_voice_refuses", `{"application_sid":"%s","identity":"pro-be","validate_only":true}`, codes.PermissionDenied},
			} {
				t.Run(path+"/"+who+"/"+tc.name, func(t *testing.T) {
					c := caller{bearer: creds[who]}
					heldCode, held, _ := h.mintAs(t, path, c, strings.ReplaceAll(tc.body, "%s", reachApp2))
					unknownCode, unknown, _ := h.mintAs(t, path, c, strings.ReplaceAll(tc.body, "%s", unknownApp))
					if heldCode != tc.want || unknownCode != tc.want {
						t.Fatalf("held application: %v %v; unknown application: %v %v; want %v for both", heldCode, held, unknownCode, unknown, tc.want)
					}
					heldMsg, _ := held["message"].(string)
					unknownMsg, _ := unknown["message"].(string)
					if strings.ReplaceAll(heldMsg, reachApp2, unknownApp) != unknownMsg {
						t.Errorf("answers differ beyond the SID:\nheld:    %q\nunknown: %q", heldMsg, unknownMsg)
					}
				})
			}
		}
	}
	// A caller that may mint for any application still learns that an
	// unknown one is not held.
	t.Run("allowed_caller_unknown_application", func(t *testing.T) {
		h, _, _ := reachHarness(t, "", nil)
		if code, resp, _ := h.mintAs(t, "grpc", caller{}, `{"application_sid":"`+unknownApp+`"}`); code != codes.NotFound {
			t.Errorf("development mode Mint(unknown application) = %v %v, want NotFound", code, resp)
		}
	})
}

// TestFormatCharactersInGrants: a Unicode format character in any text a
// grant carries into the token (room, role, endpoint id, outgoing params
// keys and values) is refused with a 400 naming the field, through gRPC,
// REST POST and REST GET query parameters, in policy mode (by a rule
// that would allow the request) and in development mode; an identity
// with another invisible character (a Hangul filler, a variation
// selector) is refused as well.
func TestFormatCharactersInGrants(t *testing.T) {
	policyHarness, creds, _ := reachHarness(t, `rules:
  - name: any
    principals: ["credential:wide"]
    applications: ["*"]
    identities: {pattern: ".*"}
    grants:
      voice: {incoming: true, outgoing: {applications: "*", params: "*"}}
      video: {rooms: "support-.*"}
      chat: true
      data_sync: true
      task_router: true
`, nil)
	devHarness, _, _ := reachHarness(t, "", nil)
	out := `"outgoing":{"application_sid":"` + testApp + `","params":`
	for _, tc := range []struct {
		name, body, query, field string
	}{
		{"room_rlo", `{"identity":"a","grants":{"video":{"room":"support-1\u202e9"}}}`,
			"identity=a&grants.video.room=support-1%E2%80%AE9", "grants.video.room"},
		{"role_zwsp", `{"identity":"a","grants":{"task_router":{"role":"wor\u200bker"}}}`,
			"identity=a&grants.task_router.role=wor%E2%80%8Bker", "grants.task_router.role"},
		{"chat_endpoint_zwj", `{"identity":"a","grants":{"chat":{"endpoint_id":"e\u200dp"}}}`,
			"identity=a&grants.chat.endpoint_id=e%E2%80%8Dp", "grants.chat.endpoint_id"},
		{"param_key_bom", `{"identity":"a","grants":{"voice":{` + out + `{"t\ufeffo":"1"}}}}}`,
			"identity=a&grants.voice.outgoing.application_sid=" + testApp + "&grants.voice.outgoing.params%5Bt%EF%BB%BFo%5D=1", "grants.voice.outgoing.params"},
		{"param_value_rlo", `{"identity":"a","grants":{"voice":{` + out + `{"to":"+1555\u202e0100"}}}}}`,
			"identity=a&grants.voice.outgoing.application_sid=" + testApp + "&grants.voice.outgoing.params%5Bto%5D=%2B1555%E2%80%AE0100", "grants.voice.outgoing.params[to]"},
		{"identity_hangul_filler", `{"identity":"alice\u3164","grants":{"chat":{}}}`,
			"identity=alice%E3%85%A4&grants.chat.endpoint_id=e", "identity"},
		{"identity_variation_selector", `{"identity":"bob\ufe0f","grants":{"video":{"room":"support-1"}}}`,
			"identity=bob%EF%B8%8F&grants.video.room=support-1", "identity"},
	} {
		for _, mode := range []string{"policy", "development"} {
			h, c := devHarness, caller{}
			if mode == "policy" {
				h, c = policyHarness, caller{bearer: creds["wide"]}
			}
			check := func(t *testing.T, code codes.Code, msg string) {
				t.Helper()
				if code != codes.InvalidArgument {
					t.Fatalf("mint = %v %q, want InvalidArgument", code, msg)
				}
				if !strings.Contains(msg, tc.field+": must not contain ") {
					t.Errorf("refusal %q does not name field %s and the rule", msg, tc.field)
				}
			}
			for _, path := range []string{"grpc", "rest"} {
				t.Run(tc.name+"/"+mode+"/"+path, func(t *testing.T) {
					code, resp, _ := h.mintAs(t, path, c, tc.body)
					msg, _ := resp["message"].(string)
					check(t, code, msg)
				})
			}
			t.Run(tc.name+"/"+mode+"/rest_get", func(t *testing.T) {
				req, _ := http.NewRequest("GET", h.httpURL+"/token?"+tc.query, nil)
				if c.bearer != "" {
					req.Header.Set("Authorization", "Bearer "+c.bearer)
				}
				status, raw := h.doRaw(t, req)
				var m map[string]any
				if err := json.Unmarshal(raw, &m); err != nil || status != http.StatusBadRequest {
					t.Fatalf("GET /token?%s = %d %s, want 400", tc.query, status, raw)
				}
				code, _ := m["code"].(float64)
				msg, _ := m["message"].(string)
				check(t, codes.Code(code), msg)
			})
		}
	}
}

// TestReachOfStoredDefaultGrants: the reach is decided after the
// application's stored default grants apply: defaults that send outgoing
// calls through another application with params, or name a chat service,
// are held to the caller's rule like the same grants in a request,
// through gRPC and REST.
func TestReachOfStoredDefaultGrants(t *testing.T) {
	h, creds, auditLog := reachHarness(t, reachPolicy, nil)
	admin := tokenv1.NewAdminServiceClient(h.conn)
	setDefaults := func(t *testing.T, g *tokenv1.Grants) {
		t.Helper()
		if _, err := admin.UpdateApplication(adminCtx(), &tokenv1.UpdateApplicationRequest{ApplicationSid: testApp, DefaultGrants: g}); err != nil {
			t.Fatal(err)
		}
	}
	viaApp3 := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: reachApp3, Params: map[string]string{"to": "+15550100"}}}}
	chatIS2 := &tokenv1.Grants{Chat: &tokenv1.ChatGrant{ServiceSid: reachIS2}}
	for _, tc := range []struct {
		name     string
		defaults *tokenv1.Grants
		caller   string
		want     codes.Code
		reason   string
	}{
		{"other_outgoing_app_wide", viaApp3, "wide", codes.PermissionDenied, "voice.outgoing.application_sid " + reachApp3 + " is not allowed"},
		{"other_outgoing_app_scoped", viaApp3, "scoped", codes.OK, ""},
		{"chat_service_scoped", chatIS2, "scoped", codes.PermissionDenied, "chat.service_sid " + reachIS2 + " is not allowed"},
		{"chat_service_wide", chatIS2, "wide", codes.OK, ""},
	} {
		setDefaults(t, tc.defaults)
		for _, path := range []string{"grpc", "rest"} {
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				code, resp, _ := h.mintAs(t, path, caller{bearer: creds[tc.caller]}, `{"identity":"defaults_`+tc.name+`"}`)
				if code != tc.want {
					t.Fatalf("mint with the defaults as %s = %v %v, want %v", tc.caller, code, resp, tc.want)
				}
				if msg, _ := resp["message"].(string); !strings.Contains(msg, tc.reason) {
					t.Errorf("message %q, want %q", msg, tc.reason)
				}
			})
		}
	}
	records, _ := readAudit(t, h, auditLog)
	found := false
	for _, r := range records {
		if r["identity"] == "defaults_other_outgoing_app_scoped" && r["outgoing_application_sid"] == reachApp3 && r["outgoing_params"] == "to" && r["decision"] == "allow" {
			found = true
		}
	}
	if !found {
		t.Error("no audit record names the outgoing application and params the defaults gave")
	}
}

// TestDeniedMintRateLimit: a denied mint costs the caller a token of its
// bucket as an explanation does (else probing the policy by minting would
// be free), whether the rule or the application denied it; it takes
// nothing from the identity's bucket, so denied requests cannot use up an
// identity's mints.
func TestDeniedMintRateLimit(t *testing.T) {
	for _, path := range []string{"grpc", "rest"} {
		t.Run("principal/"+path, func(t *testing.T) {
			h, creds, _ := reachHarness(t, reachPolicy, func(c *server.Config) { c.RateLimitPrincipal, c.RateLimitBurst = 0.001, 2 })
			c := caller{bearer: creds["wide"]}
			if code, resp, _ := h.mintAs(t, path, c, `{"identity":"a","grants":{"player":{}}}`); code != codes.PermissionDenied {
				t.Fatalf("denied mint = %v %v", code, resp)
			}
			if code, resp, _ := h.mintAs(t, path, c, `{"identity":"a","application_sid":"`+reachApp2+`"}`); code != codes.PermissionDenied {
				t.Fatalf("mint for an application the caller may not mint for = %v %v", code, resp)
			}
			code, resp, hdr := h.mintAs(t, path, c, `{"identity":"a"}`)
			if code != codes.ResourceExhausted {
				t.Fatalf("mint after two denied mints in a burst of 2 = %v %v, want ResourceExhausted", code, resp)
			}
			if path == "rest" && hdr.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
		t.Run("identity/"+path, func(t *testing.T) {
			h, creds, _ := reachHarness(t, reachPolicy, func(c *server.Config) { c.RateLimitIdentity, c.RateLimitBurst = 0.001, 1 })
			for range 3 {
				if code, resp, _ := h.mintAs(t, path, caller{bearer: creds["outsider"]}, `{"identity":"victim"}`); code != codes.PermissionDenied {
					t.Fatalf("outsider's mint = %v %v, want PermissionDenied", code, resp)
				}
			}
			if code, resp, _ := h.mintAs(t, path, caller{bearer: creds["wide"]}, `{"identity":"victim"}`); code != codes.OK {
				t.Fatalf("mint after denied ones for the same identity = %v %v, want OK", code, resp)
			}
		})
	}
}

// TestMintRecordTime: the audit record of a mint carries the time its
// token was issued (one clock reading for both): its second is the
// token's iat and issued_at, and it falls within the call.
func TestMintRecordTime(t *testing.T) {
	h, creds, auditLog := reachHarness(t, reachPolicy, nil)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+creds["wide"])
	iat := map[string]int64{}
	before := time.Now()
	resp, err := h.token.Mint(ctx, &tokenv1.MintRequest{Identity: proto.String("rec_time_grpc")})
	if err != nil {
		t.Fatalf("Mint: %v", status.Convert(err).Message())
	}
	iat[resp.GetJti()] = resp.GetIssuedAt().GetSeconds()
	req, _ := http.NewRequest("GET", h.httpURL+"/token?identity=rec_time_rest", nil)
	req.Header.Set("Authorization", "Bearer "+creds["wide"])
	code, raw := h.doRaw(t, req)
	var rest struct {
		Token, Jti string
		IssuedAt   time.Time `json:"issued_at"`
	}
	if err := json.Unmarshal(raw, &rest); err != nil || code != 200 {
		t.Fatalf("GET /token = %d %s", code, raw)
	}
	iat[rest.Jti] = rest.IssuedAt.Unix()
	after := time.Now()
	for jti, sec := range iat {
		if sec < before.Unix() || sec > after.Unix() {
			t.Errorf("token %s issued at %d, outside the call (%d to %d)", jti, sec, before.Unix(), after.Unix())
		}
	}

	records, _ := readAudit(t, h, auditLog)
	seen := 0
	for _, r := range records {
		jti, _ := r["jti"].(string)
		sec, ok := iat[jti]
		if !ok || r["event"] != "mint" {
			continue
		}
		seen++
		at, err := time.Parse(time.RFC3339Nano, r["time"].(string))
		if err != nil {
			t.Fatalf("record time %v: %v", r["time"], err)
		}
		if at.Unix() != sec {
			t.Errorf("record of %s at %v (second %d), token issued at second %d", jti, at, at.Unix(), sec)
		}
		if at.Before(before.Truncate(time.Second)) || at.After(after) {
			t.Errorf("record of %s at %v, outside the call (%v to %v)", jti, at, before, after)
		}
	}
	if seen != len(iat) {
		t.Fatalf("found %d mint records of the %d tokens in %v", seen, len(iat), records)
	}
}
