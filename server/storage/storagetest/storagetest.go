// Package storagetest is the conformance suite of storage.Store: every
// backend runs it from its own test, in a few lines:
//
//	func TestStore(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "tokend.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite checks every documented rule of storage.Store: sentinel errors,
// exact round-trips of bytes and times (to the millisecond), the single
// active key of an application, atomicity of failed writes, the revision
// counter and the consistency of snapshots, including under concurrent use,
// and the same for credentials (credentials.go): unique names and hashes,
// round-trips of hashes and groups, order by name; and the heartbeats of
// replicas (replicas.go): counting, expiry by ttl, removal, validation.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokend/tokend/server/storage"
)

const (
	// timeTolerance is how far a time read back may be from the time that
	// was written: stores keep at least millisecond precision.
	timeTolerance = time.Millisecond
	// clockSlack is how far a time the store sets may fall outside the
	// interval of the call that set it; it absorbs truncation and a store
	// whose clock is not exactly the test's.
	clockSlack = 100 * time.Millisecond
	// tick is long enough for the clock to move past a stored time
	// whatever the store's precision (at least a millisecond).
	tick = 5 * time.Millisecond
)

// cmpOpts compares values read from a store: times within timeTolerance,
// nil and empty slices alike (an empty DefaultGrants means the default,
// whether nil or not).
var cmpOpts = cmp.Options{
	cmpopts.EquateApproxTime(timeTolerance),
	cmpopts.EquateEmpty(),
}

// Run runs the conformance suite against stores made by newStore, one
// subtest after the other. newStore must return a fresh, empty store on
// every call and register its cleanup (Close) with t.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s storage.Store)
	}{
		{"EmptyStore", testEmptyStore},
		{"CreateApplication", testCreateApplication},
		{"CreateApplicationAlreadyExists", testCreateApplicationAlreadyExists},
		{"ListApplications", testListApplications},
		{"DefaultGrants", testDefaultGrants},
		{"UpdateApplication", testUpdateApplication},
		{"UpdateApplicationError", testUpdateApplicationError},
		{"UpdateApplicationConcurrent", testUpdateApplicationConcurrent},
		{"DeleteApplication", testDeleteApplication},
		{"CreateKey", testCreateKey},
		{"CreateKeyErrors", testCreateKeyErrors},
		{"CreateKeyActive", testCreateKeyActive},
		{"KeySIDSharedByApplications", testKeySIDSharedByApplications},
		{"SealedSecret", testSealedSecret},
		{"ListKeys", testListKeys},
		{"ActivateKey", testActivateKey},
		{"DeleteKey", testDeleteKey},
		{"ResealKeys", testResealKeys},
		{"MasterKeyIDs", testMasterKeyIDs},
		{"RecordKeyUsage", testRecordKeyUsage},
		{"TimePrecision", testTimePrecision},
		{"Snapshot", testSnapshot},
		{"ConcurrentActivateKey", testConcurrentActivateKey},
		{"ConcurrentSnapshot", testConcurrentSnapshot},
		{"Credentials", testCredentials},
		{"CredentialAlreadyExists", testCredentialAlreadyExists},
		{"CredentialHash", testCredentialHash},
		{"CredentialGroups", testCredentialGroups},
		{"CredentialInvalid", testCredentialInvalid},
		{"ListCredentialsOrder", testListCredentialsOrder},
		{"CredentialSnapshot", testCredentialSnapshot},
		{"ConcurrentCreateCredential", testConcurrentCreateCredential},
		{"ConcurrentCredentialSnapshot", testConcurrentCredentialSnapshot},
		{"Heartbeat", testHeartbeat},
		{"HeartbeatExpiry", testHeartbeatExpiry},
		{"HeartbeatInvalid", testHeartbeatInvalid},
		{"AckRevision", testAckRevision},
		{"ConcurrentHeartbeat", testConcurrentHeartbeat},
		{"DefaultApplication", testDefaultApplication},
		{"DefaultApplicationDeleted", testDefaultApplicationDeleted},
		{"ConcurrentDefaultApplication", testConcurrentDefaultApplication},
	}
	tests = append(tests, provisioningTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tt.run(t, s)
		})
	}
}

// Fixtures.

func appSID(n int) string     { return fmt.Sprintf("AP%032x", n) }
func keySID(n int) string     { return fmt.Sprintf("SK%032x", n) }
func accountSID(n int) string { return fmt.Sprintf("AC%032x", n) }

// newApp returns a distinct application numbered n. CreatedAt and
// UpdatedAt are set to a date the store must ignore.
func newApp(n int) storage.Application {
	bogus := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	return storage.Application{
		SID:           appSID(n),
		AccountSID:    accountSID(n),
		FriendlyName:  fmt.Sprintf("application %d ☎ 'quoted' \"too\"", n),
		DefaultGrants: []byte(fmt.Sprintf(`{"voice":{"outgoing":{"applicationSid":%q}}}`, appSID(n))),
		MaxTTLSeconds: int32(3600 + n),
		Region:        "ie1",
		CreatedAt:     bogus,
		UpdatedAt:     bogus,
	}
}

// sealedSecret returns distinct binary bytes for a key, with a NUL, a
// 0xff and invalid UTF-8 in them.
func sealedSecret(app string, n int, version string) []byte {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d/%s", app, n, version)))
	return append([]byte{0x00, 0xff, 0xc3, 0x28}, sum[:]...)
}

// newKey returns key n of application app in the given state. CreatedAt
// and ActivatedAt are set to a date the store must ignore (ActivatedAt
// only for an active key; a retired key is created never activated).
func newKey(app string, n int, state storage.KeyState) storage.Key {
	k := storage.Key{
		ApplicationSID: app,
		SID:            keySID(n),
		SealedSecret:   sealedSecret(app, n, "v1"),
		MasterKeyID:    "master-1",
		State:          state,
		CreatedAt:      time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC),
	}
	if state == storage.KeyActive {
		k.ActivatedAt = k.CreatedAt
	}
	return k
}

// Helpers.

func errName(err error) string {
	switch err {
	case storage.ErrNotFound:
		return "storage.ErrNotFound"
	case storage.ErrAlreadyExists:
		return "storage.ErrAlreadyExists"
	case storage.ErrConflict:
		return "storage.ErrConflict"
	case nil:
		return "nil"
	}
	return fmt.Sprintf("%q", err)
}

// checkErr checks that err matches want with errors.Is; call describes
// the call that returned err.
func checkErr(t *testing.T, err, want error, call string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %s", call, err, errName(want))
	}
}

// checkStoreTime checks that a time the store set during [before, after]
// is within that interval, give or take clockSlack.
func checkStoreTime(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.IsZero() {
		t.Errorf("%s is zero, want a time in [%v, %v]", what, before, after)
		return
	}
	if got.Before(before.Add(-clockSlack)) || got.After(after.Add(clockSlack)) {
		t.Errorf("%s = %v, want a time in [%v, %v]", what, got, before, after)
	}
}

// checkNoSecret checks that the text of err reveals no sealed secret.
func checkNoSecret(t *testing.T, err error, call string, secret []byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, form := range []string{
		string(secret),
		string(secret[4:]), // the printable-ish tail of sealedSecret
		hex.EncodeToString(secret),
		hex.EncodeToString(secret[4:]),
		base64.StdEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
		fmt.Sprint(secret[4:]),
		fmt.Sprintf("%x", secret[4:]),
		fmt.Sprintf("%q", secret[4:]),
	} {
		if strings.Contains(msg, form) {
			t.Errorf("%s = %q, which reveals the sealed secret", call, msg)
			return
		}
	}
}

func revision(t *testing.T, s storage.Store) int64 {
	t.Helper()
	rev, err := s.Revision(t.Context())
	if err != nil {
		t.Fatalf("Revision() = %v", err)
	}
	return rev
}

// revisions follows the revision of a store across calls.
type revisions struct {
	s    storage.Store
	last int64
}

func trackRevisions(t *testing.T, s storage.Store) *revisions {
	t.Helper()
	return &revisions{s: s, last: revision(t, s)}
}

// advanced checks that the revision grew since the last check.
func (r *revisions) advanced(t *testing.T, call string) {
	t.Helper()
	rev := revision(t, r.s)
	if rev <= r.last {
		t.Errorf("Revision() after %s = %d, want > %d", call, rev, r.last)
	}
	r.last = rev
}

// unchanged checks that the revision did not move since the last check.
func (r *revisions) unchanged(t *testing.T, call string) {
	t.Helper()
	rev := revision(t, r.s)
	if rev != r.last {
		t.Errorf("Revision() after %s = %d, want %d (unchanged)", call, rev, r.last)
	}
	r.last = rev
}

// notLowered checks that the revision did not go back since the last
// check, for writes the contract lets advance it or not.
func (r *revisions) notLowered(t *testing.T, call string) {
	t.Helper()
	rev := revision(t, r.s)
	if rev < r.last {
		t.Errorf("Revision() after %s = %d, want >= %d", call, rev, r.last)
	}
	r.last = rev
}

func getApplication(t *testing.T, s storage.Store, sid string) storage.Application {
	t.Helper()
	app, err := s.GetApplication(t.Context(), sid)
	if err != nil {
		t.Fatalf("GetApplication(%q) = %v, want nil error", sid, err)
	}
	return app
}

func getKey(t *testing.T, s storage.Store, app, sid string) storage.Key {
	t.Helper()
	key, err := s.GetKey(t.Context(), app, sid)
	if err != nil {
		t.Fatalf("GetKey(%q, %q) = %v, want nil error", app, sid, err)
	}
	return key
}

