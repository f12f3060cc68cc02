package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/twilioapi"
	"github.com/tokend/tokend/server/twilioapi/twiliotest"
)

const fakeAuthToken = "abcdef0123456789abcdef0123456789"

// provisionHarness is a tokend whose Twilio is a fake holding acct1, with
// app1 created (no keys).
func provisionHarness(t *testing.T, cfg server.Config) (*harness, *twiliotest.Fake, tokenv1.AdminServiceClient) {
	t.Helper()
	f := twiliotest.New()
	t.Cleanup(f.Close)
	f.AddAccount(acct1, fakeAuthToken)
	cfg.TwilioAPIURL = f.URL()
	h := adminHarness(t, cfg)
	admin := tokenv1.NewAdminServiceClient(h.conn)
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: acct1}); err != nil {
		t.Fatal(err)
	}
	return h, f, admin
}

func wantCode(t *testing.T, what string, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("%s = %v, want %v containing %q", what, err, code, contains)
	}
}

func mintVerified(t *testing.T, h *harness, f *twiliotest.Fake) *tokenv1.MintResponse {
	t.Helper()
	r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	if err := f.VerifyToken(r.GetToken()); err != nil {
		t.Fatalf("the fake Twilio refuses a token signed by %s: %v", r.GetApiKeySid(), err)
	}
	return r
}

func TestProvisionAndRevoke(t *testing.T) {
	h, f, admin := provisionHarness(t, server.Config{})
	ctx := adminCtx()

	_, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	wantCode(t, "ProvisionKey(no credential)", err, codes.FailedPrecondition, "no provisioning credential")

	_, err = admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: "wrongtoken0123456789"})
	wantCode(t, "SetTwilioCredential(wrong token)", err, codes.FailedPrecondition, "Twilio refused the provisioning credential")
	if strings.Contains(err.Error(), "wrongtoken0123456789") {
		t.Fatalf("error shows the credential: %v", err)
	}
	set, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := protojson.Marshal(set); strings.Contains(string(b), fakeAuthToken) || set.GetCredential().GetUsername() != acct1 {
		t.Fatalf("SetTwilioCredential = %s, want username %s and no secret", b, acct1)
	}

	p, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	first := p.GetKey()
	if first.GetState() != "active" || first.GetTwilioState() != "present" {
		t.Fatalf("ProvisionKey = %v, want an active key present at Twilio", first)
	}
	at := f.Keys(acct1)
	if len(at) != 1 || at[0].SID != first.GetApiKeySid() {
		t.Fatalf("the fake holds %v, want only %s", at, first.GetApiKeySid())
	}
	if app, _, ok := twilioapi.ParseFriendlyName(at[0].FriendlyName); !ok || app != app1 {
		t.Errorf("friendly name %q does not mark the key as tokend's for %s", at[0].FriendlyName, app1)
	}
	old := mintVerified(t, h, f)
	if old.GetApiKeySid() != first.GetApiKeySid() {
		t.Fatalf("minted with %s, want %s", old.GetApiKeySid(), first.GetApiKeySid())
	}

	// A retired second key, then revoke the active one.
	spare, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1})
	if err != nil || spare.GetKey().GetState() != "retired" {
		t.Fatalf("ProvisionKey(activate false) = %v, %v, want a retired key", spare, err)
	}
	rv, err := admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: first.GetApiKeySid()})
	if err != nil {
		t.Fatal(err)
	}
	fresh := rv.GetActiveKey().GetApiKeySid()
	if fresh == "" || fresh == first.GetApiKeySid() || fresh == spare.GetKey().GetApiKeySid() {
		t.Fatalf("RevokeKey active key = %q, want a fresh key", fresh)
	}
	if err := f.VerifyToken(old.GetToken()); err == nil {
		t.Fatal("the fake still accepts a token of the revoked key")
	}
	if got := mintVerified(t, h, f); got.GetApiKeySid() != fresh {
		t.Fatalf("after revoke minted with %s, want %s", got.GetApiKeySid(), fresh)
	}
	if d := f.Deletions(); len(d) != 1 || d[0].SID != first.GetApiKeySid() {
		t.Fatalf("deletions at the fake = %v, want only %s", d, first.GetApiKeySid())
	}
	keys, err := admin.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	var sids []string
	for _, k := range keys.GetKeys() {
		sids = append(sids, k.GetApiKeySid())
	}
	if slices.Contains(sids, first.GetApiKeySid()) || len(sids) != 2 {
		t.Fatalf("keys after revoke = %v, want the spare and the fresh key", sids)
	}
	_, err = admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: first.GetApiKeySid()})
	wantCode(t, "RevokeKey(again)", err, codes.NotFound, "not found")

	req, _ := http.NewRequest("GET", h.httpURL+"/metrics", nil)
	_, raw := h.doRaw(t, req)
	for _, want := range []string{
		`tokend_key_provisioning_steps_total{action="provision",result="ok"} 3`,
		`tokend_key_provisioning_steps_total{action="revoke",result="ok"} 1`,
		`tokend_twilio_requests_total{op="create key",status="201"} 3`,
		`tokend_twilio_requests_total{op="delete key",status="204"} 1`,
		`tokend_twilio_requests_total{op="list keys",status="401"} 1`,
		`tokend_keys_missing_at_twilio 0`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(raw), fakeAuthToken) {
		t.Error("/metrics shows the credential")
	}
}

