package storagetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tokend/tokend/server/storage"
)

// Credential fixtures.

func credName(n int) string { return fmt.Sprintf("credential-%03d", n) }

// credHash returns the distinct hash of credential n: the SHA-256 of a
// made-up bearer token.
func credHash(n int) []byte {
	sum := sha256.Sum256([]byte(fmt.Sprintf("tokend-bearer-token-%d", n)))
	return sum[:]
}

// newCredential returns a distinct credential numbered n with a few
// groups. CreatedAt is set to a date the store must ignore.
func newCredential(n int) storage.Credential {
	return storage.Credential{
		Name:      credName(n),
		Hash:      credHash(n),
		Groups:    []string{"admin", fmt.Sprintf("group-%d", n)},
		CreatedAt: time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC),
	}
}

func credentialNames(creds []storage.Credential) []string {
	names := make([]string, len(creds))
	for i, c := range creds {
		names[i] = c.Name
	}
	return names
}

func listCredentials(t *testing.T, s storage.Store) []storage.Credential {
	t.Helper()
	creds, err := s.ListCredentials(t.Context())
	if err != nil {
		t.Fatalf("ListCredentials() = %v, want nil error", err)
	}
	return creds
}

// findCredential returns the credential named name from ListCredentials.
func findCredential(t *testing.T, s storage.Store, name string) (storage.Credential, bool) {
	t.Helper()
	creds := listCredentials(t, s)
	i := slices.IndexFunc(creds, func(c storage.Credential) bool { return c.Name == name })
	if i < 0 {
		return storage.Credential{}, false
	}
	return creds[i], true
}

// checkCredentials checks that ListCredentials returns want, in that
// order.
func checkCredentials(t *testing.T, s storage.Store, want []storage.Credential) {
	t.Helper()
	got := listCredentials(t, s)
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("ListCredentials() mismatch (-want +got):\n%s", diff)
	}
}

// createCredential creates cred, checks what ListCredentials then returns
// for it and returns that.
func createCredential(t *testing.T, s storage.Store, cred storage.Credential) storage.Credential {
	t.Helper()
	before := time.Now()
	if err := s.CreateCredential(t.Context(), cred); err != nil {
		t.Fatalf("CreateCredential(%q) = %v, want nil error", cred.Name, err)
	}
	after := time.Now()
	got, ok := findCredential(t, s, cred.Name)
	if !ok {
		t.Fatalf("ListCredentials() lacks %q after CreateCredential", cred.Name)
	}
	checkStoreTime(t, fmt.Sprintf("credential %q CreatedAt", cred.Name), got.CreatedAt, before, after)
	want := cred
	want.CreatedAt = got.CreatedAt
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("ListCredentials() entry %q after CreateCredential mismatch (-want +got):\n%s", cred.Name, diff)
	}
	return got
}

// Tests.

