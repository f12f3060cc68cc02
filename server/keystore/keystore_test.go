package keystore

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
)

const (
	appA = "AP0000000000000000000000000000000a"
	appB = "AP0000000000000000000000000000000b"
	acct = "AC00000000000000000000000000000001"
	key1 = "SK00000000000000000000000000000001"
	key2 = "SK00000000000000000000000000000002"
)

func sealedKey(t *testing.T, kr *secrets.Keyring, app, sid string, state storage.KeyState) storage.Key {
	t.Helper()
	sealed, mk, err := kr.Seal([]byte("secret of "+app+sid), secrets.AssociatedData(app, sid))
	if err != nil {
		t.Fatal(err)
	}
	return storage.Key{ApplicationSID: app, SID: sid, SealedSecret: sealed, MasterKeyID: mk, State: state}
}

// FindKey finds a key SID held by two applications, ordered by
// application; a reload reuses a key whose sealed secret did not change
// and opens it again when it did.
func TestFindKeyAndReload(t *testing.T) {
	mk, _ := secrets.GenerateMasterKey()
	kr, _ := secrets.NewKeyring(mk)
	snap := storage.Snapshot{
		Revision:     1,
		Applications: []storage.Application{{SID: appB, AccountSID: acct}, {SID: appA, AccountSID: acct}},
		Keys: []storage.Key{ // not sorted by application: Reload must not rely on it
			sealedKey(t, kr, appB, key1, storage.KeyActive),
			sealedKey(t, kr, appA, key2, storage.KeyRetired),
			sealedKey(t, kr, appA, key1, storage.KeyActive),
		},
	}
	ks := New(snapshotStore{snap: func() storage.Snapshot {
		c := snap
		c.Keys = append([]storage.Key(nil), snap.Keys...)
		return c
	}}, kr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	if err := ks.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	refs := ks.FindKey(key1)
	if len(refs) != 2 || refs[0].App.SID != appA || refs[1].App.SID != appB || !refs[0].Active || !refs[1].Active {
		t.Fatalf("FindKey(%s) = %+v, want it in %s and %s, active in both", key1, refs, appA, appB)
	}
	if refs := ks.FindKey(key2); len(refs) != 1 || refs[0].App.SID != appA || refs[0].Active {
		t.Fatalf("FindKey(%s) = %+v, want it retired in %s", key2, refs, appA)
	}
	if refs := ks.FindKey("SK00000000000000000000000000000003"); refs != nil {
		t.Fatalf("FindKey of an unknown key = %+v", refs)
	}
	a := ks.Lookup(appA)
	if a == nil || len(a.Keys) != 2 || a.Keys[0].SID() != key2 || a.Keys[1].SID() != key1 || a.Active != a.Key(key1) || a.Key(key2) == nil {
		t.Fatalf("application %s: %+v", appA, a)
	}
	if g, j := a.DefaultGrants(); g.GetVoice().GetOutgoing().GetApplicationSid() != appA || len(j) == 0 {
		t.Fatalf("built-in default grants of %s: %v %s", appA, g, j)
	}
	before, beforeB := a.Key(key1), ks.Lookup(appB).Key(key1)

	// Same sealed secrets: the same keys. A new sealed secret for one: a
	// new key for it alone.
	snap.Revision = 2
	snap.Keys[2] = sealedKey(t, kr, appA, key1, storage.KeyActive)
	if err := ks.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	a = ks.Lookup(appA)
	if a.Key(key1) == before {
		t.Error("a key whose sealed secret changed was not opened again")
	}
	if ks.Lookup(appB).Key(key1) != beforeB {
		t.Error("a key whose sealed secret did not change was opened again")
	}
	if a.Key(key2) != ks.FindKey(key2)[0].Key || ks.Lookup(appB).Key(key1) != ks.FindKey(key1)[1].Key {
		t.Error("FindKey and the applications disagree")
	}

	// A new account SID for an application (the seed's ACCOUNT_SID
	// changed) with the same sealed secrets: its keys sign for the new
	// account.
	const acct2 = "AC00000000000000000000000000000002"
	snap.Revision = 3
	snap.Applications[1].AccountSID = acct2 // appA
	if err := ks.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range ks.Lookup(appA).Keys {
		if k.AccountSID() != acct2 {
			t.Errorf("key %s of %s signs for %s after the account changed to %s", k.SID(), appA, k.AccountSID(), acct2)
		}
	}
	if k := ks.Lookup(appB).Key(key1); k.AccountSID() != acct || k != beforeB {
		t.Errorf("key %s of %s: account %s (want %s), reopened %v (want the same key)", key1, appB, k.AccountSID(), acct, k != beforeB)
	}
}
