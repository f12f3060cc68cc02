package provision_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/provision"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/postgres"
	"github.com/tokend/tokend/server/storage/sqlite"
	"github.com/tokend/tokend/server/twilioapi"
	"github.com/tokend/tokend/server/twilioapi/twiliotest"
)

const (
	app1      = "AP00000000000000000000000000000001"
	acct1     = "AC0123456789abcdef0123456789abcdef"
	authToken = "abcdef0123456789abcdef0123456789"
)

// pgStore opens a PostgreSQL store in a schema of the test's own,
// dropped when it ends; it skips the test without TOKEND_TEST_POSTGRES.
func pgStore(t *testing.T) storage.Store {
	t.Helper()
	dsn := os.Getenv("TOKEND_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("TOKEND_TEST_POSTGRES not set")
	}
	var b [8]byte
	rand.Read(b[:])
	schema := "provision_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			c.Close(ctx)
		}
	})
	s, err := postgres.OpenSchema(t.Context(), dsn, schema)
	if err != nil {
		t.Fatalf("OpenSchema: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// gate is a transport that can hold the answer to the next request
// matching method and path suffix (after Twilio acted on it) until
// released: a slow answer, or a process paused in the middle of a call.
type gate struct {
	mu       sync.Mutex
	method   string
	suffix   string
	held     chan struct{} // closed once a request is held
	release  chan struct{}
	armed    bool
	released bool
}

func (g *gate) arm(method, suffix string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.method, g.suffix, g.armed = method, suffix, true
	g.held, g.release, g.released = make(chan struct{}), make(chan struct{}), false
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.released && g.release != nil {
		close(g.release)
		g.released = true
	}
}

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	g.mu.Lock()
	hold := g.armed && req.Method == g.method && strings.HasSuffix(req.URL.Path, g.suffix)
	var held, release chan struct{}
	if hold {
		g.armed = false
		held, release = g.held, g.release
	}
	g.mu.Unlock()
	if hold {
		close(held)
		<-release
	}
	return resp, err
}

// replica is one tokend's keystore and provisioner over a shared store.
type replica struct {
	ks   *keystore.Keystore
	prov *provision.Provisioner
	gate *gate
}

// replicas returns n provisioners sharing store, each with its own
// keystore, talking to the fake through a gate of its own; app1 exists
// with a provisioning credential and one active key.
func replicas(t *testing.T, store storage.Store, f *twiliotest.Fake, n int, cfg provision.Config, wrap ...func(i int, s storage.Store) storage.Store) []*replica {
	t.Helper()
	ctx := t.Context()
	mk, _ := secrets.GenerateMasterKey()
	kr, _ := secrets.NewKeyring(mk)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := store.CreateApplication(ctx, storage.Application{SID: app1, AccountSID: acct1}); err != nil {
		t.Fatal(err)
	}
	var rs []*replica
	for i := range n {
		g := &gate{}
		client, err := twilioapi.New(twilioapi.Config{BaseURL: f.URL(), Transport: g, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		st := store
		for _, w := range wrap {
			st = w(i, st)
		}
		ks := keystore.New(st, kr, log)
		c := cfg
		c.Keys, c.Twilio, c.Logger = ks, client, log
		c.Holder = "replica-" + string(rune('a'+i))
		rs = append(rs, &replica{ks: ks, prov: provision.New(c), gate: g})
	}
	if _, err := rs[0].prov.SetCredential(ctx, app1, acct1, authToken, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].prov.Provision(ctx, app1, true); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.ks.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return rs
}

func activeKey(t *testing.T, store storage.Store) storage.Key {
	t.Helper()
	keys, err := store.ListKeys(context.Background(), app1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.State == storage.KeyActive {
			return k
		}
	}
	t.Fatalf("no active key among %d", len(keys))
	return storage.Key{}
}

func atTwilio(f *twiliotest.Fake, sid string) bool {
	for _, k := range f.Keys(acct1) {
		if k.SID == sid {
			return true
		}
	}
	return false
}

// TestRecoverLeavesInFlightIntentsAlone: the lease holder's recovery runs
// while another replica is between creating a key at Twilio and storing
// it (an admin call, or a rotation answered slowly). The intent is not a
// crash's: recovery must leave it alone, not delete the key at Twilio
// that the other replica is about to activate (every token it signs
// would fail with 20103).
func TestRecoverLeavesInFlightIntentsAlone(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: 3 * time.Second})
	a, b := rs[0], rs[1]

	a.gate.arm(http.MethodPost, "/Keys.json")
	type result struct {
		k   storage.Key
		err error
	}
	done := make(chan result, 1)
	go func() {
		k, err := a.prov.Provision(context.Background(), app1, true)
		done <- result{k, err}
	}()
	<-a.gate.held // the key exists at Twilio; a has not stored it yet
	if err := b.prov.Recover(t.Context()); err != nil {
		t.Errorf("Recover() on the other replica = %v", err)
	}
	a.gate.open()
	r := <-done
	if r.err != nil {
		t.Fatalf("Provision() = %v", r.err)
	}
	if got := activeKey(t, store); got.SID != r.k.SID {
		t.Fatalf("active key %s, want the provisioned %s", got.SID, r.k.SID)
	}
	if !atTwilio(f, r.k.SID) {
		t.Fatalf("the provisioned active key %s was deleted at Twilio (deletions %v)", r.k.SID, f.Deletions())
	}
	// The intent is gone once the provisioning is whole.
	if ops, err := store.ListKeyOps(t.Context()); err != nil || len(ops) != 0 {
		t.Fatalf("ListKeyOps() = %v, %v, want none", ops, err)
	}
}

// TestSlowRotationIsNotDoneTwice: the lease holder's rotation outlasts
// the lease (Twilio answers the create slowly). The holder is alive and
// working, so the other replica must not take the lease and rotate too:
// one key per rotation.
func TestSlowRotationIsNotDoneTwice(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	const ttl = 1200 * time.Millisecond
	rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: ttl})
	a, b := rs[0], rs[1]
	if _, err := a.prov.SetCredential(t.Context(), app1, acct1, authToken, time.Second); err != nil {
		t.Fatal(err)
	}
	old := activeKey(t, store)
	time.Sleep(time.Until(old.ActivatedAt.Add(time.Second)) + 50*time.Millisecond) // rotation due

	a.gate.arm(http.MethodPost, "/Keys.json")
	done := make(chan error, 1)
	go func() { done <- a.prov.Tick(context.Background()) }()
	<-a.gate.held
	// b ticks for well over the lease's TTL while a waits for Twilio.
	for end := time.Now().Add(5 * ttl / 2); time.Now().Before(end); time.Sleep(ttl / 4) {
		if err := b.prov.Tick(t.Context()); err != nil {
			t.Errorf("Tick() on the other replica = %v", err)
		}
	}
	a.gate.open()
	if err := <-done; err != nil {
		t.Fatalf("Tick() = %v", err)
	}
	if got := f.Creates(); got != 2 {
		t.Fatalf("Twilio created %d keys, want 2 (the first and one rotation); keys %v", got, f.Keys(acct1))
	}
	if got := activeKey(t, store); got.SID == old.SID {
		t.Fatalf("the active key is still %s after the rotation", old.SID)
	}
}

