package keystore

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
)

// records is a slog.Handler that keeps every record.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// lines returns each record as "LEVEL message key=value…".
func (r *records) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.recs {
		var b strings.Builder
		b.WriteString(rec.Level.String() + " " + rec.Message)
		rec.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.Key + "=" + a.Value.String())
			return true
		})
		out = append(out, b.String())
	}
	return out
}

// TestOutageLog: an outage of two and a half minutes with a failure every
// 250 ms logs its start once, a reminder with the count each minute, and
// its end once; a second outage starts again.
func TestOutageLog(t *testing.T) {
	rec := &records{}
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	o := newOutageLog(slog.New(rec), "read the store's revision", "changes made by other replicas are not seen")
	o.now = func() time.Time { return now }
	errDown := errors.New("dial tcp 10.0.0.5:5432: connect: connection refused")

	o.ok()          // healthy: nothing to say
	for range 600 { // 150 s of failures, 4 a second
		o.fail(errDown)
		now = now.Add(250 * time.Millisecond)
	}
	o.ok()
	o.ok()
	o.fail(errDown)
	o.ok()

	want := []struct{ prefix string }{
		{"WARN store unavailable: cannot read the store's revision (changes made by other replicas are not seen); retrying, and logging the failure at most once a minute until it recovers error=dial tcp 10.0.0.5:5432: connect: connection refused"},
		{"WARN store still unavailable: cannot read the store's revision (changes made by other replicas are not seen) error=dial tcp 10.0.0.5:5432: connect: connection refused failures=240 failures_total=241 since=2026-12-04T10:00:00Z for=1m0s"},
		{"WARN store still unavailable: cannot read the store's revision (changes made by other replicas are not seen) error=dial tcp 10.0.0.5:5432: connect: connection refused failures=240 failures_total=481 since=2026-12-04T10:00:00Z for=2m0s"},
		{"INFO store available again: read the store's revision works failures_total=600 since=2026-12-04T10:00:00Z for=2m30s"},
		{"WARN store unavailable: cannot read the store's revision (changes made by other replicas are not seen);"},
		{"INFO store available again: read the store's revision works failures_total=1 "},
	}
	got := rec.lines()
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w.prefix) {
			t.Errorf("line %d:\n got %s\nwant %s…", i, got[i], w.prefix)
		}
	}
}

// failingStore is a store whose Revision fails while down is set.
type failingStore struct {
	snapshotStore
	down  atomic.Bool
	calls atomic.Int64
}

func (s *failingStore) Revision(context.Context) (int64, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return 0, errors.New("connection refused")
	}
	return 1, nil
}

// TestWatchLogsAnOutageOnce: Watch ticking every millisecond through an
// outage logs one warning and, when the store is back, one recovery line.
func TestWatchLogsAnOutageOnce(t *testing.T) {
	mk, _ := secrets.GenerateMasterKey()
	kr, _ := secrets.NewKeyring(mk)
	st := &failingStore{snapshotStore: snapshotStore{snap: func() storage.Snapshot { return storage.Snapshot{Revision: 1} }}}
	rec := &records{}
	ks := New(st, kr, slog.New(rec))
	if err := ks.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	var storeErrors atomic.Int64
	ks.SetStoreErrorHook(func(string, error) { storeErrors.Add(1) })
	st.down.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ks.Watch(ctx, time.Millisecond); close(done) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, strings.Join(rec.lines(), "\n"))
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("50 failed revision reads", func() bool { return st.calls.Load() >= 50 })
	st.down.Store(false)
	waitFor("the recovery line", func() bool { return len(rec.lines()) >= 2 })
	n := st.calls.Load()
	waitFor("more revision reads", func() bool { return st.calls.Load() >= n+20 })
	cancel()
	<-done

	got := rec.lines()
	if len(got) != 2 || !strings.HasPrefix(got[0], "WARN store unavailable: cannot read the store's revision") ||
		!strings.HasPrefix(got[1], "INFO store available again:") {
		t.Errorf("log, want one warning and one recovery line:\n%s", strings.Join(got, "\n"))
	}
	if storeErrors.Load() < 50 {
		t.Errorf("store error hook told %d times, want every failure (>= 50): the metric counts them all", storeErrors.Load())
	}
}
