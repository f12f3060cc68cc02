package keystore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
)

// usageStore records the key usage written to it, and fails the writes
// while down is set.
type usageStore struct {
	snapshotStore
	down atomic.Bool
	mu   sync.Mutex
	got  []storage.KeyUsage
}

func (s *usageStore) RecordKeyUsage(_ context.Context, u []storage.KeyUsage) error {
	if s.down.Load() {
		return errors.New("connection refused")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, u...)
	return nil
}

// TestFlushRetriesAfterAFailedWrite: usage a flush could not write is
// written by the next flush. Otherwise the store would never learn how
// long a key's tokens stay valid, and the provisioner could delete the
// key at Twilio while they still are.
func TestFlushRetriesAfterAFailedWrite(t *testing.T) {
	mk, _ := secrets.GenerateMasterKey()
	kr, _ := secrets.NewKeyring(mk)
	snap := storage.Snapshot{
		Revision:     1,
		Applications: []storage.Application{{SID: appA, AccountSID: acct}},
		Keys:         []storage.Key{sealedKey(t, kr, appA, key1, storage.KeyActive)},
	}
	st := &usageStore{snapshotStore: snapshotStore{snap: func() storage.Snapshot { return snap }}}
	ks := New(st, kr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	if err := ks.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	iat := time.Now().Unix()
	tok := ks.Lookup(appA).Active.Sign(&mint.Claims{Identity: "alice", IssuedAt: iat, TTL: 600})

	st.down.Store(true)
	if err := ks.FlushUsage(ctx); err == nil {
		t.Fatal("FlushUsage with the store down = nil, want an error")
	}
	st.down.Store(false)
	if err := ks.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.got) != 1 || st.got[0].SID != key1 || st.got[0].OutstandingUntil.Unix() != tok.ExpiresAt {
		t.Fatalf("usage written after the store came back = %+v, want %s outstanding until %d", st.got, key1, tok.ExpiresAt)
	}
}
