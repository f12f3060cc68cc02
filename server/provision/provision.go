// Package provision lets tokend create, rotate, revoke, reconcile and
// delete its applications' API keys at Twilio itself, with each
// application's provisioning credential (an auth token or a Main API key).
//
// Every step that calls Twilio is recorded first as an intent (a
// storage.KeyOp) and the intent removed once the step is whole, so that a
// crash at any point leaves nothing unknown: Recover, run at start and by
// the scheduler, finishes or undoes every intent it finds. A key created
// at Twilio carries the intent's ID in its friendly name, so that a key
// created just before a crash (whose secret is lost) is found and deleted.
//
// Scheduled work (rotation, deletion after outstanding_until plus the
// grace period, recovery) runs only on the replica that holds the store's
// lease, so that it happens once however many replicas share the store.
package provision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/twilioapi"
)

// Errors, wrapped with context; test with errors.Is.
var (
	// ErrNoCredential: the application has no provisioning credential.
	ErrNoCredential = errors.New("the application has no provisioning credential")
	// ErrSharedKey: the key to revoke is held by other applications too.
	ErrSharedKey = errors.New("the key is held by other applications too")
)

// Twilio states of a key (Key.twilio_state).
const (
	TwilioPresent = "present"
	TwilioMissing = "missing"
)

// LeaseName is the store lease the scheduler holds.
const LeaseName = "provisioning"

// Config configures a Provisioner.
type Config struct {
	// Keys is the keystore (its store and keyring); required.
	Keys *keystore.Keystore
	// Twilio is the Keys API client; required.
	Twilio *twilioapi.Client
	// Grace is added to a retired key's outstanding_until before tokend
	// deletes it at Twilio; 0: 5 minutes. It must exceed the interval at
	// which replicas record key usage.
	Grace time.Duration
	// Holder names this process in the leases; empty: a random name.
	// Every replica needs its own.
	Holder string
	// LeaseTTL is how long the lease lasts unless renewed; 0: 30 s. A
	// holder that dies is replaced after it.
	LeaseTTL time.Duration
	// Logger receives every step; nil: slog.Default().
	Logger *slog.Logger
	// Audit receives one record per step; nil: none.
	Audit *audit.Logger
	// OnStep, if set, is told of every step and its result ("ok" or
	// "error"), for metrics: actions provision, activate, delete, revoke,
	// rotate, recover, orphan_deleted, switch_active.
	OnStep func(action, result string)
	// Now returns the current time; nil: time.Now.
	Now func() time.Time
	// Settle is how long a revoke waits at most, between activating the
	// fresh key and deleting the revoked one at Twilio, for every live
	// replica to serve the fresh key (storage.Store.ReplicasBehind: their
	// heartbeats acknowledge the revision they serve), so that none signs
	// with the revoked key once Twilio no longer has it. A replica still
	// behind after Settle (stalled, cut off from the store, or of a
	// version that does not acknowledge) is named in a warning and the
	// key is deleted all the same: a compromised key is not kept for a
	// replica that cannot be reached. 0: no wait.
	Settle time.Duration
}

// Provisioner manages the API keys of applications that have a
// provisioning credential. It is safe for concurrent use.
type Provisioner struct {
	cfg   Config
	ks    *keystore.Keystore
	store storage.Store
	log   *slog.Logger

	mu sync.Mutex // serialises key changes in this process

	smu     sync.Mutex
	twilio  map[string]map[string]twilioapi.Key // app -> key SID -> Twilio's key, last listing
	missing map[string]map[string]bool          // app -> key SID -> missing at the last listing
}

