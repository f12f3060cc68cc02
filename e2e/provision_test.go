package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/twilioapi"
	"github.com/tokend/tokend/server/twilioapi/twiliotest"
)

const fakeAuthToken = "0123456789abcdef0123456789abcdef"

// provisionProc starts tokend on dataDir/store with its Twilio at f and a
// scheduled pass every second.
func provisionProc(t *testing.T, name string, f *twiliotest.Fake, dataDir, store string) *tokendProc {
	return startTokend(t, name, procConfig{dataDir: dataDir, store: store, env: []string{
		"TOKEND_TWILIO_API_URL=" + f.URL(), "TOKEND_KEY_SCHEDULE_INTERVAL=1s", "TOKEND_KEY_DELETE_GRACE=10s",
	}})
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func keySIDs(t *testing.T, p *tokendProc) (all []string, active string) {
	t.Helper()
	r, err := p.admin.Admin().ListKeys(context.Background(), &tokenv1.ListKeysRequest{ApplicationSid: app})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range r.GetKeys() {
		all = append(all, k.GetApiKeySid())
		if k.GetState() == "active" {
			active = k.GetApiKeySid()
		}
	}
	return all, active
}

func fakeSIDs(f *twiliotest.Fake) []string {
	var out []string
	for _, k := range f.Keys(account) {
		out = append(out, k.SID)
	}
	return out
}

// TestCrashDuringProvisioning kills tokend with SIGKILL at each point
// where it has acted at Twilio but not yet recorded the outcome, restarts
// it on the same store, and checks that the next start finishes or undoes
// the step: no key at Twilio that tokend does not know, no key in tokend
// that Twilio lacks, and the tokens tokend mints verify at Twilio.
func TestCrashDuringProvisioning(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testCrashProvisioning(t, "") })
	t.Run("postgres", func(t *testing.T) { testCrashProvisioning(t, freshSchema(t, postgresDSN(t))) })
}

func testCrashProvisioning(t *testing.T, store string) {
	f := twiliotest.New()
	t.Cleanup(f.Close)
	f.AddAccount(account, fakeAuthToken)
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	p := provisionProc(t, "tokend-1", f, dataDir, store)
	if _, err := p.admin.Admin().SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}

	// Crash 1: Twilio created the key, tokend never heard back.
	f.Inject(twiliotest.Fault{Method: http.MethodPost, Hang: true})
	go p.admin.Admin().ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app, Activate: true})
	waitFor(t, "the key to be created at Twilio", 10*time.Second, func() bool { return f.Stalled() == 1 })
	orphan := fakeSIDs(f)
	if len(orphan) != 1 {
		t.Fatalf("the fake holds %v, want one new key", orphan)
	}
	p.kill9()
	p = provisionProc(t, "tokend-2", f, dataDir, store)
	waitFor(t, "the orphan to be deleted at Twilio", 15*time.Second, func() bool { return len(f.Keys(account)) == 0 })
	if all, active := keySIDs(t, p); !slices.Equal(all, []string{key1}) || active != key1 {
		t.Fatalf("after crash 1 tokend holds %v (active %s), want only %s", all, active, key1)
	}

	// Crash 2: in the middle of a revoke, while Twilio has not answered
	// the deletion of the revoked key.
	pk, err := p.admin.Admin().ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: app, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	revoked := pk.GetKey().GetApiKeySid()
	old, err := p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app})
	if err != nil || old.GetApiKeySid() != revoked {
		t.Fatalf("Mint = %v, %v, want a token of %s", old, err, revoked)
	}
	if err := f.VerifyToken(old.GetToken()); err != nil {
		t.Fatal(err)
	}
	f.Inject(twiliotest.Fault{Method: http.MethodDelete, Latency: time.Hour})
	go p.admin.Admin().RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app, ApiKeySid: revoked})
	waitFor(t, "the deletion to reach Twilio", 10*time.Second, func() bool { return f.Stalled() == 2 })
	p.kill9()
	f.ClearFaults()
	p = provisionProc(t, "tokend-3", f, dataDir, store)
	waitFor(t, "the revoke to be finished", 15*time.Second, func() bool { return !slices.Contains(fakeSIDs(f), revoked) })
	waitFor(t, "the revoked key to leave tokend", 5*time.Second, func() bool { all, _ := keySIDs(t, p); return !slices.Contains(all, revoked) })
	if err := f.VerifyToken(old.GetToken()); err == nil {
		t.Fatal("the fake still accepts a token of the revoked key")
	}
	all, active := keySIDs(t, p)
	if active == revoked || active == key1 || !slices.Contains(fakeSIDs(f), active) {
		t.Fatalf("after crash 2 tokend holds %v, active %s; the fake %v: want a fresh active key at Twilio", all, active, fakeSIDs(f))
	}
	for _, sid := range fakeSIDs(f) {
		if !slices.Contains(all, sid) {
			t.Errorf("the fake holds %s, which tokend does not", sid)
		}
	}
	m, err := p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.VerifyToken(m.GetToken()); err != nil {
		t.Fatalf("a token minted after the recovery: %v", err)
	}
	for _, k := range f.Keys(account) {
		if a, _, ok := twilioapi.ParseFriendlyName(k.FriendlyName); !ok || a != app {
			t.Errorf("key %s at the fake is named %q, want tokend's name for %s", k.SID, k.FriendlyName, app)
		}
	}

	// Crash 3: during a scheduled deletion. Rotate every second; the keys
	// that never sign are deleted 10 s (the grace) after they retire. The
	// first deletion hangs at Twilio and tokend dies.
	deletions := len(f.Deletions())
	f.Inject(twiliotest.Fault{Method: http.MethodDelete, Latency: time.Hour})
	stalled := f.Stalled()
	if _, err := p.admin.Admin().SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app, AuthToken: fakeAuthToken, RotateEvery: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a scheduled deletion to reach Twilio", 30*time.Second, func() bool { return f.Stalled() > stalled })
	p.kill9()
	f.ClearFaults()
	if len(f.Deletions()) != deletions {
		t.Fatalf("deletions at Twilio went from %d to %d while the deletion hung", deletions, len(f.Deletions()))
	}
	p = provisionProc(t, "tokend-4", f, dataDir, store)
	waitFor(t, "the deletion to be finished", 15*time.Second, func() bool { return len(f.Deletions()) > deletions })
	gone := f.Deletions()[deletions].SID
	waitFor(t, "the deleted key to leave tokend", 5*time.Second, func() bool { all, _ := keySIDs(t, p); return !slices.Contains(all, gone) })
	if _, err := p.admin.Admin().SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err) // rotation off again
	}
	time.Sleep(2 * time.Second) // a pass in flight ends
	all, _ = keySIDs(t, p)
	for _, sid := range fakeSIDs(f) {
		if !slices.Contains(all, sid) {
			t.Errorf("after crash 3 the fake holds %s, which tokend does not", sid)
		}
	}
	for _, sid := range all {
		if sid != key1 && !slices.Contains(fakeSIDs(f), sid) {
			t.Errorf("after crash 3 tokend holds %s, which Twilio does not", sid)
		}
	}
	m, err = p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.VerifyToken(m.GetToken()); err != nil {
		t.Fatalf("a token minted after crash 3: %v", err)
	}
}
