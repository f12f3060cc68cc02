package keystore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
)

// snapshotStore is a storage.Store whose Snapshot is a fixed one (only
// Snapshot is called by Reload).
type snapshotStore struct {
	storage.Store
	snap func() storage.Snapshot
}

func (s snapshotStore) Snapshot(context.Context) (storage.Snapshot, error) { return s.snap(), nil }

// bigSnapshot is apps applications with two keys each (one retired, one
// active), as the scale test's store holds.
func bigSnapshot(t testing.TB, kr *secrets.Keyring, apps int) storage.Snapshot {
	snap := storage.Snapshot{Revision: 1}
	now := time.Now()
	for i := range apps {
		app := fmt.Sprintf("AP%032x", i+1)
		snap.Applications = append(snap.Applications, storage.Application{
			SID: app, AccountSID: fmt.Sprintf("AC%032x", i%1000+1), FriendlyName: fmt.Sprintf("app %d", i), CreatedAt: now, UpdatedAt: now,
		})
		for k := range 2 {
			sid := fmt.Sprintf("SK%032x", 2*i+k+1)
			sealed, mk, err := kr.Seal([]byte(fmt.Sprintf("secret-%032x", 2*i+k)), secrets.AssociatedData(app, sid))
			if err != nil {
				t.Fatal(err)
			}
			state := storage.KeyRetired
			if k == 1 {
				state = storage.KeyActive
			}
			snap.Keys = append(snap.Keys, storage.Key{ApplicationSID: app, SID: sid, SealedSecret: sealed, MasterKeyID: mk, State: state, CreatedAt: now, ActivatedAt: now})
		}
	}
	return snap
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// maxBytesPerApp bounds what the keystore keeps per application with two
// keys (about 900 bytes when this was written, including the strings it
// keeps from the snapshot; it was 2,200 before the view was made compact):
// 100,000 applications must fit in tokend's 256 MiB with the collector's
// headroom.
const maxBytesPerApp = 1200

// The memory the keystore keeps per application (with two keys), after
// a reload: what bounds tokend's RSS with a large store.
func TestMemoryPerApplication(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 20,000 applications")
	}
	const apps = 20_000
	mk, _ := secrets.GenerateMasterKey()
	kr, _ := secrets.NewKeyring(mk)
	before := heapInUse()
	ks := New(snapshotStore{snap: func() storage.Snapshot { return bigSnapshot(t, kr, apps) }}, kr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := ks.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := heapInUse()
	per := float64(after-before) / apps
	t.Logf("keystore: %.0f bytes per application with 2 keys (%d applications: %.1f MiB)", per, apps, float64(after-before)/(1<<20))
	if per > maxBytesPerApp {
		t.Errorf("keystore keeps %.0f bytes per application, want at most %d", per, maxBytesPerApp)
	}
	if got := ks.Len(); got != apps {
		t.Fatalf("keystore holds %d applications, want %d", got, apps)
	}
	runtime.KeepAlive(ks)
}
