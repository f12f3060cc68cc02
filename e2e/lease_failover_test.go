package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/twilioapi/twiliotest"
)

// leaseHolderPID returns the process ID in the holder name of the
// scheduler's lease ("host/pid/random"), or 0.
func leaseHolderPID(t *testing.T, store string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var holder string
	if err := c.QueryRow(ctx, `SELECT holder FROM leases WHERE name = 'provisioning' AND expires_at > clock_timestamp()`).Scan(&holder); err != nil {
		return 0
	}
	parts := strings.Split(holder, "/")
	if len(parts) != 3 {
		t.Fatalf("lease holder %q, want host/pid/random", holder)
	}
	pid, _ := strconv.Atoi(parts[1])
	return pid
}

// TestLeaseHolderKilledMidRotation: two replicas on PostgreSQL rotate
// every 3 s under minting load. The lease holder is killed (SIGKILL) in
// the middle of a rotation, after Twilio created the new key and before
// tokend heard back. The other replica takes the lease over once it
// expires, deletes that key at Twilio exactly once (its secret died with
// the process), and goes on rotating, one key per rotation; no mint on it
// fails and every token verifies at Twilio.
func TestLeaseHolderKilledMidRotation(t *testing.T) {
	store := freshSchema(t, postgresDSN(t))
	const rotateEvery = 3 * time.Second
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
	for _, p := range []*tokendProc{a, b} {
		waitFor(t, p.name+" to sign with a provisioned key", 15*time.Second, func() bool {
			m, err := p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app})
			return err == nil && m.GetApiKeySid() != key1
		})
	}

	// The next rotation's create is carried out at Twilio and never
	// answered; the holder is killed while it waits.
	f.Inject(twiliotest.Fault{Method: http.MethodPost, Hang: true})
	waitFor(t, "a rotation to create its key at Twilio", 10*time.Second, func() bool { return f.Stalled() == 1 })
	pid := leaseHolderPID(t, store)
	var holder, survivor *tokendProc
	for _, p := range []*tokendProc{a, b} {
		if p.cmd.Process.Pid == pid {
			holder = p
		} else {
			survivor = p
		}
	}
	if holder == nil {
		t.Fatalf("the lease holder (pid %d) is neither replica", pid)
	}
	var hung string
	for _, k := range f.Keys(account) {
		if all, _ := keySIDs(t, survivor); !slices.Contains(all, k.SID) {
			hung = k.SID
		}
	}
	if hung == "" {
		t.Fatal("no key at Twilio that tokend does not hold: the hung create made none")
	}

	var (
		minted, failures atomic.Int64
		stop             atomic.Bool
		wg               sync.WaitGroup
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ttl := int32(2)
				m, err := survivor.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app, TtlSeconds: &ttl})
				if err == nil {
					err = f.VerifyToken(m.GetToken())
				}
				if err != nil {
					failures.Add(1)
					t.Errorf("%s: %v", survivor.name, err)
				} else {
					minted.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	creates := f.Creates()
	killed := time.Now()
	holder.kill9()
	waitFor(t, "the survivor to delete the hung key at Twilio", 20*time.Second, func() bool { return !slices.Contains(fakeSIDs(f), hung) })
	time.Sleep(4 * rotateEvery)
	// Rotation off, and a pass in flight ends.
	if _, err := survivor.admin.Admin().SetTwilioCredential(ctx, &tokenv1.SetTwilioCredentialRequest{ApplicationSid: app, AuthToken: fakeAuthToken}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(killed)

	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d mints on the survivor failed or did not verify", n, n+minted.Load())
	}
	n := 0
	for _, d := range f.Deletions() {
		if d.SID == hung {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the hung key %s was deleted %d times at Twilio, want 1", hung, n)
	}
	if got, most := f.Creates()-creates, int(elapsed/rotateEvery)+1; got < 1 || got > most {
		t.Errorf("%d keys created in the %v after the kill, rotating every %v: want 1 to %d (one per rotation)", got, elapsed, rotateEvery, most)
	}
	all, active := keySIDs(t, survivor)
	for _, s := range fakeSIDs(f) {
		if !slices.Contains(all, s) {
			t.Errorf("Twilio holds %s, which tokend does not know", s)
		}
	}
	if !slices.Contains(fakeSIDs(f), active) {
		t.Errorf("the active key %s is not at Twilio", active)
	}
	t.Logf("%d mints on the survivor; %d keys created and %d deleted at Twilio in %v after the kill", minted.Load(), f.Creates()-creates, len(f.Deletions()), elapsed)
}
