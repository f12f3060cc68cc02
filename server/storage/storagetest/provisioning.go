package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tokend/tokend/server/storage"
)

// provisioningTests are the suite's tests of storage.ProvisioningStore.
var provisioningTests = []struct {
	name string
	run  func(t *testing.T, s storage.Store)
}{
	{"TwilioCredential", testTwilioCredential},
	{"KeyOps", testKeyOps},
	{"Lease", testLease},
	{"ConcurrentLease", testConcurrentLease},
}

func testTwilioCredential(t *testing.T, s storage.Store) {
	ctx := context.Background()
	rev0 := revision(t, s)
	c := storage.TwilioCredential{ApplicationSID: appSID(1), Username: accountSID(1), SealedSecret: sealedSecret(appSID(1), 0, "cred"), MasterKeyID: "master-1", RotateEvery: 30 * 24 * time.Hour}
	if err := s.PutTwilioCredential(ctx, c); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PutTwilioCredential(no application) = %v, want ErrNotFound", err)
	}
	createApplication(t, s, newApp(1))
	createApplication(t, s, newApp(2))
	rev1 := revision(t, s)
	if _, err := s.GetTwilioCredential(ctx, appSID(1)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetTwilioCredential(none) = %v, want ErrNotFound", err)
	}
	before := time.Now().Add(-time.Second)
	if err := s.PutTwilioCredential(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetTwilioCredential(ctx, appSID(1))
	if err != nil {
		t.Fatal(err)
	}
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("UpdatedAt = %v, want about now", got.UpdatedAt)
	}
	if diff := cmp.Diff(c, got, cmpopts.IgnoreFields(storage.TwilioCredential{}, "UpdatedAt")); diff != "" {
		t.Errorf("GetTwilioCredential (-want +got):\n%s", diff)
	}
	// Replace it.
	c2 := c
	c2.Username, c2.SealedSecret, c2.RotateEvery = keySID(9), sealedSecret(appSID(1), 0, "cred2"), 0
	if err := s.PutTwilioCredential(ctx, c2); err != nil {
		t.Fatal(err)
	}
	c3 := storage.TwilioCredential{ApplicationSID: appSID(2), Username: accountSID(2), SealedSecret: []byte{1}, MasterKeyID: "m"}
	if err := s.PutTwilioCredential(ctx, c3); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListTwilioCredentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]storage.TwilioCredential{c2, c3}, list, cmpopts.IgnoreFields(storage.TwilioCredential{}, "UpdatedAt")); diff != "" {
		t.Errorf("ListTwilioCredentials (-want +got):\n%s", diff)
	}
	if ids, err := s.MasterKeyIDs(ctx); err != nil || fmt.Sprint(ids) != fmt.Sprint(map[string]int{"m": 1, "master-1": 1}) {
		t.Errorf("MasterKeyIDs = %v, %v, want the credentials' master keys counted", ids, err)
	}
	if rev := revision(t, s); rev != rev1 || rev1 == rev0 {
		t.Errorf("revision moved from %d to %d on credential writes, want unchanged", rev1, rev)
	}
	if err := s.DeleteTwilioCredential(ctx, appSID(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTwilioCredential(ctx, appSID(1)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteTwilioCredential(again) = %v, want ErrNotFound", err)
	}
	// Deleting the application deletes its credential.
	if err := s.DeleteApplication(ctx, appSID(2)); err != nil {
		t.Fatal(err)
	}
	if list, err := s.ListTwilioCredentials(ctx); err != nil || len(list) != 0 {
		t.Errorf("ListTwilioCredentials after deletes = %v, %v, want none", list, err)
	}
}

func testKeyOps(t *testing.T, s storage.Store) {
	ctx := context.Background()
	if err := s.PutKeyOp(ctx, storage.KeyOp{ID: "x", ApplicationSID: appSID(1), Op: "provision"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PutKeyOp(no application) = %v, want ErrNotFound", err)
	}
	createApplication(t, s, newApp(1))
	createApplication(t, s, newApp(2))
	ops := []storage.KeyOp{
		{ID: "op-1", ApplicationSID: appSID(1), Op: "provision", Activate: true},
		{ID: "op-2", ApplicationSID: appSID(1), Op: "delete", APIKeySID: keySID(1)},
		{ID: "op-3", ApplicationSID: appSID(2), Op: "revoke", APIKeySID: keySID(2)},
	}
	for _, op := range ops {
		if err := s.PutKeyOp(ctx, op); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct CreatedAt
	}
	// Replacing keeps the order.
	ops[0].Activate = false
	if err := s.PutKeyOp(ctx, ops[0]); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListKeyOps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ops, got, cmpopts.IgnoreFields(storage.KeyOp{}, "CreatedAt")); diff != "" {
		t.Errorf("ListKeyOps (-want +got):\n%s", diff)
	}
	if err := s.DeleteKeyOp(ctx, "op-2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKeyOp(ctx, "op-2"); err != nil {
		t.Errorf("DeleteKeyOp(gone) = %v, want nil", err)
	}
	if err := s.DeleteApplication(ctx, appSID(2)); err != nil {
		t.Fatal(err)
	}
	got, err = s.ListKeyOps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ops[:1], got, cmpopts.IgnoreFields(storage.KeyOp{}, "CreatedAt")); diff != "" {
		t.Errorf("ListKeyOps after deletes (-want +got):\n%s", diff)
	}
}

func testLease(t *testing.T, s storage.Store) {
	ctx := context.Background()
	acquire := func(holder string, ttl time.Duration, want bool) {
		t.Helper()
		got, err := s.AcquireLease(ctx, "rotation", holder, ttl)
		if err != nil || got != want {
			t.Fatalf("AcquireLease(%s) = %v, %v, want %v", holder, got, err, want)
		}
	}
	acquire("a", time.Hour, true)
	acquire("a", time.Hour, true) // renew
	acquire("b", time.Hour, false)
	if got, err := s.AcquireLease(ctx, "other", "b", time.Hour); err != nil || !got {
		t.Fatalf("AcquireLease(other name) = %v, %v, want true", got, err)
	}
	if err := s.ReleaseLease(ctx, "rotation", "b"); err != nil { // not b's: left alone
		t.Fatal(err)
	}
	acquire("b", time.Hour, false)
	if err := s.ReleaseLease(ctx, "rotation", "a"); err != nil {
		t.Fatal(err)
	}
	acquire("b", 200*time.Millisecond, true)
	acquire("a", time.Hour, false)
	time.Sleep(300 * time.Millisecond) // b dies: its lease expires
	acquire("a", time.Hour, true)
	acquire("b", time.Hour, false)
}

// testConcurrentLease races holders for one lease: exactly one wins.
func testConcurrentLease(t *testing.T, s storage.Store) {
	ctx := context.Background()
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.AcquireLease(ctx, "race", fmt.Sprint("holder-", i), time.Minute)
			if err != nil {
				t.Errorf("AcquireLease: %v", err)
			}
			if got {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d holders got the lease, want 1", n)
	}
}
