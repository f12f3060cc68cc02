package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// crashModel is what the test knows of the store it writes to: every
// write it attempted, whether tokend acknowledged it, and for each
// application which keys may be the active one (several while a write
// that was in flight at the crash may or may not have committed).
type crashModel struct {
	mu   sync.Mutex
	apps map[string]*crashApp
	acks int
}

type crashApp struct {
	acked  bool                 // CreateApplication answered OK
	keys   map[string]*crashKey // every key AddKey was tried with
	active map[string]bool      // the keys that may be active; "" for none
}

type crashKey struct {
	secret string
	acked  bool
}

// crashOp is one admin write: do performs it; ack records its effect in
// the model once tokend answered OK; maybe records, when the answer never
// came (the crash), what it may have done.
type crashOp struct {
	name  string
	do    func(ctx context.Context, admin tokenv1.AdminServiceClient) error
	ack   func(a *crashApp)
	maybe func(a *crashApp)
}

func (m *crashModel) app(sid string) *crashApp {
	a := m.apps[sid]
	if a == nil {
		a = &crashApp{keys: map[string]*crashKey{}, active: map[string]bool{"": true}}
		m.apps[sid] = a
	}
	return a
}

// noActive reports whether the model knows the application has no active
// key.
func (a *crashApp) noActive() bool { return len(a.active) == 1 && a.active[""] }

// TestCrashDuringAdminWrites kills tokend with SIGKILL in the middle of a
// burst of admin writes from several goroutines and restarts it on the
// same store, twice: every acknowledged write must be there, no key may
// be half-written (tokend decrypts every key to start; each listed key is
// complete; each signs tokens that verify with the secret it was given),
// and the active key of each application must be the last acknowledged
// activation (or the one in flight at the crash).
func TestCrashDuringAdminWrites(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testCrash(t, "") })
	t.Run("postgres", func(t *testing.T) { testCrash(t, freshSchema(t, postgresDSN(t))) })
}

func testCrash(t *testing.T, store string) {
	dataDir := filepath.Join(t.TempDir(), "data")
	m := &crashModel{apps: map[string]*crashApp{}}
	p := startTokend(t, "tokend-1", procConfig{dataDir: dataDir, store: store})
	for round := 1; round <= 2; round++ {
		burst(t, p, m, round)
		p = startTokend(t, fmt.Sprintf("tokend-%d", round+1), procConfig{dataDir: dataDir, store: store})
		t.Logf("round %d: restarted after the crash, ready in %v", round, p.readyIn.Round(time.Millisecond))
		checkCrashModel(t, p, m, round)
		if t.Failed() {
			return
		}
	}
}

// burst writes from several goroutines and kills tokend after a random
// number of acknowledged writes or a random delay, whichever comes first.
func burst(t *testing.T, p *tokendProc, m *crashModel, round int) {
	const workers = 6
	killAfterAcks := 30 + rand.IntN(150)
	killAfterDelay := time.Duration(200+rand.IntN(1300)) * time.Millisecond
	var killed atomic.Bool
	var once sync.Once
	var acks atomic.Int64
	kill := func(why string) {
		once.Do(func() {
			killed.Store(true)
			p.kill9()
			t.Logf("round %d: SIGKILL (%s) with %d writes of this round acknowledged", round, why, acks.Load())
		})
	}
	timer := time.AfterFunc(killAfterDelay, func() { kill(fmt.Sprintf("planned after %v", killAfterDelay)) })
	defer timer.Stop()

	var wg sync.WaitGroup
	var unexpected atomic.Int64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := func(appSID string, op crashOp) bool {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := op.do(ctx, p.admin.Admin())
				m.mu.Lock()
				defer m.mu.Unlock()
				a := m.app(appSID)
				if err != nil {
					if !killed.Load() {
						unexpected.Add(1)
						t.Errorf("worker %d: %s before the crash: %v", w, op.name, err)
					}
					op.maybe(a)
					return false
				}
				op.ack(a)
				m.acks++
				if n := acks.Add(1); n >= int64(killAfterAcks) {
					go kill(fmt.Sprintf("planned after %d acknowledged writes", killAfterAcks))
				}
				return true
			}
			for !killed.Load() {
				appSID := "AP" + randHex(16)
				if !run(appSID, crashOp{
					name: "CreateApplication " + appSID,
					do: func(ctx context.Context, c tokenv1.AdminServiceClient) error {
						_, err := c.CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: appSID, AccountSid: account, FriendlyName: "crash " + appSID})
						return err
					},
					ack:   func(a *crashApp) { a.acked = true },
					maybe: func(a *crashApp) {},
				}) {
					return
				}
				var keys []string
				for range 1 + rand.IntN(3) {
					keySID, secret, activate := "SK"+randHex(16), "secret-"+randHex(12), rand.IntN(2) == 0
					m.mu.Lock()
					m.app(appSID).keys[keySID] = &crashKey{secret: secret}
					m.mu.Unlock()
					keys = append(keys, keySID)
					if !run(appSID, crashOp{
						name: "AddKey " + keySID,
						do: func(ctx context.Context, c tokenv1.AdminServiceClient) error {
							_, err := c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: appSID, ApiKeySid: keySID, Secret: secret, Activate: activate})
							return err
						},
						ack: func(a *crashApp) {
							a.keys[keySID].acked = true
							if activate || a.noActive() { // the first key of an application is active at once
								a.active = map[string]bool{keySID: true}
							}
						},
						maybe: func(a *crashApp) {
							if activate || a.active[""] {
								a.active[keySID] = true
							}
						},
					}) {
						return
					}
				}
				for range rand.IntN(3) {
					keySID := keys[rand.IntN(len(keys))]
					if !run(appSID, crashOp{
						name: "ActivateKey " + keySID,
						do: func(ctx context.Context, c tokenv1.AdminServiceClient) error {
							_, err := c.ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: appSID, ApiKeySid: keySID})
							return err
						},
						ack:   func(a *crashApp) { a.active = map[string]bool{keySID: true} },
						maybe: func(a *crashApp) { a.active[keySID] = true },
					}) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	kill("after the burst") // no-op if it happened already
	if unexpected.Load() > 0 {
		t.Fatalf("round %d: %d writes failed before the crash", round, unexpected.Load())
	}
}