func listKeys(t *testing.T, s storage.Store, app string) []storage.Key {
	t.Helper()
	keys, err := s.ListKeys(t.Context(), app)
	if err != nil {
		t.Fatalf("ListKeys(%q) = %v, want nil error", app, err)
	}
	return keys
}

// checkApplication checks that GetApplication returns want.
func checkApplication(t *testing.T, s storage.Store, want storage.Application) {
	t.Helper()
	got := getApplication(t, s, want.SID)
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("GetApplication(%q) mismatch (-want +got):\n%s", want.SID, diff)
	}
}

// checkKey checks that GetKey returns want.
func checkKey(t *testing.T, s storage.Store, want storage.Key) {
	t.Helper()
	got := getKey(t, s, want.ApplicationSID, want.SID)
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("GetKey(%q, %q) mismatch (-want +got):\n%s", want.ApplicationSID, want.SID, diff)
	}
}

// checkKeys checks that ListKeys returns want, in that order.
func checkKeys(t *testing.T, s storage.Store, app string, want []storage.Key) {
	t.Helper()
	got := listKeys(t, s, app)
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("ListKeys(%q) mismatch (-want +got):\n%s", app, diff)
	}
}

// createApplication creates app, checks what GetApplication then returns
// and returns it.
func createApplication(t *testing.T, s storage.Store, app storage.Application) storage.Application {
	t.Helper()
	before := time.Now()
	if err := s.CreateApplication(t.Context(), app); err != nil {
		t.Fatalf("CreateApplication(%q) = %v, want nil error", app.SID, err)
	}
	after := time.Now()
	got := getApplication(t, s, app.SID)
	checkStoreTime(t, fmt.Sprintf("GetApplication(%q).CreatedAt", app.SID), got.CreatedAt, before, after)
	checkStoreTime(t, fmt.Sprintf("GetApplication(%q).UpdatedAt", app.SID), got.UpdatedAt, before, after)
	if got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("GetApplication(%q).UpdatedAt = %v, before CreatedAt %v", app.SID, got.UpdatedAt, got.CreatedAt)
	}
	want := app
	want.CreatedAt = got.CreatedAt
	want.UpdatedAt = got.UpdatedAt
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("GetApplication(%q) after CreateApplication mismatch (-want +got):\n%s", app.SID, diff)
	}
	return got
}

// createKey creates key, checks what GetKey then returns and returns it.
func createKey(t *testing.T, s storage.Store, key storage.Key) storage.Key {
	t.Helper()
	before := time.Now()
	if err := s.CreateKey(t.Context(), key); err != nil {
		t.Fatalf("CreateKey(%q, %q) = %v, want nil error", key.ApplicationSID, key.SID, err)
	}
	after := time.Now()
	got := getKey(t, s, key.ApplicationSID, key.SID)
	call := fmt.Sprintf("GetKey(%q, %q)", key.ApplicationSID, key.SID)
	checkStoreTime(t, call+".CreatedAt", got.CreatedAt, before, after)
	want := key
	want.CreatedAt = got.CreatedAt
	if key.State == storage.KeyActive {
		checkStoreTime(t, call+".ActivatedAt", got.ActivatedAt, before, after)
		want.ActivatedAt = got.ActivatedAt
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("%s after CreateKey mismatch (-want +got):\n%s", call, diff)
	}
	return got
}

// checkActive checks that the only active key of app is want, or that it
// has no active key if want is empty, and that every key is either active
// or retired.
func checkActive(t *testing.T, s storage.Store, app, want string) {
	t.Helper()
	var active []string
	for _, k := range listKeys(t, s, app) {
		switch k.State {
		case storage.KeyActive:
			active = append(active, k.SID)
		case storage.KeyRetired:
		default:
			t.Errorf("ListKeys(%q): key %q has state %q, want %q or %q", app, k.SID, k.State, storage.KeyActive, storage.KeyRetired)
		}
	}
	var wantActive []string
	if want != "" {
		wantActive = []string{want}
	}
	if diff := cmp.Diff(wantActive, active, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("active keys in ListKeys(%q) mismatch (-want +got):\n%s", app, diff)
	}
}

// activeKeys returns the active keys per application, for an invariant
// check on a whole snapshot.
func activeKeys(keys []storage.Key) map[string][]string {
	active := make(map[string][]string)
	for _, k := range keys {
		if k.State == storage.KeyActive {
			active[k.ApplicationSID] = append(active[k.ApplicationSID], k.SID)
		}
	}
	return active
}

func compareApplications(a, b storage.Application) int { return strings.Compare(a.SID, b.SID) }

func compareKeys(a, b storage.Key) int {
	if c := strings.Compare(a.ApplicationSID, b.ApplicationSID); c != 0 {
		return c
	}
	return strings.Compare(a.SID, b.SID)
}

func compareCredentials(a, b storage.Credential) int { return strings.Compare(a.Name, b.Name) }

// sortedSnapshot returns snap with applications and keys in a canonical
// order (Snapshot documents none for them; credentials are documented to
// be ordered by name, which checkSnapshot checks).
func sortedSnapshot(snap storage.Snapshot) storage.Snapshot {
	snap.Applications = slices.SortedFunc(slices.Values(snap.Applications), compareApplications)
	snap.Keys = slices.SortedFunc(slices.Values(snap.Keys), compareKeys)
	snap.Credentials = slices.SortedFunc(slices.Values(snap.Credentials), compareCredentials)
	return snap
}

// checkSnapshot checks that Snapshot agrees with Revision, ListApplications,
// ListKeys and ListCredentials, that none of these reads moved the revision,
// that no application has two active keys and that credentials are ordered
// by name. It returns the snapshot.
func checkSnapshot(t *testing.T, s storage.Store) storage.Snapshot {
	t.Helper()
	ctx := t.Context()
	before := revision(t, s)
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot() = %v, want nil error", err)
	}
	if snap.Revision != before {
		t.Errorf("Snapshot().Revision = %d, want %d (from Revision())", snap.Revision, before)
	}
	apps, err := s.ListApplications(ctx)
	if err != nil {
		t.Fatalf("ListApplications() = %v, want nil error", err)
	}
	var keys []storage.Key
	for _, app := range apps {
		keys = append(keys, listKeys(t, s, app.SID)...)
	}
	creds, err := s.ListCredentials(ctx)
	if err != nil {
		t.Fatalf("ListCredentials() = %v, want nil error", err)
	}
	if !slices.IsSortedFunc(snap.Credentials, compareCredentials) {
		t.Errorf("Snapshot().Credentials not ordered by name: %q", credentialNames(snap.Credentials))
	}
	def, err := s.DefaultApplication(ctx)
	if err != nil {
		t.Fatalf("DefaultApplication() = %v, want nil error", err)
	}
	want := sortedSnapshot(storage.Snapshot{Applications: apps, Keys: keys, Credentials: creds, DefaultApplication: def, Revision: before})
	if diff := cmp.Diff(want, sortedSnapshot(snap), cmpOpts); diff != "" {
		t.Errorf("Snapshot() disagrees with ListApplications, ListKeys and ListCredentials (-lists +snapshot):\n%s", diff)
	}
	for app, active := range activeKeys(snap.Keys) {
		if len(active) > 1 {
			t.Errorf("Snapshot(): application %q has active keys %q, want at most one", app, active)
		}
	}
	if after := revision(t, s); after != before {
		t.Errorf("Revision() = %d after Snapshot, ListApplications and ListKeys, want %d (reads do not advance it)", after, before)
	}
	return snap
}

// Tests.

func testEmptyStore(t *testing.T, s storage.Store) {
	ctx := t.Context()
	revs := trackRevisions(t, s)

	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
	apps, err := s.ListApplications(ctx)
	if err != nil || len(apps) != 0 {
		t.Errorf("ListApplications() = %v, %v, want no applications", apps, err)
	}
	snap := checkSnapshot(t, s)
	if len(snap.Applications) != 0 || len(snap.Keys) != 0 {
		t.Errorf("Snapshot() = %+v, want no applications and no keys", snap)
	}

	app, key := appSID(1), keySID(1)
	_, err = s.GetApplication(ctx, app)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetApplication(%q)", app))
	called := false
	_, err = s.UpdateApplication(ctx, app, func(a storage.Application) (storage.Application, error) {
		called = true
		return a, nil
	})
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("UpdateApplication(%q)", app))
	if called {
		t.Errorf("UpdateApplication(%q) called update for a missing application", app)
	}
	checkErr(t, s.DeleteApplication(ctx, app), storage.ErrNotFound, fmt.Sprintf("DeleteApplication(%q)", app))
	_, err = s.GetKey(ctx, app, key)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q)", app, key))
	_, err = s.ListKeys(ctx, app)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("ListKeys(%q)", app))
	checkErr(t, s.ActivateKey(ctx, app, key), storage.ErrNotFound, fmt.Sprintf("ActivateKey(%q, %q)", app, key))
	checkErr(t, s.DeleteKey(ctx, app, key), storage.ErrNotFound, fmt.Sprintf("DeleteKey(%q, %q)", app, key))
	creds, err := s.ListCredentials(ctx)
	if err != nil || len(creds) != 0 {
		t.Errorf("ListCredentials() = %v, %v, want no credentials", creds, err)
	}
	checkErr(t, s.DeleteCredential(ctx, credName(1)), storage.ErrNotFound, fmt.Sprintf("DeleteCredential(%q)", credName(1)))
	revs.unchanged(t, "reads and failed writes")

	if err := s.RecordKeyUsage(ctx, []storage.KeyUsage{{ApplicationSID: app, SID: key, LastSignedAt: time.Now(), OutstandingUntil: time.Now()}}); err != nil {
		t.Errorf("RecordKeyUsage(missing key) = %v, want nil (missing keys are skipped)", err)
	}
	revs.unchanged(t, "RecordKeyUsage")
	if err := s.ResealKeys(ctx, []storage.Sealed{{ApplicationSID: app, SID: key, SealedSecret: []byte("x"), MasterKeyID: "m"}}); err != nil {
		t.Errorf("ResealKeys(missing key) = %v, want nil (missing keys are skipped)", err)
	}
	revs.notLowered(t, "ResealKeys")
	_, err = s.GetKey(ctx, app, key)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q) after ResealKeys and RecordKeyUsage", app, key))

	snap = checkSnapshot(t, s)
	if len(snap.Applications) != 0 || len(snap.Keys) != 0 || len(snap.Credentials) != 0 {
		t.Errorf("Snapshot() = %+v, want no applications, no keys and no credentials", snap)
	}
}