// TestReconcileRacingAProvision: a replica lists Twilio's keys just
// before another replica provisions and activates a key. The new key is
// not in that listing but it is not missing at Twilio: the reconcile must
// neither switch the active key back to the old one nor report the new
// key missing (in /readyz and the metric), nor call it an orphan.
func TestReconcileRacingAProvision(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: time.Minute})
	a, b := rs[0], rs[1]
	if err := a.prov.Tick(t.Context()); err != nil { // a holds the lease
		t.Fatal(err)
	}
	for _, deleteOrphans := range []bool{false, true} {
		b.gate.arm(http.MethodGet, "/Keys.json")
		type result struct {
			rep provision.Report
			err error
		}
		done := make(chan result, 1)
		go func() {
			rep, err := b.prov.Reconcile(context.Background(), app1, deleteOrphans)
			done <- result{rep, err}
		}()
		<-b.gate.held // b has Twilio's list; a provisions now
		k, err := a.prov.Provision(t.Context(), app1, true)
		if err != nil {
			t.Fatal(err)
		}
		b.gate.open()
		r := <-done
		if r.err != nil || len(r.rep.Missing) != 0 || r.rep.SwitchedTo != "" || len(r.rep.Orphaned) != 0 {
			t.Errorf("Reconcile(delete_orphans %t) racing a provision = %+v, %v, want nothing missing, no switch, no orphan", deleteOrphans, r.rep, r.err)
		}
		if got := activeKey(t, store); got.SID != k.SID {
			t.Errorf("active key %s, want the one just provisioned, %s", got.SID, k.SID)
		}
		if !atTwilio(f, k.SID) {
			t.Errorf("the key just provisioned, %s, was deleted at Twilio", k.SID)
		}
		if err := b.ks.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if m := b.prov.Missing(); len(m) != 0 {
			t.Errorf("Missing() = %v, want none", m)
		}
	}
}

