package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/server/storage"
)

// heartbeat calls s.Heartbeat and fails the test on an error.
func heartbeat(t *testing.T, s storage.Store, id string, ttl time.Duration) int {
	t.Helper()
	n, err := s.Heartbeat(t.Context(), id, ttl)
	if err != nil {
		t.Fatalf("Heartbeat(%q, %v) = %v", id, ttl, err)
	}
	return n
}

// checkLive checks that a heartbeat of id counts want live replicas.
func checkLive(t *testing.T, s storage.Store, id string, ttl time.Duration, want int) {
	t.Helper()
	if got := heartbeat(t, s, id, ttl); got != want {
		t.Errorf("Heartbeat(%q, %v) = %d live replicas, want %d", id, ttl, got, want)
	}
}

func testHeartbeat(t *testing.T, s storage.Store) {
	revs := trackRevisions(t, s)
	const ttl = time.Minute
	checkLive(t, s, "replica-a", ttl, 1)
	checkLive(t, s, "replica-a", ttl, 1) // again: still one
	checkLive(t, s, "replica-b", ttl, 2)
	checkLive(t, s, "replica-a", ttl, 2)
	checkLive(t, s, "replica-c ☎", ttl, 3)
	revs.unchanged(t, "Heartbeat")

	if err := s.RemoveReplica(t.Context(), "replica-b"); err != nil {
		t.Fatalf("RemoveReplica(replica-b) = %v", err)
	}
	revs.unchanged(t, "RemoveReplica")
	checkLive(t, s, "replica-a", ttl, 2)
	if err := s.RemoveReplica(t.Context(), "replica-b"); err != nil {
		t.Errorf("RemoveReplica(replica-b) again = %v, want nil", err)
	}
	if err := s.RemoveReplica(t.Context(), "never-there"); err != nil {
		t.Errorf("RemoveReplica(never-there) = %v, want nil", err)
	}
	// A removed replica that beats again is counted again.
	checkLive(t, s, "replica-b", ttl, 3)

	// Heartbeats are not part of the store's content.
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	if len(snap.Applications) != 0 || len(snap.Keys) != 0 || len(snap.Credentials) != 0 {
		t.Errorf("Snapshot() after heartbeats = %+v, want it empty", snap)
	}
}

func testHeartbeatExpiry(t *testing.T, s storage.Store) {
	const (
		short = 300 * time.Millisecond
		long  = time.Minute
	)
	checkLive(t, s, "short-lived", short, 1)
	checkLive(t, s, "long-lived", long, 2)
	time.Sleep(short + 200*time.Millisecond)
	checkLive(t, s, "long-lived", long, 1)
	// An expired replica that beats again is alive again, and its new
	// expiry holds.
	checkLive(t, s, "short-lived", long, 2)
	time.Sleep(short + 200*time.Millisecond)
	checkLive(t, s, "long-lived", long, 2)
	// A shorter ttl shortens the expiry too: the last heartbeat wins.
	checkLive(t, s, "short-lived", short, 2)
	time.Sleep(short + 200*time.Millisecond)
	checkLive(t, s, "long-lived", long, 1)
}

// behind calls s.ReplicasBehind and fails the test on an error.
func behind(t *testing.T, s storage.Store, rev int64) []string {
	t.Helper()
	ids, err := s.ReplicasBehind(t.Context(), rev)
	if err != nil {
		t.Fatalf("ReplicasBehind(%d) = %v", rev, err)
	}
	return ids
}

func ack(t *testing.T, s storage.Store, id string, rev int64) {
	t.Helper()
	if err := s.AckRevision(t.Context(), id, rev); err != nil {
		t.Fatalf("AckRevision(%q, %d) = %v", id, rev, err)
	}
}