// New returns a Provisioner.
func New(cfg Config) *Provisioner {
	if cfg.Grace <= 0 {
		cfg.Grace = 5 * time.Minute
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Holder == "" {
		cfg.Holder = "provisioner/" + newOpID()
	}
	return &Provisioner{cfg: cfg, ks: cfg.Keys, store: cfg.Keys.Store(), log: cfg.Logger,
		twilio: map[string]map[string]twilioapi.Key{}, missing: map[string]map[string]bool{}}
}

// opLease is the name of the lease a process holds on an intent while it
// works on it, so that the lease holder's Recover (on another replica)
// leaves an intent in flight alone and takes only those whose process
// died or gave up.
func opLease(opID string) string { return "keyop/" + opID }

// opLeaseTTL is how long an intent's lease lasts unless renewed: the
// scheduler's LeaseTTL up to 30 s, so that the intents of a process that
// died are taken over within 30 s even with a long schedule interval.
func (p *Provisioner) opLeaseTTL() time.Duration { return min(p.cfg.LeaseTTL, 30*time.Second) }

// keep renews the lease name (which holder has just taken for ttl) every
// third of ttl until stop is called, and cancels the returned context if a
// renewal fails or finds the lease taken: work done under it stops
// before another replica, seeing the lease expired, does the same work.
// stop does not release the lease.
func (p *Provisioner) keep(ctx context.Context, name string, ttl time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(max(ttl/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ok, err := p.store.AcquireLease(ctx, name, p.cfg.Holder, ttl)
			switch {
			case err != nil && ctx.Err() == nil:
				cancel(fmt.Errorf("renew lease %s: %w", name, err))
				return
			case err == nil && !ok:
				cancel(fmt.Errorf("lease %s lost to another replica", name))
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		<-stopped
		cancel(nil)
	}
}

// lock takes the lease name, waiting while another process holds it,
// and keeps it (renewed) until release, which gives it up; the returned
// context ends if the lease is lost.
func (p *Provisioner) lock(ctx context.Context, name string) (context.Context, func(), error) {
	ttl := p.opLeaseTTL()
	for {
		ok, err := p.store.AcquireLease(ctx, name, p.cfg.Holder, ttl)
		if err != nil {
			return ctx, nil, err
		}
		if ok {
			break
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx, nil, fmt.Errorf("wait for another replica's work on the same key: %w", ctx.Err())
		case <-t.C:
		}
	}
	kctx, stop := p.keep(ctx, name, ttl)
	return kctx, func() {
		stop()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.store.ReleaseLease(rctx, name, p.cfg.Holder); err != nil {
			p.log.WarnContext(ctx, "release lease", "lease", name, "error", err)
		}
	}, nil
}

// withOp runs fn while holding the lease of intent opID, renewed as fn
// runs, and releases it after. It reports false (and does not run fn)
// when another process holds it: that process is working on the intent.
func (p *Provisioner) withOp(ctx context.Context, opID string, fn func(context.Context) error) (bool, error) {
	name := opLease(opID)
	ok, err := p.store.AcquireLease(ctx, name, p.cfg.Holder, p.opLeaseTTL())
	if err != nil || !ok {
		return false, err
	}
	kctx, stop := p.keep(ctx, name, p.opLeaseTTL())
	err = fn(kctx)
	if cause := context.Cause(kctx); err != nil && cause != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w (%v)", err, cause)
	}
	stop()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if rerr := p.store.ReleaseLease(rctx, name, p.cfg.Holder); rerr != nil {
		p.log.WarnContext(ctx, "release intent lease", "op", opID, "error", rerr)
	}
	return true, err
}

// credentialAD binds a sealed provisioning credential to its application.
func credentialAD(applicationSID string) []byte {
	return secrets.AssociatedData(applicationSID, "twilio-credential")
}

func newOpID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p *Provisioner) step(ctx context.Context, action, appSID string, err error, attrs ...any) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	if p.cfg.OnStep != nil {
		p.cfg.OnStep(action, result)
	}
	args := append([]any{"action", action, "application_sid", appSID, "result", result}, attrs...)
	if err != nil {
		p.log.WarnContext(ctx, "key provisioning", append(args, "error", err)...)
	} else {
		p.log.InfoContext(ctx, "key provisioning", args...)
	}
	if p.cfg.Audit == nil {
		return
	}
	r := audit.Record{Event: audit.EventAdmin, Action: action, Principal: "tokend-provisioner", ApplicationSID: appSID, Decision: audit.Allow, Code: "OK"}
	var details []string
	for i := 0; i+1 < len(attrs); i += 2 {
		details = append(details, fmt.Sprint(attrs[i], "=", attrs[i+1]))
	}
	if err != nil {
		r.Code = "Unavailable"
		details = append(details, "error="+err.Error())
	}
	r.Reason = strings.Join(details, " ")
	p.cfg.Audit.Log(r)
}