func testCreateApplication(t *testing.T, s storage.Store) {
	revs := trackRevisions(t, s)
	app := newApp(1)
	stored := createApplication(t, s, app)
	revs.advanced(t, "CreateApplication")

	// The store keeps its own copy of the application.
	app.DefaultGrants[0] = 'X'
	app.FriendlyName = "changed by the caller"
	checkApplication(t, s, stored)
	got := getApplication(t, s, stored.SID)
	got.DefaultGrants[0] = 'Y'
	checkApplication(t, s, stored)

	// A second application with zero values everywhere the contract allows.
	zero := storage.Application{SID: appSID(2), AccountSID: accountSID(2)}
	createApplication(t, s, zero)
	revs.advanced(t, "CreateApplication")
	checkApplication(t, s, stored)
	revs.unchanged(t, "GetApplication")
	checkSnapshot(t, s)
}

func testCreateApplicationAlreadyExists(t *testing.T, s storage.Store) {
	ctx := t.Context()
	stored := createApplication(t, s, newApp(1))
	revs := trackRevisions(t, s)

	dup := newApp(2)
	dup.SID = stored.SID
	err := s.CreateApplication(ctx, dup)
	checkErr(t, err, storage.ErrAlreadyExists, fmt.Sprintf("CreateApplication(%q) again", dup.SID))
	revs.unchanged(t, "failed CreateApplication")
	checkApplication(t, s, stored)
	apps, err := s.ListApplications(ctx)
	if err != nil || len(apps) != 1 {
		t.Errorf("ListApplications() = %d applications, %v, want 1", len(apps), err)
	}
	checkSnapshot(t, s)
}

func testListApplications(t *testing.T, s storage.Store) {
	ctx := t.Context()
	revs := trackRevisions(t, s)
	var want []storage.Application
	for _, n := range []int{0x30, 0x10, 0xff, 0x20, 0x1} {
		want = append(want, createApplication(t, s, newApp(n)))
		revs.advanced(t, "CreateApplication")
	}
	slices.SortFunc(want, compareApplications)
	got, err := s.ListApplications(ctx)
	if err != nil {
		t.Fatalf("ListApplications() = %v, want nil error", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("ListApplications() mismatch, want all ordered by SID (-want +got):\n%s", diff)
	}
	revs.unchanged(t, "ListApplications")
	checkSnapshot(t, s)
}

func testDefaultGrants(t *testing.T, s storage.Store) {
	ctx := t.Context()
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	large := bytes.Repeat([]byte(`{"voice":{"incoming":{"allow":true}}}`), 2000)
	cases := []struct {
		name   string
		grants []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"emptyObject", []byte(`{}`)},
		{"json", []byte(`{"voice":{"outgoing":{"applicationSid":"AP00","params":{"a":"b"}}},"identity":"ü"}`)},
		{"nul", []byte{0}},
		{"allBytes", allBytes},
		{"invalidUTF8", []byte{0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1}},
		{"trailingSpace", []byte("{} \n\t ")},
		{"large", large},
	}
	checkGrants := func(t *testing.T, call string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s.DefaultGrants = %q, want %q", call, got, want)
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			app := newApp(i + 1)
			app.DefaultGrants = bytes.Clone(c.grants)
			createApplication(t, s, app)
			got := getApplication(t, s, app.SID)
			checkGrants(t, fmt.Sprintf("GetApplication(%q)", app.SID), got.DefaultGrants, c.grants)

			apps, err := s.ListApplications(ctx)
			if err != nil {
				t.Fatalf("ListApplications() = %v", err)
			}
			idx := slices.IndexFunc(apps, func(a storage.Application) bool { return a.SID == app.SID })
			if idx < 0 {
				t.Fatalf("ListApplications() lacks %q", app.SID)
			}
			checkGrants(t, "ListApplications()", apps[idx].DefaultGrants, c.grants)

			// Through UpdateApplication: to other bytes and back.
			other := []byte(`{"chat":{"serviceSid":"IS00"}}`)
			for _, grants := range [][]byte{other, c.grants} {
				updated, err := s.UpdateApplication(ctx, app.SID, func(a storage.Application) (storage.Application, error) {
					a.DefaultGrants = bytes.Clone(grants)
					return a, nil
				})
				if err != nil {
					t.Fatalf("UpdateApplication(%q) = %v, want nil error", app.SID, err)
				}
				checkGrants(t, fmt.Sprintf("UpdateApplication(%q)", app.SID), updated.DefaultGrants, grants)
				got := getApplication(t, s, app.SID)
				checkGrants(t, fmt.Sprintf("GetApplication(%q) after UpdateApplication", app.SID), got.DefaultGrants, grants)
			}
		})
	}
	snap := checkSnapshot(t, s)
	for i, c := range cases {
		idx := slices.IndexFunc(snap.Applications, func(a storage.Application) bool { return a.SID == appSID(i+1) })
		if idx < 0 {
			t.Errorf("Snapshot() lacks application %q", appSID(i+1))
			continue
		}
		checkGrants(t, fmt.Sprintf("Snapshot() application %q", appSID(i+1)), snap.Applications[idx].DefaultGrants, c.grants)
	}
}

func testUpdateApplication(t *testing.T, s storage.Store) {
	ctx := t.Context()
	stored := createApplication(t, s, newApp(1))
	other := createApplication(t, s, newApp(2))
	revs := trackRevisions(t, s)
	time.Sleep(tick)

	calls := 0
	var seen storage.Application
	before := time.Now()
	got, err := s.UpdateApplication(ctx, stored.SID, func(a storage.Application) (storage.Application, error) {
		calls++
		seen = a
		a.SID = appSID(99)
		a.CreatedAt = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
		a.UpdatedAt = time.Date(2002, 1, 1, 0, 0, 0, 0, time.UTC)
		a.AccountSID = accountSID(7)
		a.FriendlyName = "renamed"
		a.DefaultGrants = []byte(`{"chat":{}}`)
		a.MaxTTLSeconds = 600
		a.Region = "us1"
		return a, nil
	})
	after := time.Now()
	if err != nil {
		t.Fatalf("UpdateApplication(%q) = %v, want nil error", stored.SID, err)
	}
	revs.advanced(t, "UpdateApplication")
	if calls < 1 {
		t.Errorf("UpdateApplication(%q) called update %d times, want at least once", stored.SID, calls)
	}
	if diff := cmp.Diff(stored, seen, cmpOpts); diff != "" {
		t.Errorf("UpdateApplication(%q) passed update a different application (-stored +passed):\n%s", stored.SID, diff)
	}
	checkStoreTime(t, fmt.Sprintf("UpdateApplication(%q).UpdatedAt", stored.SID), got.UpdatedAt, before, after)
	if !got.UpdatedAt.After(stored.UpdatedAt) {
		t.Errorf("UpdateApplication(%q).UpdatedAt = %v, want after the previous %v", stored.SID, got.UpdatedAt, stored.UpdatedAt)
	}
	want := storage.Application{
		SID:           stored.SID,
		AccountSID:    accountSID(7),
		FriendlyName:  "renamed",
		DefaultGrants: []byte(`{"chat":{}}`),
		MaxTTLSeconds: 600,
		Region:        "us1",
		CreatedAt:     stored.CreatedAt,
		UpdatedAt:     got.UpdatedAt,
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("UpdateApplication(%q) mismatch, want SID and CreatedAt unchanged (-want +got):\n%s", stored.SID, diff)
	}
	checkApplication(t, s, got)
	_, err = s.GetApplication(ctx, appSID(99))
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetApplication(%q) (the SID update tried to set)", appSID(99)))
	checkApplication(t, s, other)

	// Clearing fields is an update like any other.
	time.Sleep(tick)
	cleared, err := s.UpdateApplication(ctx, stored.SID, func(a storage.Application) (storage.Application, error) {
		a.FriendlyName, a.DefaultGrants, a.MaxTTLSeconds, a.Region = "", nil, 0, ""
		return a, nil
	})
	if err != nil {
		t.Fatalf("UpdateApplication(%q) = %v, want nil error", stored.SID, err)
	}
	revs.advanced(t, "UpdateApplication")
	if !cleared.UpdatedAt.After(got.UpdatedAt) {
		t.Errorf("UpdateApplication(%q).UpdatedAt = %v, want after the previous %v", stored.SID, cleared.UpdatedAt, got.UpdatedAt)
	}
	want = storage.Application{SID: stored.SID, AccountSID: accountSID(7), CreatedAt: stored.CreatedAt, UpdatedAt: cleared.UpdatedAt}
	if diff := cmp.Diff(want, cleared, cmpOpts); diff != "" {
		t.Errorf("UpdateApplication(%q) mismatch (-want +got):\n%s", stored.SID, diff)
	}
	checkApplication(t, s, want)
	checkSnapshot(t, s)
}