func TestProvisionTwilioFaults(t *testing.T) {
	h, f, admin := provisionHarness(t, server.Config{})
	ctx := adminCtx()
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	p, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		fault twiliotest.Fault
		code  codes.Code
		msg   string
	}{
		{"5xx", twiliotest.Fault{Method: http.MethodPost, Status: 503, Times: 10}, codes.Unavailable, "HTTP 503"},
		// The key is created, but the answer is lost: tokend finds it by
		// its friendly name and deletes it.
		{"dropped_after_create", twiliotest.Fault{Method: http.MethodPost, Drop: true, Times: 10}, codes.Unavailable, "attempts"},
		// Last: tokend then sends nothing for the account for an hour.
		{"429_long_retry_after", twiliotest.Fault{Method: http.MethodPost, Status: 429, RetryAfter: "3600"}, codes.Unavailable, "Retry-After"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.Inject(tt.fault)
			defer f.ClearFaults()
			_, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
			wantCode(t, "ProvisionKey", err, tt.code, tt.msg)
			keys, err := admin.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: app1})
			if err != nil {
				t.Fatal(err)
			}
			if len(keys.GetKeys()) != 1 || keys.GetKeys()[0].GetApiKeySid() != p.GetKey().GetApiKeySid() || keys.GetKeys()[0].GetState() != "active" {
				t.Fatalf("keys = %v, want only %s, active", keys.GetKeys(), p.GetKey().GetApiKeySid())
			}
			if at := f.Keys(acct1); len(at) != 1 {
				t.Fatalf("the fake holds %d keys, want 1 (no orphan)", len(at))
			}
			mintVerified(t, h, f)
		})
	}
	// Twilio asked for an hour's quiet: the next call answers at once,
	// sending nothing.
	before := f.Requests()
	_, err = admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	wantCode(t, "ProvisionKey(after Retry-After 3600)", err, codes.Unavailable, "none sent")
	if got := f.Requests() - before; got != 0 {
		t.Errorf("ProvisionKey sent %d requests during Twilio's Retry-After, want 0", got)
	}
}

