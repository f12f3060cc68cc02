package server_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/storage"
)

// TestSecretsNotInDatabase proves the store's files never hold an API
// secret in the clear: not in the database, not in its WAL.
func TestSecretsNotInDatabase(t *testing.T) {
	const secret = "s3cr3t-api-key-secret-0123456789"
	dir := t.TempDir()
	h := newHarness(t, server.Config{DataDir: dir, Seed: server.Seed{
		AccountSID: testAccount, APIKey: testKey, APISecret: secret, TwiMLAppSID: testApp,
	}})
	resp, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{})
	if err != nil {
		t.Fatalf("Mint() = %v", err)
	}
	verifyJWT(t, resp.GetToken(), secret) // the secret really is the one in use
	files, err := filepath.Glob(filepath.Join(dir, "tokend.db*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no database files in %s (%v)", dir, err)
	}
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += len(b)
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s contains the API secret in the clear", filepath.Base(f))
		}
	}
	// Guard against a vacuous pass: the key SID itself is stored.
	found := false
	for _, f := range files {
		b, _ := os.ReadFile(f)
		found = found || bytes.Contains(b, []byte(testKey))
	}
	if !found {
		t.Fatalf("the key SID is in none of %v (%d bytes): the check above proves nothing", files, total)
	}
}

// TestApplicationResolution: application_sid may be omitted with one
// application or a default one; otherwise the server is not ready for
// such requests (FailedPrecondition naming the fix).
func TestApplicationResolution(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, server.Config{}) // no seed: the demo application
	resp, err := h.token.Mint(ctx, &tokenv1.MintRequest{})
	if err != nil {
		t.Fatalf("Mint() with only the demo application = %v", err)
	}
	if resp.GetApplicationSid() != server.DemoApplicationSID || resp.GetIdentity() != "user" {
		t.Errorf("Mint() = %s for %s, want %s for user", resp.GetApplicationSid(), resp.GetIdentity(), server.DemoApplicationSID)
	}
	if err := h.srv.Keystore().Store().CreateApplication(ctx, storage.Application{SID: testApp, AccountSID: testAccount}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Keystore().Reload(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = h.token.Mint(ctx, &tokenv1.MintRequest{})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "tokenctl apps default") {
		t.Errorf("Mint() with two applications and no default = %v, want FailedPrecondition naming the fix", err)
	}
	resp, err = h.token.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: server.DemoApplicationSID, Identity: proto.String("bob")})
	if err != nil || resp.GetIdentity() != "bob" {
		t.Errorf("Mint(demo, bob) = %v, %v", resp, err)
	}
}

// TestDemoReplacedBySeed: real credentials remove the demo application and
// become the default application.
func TestDemoReplacedBySeed(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, server.Config{DataDir: dir})
	if h.srv.Keystore().Lookup(server.DemoApplicationSID) == nil {
		t.Fatal("no demo application on an empty store")
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()
	h2 := newHarness(t, server.Config{DataDir: dir, Seed: server.Seed{
		AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp,
	}})
	if h2.srv.Keystore().Lookup(server.DemoApplicationSID) != nil {
		t.Error("the demo application survived real credentials")
	}
	resp, err := h2.token.Mint(context.Background(), &tokenv1.MintRequest{})
	if err != nil || resp.GetApplicationSid() != testApp || resp.GetApiKeySid() != testKey {
		t.Fatalf("Mint() = %v, %v, want a token of %s signed by %s", resp, err, testApp, testKey)
	}
	verifyJWT(t, resp.GetToken(), testSecret)
}

// TestSameSeedWritesNothing: starting again with the same seed writes
// nothing (the revision stays, so replicas do not reload), and a changed
// API_SECRET is written and signs.
func TestSameSeedWritesNothing(t *testing.T) {
	dir := t.TempDir()
	seed := server.Seed{AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp}
	h := newHarness(t, server.Config{DataDir: dir, Seed: seed})
	rev := h.srv.Keystore().Revision()
	h.srv.GRPCServer().Stop()
	h.srv.Close()
	h2 := newHarness(t, server.Config{DataDir: dir, Seed: seed})
	if got := h2.srv.Keystore().Revision(); got != rev {
		t.Errorf("revision %d after a restart with the same seed, want %d (nothing written)", got, rev)
	}
	h2.srv.GRPCServer().Stop()
	h2.srv.Close()
	seed.APISecret = "a-new-secret-for-the-same-api-key"
	h3 := newHarness(t, server.Config{DataDir: dir, Seed: seed})
	if got := h3.srv.Keystore().Revision(); got == rev {
		t.Errorf("revision %d unchanged after a restart with a new API_SECRET", got)
	}
	resp, err := h3.token.Mint(context.Background(), &tokenv1.MintRequest{})
	if err != nil {
		t.Fatal(err)
	}
	verifyJWT(t, resp.GetToken(), seed.APISecret)
}

