package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

const app2 = "AP22222222222222222222222222222222"

// TestDefaultApplicationAtRuntime: a second application does not take the
// default away; deleting the default makes tokend not ready (503) with a
// server-side error naming the fix; the admin API sets it again, over
// gRPC and REST; the stored default survives a restart without seed.
func TestDefaultApplicationAtRuntime(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := adminHarness(t, server.Config{DataDir: dir}) // the seed application testApp
	admin := tokenv1.NewAdminServiceClient(h.conn)
	get := func(h *harness) *tokenv1.GetDefaultApplicationResponse {
		t.Helper()
		resp, err := tokenv1.NewAdminServiceClient(h.conn).GetDefaultApplication(adminCtx(), &tokenv1.GetDefaultApplicationRequest{})
		if err != nil {
			t.Fatalf("GetDefaultApplication() = %v", err)
		}
		return resp
	}
	if got := get(h); got.GetApplicationSid() != testApp || got.GetEffectiveApplicationSid() != testApp {
		t.Fatalf("GetDefaultApplication() after a seeded start = %v, want %s", got, testApp)
	}
	// A second application: requests naming none still go to the seed's.
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app2, AccountSid: testAccount}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddKey(adminCtx(), &tokenv1.AddKeyRequest{ApplicationSid: app2, ApiKeySid: key2, Secret: secret2}); err != nil {
		t.Fatal(err)
	}
	if resp, err := h.token.Mint(ctx, &tokenv1.MintRequest{}); err != nil || resp.GetApplicationSid() != testApp {
		t.Fatalf("Mint() with a second application = %v, %v, want %s", resp, err, testApp)
	}
	if code, body := h.do(t, "GET", "/readyz", "", ""); code != 200 || body["default_application"] != testApp {
		t.Errorf("/readyz = %d %v, want 200 naming %s", code, body, testApp)
	}
	// A third one, then delete the default: nothing serves requests
	// naming no application, and tokend says so.
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: acct1}); err != nil {
		t.Fatal(err)
	}
	if code, body := h.do(t, "DELETE", "/v1/applications/"+testApp+"?force=true", "", ""); code != 200 {
		t.Fatalf("DELETE the default application = %d %v", code, body)
	}
	_, err := h.token.Mint(ctx, &tokenv1.MintRequest{})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "tokenctl apps default") {
		t.Errorf("gRPC Mint() without a default = %v, want FailedPrecondition naming tokenctl apps default", err)
	}
	code, body := h.do(t, "GET", "/token", "", "")
	if msg, _ := body["message"].(string); code != 503 || body["code"] != float64(codes.FailedPrecondition) || !strings.Contains(msg, "PUT /v1/default-application") {
		t.Errorf("GET /token without a default = %d %v, want 503 FailedPrecondition naming the fix", code, body)
	}
	code, body = h.do(t, "GET", "/readyz", "", "")
	if d, _ := body["default_application"].(string); code != 503 || !strings.HasPrefix(d, "none") {
		t.Errorf("/readyz without a default = %d %v, want 503 saying there is none", code, body)
	}
	if got := get(h); got.GetApplicationSid() != "" || got.GetEffectiveApplicationSid() != "" {
		t.Errorf("GetDefaultApplication() after deleting it = %v, want none", got)
	}
	// Naming an application still works meanwhile.
	if _, err := h.token.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app2, Identity: proto.String("bob")}); err != nil {
		t.Errorf("Mint(%s) without a default = %v", app2, err)
	}
	// Set it: REST, then gRPC.
	code, body = h.do(t, "PUT", "/v1/default-application", "application/json", `{"application_sid":"`+app2+`"}`)
	if code != 200 || body["application_sid"] != app2 {
		t.Fatalf("PUT /v1/default-application = %d %v", code, body)
	}
	if resp, err := h.token.Mint(ctx, &tokenv1.MintRequest{}); err != nil || resp.GetApplicationSid() != app2 {
		t.Errorf("Mint() after PUT = %v, %v, want %s", resp, err, app2)
	}
	if code, _ := h.do(t, "GET", "/readyz", "", ""); code != 200 {
		t.Errorf("/readyz after setting a default = %d, want 200", code)
	}
	resp, err := admin.SetDefaultApplication(adminCtx(), &tokenv1.SetDefaultApplicationRequest{ApplicationSid: app1})
	if err != nil || resp.GetPreviousApplicationSid() != app2 {
		t.Fatalf("SetDefaultApplication(%s) = %v, %v, want previous %s", app1, resp, err, app2)
	}
	// Bad input and missing applications.
	for _, tc := range []struct {
		sid  string
		want codes.Code
	}{{"", codes.InvalidArgument}, {"AP1", codes.InvalidArgument}, {"AP99999999999999999999999999999999", codes.NotFound}} {
		if _, err := admin.SetDefaultApplication(adminCtx(), &tokenv1.SetDefaultApplicationRequest{ApplicationSid: tc.sid}); status.Code(err) != tc.want {
			t.Errorf("SetDefaultApplication(%q) = %v, want %v", tc.sid, err, tc.want)
		}
	}
	if _, err := tokenv1.NewAdminServiceClient(h.conn).SetDefaultApplication(ctx, &tokenv1.SetDefaultApplicationRequest{ApplicationSid: app2}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("SetDefaultApplication without the admin token = %v, want Unauthenticated", err)
	}
	// A restart without seed keeps the stored default.
	h.srv.GRPCServer().Stop()
	h.srv.Close()
	h2 := newHarness(t, server.Config{DataDir: dir})
	if got := h2.srv.Keystore().Default(); got == nil || got.SID != app1 {
		t.Errorf("default after a restart without seed = %v, want %s", got, app1)
	}
}