func TestReconcile(t *testing.T) {
	h, f, admin := provisionHarness(t, server.Config{})
	ctx := adminCtx()
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	a, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	orphan := f.AddKey(acct1, twilioapi.FriendlyName(app1, "0123abcd"), false)
	manual := f.AddKey(acct1, "made by hand", false)
	f.RemoveKey(acct1, b.GetKey().GetApiKeySid()) // deleted in the Console

	rep, err := admin.ReconcileKeys(ctx, &tokenv1.ReconcileKeysRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.GetOrphanedApiKeySids(), []string{orphan.SID}) || len(rep.GetDeletedApiKeySids()) != 0 {
		t.Errorf("orphans = %v, deleted %v, want [%s] and none", rep.GetOrphanedApiKeySids(), rep.GetDeletedApiKeySids(), orphan.SID)
	}
	if !slices.Equal(rep.GetMissingApiKeySids(), []string{b.GetKey().GetApiKeySid()}) || rep.GetSwitchedToApiKeySid() != a.GetKey().GetApiKeySid() {
		t.Errorf("missing = %v, switched to %q, want [%s] and %s", rep.GetMissingApiKeySids(), rep.GetSwitchedToApiKeySid(), b.GetKey().GetApiKeySid(), a.GetKey().GetApiKeySid())
	}
	if got := mintVerified(t, h, f); got.GetApiKeySid() != a.GetKey().GetApiKeySid() {
		t.Errorf("minted with %s after the switch, want %s", got.GetApiKeySid(), a.GetKey().GetApiKeySid())
	}
	keys, err := admin.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys.GetKeys() {
		want := "present"
		if k.GetApiKeySid() == b.GetKey().GetApiKeySid() {
			want = "missing"
		}
		if k.GetTwilioState() != want {
			t.Errorf("key %s twilio_state = %q, want %q", k.GetApiKeySid(), k.GetTwilioState(), want)
		}
	}
	code, body := h.do(t, "GET", "/readyz", "", "")
	if detail, _ := body["twilio_keys"].(string); code != 200 || !strings.Contains(detail, b.GetKey().GetApiKeySid()) {
		t.Errorf("/readyz = %d %v, want 200 naming the missing key", code, body)
	}

	rep, err = admin.ReconcileKeys(ctx, &tokenv1.ReconcileKeysRequest{ApplicationSid: app1, DeleteOrphans: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.GetDeletedApiKeySids(), []string{orphan.SID}) {
		t.Errorf("deleted = %v, want [%s]", rep.GetDeletedApiKeySids(), orphan.SID)
	}
	var left []string
	for _, k := range f.Keys(acct1) {
		left = append(left, k.SID)
	}
	if slices.Contains(left, orphan.SID) || !slices.Contains(left, manual.SID) {
		t.Errorf("the fake holds %v, want the orphan gone and the hand-made key kept", left)
	}
}

// TestScheduledRotation rotates every second: a new key each pass, and a
// retired key deleted at Twilio only once its last token has expired and
// the grace period has passed.
func TestScheduledRotation(t *testing.T) {
	const grace = time.Second
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	h, f, admin := provisionHarness(t, server.Config{ProvisionGrace: grace, AuditLog: auditPath})
	ctx := adminCtx()
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken, RotateEvery: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	prov := h.srv.Provisioner()
	tick := func() {
		t.Helper()
		if err := prov.Tick(context.Background()); err != nil {
			t.Fatalf("Tick: %v", err)
		}
	}
	tick() // no active key: provisions one
	ttl := int32(3)
	r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1, TtlSeconds: &ttl})
	if err != nil {
		t.Fatal(err)
	}
	first := r.GetApiKeySid()
	exp := r.GetExpiresAt().AsTime()
	if err := h.srv.Keystore().FlushUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	tick() // rotation due
	if got := mintVerified(t, h, f); got.GetApiKeySid() == first {
		t.Fatalf("still minting with %s after the rotation", first)
	}
	keys, err := admin.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys.GetKeys() {
		if k.GetApiKeySid() == first {
			if k.GetState() != "retired" || k.GetDeleteAfter() == nil || k.GetDeleteAfter().AsTime().Before(exp.Add(grace)) {
				t.Fatalf("retired key %v, want delete_after at or after %v", k, exp.Add(grace))
			}
		}
	}
	for time.Now().Before(exp.Add(grace + 1500*time.Millisecond)) {
		tick()
		for _, d := range f.Deletions() {
			if d.SID == first && d.At.Before(exp.Add(grace)) {
				t.Fatalf("key %s deleted at %v, before its last token expired (%v) plus grace", first, d.At, exp)
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	deleted := false
	for _, d := range f.Deletions() {
		deleted = deleted || d.SID == first
	}
	if !deleted {
		t.Fatalf("key %s not deleted at Twilio after its tokens expired; deletions %v", first, f.Deletions())
	}
	mintVerified(t, h, f)
	// Every step is an audit record of the provisioner.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(auditPath)
		var rotate, del bool
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `"principal":"tokend-provisioner"`) {
				continue
			}
			rotate = rotate || strings.Contains(line, `"action":"rotate"`)
			del = del || (strings.Contains(line, `"action":"delete"`) && strings.Contains(line, first))
			if strings.Contains(line, fakeAuthToken) {
				t.Fatalf("audit record holds the credential: %s", line)
			}
		}
		if rotate && del {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit log lacks the rotate or the delete of %s:\n%s", first, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTwilioCredentialBadInput(t *testing.T) {
	h, _, _ := provisionHarness(t, server.Config{})
	tests := []struct {
		name, body, field string
	}{
		{"none", `{}`, "auth_token"},
		{"both", `{"auth_token":"abc","api_key_sid":"SK11111111111111111111111111111111","api_key_secret":"x"}`, "auth_token"},
		{"bad_key_sid", `{"api_key_sid":"AC11111111111111111111111111111111","api_key_secret":"x"}`, "api_key_sid"},
		{"no_key_secret", `{"api_key_sid":"SK11111111111111111111111111111111"}`, "api_key_secret"},
		{"secret_chars", `{"auth_token":"abc def"}`, "auth_token"},
		{"rotate_too_short", `{"auth_token":"abc","rotate_every":"0.5s"}`, "rotate_every"},
		{"rotate_negative", `{"auth_token":"abc","rotate_every":"-5s"}`, "rotate_every"},
		{"rotate_huge", `{"auth_token":"abc","rotate_every":"315576000000s"}`, "rotate_every"},        // 10,000 years: a valid Duration, beyond time.Duration
		{"rotate_over_ten_years", `{"auth_token":"abc","rotate_every":"315360001s"}`, "rotate_every"}, // 3650 days and 1 s
		{"rotate_days", `{"auth_token":"abc","rotate_every":"30d"}`, "rotate_every"},                  // not a Duration: protojson names no field
		{"rotate_number", `{"auth_token":"abc",` + "\n" + `"rotateEvery": 2592000}`, "rotate_every"},  // a number, on line 2
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := h.do(t, "PUT", "/v1/applications/"+app1+"/twilio-credential", "application/json", tt.body)
			msg, _ := body["message"].(string)
			if code != http.StatusBadRequest || !strings.Contains(msg, tt.field) || strings.Contains(msg, "malformed JSON") {
				t.Fatalf("PUT twilio-credential %s = %d %v, want 400 naming %s", tt.body, code, body, tt.field)
			}
			if strings.Contains(msg, "abc def") {
				t.Fatalf("message quotes the secret: %s", msg)
			}
		})
	}
	code, body := h.do(t, "PUT", "/v1/applications/"+app1+"/twilio-credential", "application/json", `{"auth_token":"`+fakeAuthToken+`"}`)
	if code != 200 || strings.Contains(strings.ToLower(func() string { b, _ := protojson.Marshal(&tokenv1.Key{}); return string(b) }()), fakeAuthToken) {
		t.Fatalf("PUT twilio-credential = %d %v, want 200", code, body)
	}
	code, body = h.do(t, "POST", "/v1/applications/"+app1+"/keys:provision", "application/json", `{"activate":true}`)
	if code != 200 {
		t.Fatalf("POST keys:provision = %d %v, want 200", code, body)
	}
	code, body = h.do(t, "DELETE", "/v1/applications/"+app1+"/twilio-credential", "", "")
	if code != 200 {
		t.Fatalf("DELETE twilio-credential = %d %v", code, body)
	}
	code, body = h.do(t, "DELETE", "/v1/applications/"+app1+"/twilio-credential", "", "")
	if code != 404 {
		t.Fatalf("DELETE twilio-credential again = %d %v, want 404", code, body)
	}
}

