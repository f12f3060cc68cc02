package sqlite

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/storagetest"
)

func openTemp(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q) = %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return openTemp(t, filepath.Join(t.TempDir(), "tokend.db"))
	})
}

func TestReopenKeepsWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	storagetest.Reopen(t, func(t *testing.T) storage.Store { return openTemp(t, path) })
}

func TestOpenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	path := filepath.Join(dir, "tokend.db")
	s, err := Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%q) = nil error, want an error (directory does not exist)", path)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("Open(%q) = %v, want an error naming the directory %s", path, err, dir)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(%q) created %s (Stat = %v)", path, dir, err)
	}
}

func TestOpenFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokend.db")
	s := openTemp(t, path)
	// Write, so that the WAL exists.
	if err := s.CreateApplication(t.Context(), storage.Application{SID: "AP00000000000000000000000000000001"}); err != nil {
		t.Fatalf("CreateApplication = %v", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Errorf("Stat(%q) = %v", p, err)
			continue
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(p), mode, os.FileMode(0o600))
		}
	}
}

func TestOpenPragmas(t *testing.T) {
	s := openTemp(t, filepath.Join(t.TempDir(), "tokend.db"))
	ctx := t.Context()
	var version int
	if err := s.read.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		t.Fatalf("PRAGMA user_version: %v", err)
	}
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations() = %v", err)
	}
	if version != len(ms) || version == 0 {
		t.Errorf("PRAGMA user_version = %d, want %d", version, len(ms))
	}
	var mode string
	if err := s.read.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("PRAGMA journal_mode = %q, %v, want wal", mode, err)
	}
	var sync int
	if err := s.read.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("PRAGMA synchronous on a read connection = %d, %v, want 2 (FULL)", sync, err)
	}
	// The database itself refuses a second active key and orphan keys.
	if _, err := s.write.ExecContext(ctx, `INSERT INTO applications VALUES ('AP1', 'AC1', '', X'', 0, '', 0, 0)`); err != nil {
		t.Fatalf("insert application: %v", err)
	}
	insertKey := `INSERT INTO keys (application_sid, sid, sealed_secret, master_key_id, state, created_at) VALUES (?, ?, X'00', 'm', ?, 0)`
	if _, err := s.write.ExecContext(ctx, insertKey, "AP1", "SK1", "active"); err != nil {
		t.Fatalf("insert key: %v", err)
	}
	if _, err := s.write.ExecContext(ctx, insertKey, "AP1", "SK2", "active"); err == nil {
		t.Errorf("inserting a second active key = nil error, want a unique constraint error")
	}
	if _, err := s.write.ExecContext(ctx, insertKey, "AP2", "SK1", "retired"); err == nil {
		t.Errorf("inserting a key of a missing application = nil error, want a foreign key error")
	}
	if _, err := s.read.ExecContext(ctx, `DELETE FROM keys`); err == nil {
		t.Errorf("writing through a read connection = nil error, want an error (query_only)")
	}
}
