package sqlite

import (
	"bytes"
	"database/sql"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/tokend/tokend/server/storage/storagetest"
)

// TestUpgradeFromVersion1 opens a database created by the first migration
// alone, as a tokend release before credentials left it: Open applies the
// later migrations and keeps what was there.
func TestUpgradeFromVersion1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "tokend.db")
	if err := createFile(path); err != nil {
		t.Fatalf("create %s: %v", path, err)
	}
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations() = %v", err)
	}
	if len(ms) < 2 || ms[1].name != "0002_credentials.sql" {
		t.Fatalf("migrations = %d, want 0002_credentials.sql second", len(ms))
	}
	old, err := sql.Open("sqlite", dsn(path, url.Values{"_journal_mode": {"WAL"}, "_txlock": {"immediate"}}))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	old.SetMaxOpenConns(1)
	if err := apply(ctx, old, ms[0], 1); err != nil {
		t.Fatalf("apply %s: %v", ms[0].name, err)
	}
	for _, q := range []string{
		`INSERT INTO applications VALUES ('AP1', 'AC1', 'old', X'7B7D', 60, 'ie1', 1000, 2000)`,
		`INSERT INTO keys (application_sid, sid, sealed_secret, master_key_id, state, created_at, activated_at) VALUES ('AP1', 'SK1', X'00FF', 'm1', 'active', 1000, 1000)`,
		`UPDATE revision SET value = 7`,
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var version int
	if err := old.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != 1 {
		t.Fatalf("PRAGMA user_version of the old database = %d, %v, want 1", version, err)
	}
	if err := old.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s := openTemp(t, path)
	if err := s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != len(ms) {
		t.Errorf("PRAGMA user_version after Open = %d, %v, want %d", version, err, len(ms))
	}
	storagetest.CheckUpgradedFromV1(t, s)
}

// TestCredentialConstraints checks that the database itself refuses what
// CreateCredential checks first: a hash that is not 32 bytes, a hash taken,
// groups that are not a JSON array.
func TestCredentialConstraints(t *testing.T) {
	s := openTemp(t, filepath.Join(t.TempDir(), "tokend.db"))
	ctx := t.Context()
	insert := `INSERT INTO credentials (name, hash, groups, created_at) VALUES (?, ?, ?, 0)`
	hash := bytes.Repeat([]byte{1}, 32)
	if _, err := s.write.ExecContext(ctx, insert, "a", hash, `["g"]`); err != nil {
		t.Fatalf("insert credential: %v", err)
	}
	for _, c := range []struct {
		what   string
		name   string
		hash   []byte
		groups string
	}{
		{"a taken name", "a", bytes.Repeat([]byte{2}, 32), `[]`},
		{"a taken hash", "b", hash, `[]`},
		{"a 31-byte hash", "c", hash[:31], `[]`},
		{"a text hash", "d", nil, `[]`},
		{"groups not JSON", "e", bytes.Repeat([]byte{3}, 32), `[`},
		{"groups an object", "f", bytes.Repeat([]byte{4}, 32), `{}`},
	} {
		var h any = c.hash
		if c.hash == nil {
			h = "0123456789abcdef0123456789abcdef"
		}
		if _, err := s.write.ExecContext(ctx, insert, c.name, h, c.groups); err == nil {
			t.Errorf("inserting a credential with %s = nil error, want a constraint error", c.what)
		}
	}
}