// TestConcurrentRevokesOnTwoReplicas: the same key revoked on two
// replicas at once (an operator's retry through another replica) is
// replaced once: one fresh key at Twilio, not one per call.
func TestConcurrentRevokesOnTwoReplicas(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: 3 * time.Second})
	a, b := rs[0], rs[1]
	old := activeKey(t, store)
	creates := f.Creates()

	a.gate.arm(http.MethodPost, "/Keys.json")
	errs := make(chan error, 2)
	go func() { _, err := a.prov.Revoke(context.Background(), app1, old.SID); errs <- err }()
	<-a.gate.held // a is creating the replacement
	go func() { _, err := b.prov.Revoke(context.Background(), app1, old.SID); errs <- err }()
	time.Sleep(300 * time.Millisecond)
	a.gate.open()
	var failed []error
	for range 2 {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if got := f.Creates() - creates; got != 1 {
		t.Errorf("two revokes of %s created %d keys at Twilio, want 1", old.SID, got)
	}
	if len(failed) > 1 {
		t.Errorf("both revokes failed: %v", failed)
	}
	if atTwilio(f, old.SID) {
		t.Errorf("the revoked key %s is still at Twilio", old.SID)
	}
	if k := activeKey(t, store); !atTwilio(f, k.SID) {
		t.Errorf("the active key %s is not at Twilio", k.SID)
	}
}

// TestScheduledDeletionSparesAnActiveKey: a scheduled deletion left by a
// crash, of a key an operator has activated again since, is dropped by
// recovery, not carried out (every token would fail at Twilio).
func TestScheduledDeletionSparesAnActiveKey(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	rs := replicas(t, store, f, 1, provision.Config{LeaseTTL: 3 * time.Second})
	active := activeKey(t, store)
	op := storage.KeyOp{ID: "0123456789abcdef", ApplicationSID: app1, Op: "delete", APIKeySID: active.SID}
	if err := store.PutKeyOp(t.Context(), op); err != nil {
		t.Fatal(err)
	}
	if err := rs[0].prov.Recover(t.Context()); err != nil {
		t.Fatalf("Recover() = %v", err)
	}
	if !atTwilio(f, active.SID) {
		t.Fatalf("the active key %s was deleted at Twilio", active.SID)
	}
	if got := activeKey(t, store); got.SID != active.SID {
		t.Fatalf("active key %s, want %s", got.SID, active.SID)
	}
	if ops, err := store.ListKeyOps(t.Context()); err != nil || len(ops) != 0 {
		t.Fatalf("ListKeyOps() = %v, %v, want the intent dropped", ops, err)
	}
}

// TestFailingDeletionIsNotScheduledAgain: while Twilio refuses to delete
// a retired key, each pass retries the recorded deletion; it does not
// record another one for the same key every pass (recovery retries every
// intent in turn, with backoff, before rotating: the intents would pile
// up and stall the schedule).
func TestFailingDeletionIsNotScheduledAgain(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	rs := replicas(t, store, f, 1, provision.Config{LeaseTTL: 3 * time.Second, Grace: time.Millisecond})
	p := rs[0].prov
	if _, err := p.SetCredential(t.Context(), app1, acct1, authToken, time.Hour); err != nil {
		t.Fatal(err)
	}
	old := activeKey(t, store)
	if _, err := p.Provision(t.Context(), app1, true); err != nil { // old retires
		t.Fatal(err)
	}
	f.Inject(twiliotest.Fault{Method: http.MethodDelete, Status: 500, Times: 1000})
	for range 4 {
		p.Tick(t.Context()) // fails: Twilio does not delete
		time.Sleep(10 * time.Millisecond)
	}
	ops, err := store.ListKeyOps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Op != "delete" || ops[0].APIKeySID != old.SID {
		t.Fatalf("intents after 4 passes with Twilio failing deletions: %+v, want one deletion of %s", ops, old.SID)
	}
	f.ClearFaults()
	if err := p.Tick(t.Context()); err != nil {
		t.Fatalf("Tick() once Twilio is back = %v", err)
	}
	if atTwilio(f, old.SID) {
		t.Errorf("the retired key %s is still at Twilio", old.SID)
	}
	if ops, err := store.ListKeyOps(t.Context()); err != nil || len(ops) != 0 {
		t.Errorf("ListKeyOps() = %+v, %v, want none", ops, err)
	}
}