// SetCredential checks the credential at Twilio (it must be able to list
// the account's keys), seals it and stores it with the rotation interval.
func (p *Provisioner) SetCredential(ctx context.Context, applicationSID, username, secret string, rotateEvery time.Duration) (storage.TwilioCredential, error) {
	app, err := p.store.GetApplication(ctx, applicationSID)
	if err != nil {
		return storage.TwilioCredential{}, err
	}
	cred := twilioapi.Credential{Username: username, Password: secret}
	if _, err := p.cfg.Twilio.ListKeys(ctx, cred, app.AccountSID, app.Region); err != nil {
		return storage.TwilioCredential{}, err
	}
	sealed, mkID, err := p.ks.Keyring().Seal([]byte(secret), credentialAD(applicationSID))
	if err != nil {
		return storage.TwilioCredential{}, fmt.Errorf("seal provisioning credential: %w", err)
	}
	c := storage.TwilioCredential{ApplicationSID: applicationSID, Username: username, SealedSecret: sealed, MasterKeyID: mkID, RotateEvery: rotateEvery}
	if err := p.store.PutTwilioCredential(ctx, c); err != nil {
		return storage.TwilioCredential{}, err
	}
	p.step(ctx, "set_twilio_credential", applicationSID, nil, "username", username, "rotate_every", rotateEvery)
	return p.store.GetTwilioCredential(ctx, applicationSID)
}

