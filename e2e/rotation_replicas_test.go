package e2e

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/twilioapi/twiliotest"
)

// TestScheduledRotationTwoReplicas runs two tokend replicas on one
// PostgreSQL store, rotating every 2 s under minting load from both: no
// mint fails, every token verifies at the fake Twilio when minted, each
// retired key is deleted at Twilio once and only after its last token
// expired (plus the grace), one key is created per rotation, and no key
// is left at Twilio that tokend does not know.
func TestScheduledRotationTwoReplicas(t *testing.T) {
	store := freshSchema(t, postgresDSN(t))
	const rotateEvery, grace, ttl, run = 2 * time.Second, 10 * time.Second, int32(2), 20 * time.Second
	f := twiliotest.New()
	t.Cleanup(f.Close)
	f.AddAccount(account, fakeAuthToken)
	a := provisionProc(t, "replica-a", f, filepath.Join(t.TempDir(), "a"), store)
	ctx := context.Background()
	if _, err := a.admin.Admin().SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{
		ApplicationSid: app, AuthToken: fakeAuthToken, RotateEvery: durationpb.New(rotateEvery),
	}); err != nil {
		t.Fatal(err)
	}
	b := provisionProc(t, "replica-b", f, filepath.Join(t.TempDir(), "b"), store)
	// The seed's key is not at the fake: wait for the first rotation.
	for _, p := range []*tokendProc{a, b} {
		waitFor(t, p.name+" to sign with a provisioned key", 15*time.Second, func() bool {
			m, err := p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app})
			return err == nil && m.GetApiKeySid() != key1
		})
	}
	creates0 := f.Creates()

	var (
		mu       sync.Mutex
		lastExp  = map[string]time.Time{} // key SID -> latest exp it signed
		minted   atomic.Int64
		failures atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range 4 {
		p := []*tokendProc{a, b}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ttl := ttl
				m, err := p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app, TtlSeconds: &ttl})
				if err != nil {
					failures.Add(1)
					t.Errorf("%s: Mint: %v", p.name, err)
					continue
				}
				if err := f.VerifyToken(m.GetToken()); err != nil {
					failures.Add(1)
					t.Errorf("%s: token of %s refused by Twilio: %v", p.name, m.GetApiKeySid(), err)
					continue
				}
				minted.Add(1)
				mu.Lock()
				if exp := m.GetExpiresAt().AsTime(); exp.After(lastExp[m.GetApiKeySid()]) {
					lastExp[m.GetApiKeySid()] = exp
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	// An emergency revoke of the active key in the middle of the load.
	time.Sleep(run / 2)
	_, active := keySIDs(t, a)
	rv, err := a.admin.Admin().RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: app, ApiKeySid: active})
	if err != nil {
		t.Errorf("RevokeKey(%s) under load: %v", active, err)
	} else if rv.GetActiveKey().GetApiKeySid() == active {
		t.Errorf("RevokeKey(%s): still active", active)
	}
	revokedAt := time.Now()
	time.Sleep(run / 2)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)

	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d mints failed or did not verify", n, n+minted.Load())
	}
	t.Logf("%d mints in %v on two replicas, %d keys created, %d deleted at Twilio", minted.Load(), elapsed, f.Creates()-creates0, len(f.Deletions()))
	if got, most := f.Creates()-creates0, int(elapsed/rotateEvery)+3; got < int(elapsed/rotateEvery)/2 || got > most {
		t.Errorf("%d keys created in %v rotating every %v, want at most %d (one per rotation)", got, elapsed, rotateEvery, most)
	}
	seen := map[string]bool{}
	for _, d := range f.Deletions() {
		if seen[d.SID] {
			t.Errorf("key %s deleted twice", d.SID)
		}
		seen[d.SID] = true
		mu.Lock()
		exp := lastExp[d.SID]
		mu.Unlock()
		if d.SID == active {
			if d.At.Before(revokedAt.Add(-5*time.Second)) || d.At.After(revokedAt) {
				t.Errorf("revoked key %s deleted at %v, want during the revoke (answered at %v)", d.SID, d.At, revokedAt)
			}
			continue
		}
		if d.At.Before(exp.Add(grace)) {
			t.Errorf("key %s deleted at %v, before its last token's exp %v plus %v", d.SID, d.At, exp, grace)
		}
	}
	if len(f.Deletions()) == 0 {
		t.Errorf("no retired key was deleted at Twilio in %v", elapsed)
	}
	held, _ := keySIDs(t, a)
	heldSet := map[string]bool{}
	for _, s := range held {
		heldSet[s] = true
	}
	for _, s := range fakeSIDs(f) {
		if !heldSet[s] {
			t.Errorf("Twilio holds %s, which tokend does not know", s)
		}
	}
}
