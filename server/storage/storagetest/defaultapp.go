package storagetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/tokend/tokend/server/storage"
)

// The default application: one SID or none, shared by every replica.

func defaultApp(t *testing.T, s storage.Store) string {
	t.Helper()
	sid, err := s.DefaultApplication(t.Context())
	if err != nil {
		t.Fatalf("DefaultApplication() = %v, want nil error", err)
	}
	return sid
}

func testDefaultApplication(t *testing.T, s storage.Store) {
	ctx := t.Context()
	if got := defaultApp(t, s); got != "" {
		t.Fatalf("DefaultApplication() of an empty store = %q, want none", got)
	}
	createApplication(t, s, newApp(1))
	createApplication(t, s, newApp(2))
	if got := defaultApp(t, s); got != "" {
		t.Errorf("DefaultApplication() after CreateApplication = %q, want none (creating sets nothing)", got)
	}
	revs := trackRevisions(t, s)
	steps := []struct {
		name    string
		sid     string
		wantErr error
		want    string
		advance bool
	}{
		{"set_first", appSID(1), nil, appSID(1), true},
		{"set_same", appSID(1), nil, appSID(1), false},
		{"set_other", appSID(2), nil, appSID(2), true},
		{"set_missing", appSID(9), storage.ErrNotFound, appSID(2), false},
		{"unset", "", nil, "", true},
		{"unset_again", "", nil, "", false},
		{"set_again", appSID(1), nil, appSID(1), true},
	}
	for _, st := range steps {
		err := s.SetDefaultApplication(ctx, st.sid)
		checkErr(t, err, st.wantErr, st.name+": SetDefaultApplication("+st.sid+")")
		if got := defaultApp(t, s); got != st.want {
			t.Errorf("%s: DefaultApplication() = %q, want %q", st.name, got, st.want)
		}
		if st.advance {
			revs.advanced(t, st.name+": SetDefaultApplication")
		} else {
			revs.unchanged(t, st.name+": SetDefaultApplication")
		}
		if snap := checkSnapshot(t, s); snap.DefaultApplication != st.want {
			t.Errorf("%s: Snapshot().DefaultApplication = %q, want %q", st.name, snap.DefaultApplication, st.want)
		}
	}
}

func testDefaultApplicationDeleted(t *testing.T, s storage.Store) {
	ctx := t.Context()
	createApplication(t, s, newApp(1))
	createApplication(t, s, newApp(2))
	createKey(t, s, newKey(appSID(1), 1, storage.KeyActive))
	if err := s.SetDefaultApplication(ctx, appSID(1)); err != nil {
		t.Fatalf("SetDefaultApplication() = %v", err)
	}
	// Deleting another application leaves the default alone.
	if err := s.DeleteApplication(ctx, appSID(2)); err != nil {
		t.Fatalf("DeleteApplication(2) = %v", err)
	}
	if got := defaultApp(t, s); got != appSID(1) {
		t.Errorf("DefaultApplication() after deleting another application = %q, want %q", got, appSID(1))
	}
	revs := trackRevisions(t, s)
	if err := s.DeleteApplication(ctx, appSID(1)); err != nil {
		t.Fatalf("DeleteApplication(1) = %v", err)
	}
	revs.advanced(t, "DeleteApplication of the default")
	if got := defaultApp(t, s); got != "" {
		t.Errorf("DefaultApplication() after deleting it = %q, want none", got)
	}
	checkSnapshot(t, s)
	// A new application of the same SID is not the default again.
	createApplication(t, s, newApp(1))
	if got := defaultApp(t, s); got != "" {
		t.Errorf("DefaultApplication() after re-creating the deleted default = %q, want none", got)
	}
}

// testConcurrentDefaultApplication: setting the default while the
// application is deleted never leaves a default naming a missing
// application.
func testConcurrentDefaultApplication(t *testing.T, s storage.Store) {
	ctx := t.Context()
	for round := range 5 {
		app := newApp(100 + round)
		createApplication(t, s, app)
		var wg sync.WaitGroup
		var setErr, delErr error
		wg.Add(2)
		go func() { defer wg.Done(); setErr = s.SetDefaultApplication(ctx, app.SID) }()
		go func() { defer wg.Done(); delErr = s.DeleteApplication(ctx, app.SID) }()
		wg.Wait()
		if delErr != nil {
			t.Fatalf("round %d: DeleteApplication() = %v", round, delErr)
		}
		if setErr != nil && !errors.Is(setErr, storage.ErrNotFound) {
			t.Fatalf("round %d: SetDefaultApplication() = %v, want nil or ErrNotFound", round, setErr)
		}
		if got := defaultApp(t, s); got != "" {
			t.Errorf("round %d: DefaultApplication() = %q after its application was deleted, want none", round, got)
		}
		checkSnapshot(t, s)
	}
}
