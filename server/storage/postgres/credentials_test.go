package postgres

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokend/tokend/server/storage/storagetest"
)

// TestUpgradeFromVersion1 opens a schema created by the first migration
// alone, as a tokend release before credentials left it: OpenSchema
// applies the later migrations and keeps what was there.
func TestUpgradeFromVersion1(t *testing.T) {
	dsn := testDSN(t)
	ctx := t.Context()
	schema := newSchema(t, dsn)
	createSchema(t, dsn, schema)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations() = %v", err)
	}
	if len(ms) < 2 || ms[1].name != "0002_credentials.sql" {
		t.Fatalf("migrations = %d, want 0002_credentials.sql second", len(ms))
	}

	conn, err := pgx.Connect(ctx, withSearchPath(t, dsn, schema))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	for _, q := range []string{
		// As migrate created it, and the first migration.
		`CREATE TABLE schema_migrations (
			version    integer     NOT NULL PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`,
		ms[0].sql,
		`INSERT INTO schema_migrations (version, name) VALUES (1, '` + ms[0].name + `')`,
		`INSERT INTO applications VALUES ('AP1', 'AC1', 'old', '\x7b7d', 60, 'ie1', now(), now())`,
		`INSERT INTO keys (application_sid, sid, sealed_secret, master_key_id, state, created_at, activated_at) VALUES ('AP1', 'SK1', '\x00ff', 'm1', 'active', now(), now())`,
		`UPDATE revision SET value = 7`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			conn.Close(ctx)
			t.Fatalf("%.60s: %v", q, err)
		}
	}
	conn.Close(ctx)

	s := openSchema(t, dsn, schema)
	if count, version := schemaVersion(t, s); count != len(ms) || version != len(ms) {
		t.Errorf("schema_migrations after OpenSchema = %d rows up to version %d, want %d rows up to %d", count, version, len(ms), len(ms))
	}
	storagetest.CheckUpgradedFromV1(t, s)
	// Opening again changes nothing.
	s2 := openSchema(t, dsn, schema)
	if count, version := schemaVersion(t, s2); count != len(ms) || version != len(ms) {
		t.Errorf("schema_migrations after reopening = %d rows up to version %d, want %d rows up to %d", count, version, len(ms), len(ms))
	}
}

// TestCredentialConstraints checks that the database itself refuses what
// CreateCredential checks first: a hash that is not 32 bytes, a taken name
// or hash, NULL groups.
func TestCredentialConstraints(t *testing.T) {
	dsn := testDSN(t)
	s := openSchema(t, dsn, newSchema(t, dsn))
	ctx := t.Context()
	insert := `INSERT INTO credentials (name, hash, groups, created_at) VALUES ($1, $2, $3, now())`
	hash := bytes.Repeat([]byte{1}, 32)
	if _, err := s.pool.Exec(ctx, insert, "a", hash, []string{"g"}); err != nil {
		t.Fatalf("insert credential: %v", err)
	}
	for _, c := range []struct {
		what   string
		name   string
		hash   []byte
		groups any
		code   string
	}{
		{"a taken name", "a", bytes.Repeat([]byte{2}, 32), []string{}, codeUniqueViolation},
		{"a taken hash", "b", hash, []string{}, codeUniqueViolation},
		{"a 31-byte hash", "c", hash[:31], []string{}, "23514"},
		{"NULL groups", "d", bytes.Repeat([]byte{3}, 32), nil, "23502"},
		{"a NULL group", "e", bytes.Repeat([]byte{4}, 32), []*string{nil}, "23514"},
	} {
		if _, err := s.pool.Exec(ctx, insert, c.name, c.hash, c.groups); pgError(err, c.code) == nil {
			t.Errorf("inserting a credential with %s = %v, want SQLSTATE %s", c.what, err, c.code)
		}
	}
}
