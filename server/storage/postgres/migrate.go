package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationFiles holds the schema migrations, named NNNN_description.sql
// and numbered from 1 without gaps. A migration, once released, is never
// edited: changes go in a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the key of the advisory lock that serializes
// migrations: the same for every tokend binary and every schema, so that
// any two processes migrating the same database take turns.
const migrationLockKey int64 = 0x746f6b656e64 // "tokend"

// migration is one step of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the embedded migrations in order, checking that
// they are numbered 1, 2, 3... without gaps or duplicates.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names { // fs.Glob returns names sorted
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_description.sql", base)
		}
		if version != len(ms)+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d", base, version, len(ms)+1)
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: base, sql: string(b)})
	}
	return ms, nil
}

// migrate brings the schema up to the latest migration. If schema is not
// empty, it is created first unless it exists (the pool's search_path
// must name it).
//
// Everything happens in one transaction that first takes a transaction-
// scoped advisory lock: processes migrating the same database at once run
// one after the other, and each finds the work of those before it, so each
// migration is applied exactly once. The lock is released by the commit or
// rollback, even if the process dies. A failed migration rolls back whole.
// Running migrate on an up-to-date schema changes nothing.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) (err error) {
	ms, err := loadMigrations()
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer rollback(ctx, tx)

	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	if schema != "" {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("migrate: create schema %q: %w", schema, err)
		}
	}
	var current *string
	if err := tx.QueryRow(ctx, `SELECT current_schema()`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: read current schema: %w", err)
	}
	if current == nil {
		return fmt.Errorf("migrate: no schema of the search_path exists: create it, or fix search_path")
	}
	if _, err := tx.Exec(ctx, `
		CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     NOT NULL PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations in schema %q: %w", *current, err)
	}
	var version, count int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0), count(*) FROM schema_migrations`).Scan(&version, &count); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if version > len(ms) {
		return fmt.Errorf("migrate: schema %q is at version %d, newer than this binary supports (%d)", *current, version, len(ms))
	}
	if count != version {
		return fmt.Errorf("migrate: schema_migrations of schema %q has %d rows up to version %d, want one per version", *current, count, version)
	}
	for _, m := range ms[version:] {
		// No arguments: pgx sends the file with the simple protocol, which
		// runs several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return fmt.Errorf("migration %s: record it: %w", m.name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