func testUpdateApplicationError(t *testing.T, s storage.Store) {
	ctx := t.Context()
	stored := createApplication(t, s, newApp(1))
	revs := trackRevisions(t, s)

	errRefused := errors.New("update refused")
	_, err := s.UpdateApplication(ctx, stored.SID, func(a storage.Application) (storage.Application, error) {
		a.FriendlyName = "must not be written"
		a.MaxTTLSeconds = 1
		return a, errRefused
	})
	if !errors.Is(err, errRefused) {
		t.Errorf("UpdateApplication(%q) with a failing update = %v, want %v", stored.SID, err, errRefused)
	}
	revs.unchanged(t, "failed UpdateApplication")
	checkApplication(t, s, stored)

	// An update returning a sentinel error: it must come back unchanged in
	// meaning, not be taken for the store's own.
	_, err = s.UpdateApplication(ctx, stored.SID, func(a storage.Application) (storage.Application, error) {
		return storage.Application{}, fmt.Errorf("policy: %w", storage.ErrConflict)
	})
	checkErr(t, err, storage.ErrConflict, fmt.Sprintf("UpdateApplication(%q) with an update returning ErrConflict", stored.SID))
	revs.unchanged(t, "failed UpdateApplication")
	checkApplication(t, s, stored)
	checkSnapshot(t, s)
}

func testUpdateApplicationConcurrent(t *testing.T, s storage.Store) {
	ctx := t.Context()
	stored := createApplication(t, s, newApp(1))
	startRev := revision(t, s)
	const workers, updates = 8, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range updates {
				_, err := s.UpdateApplication(ctx, stored.SID, func(a storage.Application) (storage.Application, error) {
					a.MaxTTLSeconds++
					return a, nil
				})
				if err != nil {
					t.Errorf("UpdateApplication(%q) = %v, want nil error", stored.SID, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := getApplication(t, s, stored.SID)
	if want := stored.MaxTTLSeconds + workers*updates; got.MaxTTLSeconds != want {
		t.Errorf("GetApplication(%q).MaxTTLSeconds = %d after %d concurrent increments from %d, want %d (lost updates)",
			stored.SID, got.MaxTTLSeconds, workers*updates, stored.MaxTTLSeconds, want)
	}
	if rev := revision(t, s); rev < startRev+workers*updates {
		t.Errorf("Revision() = %d after %d writes from %d, want at least %d (strictly increasing)", rev, workers*updates, startRev, startRev+workers*updates)
	}
	checkSnapshot(t, s)
}

func testDeleteApplication(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app1 := createApplication(t, s, newApp(1))
	app2 := createApplication(t, s, newApp(2))
	createKey(t, s, newKey(app1.SID, 1, storage.KeyActive))
	createKey(t, s, newKey(app1.SID, 2, storage.KeyRetired))
	keys2 := []storage.Key{createKey(t, s, newKey(app2.SID, 1, storage.KeyActive))}
	revs := trackRevisions(t, s)

	if err := s.DeleteApplication(ctx, app1.SID); err != nil {
		t.Fatalf("DeleteApplication(%q) = %v, want nil error", app1.SID, err)
	}
	revs.advanced(t, "DeleteApplication")
	_, err := s.GetApplication(ctx, app1.SID)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetApplication(%q) after DeleteApplication", app1.SID))
	for _, n := range []int{1, 2} {
		_, err := s.GetKey(ctx, app1.SID, keySID(n))
		checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q) after DeleteApplication", app1.SID, keySID(n)))
	}
	_, err = s.ListKeys(ctx, app1.SID)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("ListKeys(%q) after DeleteApplication", app1.SID))
	checkApplication(t, s, app2)
	checkKeys(t, s, app2.SID, keys2)
	snap := checkSnapshot(t, s)
	for _, k := range snap.Keys {
		if k.ApplicationSID == app1.SID {
			t.Errorf("Snapshot() after DeleteApplication(%q) still has key %q", app1.SID, k.SID)
		}
	}

	checkErr(t, s.DeleteApplication(ctx, app1.SID), storage.ErrNotFound, fmt.Sprintf("DeleteApplication(%q) again", app1.SID))
	revs.unchanged(t, "failed DeleteApplication")

	// Created again, the application starts with no keys.
	createApplication(t, s, newApp(1))
	revs.advanced(t, "CreateApplication")
	checkKeys(t, s, app1.SID, nil)
	createKey(t, s, newKey(app1.SID, 2, storage.KeyActive))
	checkActive(t, s, app1.SID, keySID(2))
	checkActive(t, s, app2.SID, keySID(1))
	checkSnapshot(t, s)
}

func testCreateKey(t *testing.T, s storage.Store) {
	app := createApplication(t, s, newApp(1))
	revs := trackRevisions(t, s)

	key := newKey(app.SID, 1, storage.KeyRetired)
	k1 := createKey(t, s, key)
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, "")
	checkKeys(t, s, app.SID, []storage.Key{k1})

	// The store keeps its own copy of the secret.
	key.SealedSecret[5] ^= 0xff
	checkKey(t, s, k1)
	got := getKey(t, s, app.SID, k1.SID)
	got.SealedSecret[5] ^= 0xff
	checkKey(t, s, k1)
	revs.unchanged(t, "GetKey and ListKeys")

	k2 := createKey(t, s, newKey(app.SID, 2, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, k2.SID)
	checkKey(t, s, k1)
	checkSnapshot(t, s)
}

func testCreateKeyErrors(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	k1 := createKey(t, s, newKey(app.SID, 1, storage.KeyActive))
	k2 := createKey(t, s, newKey(app.SID, 2, storage.KeyRetired))
	revs := trackRevisions(t, s)

	// Unknown application.
	missing := newKey(appSID(9), 3, storage.KeyActive)
	err := s.CreateKey(ctx, missing)
	call := fmt.Sprintf("CreateKey(%q, %q)", missing.ApplicationSID, missing.SID)
	checkErr(t, err, storage.ErrNotFound, call+" on a missing application")
	checkNoSecret(t, err, call, missing.SealedSecret)
	revs.unchanged(t, "failed CreateKey")
	_, err = s.GetApplication(ctx, missing.ApplicationSID)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetApplication(%q) after a failed CreateKey", missing.ApplicationSID))
	_, err = s.GetKey(ctx, missing.ApplicationSID, missing.SID)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q) after a failed CreateKey", missing.ApplicationSID, missing.SID))

	// Duplicates, active or not, change nothing: in particular a duplicate
	// created active does not retire the active key.
	for _, dup := range []storage.Key{
		newKey(app.SID, 1, storage.KeyActive),
		newKey(app.SID, 1, storage.KeyRetired),
		newKey(app.SID, 2, storage.KeyActive),
		newKey(app.SID, 2, storage.KeyRetired),
	} {
		dup.SealedSecret = sealedSecret(app.SID, 1, "duplicate")
		dup.MasterKeyID = "master-duplicate"
		err := s.CreateKey(ctx, dup)
		call := fmt.Sprintf("CreateKey(%q, %q) again as %s", dup.ApplicationSID, dup.SID, dup.State)
		checkErr(t, err, storage.ErrAlreadyExists, call)
		checkNoSecret(t, err, call, dup.SealedSecret)
		revs.unchanged(t, "failed CreateKey")
		checkKey(t, s, k1)
		checkKey(t, s, k2)
		checkActive(t, s, app.SID, k1.SID)
	}
	checkKeys(t, s, app.SID, []storage.Key{k1, k2})
	checkSnapshot(t, s)
}