// TestWrongMasterKey: a store opened with another master key is a clear
// start-up error, never garbage tokens.
func TestWrongMasterKey(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, server.Config{DataDir: dir})
	h.srv.GRPCServer().Stop()
	h.srv.Close()
	_, err := server.New(context.Background(), server.Config{
		DataDir:   dir,
		MasterKey: "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMDE=", // 32 bytes, not the harness key
		Logger:    testLogger(t),
	})
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("server.New with the wrong master key = %v, want an error about the master key", err)
	}
}

// TestHealthAndReflection: grpc.health.v1 answers SERVING for the token
// service, and server reflection lists it (what grpcurl uses).
func TestHealthAndReflection(t *testing.T) {
	h := seededHarness(t)
	ctx := context.Background()
	for _, svc := range []string{"", "token.v1.TokenService"} {
		resp, err := healthpb.NewHealthClient(h.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, %v, want SERVING", svc, resp, err)
		}
	}
	stream, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "token.v1.TokenService") {
		t.Errorf("reflection lists %v, want token.v1.TokenService", names)
	}
	if code, body := h.do(t, "GET", "/healthz", "", ""); code != 200 || body["status"] != "ok" {
		t.Errorf("GET /healthz = %d %v, want 200 ok", code, body)
	}
	if code, body := h.do(t, "GET", "/openapi.json", "", ""); code != 200 || body["swagger"] != "2.0" || body["paths"].(map[string]any)["/token"] == nil {
		t.Errorf("GET /openapi.json = %d, want the OpenAPI description with /token", code)
	}
	if code, body := h.do(t, "GET", "/readyz", "", ""); code != 200 || body["status"] != "ready" || body["store"] != "ok" || body["mint"] != "ready" {
		t.Errorf("GET /readyz = %d %v, want 200 ready with the store ok", code, body)
	}
}

// TestLostMasterKeyFile: with the generated key file gone, tokend refuses
// to start (it would generate a key that opens nothing) and removes the
// key it generated, so the operator can restore the original.
func TestLostMasterKeyFile(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Logger: testLogger(t)}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	keyFile := filepath.Join(dir, "master.key")
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, err = server.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "wrong master key") || !strings.Contains(err.Error(), "restore") {
		t.Fatalf("server.New without its key file = %v, want a wrong master key error telling to restore it", err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Errorf("a generated key file was left behind (%v)", err)
	}
}

// TestDemoReplacedByFirstApplication: creating a real application through
// the admin API removes the demo application, so GET /token without an
// application_sid keeps working.
func TestDemoReplacedByFirstApplication(t *testing.T) {
	h := newHarness(t, server.Config{AdminToken: adminToken})
	h.authz = "Bearer " + adminToken
	if code, body := h.do(t, "POST", "/v1/applications", "application/json", `{"application_sid":"`+app1+`","account_sid":"`+acct1+`"}`); code != 200 {
		t.Fatalf("create application = %d %v", code, body)
	}
	if code, body := h.do(t, "POST", "/v1/applications/"+app1+"/keys", "application/json", `{"api_key_sid":"`+key1+`","secret":"`+secret1+`"}`); code != 200 {
		t.Fatalf("add key = %d %v", code, body)
	}
	if h.srv.Keystore().Lookup(server.DemoApplicationSID) != nil {
		t.Error("the demo application is still there")
	}
	code, body := h.do(t, "GET", "/token", "", "")
	if code != 200 || body["application_sid"] != app1 {
		t.Errorf("GET /token = %d %v, want a token of %s", code, body, app1)
	}
}
