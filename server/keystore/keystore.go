// Package keystore holds tokend's applications and their signing keys in
// memory, loaded from a storage.Store and opened with the master keyring,
// so that minting never reads the database. Readers get an immutable view
// through one atomic load; writers go through the store and then publish a
// new view.
package keystore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
)

// App is an application as the mint path sees it. Apps are immutable once
// published (but for the lazily built default grants); a change publishes
// a new App.
type App struct {
	// SID, AccountSID, FriendlyName and Region are as stored.
	SID          string
	AccountSID   string
	FriendlyName string
	Region       string
	// MaxTTL is the longest lifetime allowed, in seconds (at most
	// mint.MaxTTLSeconds).
	MaxTTL int64
	// Active is the key that signs, or nil when the application has none.
	Active *mint.Key
	// Keys holds every key of the application, active and retired, in the
	// store's order (by creation). An application has a few: Key searches
	// them in turn, which costs less memory than a map per application.
	Keys []*mint.Key

	// grants holds the application's own default grants, when the store
	// has some; nil means the built-in default, built on first use into
	// builtin (most applications never set their own, and a store of
	// 100,000 applications should not hold 100,000 copies of it up front).
	grants  *defaultGrants
	builtin atomic.Pointer[defaultGrants]
	// template is the keystore's default grants (SetDefaultGrants), nil
	// for the built-in ones.
	template *tokenv1.Grants
}

type defaultGrants struct {
	grants *tokenv1.Grants
	json   []byte // mint.AppendGrants(nil, grants)
}

// Key returns the application's key with that API key SID, or nil.
func (a *App) Key(sid string) *mint.Key {
	for _, k := range a.Keys {
		if k.SID() == sid {
			return k
		}
	}
	return nil
}

// DefaultGrants returns the grants of a request that names none (never
// nil) and their JSON, mint.AppendGrants(nil, grants). Both are shared:
// do not modify them.
func (a *App) DefaultGrants() (*tokenv1.Grants, []byte) {
	if a.grants != nil {
		return a.grants.grants, a.grants.json
	}
	d := a.builtin.Load()
	if d == nil {
		g := GrantsFromTemplate(a.template, a.SID)
		d = &defaultGrants{grants: g, json: mint.AppendGrants(nil, g)}
		if !a.builtin.CompareAndSwap(nil, d) {
			d = a.builtin.Load()
		}
	}
	return d.grants, d.json
}

// GrantsFromTemplate returns the default grants of application
// applicationSID from a template (tokend's --default-grants): a copy of
// it in which an outgoing voice grant without an application_sid goes
// through applicationSID. A nil template gives BuiltinDefaultGrants.
func GrantsFromTemplate(template *tokenv1.Grants, applicationSID string) *tokenv1.Grants {
	if template == nil {
		return BuiltinDefaultGrants(applicationSID)
	}
	g := proto.Clone(template).(*tokenv1.Grants)
	if o := g.GetVoice().GetOutgoing(); o != nil && o.GetApplicationSid() == "" {
		o.ApplicationSid = applicationSID
	}
	return g
}

// BuiltinDefaultGrants returns the grants of the seed's Twilio Function:
// outgoing voice through the application, incoming not allowed.
func BuiltinDefaultGrants(applicationSID string) *tokenv1.Grants {
	return &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{
		Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: applicationSID},
	}}
}

type view struct {
	apps map[string]*App
	only *App // the application, when there is exactly one
	// def is the stored default application, or nil.
	def      *App
	revision int64
	// keys holds every key, sorted by API key SID and then application
	// SID (FindKey searches it).
	keys []KeyRef
	// flushed is the usage last written to the store of each key, in the
	// order of keys; guarded by Keystore.mu.
	flushed []flushState
	// credentials maps the SHA-256 of each bearer credential to it.
	credentials map[[32]byte]credential
}

type credential struct {
	name   string
	groups []string
}

// KeyRef is a key tokend holds and the application that holds it.
type KeyRef struct {
	App *App
	Key *mint.Key
	// Active reports whether Key is App's active key (else it is retired).
	Active bool
	// sealed is the SHA-256 of the sealed secret Key was opened from, so
	// a reload reuses Key (and its usage counters) while it has not
	// changed.
	sealed [sha256.Size]byte
}