func testCredentials(t *testing.T, s storage.Store) {
	ctx := t.Context()
	revs := trackRevisions(t, s)

	cred := newCredential(1)
	c1 := createCredential(t, s, cred)
	revs.advanced(t, "CreateCredential")
	// The store keeps its own copy of the hash and groups.
	cred.Hash[0] ^= 0xff
	cred.Groups[0] = "changed by the caller"
	checkCredentials(t, s, []storage.Credential{c1})
	got := listCredentials(t, s)
	got[0].Hash[0] ^= 0xff
	got[0].Groups[0] = "changed by the reader"
	checkCredentials(t, s, []storage.Credential{c1})
	revs.unchanged(t, "ListCredentials")

	c2 := createCredential(t, s, newCredential(2))
	revs.advanced(t, "CreateCredential")
	c3 := createCredential(t, s, newCredential(3))
	revs.advanced(t, "CreateCredential")
	checkCredentials(t, s, []storage.Credential{c1, c2, c3})
	checkSnapshot(t, s)

	if err := s.DeleteCredential(ctx, c2.Name); err != nil {
		t.Fatalf("DeleteCredential(%q) = %v, want nil error", c2.Name, err)
	}
	revs.advanced(t, "DeleteCredential")
	checkCredentials(t, s, []storage.Credential{c1, c3})
	checkErr(t, s.DeleteCredential(ctx, c2.Name), storage.ErrNotFound, fmt.Sprintf("DeleteCredential(%q) again", c2.Name))
	checkErr(t, s.DeleteCredential(ctx, ""), storage.ErrNotFound, `DeleteCredential("")`)
	checkErr(t, s.DeleteCredential(ctx, strings.ToUpper(c1.Name)), storage.ErrNotFound, fmt.Sprintf("DeleteCredential(%q) (names are case-sensitive)", strings.ToUpper(c1.Name)))
	revs.unchanged(t, "failed DeleteCredential")
	checkCredentials(t, s, []storage.Credential{c1, c3})

	// A deleted credential's name and hash are free again; the new one has
	// a new CreatedAt.
	time.Sleep(tick)
	again := createCredential(t, s, newCredential(2))
	revs.advanced(t, "CreateCredential (recreated)")
	if !again.CreatedAt.After(c2.CreatedAt) {
		t.Errorf("CreatedAt of recreated %q = %v, want after the first one's %v", again.Name, again.CreatedAt, c2.CreatedAt)
	}
	checkCredentials(t, s, []storage.Credential{c1, again, c3})

	// Credentials are independent of applications.
	app := createApplication(t, s, newApp(1))
	revs.advanced(t, "CreateApplication")
	if err := s.DeleteApplication(ctx, app.SID); err != nil {
		t.Fatalf("DeleteApplication = %v", err)
	}
	revs.advanced(t, "DeleteApplication")
	checkCredentials(t, s, []storage.Credential{c1, again, c3})

	for _, c := range []storage.Credential{c1, again, c3} {
		if err := s.DeleteCredential(ctx, c.Name); err != nil {
			t.Fatalf("DeleteCredential(%q) = %v, want nil error", c.Name, err)
		}
		revs.advanced(t, "DeleteCredential")
	}
	checkCredentials(t, s, nil)
	snap := checkSnapshot(t, s)
	if len(snap.Credentials) != 0 {
		t.Errorf("Snapshot().Credentials = %q after deleting all, want none", credentialNames(snap.Credentials))
	}
}

func testCredentialAlreadyExists(t *testing.T, s storage.Store) {
	ctx := t.Context()
	c1 := createCredential(t, s, newCredential(1))
	c2 := createCredential(t, s, newCredential(2))
	revs := trackRevisions(t, s)

	sameName := newCredential(3)
	sameName.Name = c1.Name
	sameHash := newCredential(4)
	sameHash.Hash = bytes.Clone(c2.Hash)
	both := newCredential(5)
	both.Name, both.Hash = c1.Name, bytes.Clone(c1.Hash)
	crossed := newCredential(6) // the name of one, the hash of the other
	crossed.Name, crossed.Hash = c1.Name, bytes.Clone(c2.Hash)
	for _, c := range []struct {
		what string
		cred storage.Credential
	}{
		{"same name", sameName},
		{"same hash", sameHash},
		{"same name and hash", both},
		{"name of one, hash of another", crossed},
	} {
		err := s.CreateCredential(ctx, c.cred)
		call := fmt.Sprintf("CreateCredential(%q) (%s)", c.cred.Name, c.what)
		checkErr(t, err, storage.ErrAlreadyExists, call)
		checkNoSecret(t, err, call, c.cred.Hash)
		revs.unchanged(t, "failed "+call)
	}
	checkCredentials(t, s, []storage.Credential{c1, c2})
	checkSnapshot(t, s)
}

func testCredentialHash(t *testing.T, s storage.Store) {
	revs := trackRevisions(t, s)
	allFF := bytes.Repeat([]byte{0xff}, storage.CredentialHashSize)
	mixed := make([]byte, storage.CredentialHashSize)
	for i := range mixed {
		mixed[i] = byte(i * 37)
	}
	invalidUTF8 := append([]byte{0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0x00}, credHash(9)[8:]...)
	cases := []struct {
		name string
		hash []byte
	}{
		{"zeros", make([]byte, storage.CredentialHashSize)},
		{"ff", allFF},
		{"mixed", mixed},
		{"invalidUTF8", invalidUTF8},
		{"sha256", credHash(1)},
	}
	var want []storage.Credential
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cred := newCredential(i + 1)
			cred.Hash = bytes.Clone(c.hash)
			stored := createCredential(t, s, cred)
			revs.advanced(t, "CreateCredential")
			if !bytes.Equal(stored.Hash, c.hash) {
				t.Errorf("credential %q Hash = %x, want %x", cred.Name, stored.Hash, c.hash)
			}
			want = append(want, stored)
		})
	}
	checkCredentials(t, s, want)
	snap := checkSnapshot(t, s)
	for i, c := range cases {
		idx := slices.IndexFunc(snap.Credentials, func(cr storage.Credential) bool { return cr.Name == credName(i+1) })
		if idx < 0 {
			t.Errorf("Snapshot() lacks credential %q", credName(i+1))
			continue
		}
		if !bytes.Equal(snap.Credentials[idx].Hash, c.hash) {
			t.Errorf("Snapshot() credential %q Hash = %x, want %x", credName(i+1), snap.Credentials[idx].Hash, c.hash)
		}
	}
	// Hashes that differ only in their last byte are distinct.
	last := newCredential(99)
	last.Hash = bytes.Clone(allFF)
	last.Hash[len(last.Hash)-1] = 0xfe
	createCredential(t, s, last)
	revs.advanced(t, "CreateCredential")
}

