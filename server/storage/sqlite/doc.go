// Package sqlite is the SQLite backend of storage.Store, for a single
// tokend instance (or a primary that replicas poll). It uses
// modernc.org/sqlite, a pure Go SQLite, so tokend builds with
// CGO_ENABLED=0.
//
// The database is one file, created with mode 0600 by Open in a directory
// that must already exist. It runs in WAL mode with synchronous=FULL, so
// every write acknowledged with a nil error has been synced to disk and
// survives a crash or kill -9 of the process; foreign keys are enforced and
// at most one active key per application is enforced by a partial unique
// index, not only by this package's code.
//
// The schema is created and upgraded by numbered migrations embedded in
// the binary (migrations/NNNN_name.sql), applied by Open in one
// transaction each and recorded in PRAGMA user_version. Open refuses a
// database whose schema is newer than the binary knows.
//
// Times are stored as INTEGER milliseconds since the Unix epoch, UTC; a
// zero time.Time is stored as NULL and read back as time.Time{}. Times read
// back are in UTC and truncated to the millisecond.
//
// Credentials (migration 0002) keep their name as the primary key, their
// SHA-256 hash as a 32-byte BLOB under a UNIQUE constraint, and their
// groups as a JSON array of strings in TEXT.
package sqlite