// flushState is the usage of a key last written to the store.
type flushState struct{ last, out int64 }

// compareRef orders KeyRefs by API key SID, then application SID.
func compareRef(keySID, appSID string, r *KeyRef) int {
	if c := strings.Compare(keySID, r.Key.SID()); c != 0 {
		return c
	}
	return strings.Compare(appSID, r.App.SID)
}

// find returns the index of the key (keySID, appSID) in v.keys.
func (v *view) find(keySID, appSID string) (int, bool) {
	return slices.BinarySearchFunc(v.keys, 0, func(r KeyRef, _ int) int { return -compareRef(keySID, appSID, &r) })
}

// Keystore is the in-memory view of the store. It is safe for concurrent
// use.
type Keystore struct {
	store   storage.Store
	keyring atomic.Pointer[secrets.Keyring]
	log     *slog.Logger

	cur atomic.Pointer[view]

	mu sync.Mutex // serialises reloads and guards the view's flushed

	// loadKeyring reads the keyring again from where it came from (a file
	// may have gained a new primary key); nil when it cannot change.
	loadKeyring func() (*secrets.Keyring, error)

	// onStoreError, if set, is told of each store error (for metrics).
	onStoreError func(op string, err error)
	// onReload, if set, is called after each reload that loaded a view
	// (see SetReloadHook).
	onReload func()
	// lastReload is when the view was last loaded (unix nanoseconds).
	lastReload atomic.Int64

	// watchOutage and flushOutage log the failures of Watch and
	// FlushUsageEvery by state, not one line per tick.
	watchOutage, flushOutage *outageLog
	// template is the default grants of applications that have none of
	// their own (SetDefaultGrants); nil: BuiltinDefaultGrants.
	template *tokenv1.Grants
}

// SetDefaultGrants sets the grants of mint requests that name none, for
// applications without default grants of their own, in place of
// BuiltinDefaultGrants; an outgoing voice grant without application_sid
// goes through each application (see GrantsFromTemplate). Call it before
// the first Reload; template must not be changed afterwards.
func (ks *Keystore) SetDefaultGrants(template *tokenv1.Grants) { ks.template = template }

// SetStoreErrorHook sets a function told of every store error the
// keystore meets, with the operation: "reload" (reading the store),
// "watch" (reading its revision), "flush" (writing key usage) or "rekey".
// Set it before Watch or FlushUsageEvery start.
func (ks *Keystore) SetStoreErrorHook(hook func(op string, err error)) {
	ks.onStoreError = hook
}

// SetReloadHook sets a function called after every reload that loaded a
// view (the view's revision is then Revision): the replica's heartbeat
// acknowledges the revision at once (replicas.Membership.Poke). It runs
// with the reload lock held: it must not block nor reload. Set it before
// Watch starts.
func (ks *Keystore) SetReloadHook(hook func()) { ks.onReload = hook }

func (ks *Keystore) storeError(op string, err error) {
	if ks.onStoreError != nil && err != nil {
		ks.onStoreError(op, err)
	}
}