func testCredentialGroups(t *testing.T, s storage.Store) {
	many := make([]string, 200)
	for i := range many {
		many[i] = fmt.Sprintf("group-%03d", 199-i) // not sorted
	}
	cases := []struct {
		name   string
		groups []string
	}{
		{"nil", nil},
		{"empty", []string{}},
		{"one", []string{"admin"}},
		{"orderKept", []string{"zeta", "alpha", "Mid"}},
		{"duplicates", []string{"a", "b", "a"}},
		{"emptyString", []string{""}},
		{"emptyStrings", []string{"", "x", ""}},
		{"special", []string{`quote"d`, `back\slash`, "comma,brace{}", "ünïcödé ☎", "<html>&amp;", "new\nline\ttab", "null", "[]", "'single'", " spaced "}},
		{"json", []string{`{"a":1}`, `["x"]`, `\u0000`}},
		{"long", []string{strings.Repeat("g", 10_000)}},
		{"many", many},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cred := newCredential(i + 1)
			cred.Groups = slices.Clone(c.groups)
			stored := createCredential(t, s, cred)
			if !slices.Equal(stored.Groups, c.groups) {
				t.Errorf("credential %q Groups = %q, want %q", cred.Name, stored.Groups, c.groups)
			}
			if len(c.groups) == 0 && stored.Groups != nil {
				t.Errorf("credential %q Groups = %#v, want nil (empty groups read back as nil)", cred.Name, stored.Groups)
			}
		})
	}
	snap := checkSnapshot(t, s)
	for i, c := range cases {
		idx := slices.IndexFunc(snap.Credentials, func(cr storage.Credential) bool { return cr.Name == credName(i+1) })
		if idx < 0 {
			t.Errorf("Snapshot() lacks credential %q", credName(i+1))
			continue
		}
		got := snap.Credentials[idx].Groups
		if !slices.Equal(got, c.groups) {
			t.Errorf("Snapshot() credential %q Groups = %q, want %q", credName(i+1), got, c.groups)
		}
		if len(c.groups) == 0 && got != nil {
			t.Errorf("Snapshot() credential %q Groups = %#v, want nil", credName(i+1), got)
		}
	}
}

func testCredentialInvalid(t *testing.T, s storage.Store) {
	ctx := t.Context()
	stored := createCredential(t, s, newCredential(1))
	revs := trackRevisions(t, s)
	with := func(f func(c *storage.Credential)) storage.Credential {
		c := newCredential(2)
		f(&c)
		return c
	}
	cases := []struct {
		name string
		cred storage.Credential
	}{
		{"emptyName", with(func(c *storage.Credential) { c.Name = "" })},
		{"nameWithNUL", with(func(c *storage.Credential) { c.Name = "a\x00b" })},
		{"nameInvalidUTF8", with(func(c *storage.Credential) { c.Name = "a\xc3\x28" })},
		{"nilHash", with(func(c *storage.Credential) { c.Hash = nil })},
		{"shortHash", with(func(c *storage.Credential) { c.Hash = c.Hash[:31] })},
		{"longHash", with(func(c *storage.Credential) { c.Hash = append(c.Hash, 0) })},
		{"groupWithNUL", with(func(c *storage.Credential) { c.Groups = []string{"ok", "a\x00"} })},
		{"groupInvalidUTF8", with(func(c *storage.Credential) { c.Groups = []string{"\xff"} })},
	}
	for _, c := range cases {
		if c.cred.Validate() == nil {
			t.Fatalf("%s: Validate() = nil, want an error (bad fixture)", c.name)
		}
		err := s.CreateCredential(ctx, c.cred)
		call := fmt.Sprintf("CreateCredential(%s)", c.name)
		if err == nil {
			t.Errorf("%s = nil error, want an error", call)
		}
		for _, sentinel := range []error{storage.ErrNotFound, storage.ErrAlreadyExists, storage.ErrConflict} {
			if errors.Is(err, sentinel) {
				t.Errorf("%s = %v, want none of the sentinel errors", call, err)
			}
		}
		if len(c.cred.Hash) > 8 {
			checkNoSecret(t, err, call, c.cred.Hash)
		}
		revs.unchanged(t, "failed "+call)
	}
	if err := newCredential(2).Validate(); err != nil {
		t.Errorf("Validate() of a valid credential = %v, want nil", err)
	}
	checkCredentials(t, s, []storage.Credential{stored})
	checkSnapshot(t, s)
}