// TestRekeyProvisioningCredential: rekey reseals the provisioning
// credential under the new primary master key, and it still works with
// only that key.
func TestRekeyProvisioningCredential(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB := keyringText(7), keyringText(9)
	f := twiliotest.New()
	t.Cleanup(f.Close)
	f.AddAccount(acct1, fakeAuthToken)
	h := adminHarness(t, server.Config{DataDir: dir, MasterKey: keyA, TwilioAPIURL: f.URL()})
	admin := tokenv1.NewAdminServiceClient(h.conn)
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: acct1}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetTwilioCredential(adminCtx(), &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()

	h = adminHarness(t, server.Config{DataDir: dir, MasterKey: keyB + "," + keyA, TwilioAPIURL: f.URL()})
	code, body := h.do(t, "POST", "/v1/keyring:rekey", "application/json", "{}")
	if code != 200 || body["resealed"] != 1.0 { // the credential (the seed key was resealed at start)
		t.Fatalf("POST /v1/keyring:rekey = %d %v, want the credential resealed", code, body)
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()

	h = adminHarness(t, server.Config{DataDir: dir, MasterKey: keyB, TwilioAPIURL: f.URL()})
	if _, err := tokenv1.NewAdminServiceClient(h.conn).ProvisionKey(adminCtx(), &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true}); err != nil {
		t.Fatalf("ProvisionKey with only the new master key: %v", err)
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()
	if _, err := server.New(context.Background(), server.Config{DataDir: dir, MasterKey: keyA, Logger: testLogger(t)}); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("server.New with only the retired master key = %v, want a master key error", err)
	}
}