// LastReload returns when the view was last loaded from the store
// successfully (zero before the first Reload).
func (ks *Keystore) LastReload() time.Time {
	if n := ks.lastReload.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// SetKeyringLoader sets how the keyring is read again: on Rekey, and when
// a secret names a master key the keyring in memory does not have (another
// process re-encrypted under a key added to the keyring file).
func (ks *Keystore) SetKeyringLoader(load func() (*secrets.Keyring, error)) {
	ks.loadKeyring = load
}

// refreshKeyring reads the keyring again, if it can, and reports whether
// it now has other master keys than before.
func (ks *Keystore) refreshKeyring() (bool, error) {
	if ks.loadKeyring == nil {
		return false, nil
	}
	kr, err := ks.loadKeyring()
	if err != nil {
		return false, fmt.Errorf("read the master keyring again: %w", err)
	}
	old := ks.keyring.Load()
	if slices.Equal(kr.IDs(), old.IDs()) {
		return false, nil
	}
	ks.keyring.Store(kr)
	ks.log.Info("master keyring reloaded", "primary_master_key_id", kr.Primary().ID, "master_key_ids", kr.IDs())
	return true, nil
}

// New returns a Keystore over store; call Reload before use.
func New(store storage.Store, keyring *secrets.Keyring, log *slog.Logger) *Keystore {
	ks := &Keystore{store: store, log: log}
	ks.watchOutage = newOutageLog(log, "read the store's revision", "changes made by other replicas are not seen")
	ks.flushOutage = newOutageLog(log, "record key usage", "outstanding_until may lag")
	ks.keyring.Store(keyring)
	ks.cur.Store(&view{apps: map[string]*App{}})
	return ks
}

// Store returns the underlying store.
func (ks *Keystore) Store() storage.Store { return ks.store }

// Keyring returns the master keyring in use.
func (ks *Keystore) Keyring() *secrets.Keyring { return ks.keyring.Load() }

// Lookup returns the application with that SID, or nil.
func (ks *Keystore) Lookup(sid string) *App { return ks.cur.Load().apps[sid] }

// LookupCredential returns the credential whose token hashes to hash, from
// memory (auth.CredentialLookup).
func (ks *Keystore) LookupCredential(hash [32]byte) (name string, groups []string, ok bool) {
	c, ok := ks.cur.Load().credentials[hash]
	return c.name, c.groups, ok
}

// Only returns the application when the keystore holds exactly one, or
// nil.
func (ks *Keystore) Only() *App { return ks.cur.Load().only }

// Default returns the application of mint requests that name none: the
// stored default application, else the only application; nil when there
// is neither (several applications and no default).
func (ks *Keystore) Default() *App {
	v := ks.cur.Load()
	if v.def != nil {
		return v.def
	}
	return v.only
}

// Len returns the number of applications.
func (ks *Keystore) Len() int { return len(ks.cur.Load().apps) }

// Revision returns the store revision of the published view.
func (ks *Keystore) Revision() int64 { return ks.cur.Load().revision }

// FindKey returns every key with that API key SID, one per application
// that holds it, ordered by application SID; nil if none. The slice is
// shared: do not modify it.
func (ks *Keystore) FindKey(keySID string) []KeyRef {
	keys := ks.cur.Load().keys
	i, _ := slices.BinarySearchFunc(keys, keySID, func(r KeyRef, sid string) int { return strings.Compare(r.Key.SID(), sid) })
	j := i
	for j < len(keys) && keys[j].Key.SID() == keySID {
		j++
	}
	if i == j {
		return nil
	}
	return keys[i:j:j]
}

// Reload reads the whole store and publishes a new view. Secrets that did
// not change are not opened again. If any secret cannot be opened (a wrong
// or missing master key), Reload fails and the previous view stays.
func (ks *Keystore) Reload(ctx context.Context) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	err := ks.reload(ctx)
	if errors.Is(err, secrets.ErrUnknownMasterKey) {
		if changed, rerr := ks.refreshKeyring(); rerr != nil {
			return errors.Join(err, rerr)
		} else if changed {
			err = ks.reload(ctx)
		}
	}
	return err
}

