package postgres

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tokend/tokend/server/storage"
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
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	if snap.Revision != 7 || len(snap.Applications) != 1 || snap.Applications[0].FriendlyName != "old" ||
		len(snap.Keys) != 1 || !bytes.Equal(snap.Keys[0].SealedSecret, []byte{0, 0xff}) || len(snap.Credentials) != 0 {
		t.Errorf("Snapshot() after the upgrade = %+v, want the old application and key at revision 7, no credentials", snap)
	}
	sum := sha256.Sum256([]byte("token"))
	if err := s.CreateCredential(ctx, storage.Credential{Name: "ci", Hash: sum[:], Groups: []string{"admin"}}); err != nil {
		t.Fatalf("CreateCredential after the upgrade = %v", err)
	}
	creds, err := s.ListCredentials(ctx)
	if err != nil || len(creds) != 1 || creds[0].Name != "ci" || !bytes.Equal(creds[0].Hash, sum[:]) {
		t.Errorf("ListCredentials() after the upgrade = %+v, %v, want ci", creds, err)
	}
	if rev, err := s.Revision(ctx); err != nil || rev != 8 {
		t.Errorf("Revision() = %d, %v, want 8", rev, err)
	}
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
