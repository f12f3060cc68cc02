package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/secrets"
)

func setUpApp1(t *testing.T, admin tokenv1.AdminServiceClient) {
	t.Helper()
	ctx := adminCtx()
	if _, err := admin.CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: acct1}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ sid, secret string }{{key1, secret1}, {key2, secret2}} {
		if _, err := admin.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app1, ApiKeySid: k.sid, Secret: k.secret}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRotationRace mints from several goroutines while keys are activated
// back and forth: no mint fails, and every token verifies against the
// secret of the key its iss names.
func TestRotationRace(t *testing.T) {
	h := adminHarness(t, server.Config{})
	admin := tokenv1.NewAdminServiceClient(h.conn)
	setUpApp1(t, admin)
	secretOf := map[string]string{key1: secret1, key2: secret2}

	var stop atomic.Bool
	var minted, failed atomic.Int64
	var mu sync.Mutex
	byKey := map[string]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				var tok string
				if (w+i)%2 == 0 {
					r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1})
					if err != nil {
						failed.Add(1)
						t.Errorf("Mint = %v", err)
						continue
					}
					tok = r.GetToken()
				} else {
					code, body := h.do(t, "GET", "/token?application_sid="+app1, "", "")
					if code != 200 {
						failed.Add(1)
						t.Errorf("GET /token = %d %v", code, body)
						continue
					}
					tok, _ = body["token"].(string)
				}
				_, claims := decodeJWT(t, tok)
				iss, _ := claims["iss"].(string)
				if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte(secretOf[iss]), nil },
					jwt.WithValidMethods([]string{"HS256"})); err != nil {
					failed.Add(1)
					t.Errorf("token with iss %s does not verify against that key: %v", iss, err)
				}
				minted.Add(1)
				mu.Lock()
				byKey[iss]++
				mu.Unlock()
			}
		}()
	}
	for i := range 60 {
		k := key1
		if i%2 == 0 {
			k = key2
		}
		if _, err := admin.ActivateKey(adminCtx(), &tokenv1.ActivateKeyRequest{ApplicationSid: app1, ApiKeySid: k}); err != nil {
			t.Errorf("ActivateKey(%s) = %v", k, err)
		}
		// After activation returns, every new mint is signed by k.
		r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1})
		if err != nil || r.GetApiKeySid() != k {
			t.Errorf("Mint right after ActivateKey(%s) = %v, %v, want signed by %s", k, r.GetApiKeySid(), err, k)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("minted %d tokens across 60 activations: %v", minted.Load(), byKey)
	if failed.Load() != 0 {
		t.Fatalf("%d of %d mints failed", failed.Load(), minted.Load())
	}
	if byKey[key1] == 0 || byKey[key2] == 0 {
		t.Fatalf("tokens by key %v: both keys should have signed", byKey)
	}
}

func keyringText(keys ...byte) string {
	var parts []string
	for _, b := range keys {
		parts = append(parts, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)))
	}
	return strings.Join(parts, ",")
}

// TestRekey: secrets sealed under master key A stay readable when B joins
// the keyring as primary; Rekey moves every secret to B while serving;
// then B alone opens the store and A alone is a clear start-up error.
func TestRekey(t *testing.T) {
	dir := t.TempDir()
	keyA, keyB := keyringText(7), keyringText(9)
	kr, err := secrets.ParseKeyring(keyB)
	if err != nil {
		t.Fatal(err)
	}
	idB := kr.Primary().ID

	h := adminHarness(t, server.Config{DataDir: dir, MasterKey: keyA})
	setUpApp1(t, tokenv1.NewAdminServiceClient(h.conn))
	h.srv.GRPCServer().Stop()
	h.srv.Close()

	h = adminHarness(t, server.Config{DataDir: dir, MasterKey: keyB + "," + keyA})
	code, body := h.do(t, "POST", "/v1/keyring:rekey", "application/json", "{}")
	// The seed key was sealed again under B at start (the seed is applied
	// with the primary key); app1's two keys are still under A.
	if code != 200 || body["resealed"] != 2.0 || body["primary_master_key_id"] != idB {
		t.Fatalf("POST /v1/keyring:rekey = %d %v, want 2 secrets resealed under %s", code, body, idB)
	}
	for _, app := range []string{app1, testApp} {
		keys, err := tokenv1.NewAdminServiceClient(h.conn).ListKeys(adminCtx(), &tokenv1.ListKeysRequest{ApplicationSid: app})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys.GetKeys() {
			if k.GetMasterKeyId() != idB {
				t.Errorf("key %s is under %s after rekey, want %s", k.GetApiKeySid(), k.GetMasterKeyId(), idB)
			}
		}
	}
	if r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1}); err != nil {
		t.Fatalf("Mint after rekey = %v", err)
	} else {
		verifyJWT(t, r.GetToken(), secret1)
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()

	h = adminHarness(t, server.Config{DataDir: dir, MasterKey: keyB})
	r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatalf("Mint with only the new master key = %v", err)
	}
	verifyJWT(t, r.GetToken(), secret1)
	h.srv.GRPCServer().Stop()
	h.srv.Close()

	_, err = server.New(context.Background(), server.Config{DataDir: dir, MasterKey: keyA, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("server.New with only the retired master key = %v, want a master key error", err)
	}
}