func (ks *Keystore) reload(ctx context.Context) error {
	snap, err := ks.store.Snapshot(ctx)
	if err != nil {
		ks.storeError("reload", err)
		return fmt.Errorf("read store: %w", err)
	}
	keyring := ks.keyring.Load()
	v := &view{apps: make(map[string]*App, len(snap.Applications)), revision: snap.Revision,
		credentials: make(map[[32]byte]credential, len(snap.Credentials))}
	for _, c := range snap.Credentials {
		if len(c.Hash) == 32 {
			v.credentials[[32]byte(c.Hash)] = credential{name: c.Name, groups: c.Groups}
		}
	}
	for _, a := range snap.Applications {
		app, err := newApp(a, ks.template)
		if err != nil {
			return err
		}
		v.apps[a.SID] = app
	}
	old := ks.cur.Load()
	// The keys of each application share one array, in the store's order
	// (by creation) within the application.
	byApp := func(a, b storage.Key) int { return strings.Compare(a.ApplicationSID, b.ApplicationSID) }
	if !slices.IsSortedFunc(snap.Keys, byApp) { // the stores give them sorted
		slices.SortStableFunc(snap.Keys, byApp)
	}
	all := make([]*mint.Key, 0, len(snap.Keys))
	refs := make([]KeyRef, 0, len(snap.Keys))
	var app *App
	start := 0
	for _, k := range snap.Keys {
		if app == nil || app.SID != k.ApplicationSID {
			if app != nil {
				app.Keys = all[start:len(all):len(all)]
			}
			if app = v.apps[k.ApplicationSID]; app == nil {
				continue // the store guarantees this does not happen
			}
			start = len(all)
		}
		digest := sha256.Sum256(k.SealedSecret)
		var mk *mint.Key
		i, found := old.find(k.SID, app.SID)
		if found && old.keys[i].sealed == digest && old.keys[i].Key.AccountSID() == app.AccountSID {
			// The same secret for the same account: the same key (a key
			// signs its account SID into every token, so a changed account
			// makes a new one).
			mk = old.keys[i].Key
		} else {
			secret, err := keyring.Open(k.SealedSecret, k.MasterKeyID, secrets.AssociatedData(k.ApplicationSID, k.SID))
			if err != nil {
				return fmt.Errorf("open secret of key %s of application %s: %w", k.SID, k.ApplicationSID, err)
			}
			mk = mint.NewKey(app.AccountSID, k.SID, secret)
			clear(secret)
			if found {
				mk.SetUsage(old.keys[i].Key.Usage())
			}
		}
		mk.SetUsage(unix(k.LastSignedAt), unix(k.OutstandingUntil))
		all = append(all, mk)
		refs = append(refs, KeyRef{App: app, Key: mk, sealed: digest})
		if k.State == storage.KeyActive {
			app.Active = mk
		}
	}
	if app != nil {
		app.Keys = all[start:len(all):len(all)]
	}
	for i := range refs {
		refs[i].Active = refs[i].App.Active == refs[i].Key
	}
	slices.SortFunc(refs, func(a, b KeyRef) int { return compareRef(a.Key.SID(), a.App.SID, &b) })
	v.keys = refs
	v.flushed = make([]flushState, len(refs))
	for i := range refs {
		if j, found := old.find(refs[i].Key.SID(), refs[i].App.SID); found {
			v.flushed[i] = old.flushed[j]
		}
	}
	if len(v.apps) == 1 {
		for _, a := range v.apps {
			v.only = a
		}
	}
	v.def = v.apps[snap.DefaultApplication]
	ks.cur.Store(v)
	ks.lastReload.Store(time.Now().UnixNano())
	if ks.onReload != nil {
		ks.onReload()
	}
	return nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func newApp(a storage.Application, template *tokenv1.Grants) (*App, error) {
	app := &App{
		template:     template,
		SID:          a.SID,
		AccountSID:   a.AccountSID,
		FriendlyName: a.FriendlyName,
		Region:       a.Region,
		MaxTTL:       mint.MaxTTLSeconds,
	}
	if a.MaxTTLSeconds > 0 && a.MaxTTLSeconds < mint.MaxTTLSeconds {
		app.MaxTTL = int64(a.MaxTTLSeconds)
	}
	if len(a.DefaultGrants) > 0 {
		g := &tokenv1.Grants{}
		if err := protojson.Unmarshal(a.DefaultGrants, g); err != nil {
			return nil, fmt.Errorf("default grants of application %s: %w", a.SID, err)
		}
		app.grants = &defaultGrants{grants: g, json: mint.AppendGrants(nil, g)}
	}
	return app, nil
}

// EnsureApplication creates the application if it does not exist, or
// updates its account SID if it differs (a name changed through the admin
// API is kept). It reports whether it created the application. It does
// not reload.
func (ks *Keystore) EnsureApplication(ctx context.Context, app storage.Application) (created bool, err error) {
	err = ks.store.CreateApplication(ctx, app)
	if !errors.Is(err, storage.ErrAlreadyExists) {
		return err == nil, err
	}
	old, err := ks.store.GetApplication(ctx, app.SID)
	if err != nil {
		return false, err
	}
	if old.AccountSID == app.AccountSID {
		return false, nil
	}
	_, err = ks.store.UpdateApplication(ctx, app.SID, func(old storage.Application) (storage.Application, error) {
		old.AccountSID = app.AccountSID
		return old, nil
	})
	return false, err
}

// SealKey seals secret for (applicationSID, keySID) under the primary
// master key, bound to that row by associated data.
func (ks *Keystore) SealKey(applicationSID, keySID string, secret []byte) (sealed []byte, masterKeyID string, err error) {
	return ks.keyring.Load().Seal(secret, secrets.AssociatedData(applicationSID, keySID))
}

// PutKey adds the key to the application, or, if the application already
// has a key with that SID, replaces its secret. The key is activated when
// activate is true or the application has no active key. It reports
// whether the key was added. It does not reload.
func (ks *Keystore) PutKey(ctx context.Context, applicationSID, keySID string, secret []byte, activate bool) (added bool, err error) {
	sealed, mkID, err := ks.SealKey(applicationSID, keySID, secret)
	if err != nil {
		return false, fmt.Errorf("seal secret of key %s: %w", keySID, err)
	}
	keys, err := ks.store.ListKeys(ctx, applicationSID)
	if err != nil {
		return false, err
	}
	hasActive := false
	for _, k := range keys {
		if k.State == storage.KeyActive {
			hasActive = true
		}
	}
	state := storage.KeyRetired
	if activate || !hasActive {
		state = storage.KeyActive
	}
	err = ks.store.CreateKey(ctx, storage.Key{
		ApplicationSID: applicationSID, SID: keySID,
		SealedSecret: sealed, MasterKeyID: mkID, State: state,
	})
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, storage.ErrAlreadyExists) {
		return false, err
	}
	// The key exists. Its secret is written again only if it changed (or
	// is sealed under another master key than the primary), so that
	// putting the same key again (the seed, at every start) writes
	// nothing and makes no replica reload.
	if !ks.sameSecret(keys, applicationSID, keySID, mkID, secret) {
		if err := ks.store.ResealKeys(ctx, []storage.Sealed{{
			ApplicationSID: applicationSID, SID: keySID, SealedSecret: sealed, MasterKeyID: mkID,
		}}); err != nil {
			return false, err
		}
	}
	if state == storage.KeyActive {
		return false, ks.store.ActivateKey(ctx, applicationSID, keySID)
	}
	return false, nil
}