// TestSeedStaysDefault: the seed application stays the default across
// restarts, also without the seed variables, and a restart with the same
// seed does not undo a default set through the admin API.
func TestSeedStaysDefault(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	h := adminHarness(t, server.Config{DataDir: dir})
	admin := tokenv1.NewAdminServiceClient(h.conn)
	if _, err := admin.CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app2, AccountSid: testAccount}); err != nil {
		t.Fatal(err)
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()
	h2 := newHarness(t, server.Config{DataDir: dir}) // no seed
	if resp, err := h2.token.Mint(ctx, &tokenv1.MintRequest{}); err != nil || resp.GetApplicationSid() != testApp {
		t.Fatalf("Mint() after a restart without seed = %v, %v, want the seed application %s", resp, err, testApp)
	}
	h2.srv.GRPCServer().Stop()
	h2.srv.Close()
	h3 := adminHarness(t, server.Config{DataDir: dir}) // the same seed again
	if _, err := tokenv1.NewAdminServiceClient(h3.conn).SetDefaultApplication(adminCtx(), &tokenv1.SetDefaultApplicationRequest{ApplicationSid: app2}); err != nil {
		t.Fatal(err)
	}
	h3.srv.GRPCServer().Stop()
	h3.srv.Close()
	h4 := adminHarness(t, server.Config{DataDir: dir})
	if got := h4.srv.Keystore().Default(); got == nil || got.SID != app2 {
		t.Errorf("default after a restart with the same seed = %v, want %s (set through the admin API)", got, app2)
	}
	h4.srv.GRPCServer().Stop()
	h4.srv.Close()
	// --default-application sets it at start.
	h5 := newHarness(t, server.Config{DataDir: dir, DefaultApplication: testApp})
	if got := h5.srv.Keystore().Default(); got == nil || got.SID != testApp {
		t.Errorf("default with --default-application %s = %v", testApp, got)
	}
}

// TestDefaultApplicationReplicas: a default set through one replica
// reaches another sharing the store within the watch interval.
func TestDefaultApplicationReplicas(t *testing.T) {
	dir := t.TempDir()
	a := adminHarness(t, server.Config{DataDir: dir})
	b := newHarness(t, server.Config{DataDir: dir})
	if _, err := tokenv1.NewAdminServiceClient(a.conn).CreateApplication(adminCtx(), &tokenv1.CreateApplicationRequest{ApplicationSid: app2, AccountSid: testAccount}); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenv1.NewAdminServiceClient(a.conn).SetDefaultApplication(adminCtx(), &tokenv1.SetDefaultApplicationRequest{ApplicationSid: app2}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.srv.Keystore().Watch(ctx, 20*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if d := b.srv.Keystore().Default(); d != nil && d.SID == app2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other replica's default = %v, want %s", b.srv.Keystore().Default(), app2)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDefaultApplicationNotInStore: --default-application naming an
// application the store does not hold refuses to start, naming it and
// the fix.
func TestDefaultApplicationNotInStore(t *testing.T) {
	missing := "AP" + strings.Repeat("9", 32)
	_, err := server.New(context.Background(), server.Config{
		DataDir:            t.TempDir(),
		MasterKey:          base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		Logger:             testLogger(t),
		DefaultApplication: missing,
	})
	if err == nil {
		t.Fatal("server.New with an unknown default application = nil, want an error")
	}
	for _, want := range []string{missing, "is not in the store", "tokenctl apps create"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