// TestRekeyGenerate: tokend rekey --generate on the data-dir key file adds
// a new primary key to the file and moves every secret under it.
func TestRekeyGenerate(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Logger: testLogger(t), Seed: server.Seed{
		AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp,
	}}
	srv, err := server.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldID := srv.Keystore().Keyring().Primary().ID
	srv.Close()

	n, newID, err := server.Rekey(context.Background(), cfg, true)
	if err != nil || n != 1 || newID == oldID {
		t.Fatalf("Rekey(generate) = %d, %s, %v, want 1 secret under a new key (old %s)", n, newID, err, oldID)
	}
	b, err := os.ReadFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Fields(string(b)); len(lines) != 2 || !strings.HasPrefix(lines[0], newID+":") || !strings.HasPrefix(lines[1], oldID+":") {
		t.Errorf("master.key holds %d entries, want the new key first and the old one after", len(lines))
	}
	if fi, _ := os.Stat(filepath.Join(dir, "master.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("master.key mode %v, want 0600", fi.Mode().Perm())
	}
	h := newHarness(t, server.Config{DataDir: dir, MasterKeyFile: filepath.Join(dir, "master.key")})
	r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{})
	if err != nil {
		t.Fatalf("Mint after rekey = %v", err)
	}
	verifyJWT(t, r.GetToken(), testSecret)
}

// TestRestartKeepsAdminWrites: every acknowledged admin write is there
// after a restart.
func TestRestartKeepsAdminWrites(t *testing.T) {
	dir := t.TempDir()
	h := adminHarness(t, server.Config{DataDir: dir})
	admin := tokenv1.NewAdminServiceClient(h.conn)
	setUpApp1(t, admin)
	if _, err := admin.ActivateKey(adminCtx(), &tokenv1.ActivateKeyRequest{ApplicationSid: app1, ApiKeySid: key2}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UpdateApplication(adminCtx(), &tokenv1.UpdateApplicationRequest{ApplicationSid: app1,
		DefaultGrants: &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "lobby"}}}); err != nil {
		t.Fatal(err)
	}
	apps, err := admin.ListApplications(adminCtx(), &tokenv1.ListApplicationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := admin.ListKeys(adminCtx(), &tokenv1.ListKeysRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	h.srv.GRPCServer().Stop()
	h.srv.Close()

	h2 := adminHarness(t, server.Config{DataDir: dir})
	admin2 := tokenv1.NewAdminServiceClient(h2.conn)
	apps2, err := admin2.ListApplications(adminCtx(), &tokenv1.ListApplicationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys2, err := admin2.ListKeys(adminCtx(), &tokenv1.ListKeysRequest{ApplicationSid: app1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(apps, apps2, protocmp.Transform()); diff != "" {
		t.Errorf("applications after restart (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(keys, keys2, protocmp.Transform()); diff != "" {
		t.Errorf("keys after restart (-before +after):\n%s", diff)
	}
	r, err := h2.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1, Identity: protoString("alice")})
	if err != nil || r.GetApiKeySid() != key2 {
		t.Fatalf("Mint after restart = %v, %v, want signed by %s", r, err, key2)
	}
	_, claims := decodeJWT(t, r.GetToken())
	if diff := cmp.Diff(map[string]any{"identity": "alice", "video": map[string]any{"room": "lobby"}}, claims["grants"]); diff != "" {
		t.Errorf("default grants after restart (-want +got):\n%s", diff)
	}
}

func protoString(s string) *string { return &s }