// sameSecret reports whether keys hold (applicationSID, keySID) sealed
// under master key mkID with this secret.
func (ks *Keystore) sameSecret(keys []storage.Key, applicationSID, keySID, mkID string, secret []byte) bool {
	for _, k := range keys {
		if k.SID != keySID || k.MasterKeyID != mkID {
			continue
		}
		old, err := ks.keyring.Load().Open(k.SealedSecret, k.MasterKeyID, secrets.AssociatedData(applicationSID, keySID))
		if err != nil {
			return false
		}
		same := subtle.ConstantTimeCompare(old, secret) == 1
		clear(old)
		return same
	}
	return false
}

// Watch reloads the view whenever the store's revision moves (a change
// made by another replica or process), checking every interval, until ctx
// ends. Errors are logged and retried at the next tick.
func (ks *Keystore) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rev, err := ks.store.Revision(ctx)
		if err != nil {
			if ctx.Err() == nil {
				ks.storeError("watch", err)
				ks.watchOutage.fail(err)
			}
			continue
		}
		if rev == ks.Revision() {
			ks.watchOutage.ok()
			continue
		}
		if err := ks.Reload(ctx); err != nil {
			if ctx.Err() == nil {
				ks.watchOutage.fail(fmt.Errorf("reload keys after a change in the store: %w", err))
			}
			continue
		}
		ks.watchOutage.ok()
	}
}

// Usage returns when the key last signed and the latest exp it signed, as
// this process knows them (unix seconds, 0 if unknown).
func (ks *Keystore) Usage(applicationSID, keySID string) (lastSigned, outstandingUntil int64) {
	app := ks.Lookup(applicationSID)
	if app == nil {
		return 0, 0
	}
	k := app.Key(keySID)
	if k == nil {
		return 0, 0
	}
	return k.Usage()
}

// FlushUsage writes the signing activity of every key that signed since
// the last flush to the store, so that other replicas and restarts know
// when each key's tokens expire.
func (ks *Keystore) FlushUsage(ctx context.Context) error {
	_, err := ks.flushUsage(ctx)
	return err
}

