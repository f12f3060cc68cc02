package replicas

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/sqlite"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func openStore(t *testing.T) storage.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "tokend.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// changes records the counts passed to OnChange.
type changes struct {
	mu sync.Mutex
	ns []int
}

func (c *changes) record(n int) { c.mu.Lock(); c.ns = append(c.ns, n); c.mu.Unlock() }
func (c *changes) get() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.ns...)
}

func beat(t *testing.T, m *Membership, want int) {
	t.Helper()
	if err := m.Beat(t.Context()); err != nil {
		t.Fatalf("Beat() of %s = %v", m.ID(), err)
	}
	if got := m.Live(); got != want {
		t.Errorf("Live() of %s after a beat = %d, want %d", m.ID(), got, want)
	}
}

func TestBeatCounts(t *testing.T) {
	st := openStore(t)
	var ch changes
	a := New(Config{Store: st, ID: "a", Interval: time.Second, TTL: 300 * time.Millisecond, OnChange: ch.record})
	b := New(Config{Store: st, ID: "b", Interval: time.Second, TTL: time.Minute})
	if got := a.Live(); got != 1 {
		t.Errorf("Live() before any beat = %d, want 1", got)
	}
	beat(t, a, 1)
	beat(t, a, 1)
	beat(t, b, 2)
	beat(t, a, 2)
	// a stops beating (as if killed): b counts it out once its beat expires.
	time.Sleep(500 * time.Millisecond)
	beat(t, b, 1)
	beat(t, a, 2)
	// b leaves cleanly.
	if err := st.RemoveReplica(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	beat(t, a, 1)
	// OnChange of a: its first beat, then every change (2 when b joined,
	// 1 when b left), nothing for the beats that changed nothing.
	if got, want := ch.get(), []int{1, 2, 1}; !slices.Equal(got, want) {
		t.Errorf("OnChange calls = %v, want %v", got, want)
	}
}

// failingStore fails every heartbeat while fail is set.
type failingStore struct {
	Store
	mu   sync.Mutex
	fail bool
}

func (f *failingStore) Heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error) {
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail {
		return 0, errors.New("store unreachable")
	}
	return f.Store.Heartbeat(ctx, id, ttl)
}

func TestBeatKeepsCountWhileStoreFails(t *testing.T) {
	st := openStore(t)
	fs := &failingStore{Store: st}
	var errs []error
	a := New(Config{Store: fs, ID: "a", TTL: time.Minute, OnError: func(err error) { errs = append(errs, err) }})
	b := New(Config{Store: st, ID: "b", TTL: time.Minute})
	beat(t, b, 1)
	beat(t, a, 2)
	fs.mu.Lock()
	fs.fail = true
	fs.mu.Unlock()
	for range 3 {
		if err := a.Beat(t.Context()); err == nil {
			t.Fatal("Beat() with the store failing = nil, want an error")
		}
	}
	if got := a.Live(); got != 2 {
		t.Errorf("Live() while the store fails = %d, want 2 (the last count)", got)
	}
	if len(errs) != 3 {
		t.Errorf("OnError called %d times, want 3", len(errs))
	}
	fs.mu.Lock()
	fs.fail = false
	fs.mu.Unlock()
	if err := st.RemoveReplica(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	beat(t, a, 1)
}

// TestRun: replicas beating with Run see each other join, and see one
// that stops (cancelling Run removes its heartbeat) leave within an
// interval or two.
func TestRun(t *testing.T) {
	st := openStore(t)
	const interval = 50 * time.Millisecond
	start := func(id string) (*Membership, context.CancelFunc, chan struct{}) {
		m := New(Config{Store: st, ID: id, Interval: interval, TTL: time.Minute})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { m.Run(ctx); close(done) }()
		return m, cancel, done
	}
	waitLive := func(m *Membership, want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for m.Live() != want {
			if time.Now().After(deadline) {
				t.Fatalf("Live() of %s = %d after 5 s, want %d", m.ID(), m.Live(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	a, stopA, doneA := start("a")
	b, stopB, doneB := start("b")
	defer func() { stopA(); <-doneA }()
	waitLive(a, 2)
	waitLive(b, 2)
	// b stops: its row is removed, though its TTL is a minute.
	stopB()
	<-doneB
	waitLive(a, 1)
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if a == b {
		t.Errorf("NewID() twice = %q both times", a)
	}
	for _, id := range []string{a, b} {
		if err := storage.ValidateReplica(id, time.Second); err != nil {
			t.Errorf("NewID() = %q: %v", id, err)
		}
		if !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
			t.Errorf("NewID() = %q, not valid text", id)
		}
	}
}

// TestBeatAcknowledgesRevision: every beat acknowledges the revision the
// replica serves, and a poke makes a beat at once (well before the next
// interval), so a revoke waiting on ReplicasBehind sees a reload within
// moments.
func TestBeatAcknowledgesRevision(t *testing.T) {
	st := openStore(t)
	var rev atomic.Int64
	rev.Store(3)
	m := New(Config{Store: st, ID: "a", Interval: time.Hour, TTL: 2 * time.Hour, Revision: rev.Load})
	behind := func(r int64) []string {
		t.Helper()
		ids, err := st.ReplicasBehind(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	beat(t, m, 1)
	if got := behind(3); len(got) != 0 {
		t.Errorf("ReplicasBehind(3) after a beat at revision 3 = %q, want none", got)
	}
	if got := behind(4); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ReplicasBehind(4) = %q, want [a]", got)
	}
	// A replica without Revision acknowledges nothing: it is behind any
	// revision above 0.
	old := New(Config{Store: st, ID: "b", Interval: time.Hour, TTL: 2 * time.Hour})
	beat(t, old, 2)
	if got := behind(1); !slices.Equal(got, []string{"b"}) {
		t.Errorf("ReplicasBehind(1) = %q, want [b] (it never acknowledges)", got)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	rev.Store(7)
	m.Poke()
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(behind(7), "a") {
		if time.Now().After(deadline) {
			t.Fatalf("revision 7 not acknowledged 5 s after a poke (interval an hour)")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
