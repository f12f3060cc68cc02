// Package postgres is the PostgreSQL backend of storage.Store, for several
// tokend replicas sharing one database. It uses github.com/jackc/pgx/v5
// through a pgxpool connection pool, so tokend still builds with
// CGO_ENABLED=0.
//
// Open takes a pgx connection string, as a URL or as keyword/value pairs:
//
//	postgres://tokend:secret@db.example:5432/tokend?sslmode=verify-full
//	host=db.example user=tokend dbname=tokend sslmode=verify-full
//
// with pgxpool's settings (pool_max_conns and the like) and any run-time
// parameter, search_path among them, in it too. The tables live in the
// first schema of the connection's search_path (public by default), which
// must exist. OpenSchema instead uses a given schema, created if needed,
// whatever the DSN says: tests give each store a fresh schema of its own.
//
// The schema is created and upgraded by numbered migrations embedded in
// the binary (migrations/NNNN_name.sql) and recorded in the table
// schema_migrations. Open applies the missing ones in one transaction that
// first takes a transaction-scoped advisory lock with a fixed key
// (pg_advisory_xact_lock), so replicas starting at once apply each
// migration exactly once, and the lock goes with the transaction even
// behind a transaction-pooling proxy. Open refuses a schema newer than the
// binary knows.
//
// The database enforces the rules of storage.Store, not only this
// package's code: (application_sid, sid) is the primary key of keys, keys
// reference their application with ON DELETE CASCADE, a partial unique
// index allows at most one active key per application, and SIDs compare
// bytewise (COLLATE "C") whatever the database's collation. Every write
// transaction but RecordKeyUsage advances a single-row revision counter,
// whose row lock also orders the commits that advance it; Snapshot and
// ListKeys read in a REPEATABLE READ, read-only transaction, so what they
// return is one committed state, with the revision of that state.
//
// Writes run in READ COMMITTED transactions (whatever the server's
// default) that lock what they read: the application row (SELECT ... FOR
// UPDATE) before its keys, keys in (application SID, key SID) order and
// each updated at most once, the revision row last, so that concurrent
// writers, ResealKeys and RecordKeyUsage batches included, queue instead
// of deadlocking. A write that still fails on a deadlock or a serialization
// failure is retried a few times; UpdateApplication may therefore call its
// update function more than once.
//
// Unique violations (SQLSTATE 23505) of a primary key are reported as
// storage.ErrAlreadyExists and foreign key violations (23503) as
// storage.ErrNotFound, wrapped with what the call was about; error texts
// name applications and keys by SID and never carry a sealed secret.
//
// Times are stored as timestamptz, truncated to the millisecond as in the
// SQLite backend; a zero time.Time is stored as NULL and read back as
// time.Time{}. Times read back are in UTC. Times the store sets (CreatedAt,
// UpdatedAt, ActivatedAt) come from the database server's clock, so that
// replicas with skewed clocks still agree on their order. Text columns
// cannot hold NUL bytes or invalid UTF-8 (PostgreSQL refuses them); byte
// fields (DefaultGrants, SealedSecret) are bytea and hold anything.
//
// Credentials (migration 0002) keep their name (COLLATE "C") as the primary
// key, their SHA-256 hash as a 32-byte bytea under a UNIQUE constraint, and
// their groups as a text[]. CreateCredential inserts with ON CONFLICT DO
// NOTHING, so a name or hash taken, even by a concurrent replica, is
// storage.ErrAlreadyExists; credential writes lock no application or key
// and advance the revision like every other write.
//
// Replica heartbeats (migration 0004) are rows of replicas (id, expires_at),
// written and counted by one autocommit statement per Heartbeat, with the
// server's clock; they never advance the revision. A heartbeat also
// deletes the rows of other replicas expired for longer than
// storage.ReplicaRetention, skipping rows locked by concurrent heartbeats
// (FOR UPDATE SKIP LOCKED), so replicas never wait for one another.
// Migration 0006 adds each row's revision, the store revision the replica
// serves its keys at (AckRevision, which never lowers it); ReplicasBehind
// lists the live rows below a revision, for a revoke to wait on.
package postgres
