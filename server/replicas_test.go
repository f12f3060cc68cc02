package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/tokend/tokend/server"
)

// postgresSchema returns a PostgreSQL DSN whose search_path is a schema
// of the test's own, dropped when it ends; it skips the test without
// TOKEND_TEST_POSTGRES.
func postgresSchema(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("TOKEND_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("TOKEND_TEST_POSTGRES not set")
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "server_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			c.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			c.Close(ctx)
		}
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// burstOf mints for one identity until refused and returns how many
// were allowed.
func burstOf(t *testing.T, h *harness, path string) int {
	t.Helper()
	for n := 0; n < 100; n++ {
		code, body, _ := h.mintAs(t, path, caller{}, `{"identity":"share_user"}`)
		switch code {
		case codes.OK:
		case codes.ResourceExhausted:
			return n
		default:
			t.Fatalf("mint = %v %v", code, body)
		}
	}
	t.Fatal("100 mints allowed in a burst")
	return 0
}

func beat(t *testing.T, h *harness) {
	t.Helper()
	if err := h.srv.Replicas().Beat(t.Context()); err != nil {
		t.Fatalf("Beat() = %v", err)
	}
}

// TestRateLimitShareAcrossReplicas: two tokend on one PostgreSQL store
// each enforce half of the configured limits once their heartbeats count
// two replicas, report it in /readyz and /metrics, and take the whole
// limit back when the other leaves.
func TestRateLimitShareAcrossReplicas(t *testing.T) {
	store := postgresSchema(t)
	// The identity limit is slow (a token every 4 s per replica): no
	// token comes back while a burst is measured; the principal limit
	// (all anonymous callers) is fast, so the identity limit is the one
	// that refuses.
	cfg := server.Config{Store: store, RateLimitPrincipal: 2000, RateLimitIdentity: 0.5, RateLimitBurst: 10}
	a := newHarness(t, cfg)
	b := newHarness(t, cfg)
	if a.srv.Replicas() == nil || b.srv.Replicas() == nil {
		t.Fatal("Replicas() = nil on a PostgreSQL store")
	}
	beat(t, a)
	beat(t, b)
	beat(t, a)

	if code, body := a.do(t, "GET", "/readyz", "", ""); code != 200 || body["replicas"] != "2" {
		t.Errorf("GET /readyz = %d %v, want 200 with replicas 2", code, body)
	}
	samples := a.scrape(t)
	for _, m := range []struct {
		name  string
		scope string
		want  float64
	}{
		{"tokend_replicas", "", 2},
		{"tokend_rate_limit_rate", "principal", 1000},
		{"tokend_rate_limit_burst", "principal", 5},
		{"tokend_rate_limit_rate", "identity", 0.25},
		{"tokend_rate_limit_burst", "identity", 5},
	} {
		labels := map[string]string{}
		if m.scope != "" {
			labels["scope"] = m.scope
		}
		if got, ok := find(samples, m.name, labels); !ok || got != m.want {
			t.Errorf("%s%v = %v (found %v), want %v", m.name, labels, got, ok, m.want)
		}
	}
	// Half the burst of the identity limit on each replica.
	if got := burstOf(t, a, "rest"); got != 5 {
		t.Errorf("burst through a with 2 replicas = %d, want 5", got)
	}
	if got := burstOf(t, b, "grpc"); got != 5 {
		t.Errorf("burst through b with 2 replicas = %d, want 5", got)
	}

	// b stops cleanly (Run removes its heartbeat when its context ends):
	// a's next beat takes the whole limit back.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b.srv.Replicas().Run(ctx)
	beat(t, a)
	if got := a.srv.Replicas().Live(); got != 1 {
		t.Fatalf("Live() of a after b left = %d, want 1", got)
	}
	samples = a.scrape(t)
	if got, _ := find(samples, "tokend_rate_limit_burst", map[string]string{"scope": "identity"}); got != 10 {
		t.Errorf("tokend_rate_limit_burst{scope=identity} after b left = %v, want 10", got)
	}
	if code, body := a.do(t, "GET", "/readyz", "", ""); body["replicas"] != "1" {
		t.Errorf("GET /readyz after b left = %d %v, want replicas 1", code, body)
	}
}

// TestNoReplicasOnSQLite: a SQLite store serves one process: no
// heartbeat, the configured limits as they are, no replicas in /readyz.
func TestNoReplicasOnSQLite(t *testing.T) {
	// A slow rate: no token comes back while the burst is measured.
	h := newHarness(t, server.Config{RateLimitPrincipal: 0.1, RateLimitBurst: 10})
	if h.srv.Replicas() != nil {
		t.Error("Replicas() != nil on SQLite")
	}
	if _, body := h.do(t, "GET", "/readyz", "", ""); body["replicas"] != nil {
		t.Errorf("GET /readyz = %v, want no replicas", body)
	}
	samples := h.scrape(t)
	if got, _ := find(samples, "tokend_replicas", nil); got != 1 {
		t.Errorf("tokend_replicas = %v, want 1", got)
	}
	if got, _ := find(samples, "tokend_rate_limit_rate", map[string]string{"scope": "principal"}); got != 0.1 {
		t.Errorf("tokend_rate_limit_rate{scope=principal} = %v, want 0.1", got)
	}
	if _, ok := find(samples, "tokend_rate_limit_rate", map[string]string{"scope": "identity"}); ok {
		t.Error("tokend_rate_limit_rate{scope=identity} without an identity limit")
	}
	if got := burstOf(t, h, "grpc"); got != 10 {
		t.Errorf("burst on SQLite = %d, want 10 (the configured burst)", got)
	}
}

// TestAnonymousLimitShareAcrossReplicas: an anonymous rule's rate limit
// per client address is a configured limit like the others: two replicas
// on one PostgreSQL store each allow half of its burst, a policy
// reloaded while they are two takes the half at once, and the whole
// burst comes back when the other replica leaves.
func TestAnonymousLimitShareAcrossReplicas(t *testing.T) {
	const pol = `rules:
  - name: public-page
    kinds: ["anonymous"]
    applications: ["*"]
    identities: {fixed: user}
    grants: {voice: {outgoing: true}}
    rate_limit: {per_second: 0.01, burst: %d}
`
	store := postgresSchema(t)
	policyDir := t.TempDir()
	policyFile := filepath.Join(policyDir, "policy.yaml")
	write := func(burst int) {
		t.Helper()
		tmp := policyFile + ".tmp"
		if err := os.WriteFile(tmp, fmt.Appendf(nil, pol, burst), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policyFile); err != nil {
			t.Fatal(err)
		}
	}
	write(10)
	cfg := server.Config{Store: store, PolicyFile: policyFile}
	a := adminHarness(t, cfg)
	b := adminHarness(t, cfg)
	beat(t, a)
	beat(t, b)
	beat(t, a)
	anonBurst := func(h *harness, path string) int {
		t.Helper()
		for n := 0; n < 100; n++ {
			code, body, _ := h.mintAs(t, path, caller{}, `{}`)
			switch code {
			case codes.OK:
			case codes.ResourceExhausted:
				return n
			default:
				t.Fatalf("anonymous mint = %v %v", code, body)
			}
		}
		t.Fatal("100 anonymous mints allowed in a burst")
		return 0
	}
	if got := anonBurst(a, "rest"); got != 5 {
		t.Errorf("anonymous burst through a with 2 replicas = %d, want 5 (half of 10)", got)
	}
	if got := anonBurst(b, "grpc"); got != 5 {
		t.Errorf("anonymous burst through b with 2 replicas = %d, want 5 (half of 10)", got)
	}

	// A reloaded policy has new buckets: they take the share at once.
	write(8)
	deadline := time.Now().Add(10 * time.Second)
	var got int
	for {
		if got = anonBurst(a, "rest"); got != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != 4 {
		t.Errorf("anonymous burst through a after a reload with 2 replicas = %d, want 4 (half of 8)", got)
	}

	// b leaves: a's next beat gives the rule's whole limit back (seen in
	// the new buckets of another reload).
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	b.srv.Replicas().Run(ctx)
	beat(t, a)
	write(12)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if got = anonBurst(a, "rest"); got != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != 12 {
		t.Errorf("anonymous burst through a after b left = %d, want 12 (the whole burst)", got)
	}
}