func testListCredentialsOrder(t *testing.T, s storage.Store) {
	names := []string{"b", "a", "B", "A", "a b", "a-b", "a_b", "aa", "é", "z", "Z", "10", "9", "ä", "☎", "a\u0301"}
	var want []storage.Credential
	for i, name := range names {
		c := newCredential(i + 1)
		c.Name = name
		want = append(want, createCredential(t, s, c))
	}
	slices.SortFunc(want, compareCredentials)
	got := listCredentials(t, s)
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("ListCredentials() mismatch, want all ordered by name bytewise (-want +got):\n%s", diff)
	}
	snap := checkSnapshot(t, s)
	if diff := cmp.Diff(want, snap.Credentials, cmpOpts); diff != "" {
		t.Errorf("Snapshot().Credentials mismatch, want all ordered by name bytewise (-want +got):\n%s", diff)
	}
}

func testCredentialSnapshot(t *testing.T, s storage.Store) {
	ctx := t.Context()
	revs := trackRevisions(t, s)
	app := createApplication(t, s, newApp(1))
	revs.advanced(t, "CreateApplication")
	key := createKey(t, s, newKey(app.SID, 1, storage.KeyActive))
	revs.advanced(t, "CreateKey")
	var creds []storage.Credential
	for n := 1; n <= 3; n++ {
		creds = append(creds, createCredential(t, s, newCredential(n)))
		revs.advanced(t, "CreateCredential")
		snap := checkSnapshot(t, s)
		if snap.Revision != revs.last {
			t.Errorf("Snapshot().Revision = %d after CreateCredential, want %d", snap.Revision, revs.last)
		}
		if diff := cmp.Diff(creds, snap.Credentials, cmpOpts); diff != "" {
			t.Errorf("Snapshot().Credentials after CreateCredential mismatch (-want +got):\n%s", diff)
		}
	}
	snap := checkSnapshot(t, s)
	want := storage.Snapshot{Applications: []storage.Application{app}, Keys: []storage.Key{key}, Credentials: creds, Revision: revs.last}
	if diff := cmp.Diff(want, sortedSnapshot(snap), cmpOpts); diff != "" {
		t.Errorf("Snapshot() mismatch (-want +got):\n%s", diff)
	}

	if err := s.DeleteCredential(ctx, creds[1].Name); err != nil {
		t.Fatalf("DeleteCredential = %v", err)
	}
	revs.advanced(t, "DeleteCredential")
	snap = checkSnapshot(t, s)
	want.Credentials = []storage.Credential{creds[0], creds[2]}
	want.Revision = revs.last
	if diff := cmp.Diff(want, sortedSnapshot(snap), cmpOpts); diff != "" {
		t.Errorf("Snapshot() after DeleteCredential mismatch (-want +got):\n%s", diff)
	}

	// Key usage does not move the revision, nor touch credentials.
	if err := s.RecordKeyUsage(ctx, []storage.KeyUsage{{ApplicationSID: app.SID, SID: key.SID, LastSignedAt: time.Now(), OutstandingUntil: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatalf("RecordKeyUsage = %v", err)
	}
	revs.unchanged(t, "RecordKeyUsage")
	snap = checkSnapshot(t, s)
	if diff := cmp.Diff(want.Credentials, snap.Credentials, cmpOpts); diff != "" {
		t.Errorf("Snapshot().Credentials after RecordKeyUsage mismatch (-want +got):\n%s", diff)
	}
	revs.unchanged(t, "Snapshot")
}

// testConcurrentCreateCredential creates credentials with the same name,
// or the same hash, at once: exactly one of each wins.
func testConcurrentCreateCredential(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const writers = 8
	for _, clash := range []string{"name", "hash"} {
		t.Run(clash, func(t *testing.T) {
			revs := trackRevisions(t, s)
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				errs  [writers]error
				creds [writers]storage.Credential
			)
			for w := range writers {
				c := newCredential(100 + w)
				if clash == "name" {
					c.Name = "clash-by-name"
				} else {
					c.Name = fmt.Sprintf("clash-by-hash-%d", w)
					c.Hash = credHash(1000)
				}
				creds[w] = c
				wg.Go(func() {
					<-start
					errs[w] = s.CreateCredential(ctx, c)
				})
			}
			close(start)
			wg.Wait()
			var winners []int
			for w, err := range errs {
				switch {
				case err == nil:
					winners = append(winners, w)
				case !errors.Is(err, storage.ErrAlreadyExists):
					t.Errorf("concurrent CreateCredential(%q) = %v, want nil or storage.ErrAlreadyExists", creds[w].Name, err)
				}
			}
			if len(winners) != 1 {
				t.Fatalf("concurrent CreateCredential (same %s): %d succeeded, want exactly 1", clash, len(winners))
			}
			revs.advanced(t, "concurrent CreateCredential")
			winner := creds[winners[0]]
			got, ok := findCredential(t, s, winner.Name)
			if !ok {
				t.Fatalf("ListCredentials() lacks the winner %q", winner.Name)
			}
			winner.CreatedAt = got.CreatedAt
			if diff := cmp.Diff(winner, got, cmpOpts); diff != "" {
				t.Errorf("the winner of concurrent CreateCredential mismatch (-want +got):\n%s", diff)
			}
			checkSnapshot(t, s)
		})
	}
	creds := listCredentials(t, s)
	if len(creds) != 2 {
		t.Errorf("ListCredentials() = %q, want 2 credentials (one per clash)", credentialNames(creds))
	}
}

// testConcurrentCredentialSnapshot interleaves credential and application
// writes while readers take snapshots: every snapshot must be the state of
// its revision, credentials included.
func testConcurrentCredentialSnapshot(t *testing.T, s storage.Store) {
	c := newSnapshotChecker(t, s)
	ctx, write := c.ctx, c.write
	for n := 1; n <= 8; n++ {
		write("CreateCredential", s.CreateCredential(ctx, newCredential(n)))
		if n%3 == 0 {
			app := newApp(n)
			write("CreateApplication", s.CreateApplication(ctx, app))
			write("CreateKey", s.CreateKey(ctx, newKey(app.SID, 1, storage.KeyActive)))
		}
		if n%2 == 0 {
			write("DeleteCredential", s.DeleteCredential(ctx, credName(n-1)))
		}
	}
	for _, snap := range c.finish() {
		if !slices.IsSortedFunc(snap.Credentials, compareCredentials) {
			t.Errorf("Snapshot().Credentials not ordered by name: %q", credentialNames(snap.Credentials))
		}
	}
}

// CheckUpgradedFromV1 checks a store opened over a database of schema
// version 1 (before credentials) that held application AP1 named "old"
// with key SK1 (sealed secret 00 ff) at revision 7: both are there at
// revision 7 with no credentials, and a credential can be created and
// read back, advancing the revision to 8.
func CheckUpgradedFromV1(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := t.Context()
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	if snap.Revision != 7 || len(snap.Applications) != 1 || snap.Applications[0].FriendlyName != "old" ||
		len(snap.Keys) != 1 || !bytes.Equal(snap.Keys[0].SealedSecret, []byte{0, 0xff}) || len(snap.Credentials) != 0 {
		t.Errorf("Snapshot() after the upgrade = %+v, want the old application and key at revision 7, no credentials", snap)
	}
	sum := sha256.Sum256([]byte("token"))
	if err := s.CreateCredential(ctx, storage.Credential{Name: "ci", Hash: sum[:], Groups: []string{"admin"}}); err != nil {
		t.Fatalf("CreateCredential after the upgrade = %v", err)
	}
	creds, err := s.ListCredentials(ctx)
	if err != nil || len(creds) != 1 || creds[0].Name != "ci" || !bytes.Equal(creds[0].Hash, sum[:]) {
		t.Errorf("ListCredentials() after the upgrade = %+v, %v, want ci", creds, err)
	}
	if rev, err := s.Revision(ctx); err != nil || rev != 8 {
		t.Errorf("Revision() = %d, %v, want 8", rev, err)
	}
}