// TestMainKeyCredential: a Main API key may manage keys, a Standard one
// may not; revoke and reconcile work over REST.
func TestMainKeyCredential(t *testing.T) {
	h, f, _ := provisionHarness(t, server.Config{})
	main := f.AddKey(acct1, "main", true)
	standard := f.AddKey(acct1, "standard", false)
	put := func(sid, secret string) (int, map[string]any) {
		return h.do(t, "PUT", "/v1/applications/"+app1+"/twilio-credential", "application/json",
			`{"api_key_sid":"`+sid+`","api_key_secret":"`+secret+`"}`)
	}
	code, body := put(standard.SID, standard.Secret)
	if msg, _ := body["message"].(string); code != http.StatusBadRequest || !strings.Contains(msg, "refused") || strings.Contains(msg, standard.Secret) {
		t.Fatalf("PUT a Standard key = %d %v, want 400 saying Twilio refused it, without the secret", code, body)
	}
	if code, body = put(main.SID, main.Secret); code != 200 {
		t.Fatalf("PUT a Main key = %d %v, want 200", code, body)
	}
	if cred, _ := body["credential"].(map[string]any); cred["username"] != main.SID || strings.Contains(fmt.Sprint(body), main.Secret) {
		t.Fatalf("PUT a Main key answered %v, want username %s and no secret", body, main.SID)
	}
	code, body = h.do(t, "POST", "/v1/applications/"+app1+"/keys:provision", "application/json", `{"activate":true}`)
	if code != 200 {
		t.Fatalf("POST keys:provision = %d %v", code, body)
	}
	sid, _ := body["key"].(map[string]any)["api_key_sid"].(string)
	code, body = h.do(t, "POST", "/v1/applications/"+app1+"/keys/"+sid+":revoke", "application/json", `{}`)
	if code != 200 || body["revoked_api_key_sid"] != sid {
		t.Fatalf("POST keys/%s:revoke = %d %v", sid, code, body)
	}
	code, body = h.do(t, "POST", "/v1/applications/"+app1+"/keys:reconcile", "application/json", `{}`)
	if code != 200 || body["missing_api_key_sids"] != nil {
		t.Fatalf("POST keys:reconcile = %d %v, want 200 with nothing missing", code, body)
	}
	mintVerified(t, h, f)
}

// TestProvisionLostAnswer: Twilio creates the key but the answer never
// comes; the retried create makes a second key. tokend stores one and
// deletes the other at once: no orphan is left.
func TestProvisionLostAnswer(t *testing.T) {
	h, f, admin := provisionHarness(t, server.Config{TwilioTimeout: 500 * time.Millisecond})
	ctx := adminCtx()
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	f.Inject(twiliotest.Fault{Method: http.MethodPost, Hang: true})
	p, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.Creates() != 2 {
		t.Fatalf("%d creates at the fake, want 2 (the lost one and the retry)", f.Creates())
	}
	if at := fakeSIDs(f); len(at) != 1 || at[0] != p.GetKey().GetApiKeySid() {
		t.Fatalf("the fake holds %v, want only the stored key %s", at, p.GetKey().GetApiKeySid())
	}
	mintVerified(t, h, f)
}

func fakeSIDs(f *twiliotest.Fake) []string {
	var out []string
	for _, k := range f.Keys(acct1) {
		out = append(out, k.SID)
	}
	return out
}

// TestDeleteApplicationWithTwilioCredential: an application whose keys
// tokend manages at Twilio cannot be deleted (without force) while its
// provisioning credential is set: its keys would stay at Twilio with
// nobody to delete them. Without the credential it can.
func TestDeleteApplicationWithTwilioCredential(t *testing.T) {
	_, f, admin := provisionHarness(t, server.Config{})
	ctx := adminCtx()
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true}); err != nil {
		t.Fatal(err)
	}
	_, err := admin.DeleteApplication(ctx, &tokenv1.DeleteApplicationRequest{ApplicationSid: app1})
	wantCode(t, "DeleteApplication(with a provisioning credential)", err, codes.FailedPrecondition, "has a provisioning credential")
	if _, err := admin.GetApplication(ctx, &tokenv1.GetApplicationRequest{ApplicationSid: app1}); err != nil {
		t.Fatalf("GetApplication after the refused delete: %v", err)
	}
	if len(fakeSIDs(f)) != 1 {
		t.Fatalf("the fake holds %v, want the provisioned key", fakeSIDs(f))
	}
	if _, err := admin.DeleteTwilioCredential(ctx, &tokenv1.DeleteTwilioCredentialRequest{ApplicationSid: app1}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.DeleteApplication(ctx, &tokenv1.DeleteApplicationRequest{ApplicationSid: app1}); err != nil {
		t.Fatalf("DeleteApplication without the credential: %v", err)
	}
}