// flushUsage is FlushUsage; wrote says whether it called the store.
func (ks *Keystore) flushUsage(ctx context.Context) (wrote bool, err error) {
	ks.mu.Lock()
	var usage []storage.KeyUsage
	var marked []int // indexes of v.flushed advanced for this write
	var before []flushState
	v := ks.cur.Load()
	for i := range v.keys {
		r := &v.keys[i]
		last, out := r.Key.Usage()
		if f := &v.flushed[i]; last != f.last || out != f.out {
			usage = append(usage, storage.KeyUsage{
				ApplicationSID: r.App.SID, SID: r.Key.SID(),
				LastSignedAt: time.Unix(last, 0), OutstandingUntil: time.Unix(out, 0),
			})
			marked, before = append(marked, i), append(before, *f)
			f.last, f.out = last, out
		}
	}
	ks.mu.Unlock()
	if len(usage) == 0 {
		return false, nil
	}
	err = ks.store.RecordKeyUsage(ctx, usage)
	ks.storeError("flush", err)
	if err != nil {
		// Not written: mark it unwritten again, so that the next flush
		// retries it. A key's outstanding_until the store never learns
		// could let the provisioner delete the key at Twilio while tokens
		// it signed are still valid. (RecordKeyUsage never lowers a
		// time, so writing again is harmless.) A reload meanwhile copied
		// the marks into a new view: they are put back there.
		ks.mu.Lock()
		cur := ks.cur.Load()
		for j, i := range marked {
			if cur == v {
				v.flushed[i] = before[j]
				continue
			}
			for k := range cur.keys {
				if r := &cur.keys[k]; r.App.SID == v.keys[i].App.SID && r.Key == v.keys[i].Key {
					cur.flushed[k] = before[j]
				}
			}
		}
		ks.mu.Unlock()
	}
	return true, err
}

// FlushUsageEvery calls FlushUsage every interval until ctx ends, and once
// more when it ends.
func (ks *Keystore) FlushUsageEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := ks.FlushUsage(fctx); err != nil {
				ks.log.Error("record key usage at shutdown", "error", err)
			}
			cancel()
			return
		case <-t.C:
			// Nothing to write says nothing of the store: only a write
			// ends an outage.
			switch wrote, err := ks.flushUsage(ctx); {
			case err != nil && ctx.Err() == nil:
				ks.flushOutage.fail(err)
			case wrote && err == nil:
				ks.flushOutage.ok()
			}
		}
	}
}

// Rekey seals every secret that is not under the primary master key again
// under it, in one store transaction, and reloads. It returns how many
// secrets it resealed.
func (ks *Keystore) Rekey(ctx context.Context) (int, error) {
	ks.mu.Lock()
	_, err := ks.refreshKeyring()
	ks.mu.Unlock()
	if err != nil {
		return 0, err
	}
	snap, err := ks.store.Snapshot(ctx)
	if err != nil {
		ks.storeError("rekey", err)
		return 0, fmt.Errorf("read store: %w", err)
	}
	keyring := ks.keyring.Load()
	primary := keyring.Primary().ID
	var sealed []storage.Sealed
	for _, k := range snap.Keys {
		if k.MasterKeyID == primary {
			continue
		}
		ad := secrets.AssociatedData(k.ApplicationSID, k.SID)
		secret, err := keyring.Open(k.SealedSecret, k.MasterKeyID, ad)
		if err != nil {
			return 0, fmt.Errorf("open secret of key %s of application %s: %w", k.SID, k.ApplicationSID, err)
		}
		s, id, err := keyring.Seal(secret, ad)
		clear(secret)
		if err != nil {
			return 0, fmt.Errorf("seal secret of key %s: %w", k.SID, err)
		}
		sealed = append(sealed, storage.Sealed{ApplicationSID: k.ApplicationSID, SID: k.SID, SealedSecret: s, MasterKeyID: id})
	}
	if len(sealed) > 0 {
		if err := ks.store.ResealKeys(ctx, sealed); err != nil {
			ks.storeError("rekey", err)
			return 0, err
		}
	}
	return len(sealed), ks.Reload(ctx)
}
