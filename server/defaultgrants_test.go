package server_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// TestDefaultGrantsAtStart: Config.DefaultGrants (--default-grants)
// replace the built-in default grants of applications without their own:
// a plain GET /token then allows incoming calls, as Twilio's samples do;
// an application with its own default grants keeps them.
func TestDefaultGrantsAtStart(t *testing.T) {
	template := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{
		Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true},
		Outgoing: &tokenv1.VoiceGrant_Outgoing{},
	}}
	h := adminHarness(t, server.Config{DefaultGrants: template})
	code, resp := h.do(t, "GET", "/token", "", "")
	if code != 200 {
		t.Fatalf("GET /token = %d %v", code, resp)
	}
	_, claims := decodeJWT(t, resp["token"].(string))
	voice, _ := claims["grants"].(map[string]any)["voice"].(map[string]any)
	want := map[string]any{"incoming": map[string]any{"allow": true}, "outgoing": map[string]any{"application_sid": testApp}}
	if diff := cmp.Diff(want, voice); diff != "" {
		t.Errorf("voice grant of GET /token (-want +got):\n%s", diff)
	}
	// The admin API shows the effective default.
	admin := tokenv1.NewAdminServiceClient(h.conn)
	got, err := admin.GetApplication(adminCtx(), &tokenv1.GetApplicationRequest{ApplicationSid: testApp})
	if err != nil {
		t.Fatal(err)
	}
	wantGrants := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{
		Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true},
		Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: testApp},
	}}
	if diff := cmp.Diff(wantGrants, got.GetApplication().GetDefaultGrants(), protocmp.Transform()); diff != "" {
		t.Errorf("GetApplication default_grants (-want +got):\n%s", diff)
	}
	// The template is not changed by filling it in for an application.
	if template.GetVoice().GetOutgoing().GetApplicationSid() != "" {
		t.Error("the template was modified")
	}
	// An application's own default grants win.
	own := &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "r1"}}
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app2, AccountSid: testAccount, DefaultGrants: own}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddKey(adminCtx(), &tokenv1.AddKeyRequest{ApplicationSid: app2, ApiKeySid: key2, Secret: secret2}); err != nil {
		t.Fatal(err)
	}
	m, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app2})
	if err != nil {
		t.Fatal(err)
	}
	_, claims = decodeJWT(t, m.GetToken())
	if g := claims["grants"].(map[string]any); g["voice"] != nil || g["video"] == nil {
		t.Errorf("grants of an application with its own defaults = %v, want video only", g)
	}
}