// Rekey seals every provisioning credential that is not under the primary
// master key again under it, and returns how many it resealed.
func (p *Provisioner) Rekey(ctx context.Context) (int, error) {
	creds, err := p.store.ListTwilioCredentials(ctx)
	if err != nil {
		return 0, err
	}
	kr := p.ks.Keyring()
	n := 0
	for _, c := range creds {
		if c.MasterKeyID == kr.Primary().ID {
			continue
		}
		ad := credentialAD(c.ApplicationSID)
		secret, err := kr.Open(c.SealedSecret, c.MasterKeyID, ad)
		if err != nil {
			return n, fmt.Errorf("open provisioning credential of application %s: %w", c.ApplicationSID, err)
		}
		c.SealedSecret, c.MasterKeyID, err = kr.Seal(secret, ad)
		clear(secret)
		if err != nil {
			return n, fmt.Errorf("seal provisioning credential of application %s: %w", c.ApplicationSID, err)
		}
		if err := p.store.PutTwilioCredential(ctx, c); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// DeleteCredential removes the provisioning credential.
func (p *Provisioner) DeleteCredential(ctx context.Context, applicationSID string) error {
	err := p.store.DeleteTwilioCredential(ctx, applicationSID)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %w", ErrNoCredential, err)
	}
	if err == nil {
		p.smu.Lock()
		delete(p.twilio, applicationSID)
		delete(p.missing, applicationSID)
		p.smu.Unlock()
		p.step(ctx, "delete_twilio_credential", applicationSID, nil)
	}
	return err
}

// credential opens the application's provisioning credential.
func (p *Provisioner) credential(ctx context.Context, applicationSID string) (storage.Application, twilioapi.Credential, storage.TwilioCredential, error) {
	app, err := p.store.GetApplication(ctx, applicationSID)
	if err != nil {
		return app, twilioapi.Credential{}, storage.TwilioCredential{}, err
	}
	c, err := p.store.GetTwilioCredential(ctx, applicationSID)
	if errors.Is(err, storage.ErrNotFound) {
		return app, twilioapi.Credential{}, c, fmt.Errorf("application %s: %w (set one with PUT /v1/applications/%s/twilio-credential)", applicationSID, ErrNoCredential, applicationSID)
	}
	if err != nil {
		return app, twilioapi.Credential{}, c, err
	}
	secret, err := p.ks.Keyring().Open(c.SealedSecret, c.MasterKeyID, credentialAD(applicationSID))
	if err != nil {
		return app, twilioapi.Credential{}, c, fmt.Errorf("open provisioning credential of application %s: %w", applicationSID, err)
	}
	return app, twilioapi.Credential{Username: c.Username, Password: string(secret)}, c, nil
}

// Provision creates a key at Twilio, stores it sealed and activates it if
// asked (or if the application has no active key).
func (p *Provisioner) Provision(ctx context.Context, applicationSID string, activate bool) (storage.Key, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.provision(ctx, applicationSID, activate, "provision")
}

func (p *Provisioner) provision(ctx context.Context, applicationSID string, activate bool, action string) (k storage.Key, err error) {
	op := storage.KeyOp{ID: newOpID(), ApplicationSID: applicationSID, Op: "provision", Activate: activate}
	_, err = p.withOp(ctx, op.ID, func(ctx context.Context) error {
		k, err = p.provisionOp(ctx, op, action)
		return err
	})
	return k, err
}

// provisionOp is provision under op's lease.
func (p *Provisioner) provisionOp(ctx context.Context, op storage.KeyOp, action string) (k storage.Key, err error) {
	applicationSID, activate := op.ApplicationSID, op.Activate
	defer func() { p.step(ctx, action, applicationSID, err, "api_key_sid", k.SID, "op", op.ID) }()
	app, cred, _, err := p.credential(ctx, applicationSID)
	if err != nil {
		return k, err
	}
	if err := p.store.PutKeyOp(ctx, op); err != nil {
		return k, fmt.Errorf("record intent: %w", err)
	}
	tk, err := p.cfg.Twilio.CreateKey(ctx, cred, app.AccountSID, app.Region, twilioapi.FriendlyName(applicationSID, op.ID))
	if err != nil {
		// A key may exist at Twilio all the same (a lost answer): undo
		// now if possible, else at the next recovery.
		p.undoProvision(context.WithoutCancel(ctx), op)
		return k, err
	}
	state := storage.KeyRetired
	if activate {
		state = storage.KeyActive
	} else if keys, err := p.store.ListKeys(ctx, applicationSID); err == nil && !slices.ContainsFunc(keys, func(k storage.Key) bool { return k.State == storage.KeyActive }) {
		state = storage.KeyActive
	}
	sealed, mkID, err := p.ks.SealKey(applicationSID, tk.SID, []byte(tk.Secret))
	if err == nil {
		err = p.store.CreateKey(ctx, storage.Key{ApplicationSID: applicationSID, SID: tk.SID, SealedSecret: sealed, MasterKeyID: mkID, State: state})
	}
	if err != nil {
		p.undoProvision(context.WithoutCancel(ctx), op)
		return k, fmt.Errorf("store the new key %s: %w", tk.SID, err)
	}
	p.remember(applicationSID, twilioapi.Key{SID: tk.SID, FriendlyName: tk.FriendlyName, DateCreated: tk.DateCreated})
	if err := p.ks.Reload(ctx); err != nil {
		p.log.ErrorContext(ctx, "reload keys after provisioning", "error", err)
	}
	// A retried create whose first answer was lost may have made a second
	// key with this op's name: delete any key of the op that tokend did
	// not store, then drop the intent (left for Recover on failure).
	if err := p.finishProvision(ctx, op); err != nil {
		p.log.WarnContext(ctx, "finish provisioning; will retry", "op", op.ID, "error", err)
	}
	return p.store.GetKey(ctx, applicationSID, tk.SID)
}

// undoProvision deletes at Twilio any key op created that tokend did not
// store, and drops the intent; on failure the intent stays for Recover.
func (p *Provisioner) undoProvision(ctx context.Context, op storage.KeyOp) {
	if err := p.finishProvision(ctx, op); err != nil {
		p.log.WarnContext(ctx, "undo key provisioning; will retry", "op", op.ID, "error", err)
	}
}

func (p *Provisioner) finishProvision(ctx context.Context, op storage.KeyOp) error {
	app, cred, _, err := p.credential(ctx, op.ApplicationSID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, ErrNoCredential) {
			return p.store.DeleteKeyOp(ctx, op.ID) // nothing tokend can do
		}
		return err
	}
	keys, err := p.cfg.Twilio.ListKeys(ctx, cred, app.AccountSID, app.Region)
	if err != nil {
		return err
	}
	for _, tk := range keys {
		appSID, opID, ok := twilioapi.ParseFriendlyName(tk.FriendlyName)
		if !ok || appSID != op.ApplicationSID || opID != op.ID {
			continue
		}
		if _, err := p.store.GetKey(ctx, op.ApplicationSID, tk.SID); err == nil {
			continue // stored: the provisioning finished
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		err := p.cfg.Twilio.DeleteKey(ctx, cred, app.AccountSID, app.Region, tk.SID)
		var te *twilioapi.Error
		if err != nil && !(errors.As(err, &te) && te.NotFound()) {
			return err
		}
		p.step(ctx, "orphan_deleted", op.ApplicationSID, nil, "api_key_sid", tk.SID, "op", op.ID)
	}
	return p.store.DeleteKeyOp(ctx, op.ID)
}

// deleteKey deletes a key at Twilio (gone already is fine) and then from
// the store, under a recorded intent.
func (p *Provisioner) deleteKey(ctx context.Context, op storage.KeyOp, action string) (err error) {
	defer func() { p.step(ctx, action, op.ApplicationSID, err, "api_key_sid", op.APIKeySID, "op", op.ID) }()
	app, cred, _, err := p.credential(ctx, op.ApplicationSID)
	if err != nil {
		return err
	}
	if err := p.store.PutKeyOp(ctx, op); err != nil {
		return fmt.Errorf("record intent: %w", err)
	}
	// A scheduled deletion (not a revoke) of a key that is active again
	// (an operator activated it since the schedule chose it, or before
	// the deletion a crash interrupted was recovered) is dropped: every
	// token would fail.
	if op.Op == "delete" {
		k, err := p.store.GetKey(ctx, op.ApplicationSID, op.APIKeySID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if err == nil && k.State == storage.KeyActive {
			p.log.WarnContext(ctx, "scheduled deletion of an active key dropped", "application_sid", op.ApplicationSID, "api_key_sid", op.APIKeySID, "op", op.ID)
			return p.store.DeleteKeyOp(ctx, op.ID)
		}
	}
	err = p.cfg.Twilio.DeleteKey(ctx, cred, app.AccountSID, app.Region, op.APIKeySID)
	var te *twilioapi.Error
	if err != nil && !(errors.As(err, &te) && te.NotFound()) {
		return err
	}
	if err := p.store.DeleteKey(ctx, op.ApplicationSID, op.APIKeySID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("remove key %s from tokend (deleted at Twilio): %w", op.APIKeySID, err)
	}
	p.forget(op.ApplicationSID, op.APIKeySID)
	if err := p.ks.Reload(ctx); err != nil {
		p.log.ErrorContext(ctx, "reload keys after deletion", "error", err)
	}
	return p.store.DeleteKeyOp(ctx, op.ID)
}

// Revoke replaces a compromised key: if it is the active key, a fresh key
// is provisioned and activated first; then the key is deleted at Twilio at
// once and removed from tokend. It returns the active key.
func (p *Provisioner) Revoke(ctx context.Context, applicationSID, keySID string) (storage.Key, error) {
	// One revoke of a key at a time across replicas: a second one waits
	// for the first and then finds the key gone (NotFound), rather than
	// provisioning a second replacement.
	ctx, release, err := p.lock(ctx, "revoke/"+applicationSID+"/"+keySID)
	if err != nil {
		return storage.Key{}, err
	}
	defer release()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.store.GetKey(ctx, applicationSID, keySID); err != nil {
		return storage.Key{}, err
	}
	if _, _, _, err := p.credential(ctx, applicationSID); err != nil {
		return storage.Key{}, err
	}
	// A key added by hand to several applications: deleting it at Twilio
	// would leave the others signing with a key Twilio no longer has.
	var others []string
	for _, r := range p.ks.FindKey(keySID) {
		if r.App.SID != applicationSID {
			others = append(others, r.App.SID)
		}
	}
	if len(others) > 0 {
		return storage.Key{}, fmt.Errorf("%w: %s is also held by %s; deleting it at Twilio would break their tokens: remove it from them first (keys delete), then revoke",
			ErrSharedKey, keySID, strings.Join(others, ", "))
	}
	op := storage.KeyOp{ID: newOpID(), ApplicationSID: applicationSID, Op: "revoke", APIKeySID: keySID}
	var active storage.Key
	_, err = p.withOp(ctx, op.ID, func(ctx context.Context) error {
		if err := p.store.PutKeyOp(ctx, op); err != nil {
			return fmt.Errorf("record intent: %w", err)
		}
		var err error
		active, err = p.revoke(ctx, op)
		return err
	})
	return active, err
}

func (p *Provisioner) revoke(ctx context.Context, op storage.KeyOp) (storage.Key, error) {
	k, err := p.store.GetKey(ctx, op.ApplicationSID, op.APIKeySID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Removed from tokend already; make sure Twilio has it no more.
	case err != nil:
		return storage.Key{}, err
	case k.State == storage.KeyActive:
		if _, err := p.provision(ctx, op.ApplicationSID, true, "provision"); err != nil {
			return storage.Key{}, fmt.Errorf("provision the replacement key (the compromised key %s still signs): %w", op.APIKeySID, err)
		}
	}
	// Whether the key was active here or not: another replica may still
	// sign with it (a rotation a moment ago retired it, and that replica
	// has not reloaded since).
	if err := p.settle(ctx, op.APIKeySID); err != nil {
		return storage.Key{}, err
	}
	if err := p.deleteKey(ctx, op, "revoke"); err != nil {
		return storage.Key{}, fmt.Errorf("delete the revoked key %s (a new key signs already): %w", op.APIKeySID, err)
	}
	keys, err := p.store.ListKeys(ctx, op.ApplicationSID)
	if err != nil {
		return storage.Key{}, err
	}
	for _, k := range keys {
		if k.State == storage.KeyActive {
			return k, nil
		}
	}
	return storage.Key{}, nil
}

// settlePoll is how often settle asks the store which replicas are
// behind.
const settlePoll = 25 * time.Millisecond

// settle waits, for Settle at most, until every live replica serves the
// keys as the store has them now (the revoked keySID not active, a fresh
// key active), so that keySID can be deleted at Twilio without breaking
// their tokens.
func (p *Provisioner) settle(ctx context.Context, keySID string) error {
	if p.cfg.Settle <= 0 {
		return nil
	}
	rev, err := p.store.Revision(ctx)
	if err != nil {
		rev = p.ks.Revision()
	}
	deadline := time.Now().Add(p.cfg.Settle)
	for {
		behind, err := p.store.ReplicasBehind(ctx, rev)
		if err == nil && len(behind) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			if err != nil {
				p.log.Warn("revoke: could not learn which replicas serve the fresh key: deleting the revoked key at Twilio all the same",
					"api_key_sid", keySID, "waited", p.cfg.Settle, "error", err)
			} else {
				p.log.Warn("revoke: replicas still serve the revoked key: deleting it at Twilio all the same; their tokens signed with it will be refused",
					"api_key_sid", keySID, "waited", p.cfg.Settle, "replicas", strings.Join(behind, ", "), "revision", rev)
			}
			return nil
		}
		select {
		case <-time.After(settlePoll):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Recover finishes or undoes every recorded intent. Intents it cannot
// complete (Twilio down) stay for the next call.
func (p *Provisioner) Recover(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ops, err := p.store.ListKeyOps(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, op := range ops {
		// An intent whose lease another process holds is in flight there
		// (an admin call on another replica): not a crash's to undo.
		took, err := p.withOp(ctx, op.ID, func(ctx context.Context) error {
			switch op.Op {
			case "provision":
				return p.finishProvision(ctx, op)
			case "delete":
				return p.deleteKey(ctx, op, "delete")
			case "revoke":
				_, err := p.revoke(ctx, op)
				return err
			default:
				return p.store.DeleteKeyOp(ctx, op.ID)
			}
		})
		if !took && err == nil {
			continue
		}
		p.step(ctx, "recover", op.ApplicationSID, err, "op", op.ID, "intent", op.Op, "api_key_sid", op.APIKeySID)
		if err != nil {
			errs = append(errs, fmt.Errorf("intent %s (%s %s): %w", op.ID, op.Op, op.APIKeySID, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Provisioner) remember(appSID string, k twilioapi.Key) {
	p.smu.Lock()
	defer p.smu.Unlock()
	m := p.twilio[appSID]
	if m == nil {
		m = map[string]twilioapi.Key{}
		p.twilio[appSID] = m
	}
	m[k.SID] = k
	delete(p.missing[appSID], k.SID)
}

func (p *Provisioner) forget(appSID, keySID string) {
	p.smu.Lock()
	defer p.smu.Unlock()
	delete(p.twilio[appSID], keySID)
	delete(p.missing[appSID], keySID)
}

// Report is the outcome of Reconcile.
type Report struct {
	// Orphaned are keys at Twilio named as tokend's for the application
	// that tokend does not hold; Deleted those of them deleted.
	Orphaned, Deleted []string
	// Missing are keys tokend holds that Twilio no longer has.
	Missing []string
	// SwitchedTo is the key activated because the active key was missing.
	SwitchedTo string
}

// Reconcile compares the application's keys with Twilio's list, records
// which keys Twilio no longer has (Status), switches to another present
// key if the active one is missing, and deletes orphans if asked.
func (p *Provisioner) Reconcile(ctx context.Context, applicationSID string, deleteOrphans bool) (Report, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reconcile(ctx, applicationSID, deleteOrphans)
}

func (p *Provisioner) reconcile(ctx context.Context, applicationSID string, deleteOrphans bool) (Report, error) {
	var rep Report
	app, cred, _, err := p.credential(ctx, applicationSID)
	if err != nil {
		return rep, err
	}
	// Other replicas create, store and delete keys meanwhile. A key
	// is missing only if it was stored before the listing and still is
	// after it (a key created after the listing is not in it, and a key
	// being deleted leaves Twilio before the store). Intents are read
	// after the listing and the keys after the intents: a key in the
	// listing is either stored or its intent still pending (an intent
	// is dropped only once its key is stored), never taken for an
	// orphan.
	before, err := p.store.ListKeys(ctx, applicationSID)
	if err != nil {
		return rep, err
	}
	tkeys, err := p.cfg.Twilio.ListKeys(ctx, cred, app.AccountSID, app.Region)
	if err != nil {
		return rep, err
	}
	ops, err := p.store.ListKeyOps(ctx)
	if err != nil {
		return rep, err
	}
	ours, err := p.store.ListKeys(ctx, applicationSID)
	if err != nil {
		return rep, err
	}
	storedBefore := map[string]bool{}
	for _, k := range before {
		storedBefore[k.SID] = true
	}
	pending := map[string]bool{}
	for _, op := range ops {
		pending[op.ID] = true
	}
	at := map[string]twilioapi.Key{}
	for _, tk := range tkeys {
		at[tk.SID] = tk
	}
	held := map[string]bool{}
	missing := map[string]bool{}
	for _, k := range ours {
		held[k.SID] = true
		if _, ok := at[k.SID]; !ok && storedBefore[k.SID] {
			rep.Missing = append(rep.Missing, k.SID)
			missing[k.SID] = true
		}
	}
	for _, tk := range tkeys {
		appSID, opID, ok := twilioapi.ParseFriendlyName(tk.FriendlyName)
		if !ok || appSID != applicationSID || held[tk.SID] || pending[opID] {
			continue
		}
		rep.Orphaned = append(rep.Orphaned, tk.SID)
		if deleteOrphans {
			err := p.cfg.Twilio.DeleteKey(ctx, cred, app.AccountSID, app.Region, tk.SID)
			var te *twilioapi.Error
			if err != nil && !(errors.As(err, &te) && te.NotFound()) {
				p.step(ctx, "orphan_deleted", applicationSID, err, "api_key_sid", tk.SID)
				return rep, err
			}
			p.step(ctx, "orphan_deleted", applicationSID, nil, "api_key_sid", tk.SID)
			rep.Deleted = append(rep.Deleted, tk.SID)
			delete(at, tk.SID)
		}
	}
	p.smu.Lock()
	p.twilio[applicationSID] = at
	p.missing[applicationSID] = missing
	p.smu.Unlock()
	// The active key missing at Twilio: every token fails there. Switch
	// to the most recently activated key Twilio has, if any.
	var active *storage.Key
	for i := range ours {
		if ours[i].State == storage.KeyActive {
			active = &ours[i]
		}
	}
	if active != nil && slices.Contains(rep.Missing, active.SID) {
		var best *storage.Key
		for i := range ours {
			k := &ours[i]
			if _, ok := at[k.SID]; ok && k.State != storage.KeyActive && (best == nil || k.ActivatedAt.After(best.ActivatedAt) || (k.ActivatedAt.Equal(best.ActivatedAt) && k.CreatedAt.After(best.CreatedAt))) {
				best = k
			}
		}
		if best != nil {
			err := p.store.ActivateKey(ctx, applicationSID, best.SID)
			p.step(ctx, "switch_active", applicationSID, err, "api_key_sid", best.SID, "missing_api_key_sid", active.SID)
			if err != nil {
				return rep, err
			}
			rep.SwitchedTo = best.SID
			if err := p.ks.Reload(ctx); err != nil {
				p.log.ErrorContext(ctx, "reload keys after switching", "error", err)
			}
		}
	}
	return rep, nil
}

// KeyStatus returns what tokend knows of a key at Twilio ("" if the
// application was never listed, or the key was stored after the last
// listing) and when the scheduler will delete it
// (zero if it will not). all are the application's keys.
func (p *Provisioner) KeyStatus(k storage.Key, all []storage.Key) (twilioState string, deleteAfter time.Time) {
	p.smu.Lock()
	tk, present := p.twilio[k.ApplicationSID][k.SID]
	missing := p.missing[k.ApplicationSID][k.SID]
	p.smu.Unlock()
	switch {
	case present:
		twilioState = TwilioPresent
	case missing:
		twilioState = TwilioMissing
	}
	if present && k.State == storage.KeyRetired && !k.ActivatedAt.IsZero() {
		if appSID, _, ok := twilioapi.ParseFriendlyName(tk.FriendlyName); ok && appSID == k.ApplicationSID {
			deleteAfter = p.deleteAfter(k, retiredAt(k, all))
		}
	}
	return twilioState, deleteAfter
}

// retiredAt is when a retired key stopped being active: when the next key
// was activated after it (the store keeps no retirement time). Zero if no
// key was activated after it.
func retiredAt(k storage.Key, all []storage.Key) time.Time {
	var t time.Time
	for _, o := range all {
		if o.SID != k.SID && o.ActivatedAt.After(k.ActivatedAt) && (t.IsZero() || o.ActivatedAt.Before(t)) {
			t = o.ActivatedAt
		}
	}
	return t
}

// deleteAfter is when a retired key can go: grace after no token it signed
// can be valid any more (as recorded, or as this process signed) and
// after it was retired (other replicas sign with it until they reload and
// record their usage within seconds).
func (p *Provisioner) deleteAfter(k storage.Key, retired time.Time) time.Time {
	activeActivatedAt := retired
	until := k.OutstandingUntil
	if _, mem := p.ks.Usage(k.ApplicationSID, k.SID); mem > 0 && time.Unix(mem, 0).After(until) {
		until = time.Unix(mem, 0)
	}
	if activeActivatedAt.After(until) {
		until = activeActivatedAt
	}
	return until.Add(p.cfg.Grace)
}

// Missing returns "application/key" for every key Twilio did not list at
// the last reconcile though tokend held it before and after the listing,
// sorted.
func (p *Provisioner) Missing() []string {
	p.smu.Lock()
	defer p.smu.Unlock()
	var out []string
	for appSID, missing := range p.missing {
		app := p.ks.Lookup(appSID)
		if app == nil {
			continue
		}
		for _, k := range app.Keys {
			if missing[k.SID()] {
				out = append(out, appSID+"/"+k.SID())
			}
		}
	}
	sort.Strings(out)
	return out
}

// Tick runs one pass of scheduled work if this process holds (or takes)
// the lease: recovery of intents, then for each application with a
// provisioning credential, reconcile, rotation when due and deletion of
// retired keys tokend created once their tokens have expired. Processes
// without the lease only reconcile (read-only), so that each replica's key
// list and /readyz know which keys Twilio lacks.
func (p *Provisioner) Tick(ctx context.Context) error {
	leader, err := p.store.AcquireLease(ctx, LeaseName, p.cfg.Holder, p.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	creds, err := p.store.ListTwilioCredentials(ctx)
	if err != nil {
		return err
	}
	var errs []error
	if leader {
		// A pass can outlast the lease (Twilio slow, retrying): renew it
		// while working, and stop if it is lost, so that another replica
		// does not take it and rotate too.
		var stop func()
		ctx, stop = p.keep(ctx, LeaseName, p.cfg.LeaseTTL)
		defer stop()
		if err := p.Recover(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range creds {
		if err := p.tickApp(ctx, c, leader); err != nil {
			errs = append(errs, fmt.Errorf("application %s: %w", c.ApplicationSID, err))
		}
	}
	return errors.Join(errs...)
}

func (p *Provisioner) tickApp(ctx context.Context, c storage.TwilioCredential, leader bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.reconcile(ctx, c.ApplicationSID, false); err != nil || !leader {
		return err
	}
	keys, err := p.store.ListKeys(ctx, c.ApplicationSID)
	if err != nil {
		return err
	}
	now := p.cfg.Now()
	var active *storage.Key
	for i := range keys {
		if keys[i].State == storage.KeyActive {
			active = &keys[i]
		}
	}
	if c.RotateEvery > 0 && (active == nil || !now.Before(active.ActivatedAt.Add(c.RotateEvery))) {
		if _, err := p.provision(ctx, c.ApplicationSID, true, "rotate"); err != nil {
			return err
		}
		if keys, err = p.store.ListKeys(ctx, c.ApplicationSID); err != nil {
			return err
		}
		active = nil
		for i := range keys {
			if keys[i].State == storage.KeyActive {
				active = &keys[i]
			}
		}
	}
	// A key with an intent recorded already (a deletion Twilio refused,
	// a revoke) is left to Recover, which retries it every pass: one more
	// intent per pass would pile up while Twilio fails.
	ops, err := p.store.ListKeyOps(ctx)
	if err != nil {
		return err
	}
	pending := map[string]bool{}
	for _, op := range ops {
		if op.ApplicationSID == c.ApplicationSID && op.APIKeySID != "" {
			pending[op.APIKeySID] = true
		}
	}
	for _, k := range keys {
		if _, after := p.KeyStatus(k, keys); after.IsZero() || now.Before(after) || pending[k.SID] {
			continue
		}
		op := storage.KeyOp{ID: newOpID(), ApplicationSID: c.ApplicationSID, Op: "delete", APIKeySID: k.SID}
		if _, err := p.withOp(ctx, op.ID, func(ctx context.Context) error { return p.deleteKey(ctx, op, "delete") }); err != nil {
			return err
		}
	}
	return nil
}

// Run calls Tick every interval until ctx ends, then gives up the lease.
func (p *Provisioner) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.Tick(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("scheduled key provisioning", "error", err)
		}
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = p.store.ReleaseLease(rctx, LeaseName, p.cfg.Holder)
			cancel()
			return
		case <-t.C:
		}
	}
}