// TestRetiredKeyUsageOnAnotherReplica checks the deletion arithmetic: a
// replica that has not yet reloaded after a rotation signs a token with
// the key the lease holder considers retired, and records it at its next
// flush. The lease holder does not delete the key at Twilio until that
// token has expired plus the grace, though the grace after the
// retirement has passed; then it does, once.
func TestRetiredKeyUsageOnAnotherReplica(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	var offset atomic.Int64 // added to the lease holder's clock
	const grace = 10 * time.Second
	rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: 3 * time.Second, Grace: grace,
		Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	a, b := rs[0], rs[1]
	old := activeKey(t, store)
	if _, err := a.prov.Provision(t.Context(), app1, true); err != nil { // old retires; b has not reloaded
		t.Fatal(err)
	}
	app := b.ks.Lookup(app1)
	if app.Active == nil || app.Active.SID() != old.SID {
		t.Fatalf("b signs with %v, want the retired %s (not reloaded yet)", app.Active, old.SID)
	}
	const ttl = 600 // seconds
	tok := app.Active.Sign(&mint.Claims{Identity: "alice", IssuedAt: time.Now().Unix(), TTL: ttl})
	if err := b.ks.FlushUsage(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.VerifyToken(tok.JWT); err != nil {
		t.Fatalf("the token b signed: %v", err)
	}
	for _, tt := range []struct {
		after   time.Duration
		deleted bool
	}{
		{2 * grace, false},                              // well past the retirement plus the grace
		{ttl*time.Second + grace/2, false},              // the token expired, not the grace
		{ttl*time.Second + grace + 2*time.Second, true}, // both
	} {
		offset.Store(int64(tt.after))
		if err := a.prov.Tick(t.Context()); err != nil {
			t.Fatalf("Tick(+%v) = %v", tt.after, err)
		}
		if got := !atTwilio(f, old.SID); got != tt.deleted {
			t.Fatalf("at +%v: deleted at Twilio = %t, want %t (the token b signed expires at +%ds)", tt.after, got, tt.deleted, ttl)
		}
	}
	n := 0
	for _, d := range f.Deletions() {
		if d.SID == old.SID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s deleted %d times at Twilio, want 1", old.SID, n)
	}
}

// opsGate is a store whose ListKeyOps tells called and then waits for
// release.
type opsGate struct {
	storage.Store
	armed           atomic.Bool
	called, release chan struct{}
}

func (g *opsGate) ListKeyOps(ctx context.Context) ([]storage.KeyOp, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.called)
		<-g.release
	}
	return g.Store.ListKeyOps(ctx)
}

// TestReconcileDeletingOrphansRacingAProvision: a reconcile that deletes
// orphans runs on one replica while another replica finishes a
// provisioning (stores the key, drops the intent) between the
// reconcile's reads. The key is in Twilio's list; it must not be taken
// for an orphan (intent gone, key not yet seen in the store) and deleted
// at Twilio under the replica that just activated it.
func TestReconcileDeletingOrphansRacingAProvision(t *testing.T) {
	store := pgStore(t)
	f := twiliotest.New()
	defer f.Close()
	f.AddAccount(acct1, authToken)
	g := &opsGate{called: make(chan struct{}), release: make(chan struct{})}
	rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: time.Minute}, func(i int, s storage.Store) storage.Store {
		if i == 1 {
			g.Store = s
			return g
		}
		return s
	})
	a, b := rs[0], rs[1]
	a.gate.arm(http.MethodPost, "/Keys.json")
	type result struct {
		k   storage.Key
		err error
	}
	provisioned := make(chan result, 1)
	go func() {
		k, err := a.prov.Provision(context.Background(), app1, true)
		provisioned <- result{k, err}
	}()
	<-a.gate.held // the key is at Twilio, not yet stored
	g.armed.Store(true)
	reconciled := make(chan error, 1)
	go func() {
		_, err := b.prov.Reconcile(context.Background(), app1, true)
		reconciled <- err
	}()
	<-g.called // b has listed Twilio's keys (the new one among them)
	a.gate.open()
	r := <-provisioned // stored, intent dropped
	if r.err != nil {
		t.Fatal(r.err)
	}
	close(g.release)
	if err := <-reconciled; err != nil {
		t.Fatalf("Reconcile() = %v", err)
	}
	if !atTwilio(f, r.k.SID) {
		t.Fatalf("the key just provisioned and activated, %s, was deleted at Twilio as an orphan", r.k.SID)
	}
	if got := activeKey(t, store); got.SID != r.k.SID {
		t.Fatalf("active key %s, want %s", got.SID, r.k.SID)
	}
}