// testAckRevision: a replica is behind a revision until it acknowledges
// that one or a later one; an acknowledgement never goes down; a replica
// that is not alive is never behind; heartbeats keep the acknowledged
// revision; none of it advances the store's revision.
func testAckRevision(t *testing.T, s storage.Store) {
	revs := trackRevisions(t, s)
	const short, long = 300 * time.Millisecond, time.Minute
	if got := behind(t, s, 1); len(got) != 0 {
		t.Errorf("ReplicasBehind(1) with no replica = %q, want none", got)
	}
	ack(t, s, "not-there", 5) // no row: not an error, and no row made
	heartbeat(t, s, "replica-a", long)
	heartbeat(t, s, "replica-b", long)
	heartbeat(t, s, "short-lived", short)
	// A new row has acknowledged nothing.
	if got, want := behind(t, s, 1), []string{"replica-a", "replica-b", "short-lived"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(1) before any acknowledgement = %q, want %q", got, want)
	}
	if got := behind(t, s, 0); len(got) != 0 {
		t.Errorf("ReplicasBehind(0) = %q, want none", got)
	}
	ack(t, s, "replica-a", 5)
	ack(t, s, "replica-b", 3)
	if got, want := behind(t, s, 5), []string{"replica-b", "short-lived"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(5) = %q, want %q", got, want)
	}
	if got, want := behind(t, s, 4), []string{"replica-b", "short-lived"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(4) = %q, want %q", got, want)
	}
	if got, want := behind(t, s, 3), []string{"short-lived"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(3) = %q, want %q", got, want)
	}
	ack(t, s, "replica-a", 2) // lower: kept at 5
	heartbeat(t, s, "replica-a", long)
	if got, want := behind(t, s, 5), []string{"replica-b", "short-lived"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(5) after a lower acknowledgement and a heartbeat = %q, want %q", got, want)
	}
	// Expired: no longer counted, whatever it acknowledged.
	time.Sleep(short + 200*time.Millisecond)
	if got, want := behind(t, s, 5), []string{"replica-b"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(5) after short-lived expired = %q, want %q", got, want)
	}
	ack(t, s, "replica-b", 9)
	if got := behind(t, s, 5); len(got) != 0 {
		t.Errorf("ReplicasBehind(5) after every live replica acknowledged it = %q, want none", got)
	}
	// Removed and back: a new row, nothing acknowledged.
	if err := s.RemoveReplica(t.Context(), "replica-b"); err != nil {
		t.Fatal(err)
	}
	heartbeat(t, s, "replica-b", long)
	if got, want := behind(t, s, 5), []string{"replica-b"}; !slices.Equal(got, want) {
		t.Errorf("ReplicasBehind(5) after replica-b came back = %q, want %q", got, want)
	}
	revs.unchanged(t, "AckRevision")
}

func testHeartbeatInvalid(t *testing.T, s storage.Store) {
	tests := []struct {
		name, id string
		ttl      time.Duration
		want     string // in the error
	}{
		{"EmptyID", "", time.Second, "replica id"},
		{"LongID", strings.Repeat("r", storage.MaxReplicaIDLength+1), time.Second, "replica id"},
		{"InvalidUTF8", "replica-\xff", time.Second, "replica id"},
		{"NUL", "replica\x00a", time.Second, "replica id"},
		{"ZeroTTL", "replica-a", 0, "ttl"},
		{"NegativeTTL", "replica-a", -time.Second, "ttl"},
		{"SubMillisecondTTL", "replica-a", 500 * time.Microsecond, "ttl"},
	}
	revs := trackRevisions(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := s.Heartbeat(t.Context(), tt.id, tt.ttl)
			if err == nil {
				t.Fatalf("Heartbeat(%q, %v) = %d, nil; want an error", tt.id, tt.ttl, n)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Heartbeat(%q, %v) = %v, want an error naming %q", tt.id, tt.ttl, err, tt.want)
			}
			for _, sentinel := range []error{storage.ErrNotFound, storage.ErrAlreadyExists, storage.ErrConflict} {
				if errors.Is(err, sentinel) {
					t.Errorf("Heartbeat(%q, %v) = %v, want none of the sentinel errors", tt.id, tt.ttl, err)
				}
			}
		})
	}
	revs.unchanged(t, "invalid Heartbeat")
	// Nothing was written: the first valid replica is alone.
	checkLive(t, s, "replica-a", time.Minute, 1)
	// The longest valid id is accepted.
	checkLive(t, s, strings.Repeat("r", storage.MaxReplicaIDLength), time.Minute, 2)
}

func testConcurrentHeartbeat(t *testing.T, s storage.Store) {
	const (
		replicas = 8
		beats    = 5
	)
	var wg sync.WaitGroup
	errs := make(chan error, replicas*beats)
	for r := range replicas {
		wg.Go(func() {
			id := fmt.Sprintf("replica-%d", r)
			for range beats {
				n, err := s.Heartbeat(t.Context(), id, time.Minute)
				if err != nil {
					errs <- fmt.Errorf("Heartbeat(%q) = %v", id, err)
					return
				}
				if n < 1 || n > replicas {
					errs <- fmt.Errorf("Heartbeat(%q) = %d live replicas, want 1 to %d", id, n, replicas)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkLive(t, s, "replica-0", time.Minute, replicas)
}