// checkCrashModel compares the restarted store with the model, proves
// every key present by minting with it, and settles the model to what the
// store holds.
func checkCrashModel(t *testing.T, p *tokendProc, m *crashModel, round int) {
	t.Helper()
	ctx := context.Background()
	admin := p.admin.Admin()
	m.mu.Lock()
	defer m.mu.Unlock()
	list, err := admin.ListApplications(ctx, &tokenv1.ListApplicationsRequest{})
	if err != nil {
		t.Fatalf("ListApplications after restart: %v", err)
	}
	inStore := map[string]*tokenv1.Application{}
	for _, a := range list.GetApplications() {
		inStore[a.GetApplicationSid()] = a
	}
	sids := make([]string, 0, len(m.apps))
	for sid := range m.apps {
		sids = append(sids, sid)
	}
	sort.Strings(sids)
	var ackedApps, ackedKeys, inFlightCommitted, keysMinted int
	for _, sid := range sids {
		a := m.apps[sid]
		got, ok := inStore[sid]
		switch {
		case a.acked && !ok:
			t.Errorf("acknowledged application %s is missing after the crash", sid)
			continue
		case !ok:
			continue // its creation was in flight and did not commit
		case !a.acked:
			inFlightCommitted++
			a.acked = true
		}
		ackedApps++
		if got.GetAccountSid() != account || got.GetFriendlyName() != "crash "+sid {
			t.Errorf("application %s is not whole: %v", sid, got)
		}
		resp, err := admin.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: sid})
		if err != nil {
			t.Errorf("ListKeys %s: %v", sid, err)
			continue
		}
		present := map[string]bool{}
		active := ""
		for _, k := range resp.GetKeys() {
			ksid := k.GetApiKeySid()
			present[ksid] = true
			mk, known := a.keys[ksid]
			switch {
			case !known:
				t.Errorf("application %s holds key %q that was never added", sid, ksid)
				continue
			case !mk.acked:
				inFlightCommitted++
				mk.acked = true
			}
			if k.GetApplicationSid() != sid || k.GetAddedAt() == nil || k.GetMasterKeyId() == "" ||
				(k.GetState() != "active" && k.GetState() != "retired") || (k.GetState() == "active" && k.GetActivatedAt() == nil) {
				t.Errorf("key %s of %s is not whole: %v", ksid, sid, k)
			}
			if k.GetState() == "active" {
				if active != "" {
					t.Errorf("application %s has two active keys: %s and %s", sid, active, ksid)
				}
				active = ksid
			}
		}
		for ksid, mk := range a.keys {
			if mk.acked && !present[ksid] {
				t.Errorf("acknowledged key %s of %s is missing after the crash", ksid, sid)
			}
		}
		if !a.active[active] {
			t.Errorf("application %s: active key %q after the crash, want one of %v", sid, active, sortedKeys(a.active))
		}
		// Every key present signs tokens that verify with its secret.
		last := ""
		for _, k := range resp.GetKeys() {
			ksid := k.GetApiKeySid()
			mk := a.keys[ksid]
			if mk == nil {
				continue
			}
			ackedKeys++
			if _, err := admin.ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: sid, ApiKeySid: ksid}); err != nil {
				t.Errorf("ActivateKey %s of %s: %v", ksid, sid, err)
				continue
			}
			last = ksid
			mint, err := p.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: sid})
			if err != nil {
				t.Errorf("Mint for %s with key %s: %v", sid, ksid, err)
				continue
			}
			iss, err := verifyIssued(mint.GetToken(), map[string]string{ksid: mk.secret})
			if err != nil || iss != ksid {
				t.Errorf("token of %s signed by %q, want %s: %v", sid, iss, ksid, err)
				continue
			}
			keysMinted++
		}
		if last != "" {
			a.active = map[string]bool{last: true}
		} else {
			a.active = map[string]bool{"": true}
		}
		// Keys whose addition did not commit are forgotten.
		for ksid, mk := range a.keys {
			if !mk.acked {
				delete(a.keys, ksid)
			}
		}
	}
	for sid, a := range m.apps {
		if !a.acked {
			delete(m.apps, sid)
		}
	}
	t.Logf("round %d: %d acknowledged writes so far; %d applications and %d keys present and whole (%d writes in flight at a crash had committed); %d keys signed verifiable tokens",
		round, m.acks, ackedApps, ackedKeys, inFlightCommitted, keysMinted)
	if ackedApps == 0 {
		t.Errorf("no application was written before the crash")
	}
}

func sortedKeys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%q", k))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