// TestRevokeManualKeys: revoking a key added by hand deletes it at Twilio
// with the provisioning credential (it is compromised), and without one
// says what is missing. A key another application also signs with is not
// deleted at Twilio by a revoke in one of them: that application would
// be left signing with a key Twilio no longer has.
func TestRevokeManualKeys(t *testing.T) {
	h, f, admin := provisionHarness(t, server.Config{})
	ctx := adminCtx()
	shared := f.AddKey(acct1, "made by hand, shared", false)
	mine := f.AddKey(acct1, "made by hand", false)
	if _, err := admin.CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: app2, AccountSid: acct1}); err != nil {
		t.Fatal(err)
	}
	for _, add := range []struct {
		app string
		key twiliotest.KeyInfo
	}{{app1, shared}, {app2, shared}, {app1, mine}} {
		if _, err := admin.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: add.app, ApiKeySid: add.key.SID, Secret: add.key.Secret}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: mine.SID})
	wantCode(t, "RevokeKey(no credential)", err, codes.FailedPrecondition, "no provisioning credential")
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Keystore().Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: shared.SID})
	wantCode(t, "RevokeKey(shared key)", err, codes.FailedPrecondition, app2)
	if !slices.Contains(fakeSIDs(f), shared.SID) {
		t.Fatalf("the shared key %s was deleted at Twilio; %s still signs with it", shared.SID, app2)
	}
	r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app2})
	if err != nil || f.VerifyToken(r.GetToken()) != nil {
		t.Fatalf("Mint(%s) = %v, %v, want a token Twilio accepts", app2, r, err)
	}
	rv, err := admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: mine.SID})
	if err != nil {
		t.Fatalf("RevokeKey(manual key) = %v", err)
	}
	if slices.Contains(fakeSIDs(f), mine.SID) || rv.GetActiveKey().GetApiKeySid() == mine.SID {
		t.Fatalf("RevokeKey(manual key) = %v; Twilio holds %v, want %s gone", rv, fakeSIDs(f), mine.SID)
	}
}

// TestRevokeOnlyKeyWhileTwilioFails: the revoke of the application's only
// key cannot provision its replacement (Twilio failing): it answers
// Unavailable and the key goes on signing tokens Twilio accepts; the
// application is never left without an active key. Once Twilio is back,
// the revoke goes through.
func TestRevokeOnlyKeyWhileTwilioFails(t *testing.T) {
	h, f, admin := provisionHarness(t, server.Config{})
	ctx := adminCtx()
	if _, err := admin.SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app1, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	p, err := admin.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app1, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	only := p.GetKey().GetApiKeySid()
	for _, fault := range []twiliotest.Fault{
		{Method: http.MethodPost, Status: 503, Times: 10},
		{Method: http.MethodPost, Drop: true, Times: 10},
		{Method: http.MethodDelete, Status: 500, Times: 10}, // the replacement is made; the deletion fails
	} {
		f.Inject(fault)
		_, err := admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: only})
		f.ClearFaults()
		wantCode(t, fmt.Sprintf("RevokeKey(fault %+v)", fault), err, codes.Unavailable, "Twilio did not answer")
		if got := mintVerified(t, h, f); fault.Method == http.MethodPost && got.GetApiKeySid() != only {
			t.Fatalf("minted with %s, want the only key %s", got.GetApiKeySid(), only)
		}
	}
	rv, err := admin.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app1, ApiKeySid: only})
	if err != nil {
		t.Fatalf("RevokeKey once Twilio is back = %v", err)
	}
	if slices.Contains(fakeSIDs(f), only) {
		t.Fatalf("the revoked key %s is still at Twilio", only)
	}
	if got := mintVerified(t, h, f); got.GetApiKeySid() != rv.GetActiveKey().GetApiKeySid() {
		t.Fatalf("minted with %s, want %s", got.GetApiKeySid(), rv.GetActiveKey().GetApiKeySid())
	}
}