// TestRevokeWaitsForEveryReplica: an emergency revoke activates the fresh
// key, then deletes the revoked one at Twilio only once every live
// replica serves the fresh key (its heartbeat acknowledges the revision),
// so that no replica signs with a key Twilio no longer has; a replica
// that never catches up holds the deletion for Settle at most.
func TestRevokeWaitsForEveryReplica(t *testing.T) {
	for _, tc := range []struct {
		name     string
		retired  bool          // a rotation retired the key just before the revoke (replica-b has not reloaded)
		catchUp  time.Duration // when the lagging replica reloads and says so; 0: never
		settle   time.Duration
		minWait  time.Duration // the deletion comes this long after the revoke starts, at least
		maxTotal time.Duration
	}{
		{"replica catches up", false, 400 * time.Millisecond, 20 * time.Second, 400 * time.Millisecond, 10 * time.Second},
		{"replica never catches up", false, 0, 700 * time.Millisecond, 700 * time.Millisecond, 10 * time.Second},
		{"key retired a moment ago", true, 400 * time.Millisecond, 20 * time.Second, 400 * time.Millisecond, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "tokend.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			f := twiliotest.New()
			defer f.Close()
			f.AddAccount(acct1, authToken)
			rs := replicas(t, store, f, 2, provision.Config{LeaseTTL: 3 * time.Second, Settle: tc.settle})
			a, b := rs[0], rs[1]
			// b is a live replica serving the keys as they are now.
			if _, err := store.Heartbeat(t.Context(), "replica-b", time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := store.AckRevision(t.Context(), "replica-b", b.ks.Revision()); err != nil {
				t.Fatal(err)
			}
			old := activeKey(t, store)
			if tc.retired {
				// Another key takes over; b still has old active.
				if _, err := a.prov.Provision(t.Context(), app1, true); err != nil {
					t.Fatal(err)
				}
				if activeKey(t, store).SID == old.SID {
					t.Fatal("old is still active after the rotation")
				}
			}
			start := time.Now()
			var caughtUp atomic.Int64 // unix nanos
			if tc.catchUp > 0 {
				go func() {
					time.Sleep(tc.catchUp)
					if err := b.ks.Reload(context.Background()); err != nil {
						t.Error(err)
						return
					}
					if k := b.ks.Lookup(app1); k == nil || k.Active == nil || k.Active.SID() == old.SID {
						t.Errorf("b reloaded and still signs with %s", old.SID)
					}
					caughtUp.Store(time.Now().UnixNano())
					if err := store.AckRevision(context.Background(), "replica-b", b.ks.Revision()); err != nil {
						t.Error(err)
					}
				}()
			}
			active, err := a.prov.Revoke(t.Context(), app1, old.SID)
			if err != nil {
				t.Fatalf("Revoke(%s) = %v", old.SID, err)
			}
			took := time.Since(start)
			if active.SID == old.SID || (active.SID == "" && !tc.retired) {
				t.Fatalf("Revoke(%s) left %q active", old.SID, active.SID)
			}
			if atTwilio(f, old.SID) {
				t.Fatalf("the revoked key %s is still at Twilio", old.SID)
			}
			var deletedAt time.Time
			for _, d := range f.Deletions() {
				if d.SID == old.SID {
					deletedAt = d.At
				}
			}
			if deletedAt.Sub(start) < tc.minWait {
				t.Errorf("the revoked key was deleted %v after the revoke began, want at least %v (replica-b still signed with it)", deletedAt.Sub(start), tc.minWait)
			}
			if c := caughtUp.Load(); c != 0 && deletedAt.Before(time.Unix(0, c)) {
				t.Errorf("the revoked key was deleted at %v, before replica-b served the fresh key (%v)", deletedAt, time.Unix(0, c))
			}
			if took > tc.maxTotal {
				t.Errorf("Revoke took %v, want at most %v", took, tc.maxTotal)
			}
		})
	}
}