func testCreateKeyActive(t *testing.T, s storage.Store) {
	app := createApplication(t, s, newApp(1))
	revs := trackRevisions(t, s)

	k1 := createKey(t, s, newKey(app.SID, 1, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, k1.SID)

	time.Sleep(tick)
	k2 := createKey(t, s, newKey(app.SID, 2, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, k2.SID)
	if !k2.ActivatedAt.After(k1.ActivatedAt) {
		t.Errorf("GetKey(%q, %q).ActivatedAt = %v, want after %v", app.SID, k2.SID, k2.ActivatedAt, k1.ActivatedAt)
	}
	// The previous active key is retired; nothing else about it changes.
	k1.State = storage.KeyRetired
	checkKey(t, s, k1)

	k3 := createKey(t, s, newKey(app.SID, 3, storage.KeyRetired))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, k2.SID)

	k4 := createKey(t, s, newKey(app.SID, 4, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, k4.SID)
	k2.State = storage.KeyRetired
	checkKeys(t, s, app.SID, []storage.Key{k1, k2, k3, k4})
	checkSnapshot(t, s)
}

func testKeySIDSharedByApplications(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app1 := createApplication(t, s, newApp(1))
	app2 := createApplication(t, s, newApp(2))
	revs := trackRevisions(t, s)

	a1 := createKey(t, s, newKey(app1.SID, 1, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	shared := newKey(app2.SID, 1, storage.KeyActive)
	shared.MasterKeyID = "master-2"
	a2 := createKey(t, s, shared)
	revs.advanced(t, "CreateKey")
	checkKey(t, s, a1)
	checkActive(t, s, app1.SID, a1.SID)
	checkActive(t, s, app2.SID, a2.SID)

	// Both applications get a second key with one SID; activating it in one
	// application leaves the other alone.
	b1 := createKey(t, s, newKey(app1.SID, 2, storage.KeyRetired))
	b2 := createKey(t, s, newKey(app2.SID, 2, storage.KeyRetired))
	revs.advanced(t, "CreateKey")
	if err := s.ActivateKey(ctx, app1.SID, b1.SID); err != nil {
		t.Fatalf("ActivateKey(%q, %q) = %v, want nil error", app1.SID, b1.SID, err)
	}
	revs.advanced(t, "ActivateKey")
	checkActive(t, s, app1.SID, b1.SID)
	checkActive(t, s, app2.SID, a2.SID)
	checkKey(t, s, b2)

	// Deleting the now retired key in one application leaves the other's.
	if err := s.DeleteKey(ctx, app1.SID, a1.SID); err != nil {
		t.Fatalf("DeleteKey(%q, %q) = %v, want nil error", app1.SID, a1.SID, err)
	}
	revs.advanced(t, "DeleteKey")
	checkKey(t, s, a2)
	checkActive(t, s, app2.SID, a2.SID)

	// Resealing and recording usage of one touch only that one.
	sealed := storage.Sealed{ApplicationSID: app2.SID, SID: b2.SID, SealedSecret: sealedSecret(app2.SID, 2, "v2"), MasterKeyID: "master-3"}
	if err := s.ResealKeys(ctx, []storage.Sealed{sealed}); err != nil {
		t.Fatalf("ResealKeys = %v, want nil error", err)
	}
	revs.advanced(t, "ResealKeys")
	signed := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.RecordKeyUsage(ctx, []storage.KeyUsage{{ApplicationSID: app2.SID, SID: b2.SID, LastSignedAt: signed, OutstandingUntil: signed.Add(time.Hour)}}); err != nil {
		t.Fatalf("RecordKeyUsage = %v, want nil error", err)
	}
	revs.unchanged(t, "RecordKeyUsage")
	b1.State, b1.ActivatedAt = storage.KeyActive, getKey(t, s, app1.SID, b1.SID).ActivatedAt
	checkKey(t, s, b1)
	b2.SealedSecret, b2.MasterKeyID = sealed.SealedSecret, sealed.MasterKeyID
	b2.LastSignedAt, b2.OutstandingUntil = signed, signed.Add(time.Hour)
	checkKey(t, s, b2)
	checkSnapshot(t, s)
}

func testSealedSecret(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(255 - i)
	}
	cases := []struct {
		secret   []byte
		masterID string
	}{
		{[]byte{0}, "m"},
		{allBytes, "master-2026-01"},
		{[]byte{0xc3, 0x28, 0x00, 0x00, 0xff}, "ünïcödé ☃"},
		{bytes.Repeat([]byte{0xab, 0x00, 0xcd}, 4096), `quote ' and " and ;-- and \`},
		{[]byte("  leading and trailing spaces  "), " padded "},
	}
	var want []storage.Key
	for i, c := range cases {
		key := newKey(app.SID, i+1, storage.KeyRetired)
		key.SealedSecret = bytes.Clone(c.secret)
		key.MasterKeyID = c.masterID
		stored := createKey(t, s, key)
		if !bytes.Equal(stored.SealedSecret, c.secret) || stored.MasterKeyID != c.masterID {
			t.Errorf("GetKey(%q, %q) = sealed %x by %q, want %x by %q", app.SID, key.SID, stored.SealedSecret, stored.MasterKeyID, c.secret, c.masterID)
		}
		want = append(want, stored)
	}
	checkKeys(t, s, app.SID, want)
	snap := checkSnapshot(t, s)
	if diff := cmp.Diff(want, sortedSnapshot(snap).Keys, cmpOpts); diff != "" {
		t.Errorf("Snapshot().Keys mismatch (-want +got):\n%s", diff)
	}

	// Resealed bytes round-trip as exactly.
	var sealed []storage.Sealed
	for i, c := range cases {
		sealed = append(sealed, storage.Sealed{
			ApplicationSID: app.SID,
			SID:            keySID(i + 1),
			SealedSecret:   append(bytes.Clone(c.secret), 0x00),
			MasterKeyID:    c.masterID + "/2",
		})
	}
	if err := s.ResealKeys(ctx, sealed); err != nil {
		t.Fatalf("ResealKeys = %v, want nil error", err)
	}
	for i, sl := range sealed {
		want[i].SealedSecret, want[i].MasterKeyID = sl.SealedSecret, sl.MasterKeyID
		checkKey(t, s, want[i])
	}
}

func testListKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	empty := createApplication(t, s, newApp(2))
	revs := trackRevisions(t, s)

	keys, err := s.ListKeys(ctx, empty.SID)
	if err != nil || len(keys) != 0 {
		t.Errorf("ListKeys(%q) = %v, %v, want no keys and nil error", empty.SID, keys, err)
	}

	// Ordered by CreatedAt, not by SID.
	var want []storage.Key
	for _, n := range []int{3, 1, 2} {
		want = append(want, createKey(t, s, newKey(app.SID, n, storage.KeyRetired)))
		time.Sleep(tick)
	}
	checkKeys(t, s, app.SID, want)

	// Created in quick succession, some keys share a CreatedAt: ties are
	// ordered by SID.
	for n := 0x20; n > 0x10; n-- {
		createKey(t, s, newKey(app.SID, n, storage.KeyRetired))
	}
	got := listKeys(t, s, app.SID)
	if len(got) != 3+16 {
		t.Errorf("ListKeys(%q) = %d keys, want %d", app.SID, len(got), 3+16)
	}
	for i := 1; i < len(got); i++ {
		prev, k := got[i-1], got[i]
		if k.CreatedAt.Before(prev.CreatedAt) || (k.CreatedAt.Equal(prev.CreatedAt) && k.SID <= prev.SID) {
			t.Errorf("ListKeys(%q): key %q (created %v) follows %q (created %v), want order by CreatedAt then SID",
				app.SID, k.SID, k.CreatedAt, prev.SID, prev.CreatedAt)
		}
	}
	for _, k := range got {
		checkKey(t, s, k)
	}
	revs.advanced(t, "CreateKey")
	revs.unchanged(t, "ListKeys and GetKey")
	checkSnapshot(t, s)
}

func testActivateKey(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	k1 := createKey(t, s, newKey(app.SID, 1, storage.KeyActive))
	k2 := createKey(t, s, newKey(app.SID, 2, storage.KeyRetired))
	k3 := createKey(t, s, newKey(app.SID, 3, storage.KeyRetired))
	revs := trackRevisions(t, s)
	time.Sleep(tick)

	before := time.Now()
	if err := s.ActivateKey(ctx, app.SID, k2.SID); err != nil {
		t.Fatalf("ActivateKey(%q, %q) = %v, want nil error", app.SID, k2.SID, err)
	}
	after := time.Now()
	revs.advanced(t, "ActivateKey")
	checkActive(t, s, app.SID, k2.SID)
	got2 := getKey(t, s, app.SID, k2.SID)
	checkStoreTime(t, fmt.Sprintf("GetKey(%q, %q).ActivatedAt", app.SID, k2.SID), got2.ActivatedAt, before, after)
	if !got2.ActivatedAt.After(k1.ActivatedAt) {
		t.Errorf("GetKey(%q, %q).ActivatedAt = %v, want after %v", app.SID, k2.SID, got2.ActivatedAt, k1.ActivatedAt)
	}
	k2.State, k2.ActivatedAt = storage.KeyActive, got2.ActivatedAt
	k1.State = storage.KeyRetired // ActivatedAt stays: when it last became active
	checkKeys(t, s, app.SID, []storage.Key{k1, k2, k3})

	// Activating the active key is a no-op: ActivatedAt does not move.
	time.Sleep(tick)
	if err := s.ActivateKey(ctx, app.SID, k2.SID); err != nil {
		t.Errorf("ActivateKey(%q, %q) on the active key = %v, want nil", app.SID, k2.SID, err)
	}
	revs.notLowered(t, "ActivateKey on the active key")
	checkActive(t, s, app.SID, k2.SID)
	checkKeys(t, s, app.SID, []storage.Key{k1, k2, k3})

	// Unknown keys and applications.
	for _, c := range []struct{ app, key string }{
		{app.SID, keySID(9)},
		{appSID(9), k1.SID},
		{appSID(9), keySID(9)},
	} {
		checkErr(t, s.ActivateKey(ctx, c.app, c.key), storage.ErrNotFound, fmt.Sprintf("ActivateKey(%q, %q)", c.app, c.key))
		revs.unchanged(t, "failed ActivateKey")
		checkActive(t, s, app.SID, k2.SID)
	}
	checkKeys(t, s, app.SID, []storage.Key{k1, k2, k3})

	// A key that was active before becomes active again, with a new
	// ActivatedAt.
	time.Sleep(tick)
	before = time.Now()
	if err := s.ActivateKey(ctx, app.SID, k1.SID); err != nil {
		t.Fatalf("ActivateKey(%q, %q) = %v, want nil error", app.SID, k1.SID, err)
	}
	after = time.Now()
	revs.advanced(t, "ActivateKey")
	checkActive(t, s, app.SID, k1.SID)
	got1 := getKey(t, s, app.SID, k1.SID)
	checkStoreTime(t, fmt.Sprintf("GetKey(%q, %q).ActivatedAt", app.SID, k1.SID), got1.ActivatedAt, before, after)
	k1.State, k1.ActivatedAt = storage.KeyActive, got1.ActivatedAt
	k2.State = storage.KeyRetired
	checkKeys(t, s, app.SID, []storage.Key{k1, k2, k3})

	// In an application with keys but none active.
	other := createApplication(t, s, newApp(2))
	o1 := createKey(t, s, newKey(other.SID, 1, storage.KeyRetired))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, other.SID, "")
	if err := s.ActivateKey(ctx, other.SID, o1.SID); err != nil {
		t.Fatalf("ActivateKey(%q, %q) = %v, want nil error", other.SID, o1.SID, err)
	}
	revs.advanced(t, "ActivateKey")
	checkActive(t, s, other.SID, o1.SID)
	checkActive(t, s, app.SID, k1.SID)
	checkSnapshot(t, s)
}

func testDeleteKey(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	k1 := createKey(t, s, newKey(app.SID, 1, storage.KeyActive))
	k2 := createKey(t, s, newKey(app.SID, 2, storage.KeyRetired))
	revs := trackRevisions(t, s)

	checkErr(t, s.DeleteKey(ctx, app.SID, k1.SID), storage.ErrConflict, fmt.Sprintf("DeleteKey(%q, %q) of the active key", app.SID, k1.SID))
	revs.unchanged(t, "failed DeleteKey")
	checkKey(t, s, k1)
	checkActive(t, s, app.SID, k1.SID)

	if err := s.DeleteKey(ctx, app.SID, k2.SID); err != nil {
		t.Fatalf("DeleteKey(%q, %q) = %v, want nil error", app.SID, k2.SID, err)
	}
	revs.advanced(t, "DeleteKey")
	_, err := s.GetKey(ctx, app.SID, k2.SID)
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q) after DeleteKey", app.SID, k2.SID))
	checkKeys(t, s, app.SID, []storage.Key{k1})
	checkActive(t, s, app.SID, k1.SID)

	for _, c := range []struct{ app, key string }{
		{app.SID, k2.SID},
		{app.SID, keySID(9)},
		{appSID(9), k1.SID},
	} {
		checkErr(t, s.DeleteKey(ctx, c.app, c.key), storage.ErrNotFound, fmt.Sprintf("DeleteKey(%q, %q)", c.app, c.key))
		revs.unchanged(t, "failed DeleteKey")
	}
	checkKeys(t, s, app.SID, []storage.Key{k1})

	// Once retired, the former active key can go; its SID can be reused.
	k3 := createKey(t, s, newKey(app.SID, 3, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	if err := s.DeleteKey(ctx, app.SID, k1.SID); err != nil {
		t.Fatalf("DeleteKey(%q, %q) of a retired key = %v, want nil error", app.SID, k1.SID, err)
	}
	revs.advanced(t, "DeleteKey")
	k3.State = storage.KeyActive
	checkKeys(t, s, app.SID, []storage.Key{k3})
	createKey(t, s, newKey(app.SID, 1, storage.KeyRetired))
	revs.advanced(t, "CreateKey")
	checkActive(t, s, app.SID, k3.SID)
	checkSnapshot(t, s)
}

func testMasterKeyIDs(t *testing.T, s storage.Store) {
	ctx := t.Context()
	check := func(when string, want map[string]int) {
		t.Helper()
		got, err := s.MasterKeyIDs(ctx)
		if err != nil {
			t.Fatalf("MasterKeyIDs %s = %v, want nil error", when, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("MasterKeyIDs %s = %v, want %v", when, got, want)
		}
	}
	check("on an empty store", map[string]int{})
	app1 := createApplication(t, s, newApp(1))
	app2 := createApplication(t, s, newApp(2))
	k1 := createKey(t, s, newKey(app1.SID, 1, storage.KeyActive))
	createKey(t, s, newKey(app1.SID, 2, storage.KeyRetired))
	createKey(t, s, newKey(app2.SID, 1, storage.KeyActive))
	check("with three keys under master-1", map[string]int{"master-1": 3})
	if err := s.ResealKeys(ctx, []storage.Sealed{{ApplicationSID: app1.SID, SID: k1.SID, SealedSecret: sealedSecret(app1.SID, 1, "v2"), MasterKeyID: "master-2"}}); err != nil {
		t.Fatalf("ResealKeys = %v, want nil error", err)
	}
	check("after one was resealed under master-2", map[string]int{"master-1": 2, "master-2": 1})
	if err := s.DeleteApplication(ctx, app2.SID); err != nil {
		t.Fatalf("DeleteApplication = %v, want nil error", err)
	}
	check("after an application and its key went", map[string]int{"master-1": 1, "master-2": 1})
}

func testResealKeys(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app1 := createApplication(t, s, newApp(1))
	app2 := createApplication(t, s, newApp(2))
	k1 := createKey(t, s, newKey(app1.SID, 1, storage.KeyActive))
	k2 := createKey(t, s, newKey(app1.SID, 2, storage.KeyRetired))
	k3 := createKey(t, s, newKey(app1.SID, 3, storage.KeyRetired))
	o1 := createKey(t, s, newKey(app2.SID, 1, storage.KeyActive))
	signed := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	if err := s.RecordKeyUsage(ctx, []storage.KeyUsage{{ApplicationSID: app1.SID, SID: k1.SID, LastSignedAt: signed, OutstandingUntil: signed.Add(time.Hour)}}); err != nil {
		t.Fatalf("RecordKeyUsage = %v, want nil error", err)
	}
	k1.LastSignedAt, k1.OutstandingUntil = signed, signed.Add(time.Hour)
	revs := trackRevisions(t, s)

	sealed := []storage.Sealed{
		{ApplicationSID: app1.SID, SID: k1.SID, SealedSecret: sealedSecret(app1.SID, 1, "v2"), MasterKeyID: "master-2"},
		{ApplicationSID: app1.SID, SID: keySID(9), SealedSecret: sealedSecret(app1.SID, 9, "v2"), MasterKeyID: "master-2"},
		{ApplicationSID: app1.SID, SID: k2.SID, SealedSecret: sealedSecret(app1.SID, 2, "v2"), MasterKeyID: "master-2"},
		{ApplicationSID: appSID(9), SID: k1.SID, SealedSecret: sealedSecret(appSID(9), 1, "v2"), MasterKeyID: "master-2"},
	}
	if err := s.ResealKeys(ctx, sealed); err != nil {
		t.Fatalf("ResealKeys (with missing keys) = %v, want nil error", err)
	}
	revs.advanced(t, "ResealKeys")
	// Only the secret and its master key ID change.
	k1.SealedSecret, k1.MasterKeyID = sealed[0].SealedSecret, "master-2"
	k2.SealedSecret, k2.MasterKeyID = sealed[2].SealedSecret, "master-2"
	checkKeys(t, s, app1.SID, []storage.Key{k1, k2, k3})
	checkKeys(t, s, app2.SID, []storage.Key{o1})
	checkActive(t, s, app1.SID, k1.SID)
	for _, sl := range []storage.Sealed{sealed[1], sealed[3]} {
		_, err := s.GetKey(ctx, sl.ApplicationSID, sl.SID)
		checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q) after ResealKeys skipped it", sl.ApplicationSID, sl.SID))
	}
	_, err := s.GetApplication(ctx, appSID(9))
	checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetApplication(%q) after ResealKeys", appSID(9)))

	// Again, over every key.
	sealed = sealed[:0]
	for _, k := range []*storage.Key{&k1, &k2, &k3, &o1} {
		k.SealedSecret = sealedSecret(k.ApplicationSID, 0, "v3-"+k.SID)
		k.MasterKeyID = "master-3"
		sealed = append(sealed, storage.Sealed{ApplicationSID: k.ApplicationSID, SID: k.SID, SealedSecret: bytes.Clone(k.SealedSecret), MasterKeyID: k.MasterKeyID})
	}
	if err := s.ResealKeys(ctx, sealed); err != nil {
		t.Fatalf("ResealKeys = %v, want nil error", err)
	}
	revs.advanced(t, "ResealKeys")
	sealed[0].SealedSecret[0] ^= 0xff // the store keeps its own copy
	checkKeys(t, s, app1.SID, []storage.Key{k1, k2, k3})
	checkKeys(t, s, app2.SID, []storage.Key{o1})

	if err := s.ResealKeys(ctx, nil); err != nil {
		t.Errorf("ResealKeys(nil) = %v, want nil", err)
	}
	revs.notLowered(t, "ResealKeys(nil)")
	checkKeys(t, s, app1.SID, []storage.Key{k1, k2, k3})
	checkSnapshot(t, s)
}

func testRecordKeyUsage(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	k1 := createKey(t, s, newKey(app.SID, 1, storage.KeyActive))
	k2 := createKey(t, s, newKey(app.SID, 2, storage.KeyRetired))
	revs := trackRevisions(t, s)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	steps := []struct {
		name          string
		usage         []storage.KeyUsage
		last1, until1 time.Time // k1 afterwards
		last2, until2 time.Time // k2 afterwards
	}{
		{
			name: "first",
			usage: []storage.KeyUsage{
				{ApplicationSID: app.SID, SID: k1.SID, LastSignedAt: t0, OutstandingUntil: t0.Add(time.Hour)},
				{ApplicationSID: app.SID, SID: keySID(9), LastSignedAt: t0, OutstandingUntil: t0},
				{ApplicationSID: appSID(9), SID: k1.SID, LastSignedAt: t0.Add(9 * time.Hour), OutstandingUntil: t0.Add(9 * time.Hour)},
			},
			last1: t0, until1: t0.Add(time.Hour),
		},
		{
			name:  "lower",
			usage: []storage.KeyUsage{{ApplicationSID: app.SID, SID: k1.SID, LastSignedAt: t0.Add(-time.Hour), OutstandingUntil: t0}},
			last1: t0, until1: t0.Add(time.Hour),
		},
		{
			name:  "zero",
			usage: []storage.KeyUsage{{ApplicationSID: app.SID, SID: k1.SID}},
			last1: t0, until1: t0.Add(time.Hour),
		},
		{
			name:  "raiseLastOnly",
			usage: []storage.KeyUsage{{ApplicationSID: app.SID, SID: k1.SID, LastSignedAt: t0.Add(time.Minute), OutstandingUntil: t0.Add(30 * time.Minute)}},
			last1: t0.Add(time.Minute), until1: t0.Add(time.Hour),
		},
		{
			name:  "raiseOutstandingOnly",
			usage: []storage.KeyUsage{{ApplicationSID: app.SID, SID: k1.SID, OutstandingUntil: t0.Add(2 * time.Hour)}},
			last1: t0.Add(time.Minute), until1: t0.Add(2 * time.Hour),
		},
		{
			name: "sameKeyTwice",
			usage: []storage.KeyUsage{
				{ApplicationSID: app.SID, SID: k2.SID, LastSignedAt: t0.Add(time.Second), OutstandingUntil: t0.Add(3 * time.Hour)},
				{ApplicationSID: app.SID, SID: k2.SID, LastSignedAt: t0.Add(2 * time.Second), OutstandingUntil: t0.Add(time.Hour)},
			},
			last1: t0.Add(time.Minute), until1: t0.Add(2 * time.Hour),
			last2: t0.Add(2 * time.Second), until2: t0.Add(3 * time.Hour),
		},
		{
			name: "oneMillisecond",
			usage: []storage.KeyUsage{
				{ApplicationSID: app.SID, SID: k1.SID, LastSignedAt: t0.Add(time.Minute + time.Millisecond), OutstandingUntil: t0.Add(2*time.Hour + time.Millisecond)},
				{ApplicationSID: app.SID, SID: k2.SID, LastSignedAt: t0.Add(2*time.Second - time.Millisecond), OutstandingUntil: t0.Add(3*time.Hour - time.Millisecond)},
			},
			last1: t0.Add(time.Minute + time.Millisecond), until1: t0.Add(2*time.Hour + time.Millisecond),
			last2: t0.Add(2 * time.Second), until2: t0.Add(3 * time.Hour),
		},
		{
			name:  "empty",
			last1: t0.Add(time.Minute + time.Millisecond), until1: t0.Add(2*time.Hour + time.Millisecond),
			last2: t0.Add(2 * time.Second), until2: t0.Add(3 * time.Hour),
		},
	}
	for _, st := range steps {
		if err := s.RecordKeyUsage(ctx, st.usage); err != nil {
			t.Fatalf("RecordKeyUsage(%s) = %v, want nil error", st.name, err)
		}
		revs.unchanged(t, "RecordKeyUsage("+st.name+")")
		k1.LastSignedAt, k1.OutstandingUntil = st.last1, st.until1
		k2.LastSignedAt, k2.OutstandingUntil = st.last2, st.until2
		got := listKeys(t, s, app.SID)
		if diff := cmp.Diff([]storage.Key{k1, k2}, got, cmpOpts); diff != "" {
			t.Errorf("ListKeys(%q) after RecordKeyUsage(%s) mismatch (-want +got):\n%s", app.SID, st.name, diff)
		}
	}
	for _, sl := range []struct{ app, key string }{{app.SID, keySID(9)}, {appSID(9), k1.SID}} {
		_, err := s.GetKey(ctx, sl.app, sl.key)
		checkErr(t, err, storage.ErrNotFound, fmt.Sprintf("GetKey(%q, %q) after RecordKeyUsage skipped it", sl.app, sl.key))
	}
	checkActive(t, s, app.SID, k1.SID)
	snap := checkSnapshot(t, s)
	if diff := cmp.Diff([]storage.Key{k1, k2}, sortedSnapshot(snap).Keys, cmpOpts); diff != "" {
		t.Errorf("Snapshot().Keys mismatch (-want +got):\n%s", diff)
	}
}

func testTimePrecision(t *testing.T, s storage.Store) {
	ctx := t.Context()
	app := createApplication(t, s, newApp(1))
	zone := time.FixedZone("UTC+05:30", 5*3600+1800)
	cases := []struct {
		name        string
		last, until time.Time
	}{
		{"subMillisecond", time.Date(2031, 5, 6, 7, 8, 9, 123_456_789, zone), time.Date(2031, 5, 6, 7, 8, 9, 124_999_999, zone)},
		{"oneMillisecondApart", time.Date(2031, 5, 6, 7, 8, 9, 1_000_000, time.UTC), time.Date(2031, 5, 6, 7, 8, 9, 2_000_000, time.UTC)},
		{"local", time.Date(2027, 12, 31, 23, 59, 59, 999_000_000, time.Local), time.Date(2028, 1, 1, 0, 0, 0, 0, time.Local)},
		{"farFuture", time.Date(2199, 1, 1, 0, 0, 0, 5_000_000, time.UTC), time.Date(2199, 1, 1, 0, 0, 0, 6_000_000, time.UTC)},
		{"past", time.Date(1999, 1, 1, 0, 0, 0, 7_000_000, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := createKey(t, s, newKey(app.SID, i+1, storage.KeyRetired))
			if !key.LastSignedAt.IsZero() || !key.OutstandingUntil.IsZero() || !key.ActivatedAt.IsZero() {
				t.Errorf("GetKey(%q, %q) = LastSignedAt %v, OutstandingUntil %v, ActivatedAt %v, want zero times",
					app.SID, key.SID, key.LastSignedAt, key.OutstandingUntil, key.ActivatedAt)
			}
			usage := storage.KeyUsage{ApplicationSID: app.SID, SID: key.SID, LastSignedAt: c.last, OutstandingUntil: c.until}
			if err := s.RecordKeyUsage(ctx, []storage.KeyUsage{usage}); err != nil {
				t.Fatalf("RecordKeyUsage = %v, want nil error", err)
			}
			got := getKey(t, s, app.SID, key.SID)
			for _, f := range []struct {
				name      string
				got, want time.Time
			}{
				{"LastSignedAt", got.LastSignedAt, c.last},
				{"OutstandingUntil", got.OutstandingUntil, c.until},
			} {
				if d := f.got.Sub(f.want).Abs(); d > timeTolerance {
					t.Errorf("GetKey(%q, %q).%s = %v, want %v (off by %v, more than %v)", app.SID, key.SID, f.name, f.got, f.want, d, timeTolerance)
				}
			}
			if !got.OutstandingUntil.After(got.LastSignedAt) {
				t.Errorf("GetKey(%q, %q): OutstandingUntil %v not after LastSignedAt %v, want the order of %v and %v kept",
					app.SID, key.SID, got.OutstandingUntil, got.LastSignedAt, c.until, c.last)
			}
		})
	}
	// Times the store sets keep their precision across reads.
	a1 := getApplication(t, s, app.SID)
	a2 := getApplication(t, s, app.SID)
	if !a1.CreatedAt.Equal(a2.CreatedAt) || !a1.CreatedAt.Equal(app.CreatedAt) {
		t.Errorf("GetApplication(%q).CreatedAt = %v then %v, want %v both times", app.SID, a1.CreatedAt, a2.CreatedAt, app.CreatedAt)
	}
}

func testSnapshot(t *testing.T, s storage.Store) {
	ctx := t.Context()
	revs := trackRevisions(t, s)
	var apps []storage.Application
	for n := 1; n <= 3; n++ {
		apps = append(apps, createApplication(t, s, newApp(n)))
		revs.advanced(t, "CreateApplication")
		checkSnapshot(t, s)
	}
	var keys []storage.Key
	for _, app := range apps {
		keys = append(keys, createKey(t, s, newKey(app.SID, 1, storage.KeyActive)))
		revs.advanced(t, "CreateKey")
		keys = append(keys, createKey(t, s, newKey(app.SID, 2, storage.KeyRetired)))
		revs.advanced(t, "CreateKey")
		checkSnapshot(t, s)
	}
	snap := checkSnapshot(t, s)
	want := sortedSnapshot(storage.Snapshot{Applications: apps, Keys: keys, Revision: revs.last})
	if diff := cmp.Diff(want, sortedSnapshot(snap), cmpOpts); diff != "" {
		t.Errorf("Snapshot() mismatch (-want +got):\n%s", diff)
	}

	if err := s.ActivateKey(ctx, apps[0].SID, keySID(2)); err != nil {
		t.Fatalf("ActivateKey = %v", err)
	}
	revs.advanced(t, "ActivateKey")
	snap = checkSnapshot(t, s)
	if got := activeKeys(snap.Keys)[apps[0].SID]; !slices.Equal(got, []string{keySID(2)}) {
		t.Errorf("Snapshot(): active keys of %q = %q, want [%q]", apps[0].SID, got, keySID(2))
	}

	if err := s.RecordKeyUsage(ctx, []storage.KeyUsage{{ApplicationSID: apps[1].SID, SID: keySID(1), LastSignedAt: time.Now(), OutstandingUntil: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatalf("RecordKeyUsage = %v", err)
	}
	revs.unchanged(t, "RecordKeyUsage")
	checkSnapshot(t, s)

	if err := s.DeleteApplication(ctx, apps[2].SID); err != nil {
		t.Fatalf("DeleteApplication = %v", err)
	}
	revs.advanced(t, "DeleteApplication")
	snap = checkSnapshot(t, s)
	if len(snap.Applications) != 2 || len(snap.Keys) != 4 {
		t.Errorf("Snapshot() = %d applications and %d keys, want 2 and 4", len(snap.Applications), len(snap.Keys))
	}
	revs.unchanged(t, "Snapshot")
}

func testConcurrentActivateKey(t *testing.T, s storage.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	app := createApplication(t, s, newApp(1))
	const nkeys = 4
	createKey(t, s, newKey(app.SID, 0, storage.KeyActive))
	for n := 1; n < nkeys; n++ {
		createKey(t, s, newKey(app.SID, n, storage.KeyRetired))
	}

	// Readers check that at every moment exactly one key is active.
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for ctx.Err() == nil {
				keys, err := s.ListKeys(ctx, app.SID)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("ListKeys(%q) = %v, want nil error", app.SID, err)
					return
				}
				if active := activeKeys(keys)[app.SID]; len(active) != 1 {
					t.Errorf("ListKeys(%q) during concurrent ActivateKey: active keys %q, want exactly one", app.SID, active)
					return
				}
				snap, err := s.Snapshot(ctx)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("Snapshot() = %v, want nil error", err)
					return
				}
				if active := activeKeys(snap.Keys)[app.SID]; len(active) != 1 {
					t.Errorf("Snapshot() during concurrent ActivateKey: active keys of %q = %q, want exactly one", app.SID, active)
					return
				}
			}
		})
	}

	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				sid := keySID((w + r) % nkeys)
				if err := s.ActivateKey(ctx, app.SID, sid); err != nil {
					t.Errorf("ActivateKey(%q, %q) = %v, want nil error", app.SID, sid, err)
					return
				}
			}
		})
	}
	wg.Wait()
	cancel()
	readers.Wait()

	keys := listKeys(t, s, app.SID)
	if len(keys) != nkeys {
		t.Errorf("ListKeys(%q) = %d keys, want %d", app.SID, len(keys), nkeys)
	}
	if active := activeKeys(keys)[app.SID]; len(active) != 1 {
		t.Errorf("ListKeys(%q) after concurrent ActivateKey: active keys %q, want exactly one", app.SID, active)
	}
	checkSnapshot(t, s)
}

// snapshotChecker checks Snapshot under concurrent writes: one writer
// records the snapshot after each of its writes (with no other writer,
// that is the content of the store at that revision) while three readers
// take snapshots in a loop; finish compares each reader's snapshot with
// the recorded state of its revision.
type snapshotChecker struct {
	t        *testing.T
	s        storage.Store
	ctx      context.Context
	cancel   context.CancelFunc
	recorded map[int64]storage.Snapshot
	readers  sync.WaitGroup
	mu       sync.Mutex
	seen     []storage.Snapshot
}

func newSnapshotChecker(t *testing.T, s storage.Store) *snapshotChecker {
	c := &snapshotChecker{t: t, s: s, recorded: map[int64]storage.Snapshot{}}
	c.ctx, c.cancel = context.WithCancel(t.Context())
	t.Cleanup(c.cancel)
	c.record("nothing")
	for range 3 {
		c.readers.Go(func() {
			for c.ctx.Err() == nil {
				snap, err := s.Snapshot(c.ctx)
				if c.ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("Snapshot() = %v, want nil error", err)
					return
				}
				c.mu.Lock()
				c.seen = append(c.seen, snap)
				c.mu.Unlock()
			}
		})
	}
	return c
}

func (c *snapshotChecker) record(call string) {
	c.t.Helper()
	snap, err := c.s.Snapshot(c.ctx)
	if err != nil {
		c.t.Errorf("Snapshot() after %s = %v, want nil error", call, err)
		return
	}
	if _, ok := c.recorded[snap.Revision]; ok {
		c.t.Errorf("Snapshot().Revision after %s = %d, a revision an earlier write had", call, snap.Revision)
	}
	c.recorded[snap.Revision] = sortedSnapshot(snap)
}

// write checks a write's error and records the snapshot after it.
func (c *snapshotChecker) write(call string, err error) {
	c.t.Helper()
	if err != nil {
		c.t.Errorf("%s = %v, want nil error", call, err)
		return
	}
	c.record(call)
}

// finish lets the readers see the final state too, waits (up to 10 s)
// for a reader's first snapshot, since on a loaded machine the writes can
// all be done before any reader's first snapshot is, stops the readers
// and checks every snapshot they took. It returns them.
func (c *snapshotChecker) finish() []storage.Snapshot {
	c.t.Helper()
	time.Sleep(tick)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(tick) {
		c.mu.Lock()
		n := len(c.seen)
		c.mu.Unlock()
		if n > 0 {
			break
		}
	}
	c.cancel()
	c.readers.Wait()

	if len(c.seen) == 0 {
		c.t.Fatal("readers took no snapshot")
	}
	for _, snap := range c.seen {
		want, ok := c.recorded[snap.Revision]
		if !ok {
			c.t.Errorf("Snapshot().Revision = %d, a revision no write produced", snap.Revision)
			continue
		}
		if diff := cmp.Diff(want, sortedSnapshot(snap), cmpOpts); diff != "" {
			c.t.Errorf("Snapshot() at revision %d is not the state of that revision (-want +got):\n%s", snap.Revision, diff)
		}
	}
	c.t.Logf("checked %d concurrent snapshots against %d revisions", len(c.seen), len(c.recorded))
	return c.seen
}

func testConcurrentSnapshot(t *testing.T, s storage.Store) {
	c := newSnapshotChecker(t, s)
	ctx, write := c.ctx, c.write
	for n := 1; n <= 6; n++ {
		app := newApp(n)
		write("CreateApplication", s.CreateApplication(ctx, app))
		write("CreateKey", s.CreateKey(ctx, newKey(app.SID, 1, storage.KeyActive)))
		write("CreateKey", s.CreateKey(ctx, newKey(app.SID, 2, storage.KeyActive)))
		write("ActivateKey", s.ActivateKey(ctx, app.SID, keySID(1)))
		write("ResealKeys", s.ResealKeys(ctx, []storage.Sealed{
			{ApplicationSID: app.SID, SID: keySID(1), SealedSecret: sealedSecret(app.SID, 1, "v2"), MasterKeyID: "master-2"},
			{ApplicationSID: app.SID, SID: keySID(2), SealedSecret: sealedSecret(app.SID, 2, "v2"), MasterKeyID: "master-2"},
		}))
		write("DeleteKey", s.DeleteKey(ctx, app.SID, keySID(2)))
		_, err := s.UpdateApplication(ctx, app.SID, func(a storage.Application) (storage.Application, error) {
			a.FriendlyName += " (updated)"
			return a, nil
		})
		write("UpdateApplication", err)
		if n%2 == 0 {
			write("DeleteApplication", s.DeleteApplication(ctx, appSID(n-1)))
		}
	}
	c.finish()
}

// Reopen writes through a store that open opens, closes it, and opens the
// same store (a file, a schema: open decides) twice more: each time the
// snapshot must be what it was before closing, which also checks that
// opening is idempotent (migrations). Then a write on the reopened store
// must go on from the same revision. open must fail the test if it cannot
// open the store; Reopen returns the last store it opened, still open, for
// backend-specific checks.
func Reopen(t *testing.T, open func(t *testing.T) storage.Store) storage.Store {
	t.Helper()
	ctx := t.Context()
	s := open(t)
	app := storage.Application{
		SID:           "AP00000000000000000000000000000001",
		AccountSID:    "AC00000000000000000000000000000001",
		FriendlyName:  "reopened",
		DefaultGrants: []byte(`{"voice":{}}`),
		MaxTTLSeconds: 600,
		Region:        "au1",
	}
	other := app
	other.SID = "AP00000000000000000000000000000002"
	key := func(n byte, state storage.KeyState) storage.Key {
		return storage.Key{
			ApplicationSID: app.SID,
			SID:            "SK0000000000000000000000000000000" + string('0'+n),
			SealedSecret:   []byte{0, 0xff, n},
			MasterKeyID:    "master-1",
			State:          state,
		}
	}
	signed := time.Date(2030, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	steps := []struct {
		name string
		err  error
	}{
		{"CreateApplication", s.CreateApplication(ctx, app)},
		{"CreateApplication", s.CreateApplication(ctx, other)},
		{"CreateKey", s.CreateKey(ctx, key(1, storage.KeyActive))},
		{"CreateKey", s.CreateKey(ctx, key(2, storage.KeyRetired))},
		{"CreateKey", s.CreateKey(ctx, key(3, storage.KeyActive))},
		{"ActivateKey", s.ActivateKey(ctx, app.SID, key(2, "").SID)},
		{"DeleteKey", s.DeleteKey(ctx, app.SID, key(1, "").SID)},
		{"ResealKeys", s.ResealKeys(ctx, []storage.Sealed{{ApplicationSID: app.SID, SID: key(3, "").SID, SealedSecret: []byte{9, 9}, MasterKeyID: "master-2"}})},
		{"RecordKeyUsage", s.RecordKeyUsage(ctx, []storage.KeyUsage{{ApplicationSID: app.SID, SID: key(2, "").SID, LastSignedAt: signed, OutstandingUntil: signed.Add(time.Hour)}})},
		{"DeleteApplication", s.DeleteApplication(ctx, other.SID)},
	}
	for _, st := range steps {
		if st.err != nil {
			t.Fatalf("%s = %v", st.name, st.err)
		}
	}
	if _, err := s.UpdateApplication(ctx, app.SID, func(a storage.Application) (storage.Application, error) {
		a.FriendlyName = "updated before reopening"
		return a, nil
	}); err != nil {
		t.Fatalf("UpdateApplication = %v", err)
	}
	want, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	if len(want.Applications) != 1 || len(want.Keys) != 2 || want.Revision == 0 {
		t.Fatalf("Snapshot() before reopening = %+v, want 1 application, 2 keys and a revision", want)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}

	for range 2 { // reopening twice also checks that migrations are idempotent
		s := open(t)
		got, err := s.Snapshot(ctx)
		if err != nil {
			t.Fatalf("Snapshot() after reopening = %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Snapshot() after reopening mismatch (-before +after):\n%s", diff)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
	}

	// A reopened store goes on from the same revision.
	s = open(t)
	if err := s.ActivateKey(ctx, app.SID, key(3, "").SID); err != nil {
		t.Fatalf("ActivateKey = %v", err)
	}
	if rev, err := s.Revision(ctx); err != nil || rev <= want.Revision {
		t.Errorf("Revision() after a write on the reopened store = %d, %v, want > %d", rev, err, want.Revision)
	}
	return s
}
