package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokend/tokend/server/storage"
)

var _ storage.Store = (*Store)(nil)

// maxAttempts is how many times a write transaction is tried when it fails
// on a deadlock or a serialization failure (a variable for tests).
var maxAttempts = 5

const (
	// rollbackTimeout bounds the rollback of a transaction whose context
	// is done (the rollback runs without that context's cancellation).
	rollbackTimeout = 5 * time.Second
	// maxSchemaLength is PostgreSQL's limit on identifiers (NAMEDATALEN-1
	// bytes); longer names would be truncated silently.
	maxSchemaLength = 63
)

// PostgreSQL error codes this package tells apart.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

// The primary keys, whose unique violations mean storage.ErrAlreadyExists.
const (
	applicationsPrimaryKey = "applications_pkey"
	keysPrimaryKey         = "keys_pkey"
)

// Store is a storage.Store kept in a PostgreSQL database. It is safe for
// concurrent use, by several goroutines and by several processes sharing
// the database.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the PostgreSQL database named by dsn (a pgx connection
// string: a postgres:// URL or keyword/value pairs) and brings the schema
// of the first schema of its search_path up to date. Close the store when
// done.
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := open(ctx, dsn, "")
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	return s, nil
}

// OpenSchema is Open with the store's tables in the given schema, created
// if it does not exist: every connection of the store has search_path set
// to that schema alone, whatever dsn says. Several stores in one database,
// each in its own schema, are independent (tests use this).
func OpenSchema(ctx context.Context, dsn, schema string) (*Store, error) {
	if schema == "" || len(schema) > maxSchemaLength || strings.ContainsRune(schema, 0) {
		return nil, fmt.Errorf("postgres: open schema %q: want a name of 1 to %d bytes without NUL", schema, maxSchemaLength)
	}
	s, err := open(ctx, dsn, schema)
	if err != nil {
		return nil, fmt.Errorf("postgres: open schema %q: %w", schema, err)
	}
	return s, nil
}

func open(ctx context.Context, dsn, schema string) (*Store, error) {
	// pgx redacts the password of dsn in its parse errors; this package
	// never puts dsn in an error.
	config, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if schema != "" {
		config.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	}
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool, schema); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool}
	if err := s.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes every connection of the store, waiting for those in use to
// be released. It always returns nil.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping reports whether the database can be read.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.Revision(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Time conversion: timestamptz truncated to the millisecond; the zero time
// is NULL. Times set by the store come from the server's clock, as nowSQL.

// nowSQL is the time a write sets, to the millisecond: clock_timestamp()
// rather than now(), the start of the transaction, which may have waited
// for a lock since.
const nowSQL = `date_trunc('milliseconds', clock_timestamp())`

func nullTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.Truncate(time.Millisecond), Valid: true}
}

func fromNullTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

const applicationColumns = `sid, account_sid, friendly_name, default_grants, max_ttl_seconds, region, created_at, updated_at`

func scanApplication(row pgx.Row) (storage.Application, error) {
	var a storage.Application
	if err := row.Scan(&a.SID, &a.AccountSID, &a.FriendlyName, &a.DefaultGrants, &a.MaxTTLSeconds, &a.Region, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return storage.Application{}, err
	}
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, nil
}

const keyColumns = `application_sid, sid, sealed_secret, master_key_id, state, created_at, activated_at, last_signed_at, outstanding_until`

func scanKey(row pgx.Row) (storage.Key, error) {
	var (
		k                                       storage.Key
		state                                   string
		activated, lastSigned, outstandingUntil pgtype.Timestamptz
	)
	if err := row.Scan(&k.ApplicationSID, &k.SID, &k.SealedSecret, &k.MasterKeyID, &state, &k.CreatedAt, &activated, &lastSigned, &outstandingUntil); err != nil {
		return storage.Key{}, err
	}
	k.State = storage.KeyState(state)
	k.CreatedAt = k.CreatedAt.UTC()
	k.ActivatedAt = fromNullTime(activated)
	k.LastSignedAt = fromNullTime(lastSigned)
	k.OutstandingUntil = fromNullTime(outstandingUntil)
	return k, nil
}

// querier is what reads need of a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func queryApplications(ctx context.Context, q querier) ([]storage.Application, error) {
	return queryApplicationsSized(ctx, q, 0)
}

// queryApplicationsSized reads every application into a slice made with
// capacity n.
func queryApplicationsSized(ctx context.Context, q querier, n int) ([]storage.Application, error) {
	rows, err := q.Query(ctx, `SELECT `+applicationColumns+` FROM applications ORDER BY sid`)
	if err != nil {
		return nil, err
	}
	return pgx.AppendRows(make([]storage.Application, 0, n), rows, func(row pgx.CollectableRow) (storage.Application, error) { return scanApplication(row) })
}

func queryKeys(ctx context.Context, q querier, query string, args ...any) ([]storage.Key, error) {
	return queryKeysSized(ctx, q, 0, query, args...)
}

// queryKeysSized is queryKeys into a slice made with capacity n.
func queryKeysSized(ctx context.Context, q querier, n int, query string, args ...any) ([]storage.Key, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.AppendRows(make([]storage.Key, 0, n), rows, func(row pgx.CollectableRow) (storage.Key, error) { return scanKey(row) })
}

// lockApplication locks the row of an application until the end of the
// transaction, or returns an error wrapping storage.ErrNotFound. Writes
// that touch the keys of an application or the set of applications take
// it first: they run one after the other per application.
func lockApplication(ctx context.Context, tx pgx.Tx, sid string) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM applications WHERE sid = $1 FOR UPDATE`, sid).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("application %w", storage.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("lock application: %w", err)
	}
	return nil
}

// applicationExists returns an error wrapping storage.ErrNotFound unless
// the application exists.
func applicationExists(ctx context.Context, q querier, sid string) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM applications WHERE sid = $1)`, sid).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("application %w", storage.ErrNotFound)
	}
	return nil
}

// pgError returns the PostgreSQL error in err's chain with the given code,
// or nil.
func pgError(err error, code string) *pgconn.PgError {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == code {
		return pgErr
	}
	return nil
}

// mapConstraintError maps the violations of constraints that a contract
// gives a sentinel error: a unique violation of a primary key to
// storage.ErrAlreadyExists (of another unique index, to
// storage.ErrConflict), a foreign key violation to storage.ErrNotFound (of
// the application). The PostgreSQL error stays in the chain: its text
// names the constraint, never the values (those are in its Detail, which
// Error does not show).
func mapConstraintError(what string, err error) error {
	if e := pgError(err, codeUniqueViolation); e != nil {
		if e.ConstraintName == applicationsPrimaryKey || e.ConstraintName == keysPrimaryKey {
			return fmt.Errorf("%s %w (%w)", what, storage.ErrAlreadyExists, err)
		}
		return fmt.Errorf("%s: %w (%w)", what, storage.ErrConflict, err)
	}
	if pgError(err, codeForeignKeyViolation) != nil {
		return fmt.Errorf("application %w (%w)", storage.ErrNotFound, err)
	}
	return err
}

// retryable reports whether err is a failure that trying the whole
// transaction again may cure.
func retryable(err error) bool {
	return pgError(err, codeDeadlockDetected) != nil || pgError(err, codeSerializationFailure) != nil
}

// rollback rolls tx back unless it is over. It runs even if ctx is done,
// so that the connection goes back to the pool clean, for at most
// rollbackTimeout.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	_ = tx.Rollback(ctx) // ErrTxClosed after a commit; any other error closes the connection
}

// writeTx runs fn in a READ COMMITTED write transaction and commits it. If
// fn reports a change, the revision is advanced in the same transaction,
// last, so that the revision row is locked only from then to the commit.
// Nothing is written if fn fails. On a deadlock or a serialization failure
// the whole transaction, fn included, is tried again, up to maxAttempts
// times in all.
func (s *Store) writeTx(ctx context.Context, fn func(tx pgx.Tx) (changed bool, err error)) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = s.writeTxOnce(ctx, fn)
		if err == nil || !retryable(err) || attempt == maxAttempts || ctx.Err() != nil {
			return err
		}
		// Back off a little, randomly, so that the same transactions do
		// not collide again.
		backoff := time.Duration(attempt) * time.Duration(1+rand.IntN(10)) * time.Millisecond
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
	}
}

func (s *Store) writeTxOnce(ctx context.Context, fn func(tx pgx.Tx) (changed bool, err error)) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer rollback(ctx, tx)
	changed, err := fn(tx)
	if err != nil {
		return err
	}
	if changed {
		tag, err := tx.Exec(ctx, `UPDATE revision SET value = value + 1 WHERE id = 1`)
		if err != nil {
			return fmt.Errorf("advance revision: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return errors.New("advance revision: the revision row is missing")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// readTx runs fn in a REPEATABLE READ, read-only transaction: all its
// statements see one committed state of the database.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer rollback(ctx, tx)
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// CreateApplication adds an application; it fails with
// storage.ErrAlreadyExists if its SID is taken. CreatedAt and UpdatedAt
// are set to the server's time.
func (s *Store) CreateApplication(ctx context.Context, app storage.Application) error {
	if app.SID == "" {
		return errors.New("create application: empty sid")
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		_, err := tx.Exec(ctx, `
			INSERT INTO applications (`+applicationColumns+`)
			SELECT $1::text, $2::text, $3::text, coalesce($4::bytea, ''::bytea), $5::integer, $6::text, ts.t, ts.t
			FROM (SELECT `+nowSQL+` AS t) AS ts`,
			app.SID, app.AccountSID, app.FriendlyName, app.DefaultGrants, app.MaxTTLSeconds, app.Region)
		if err != nil {
			return false, mapConstraintError("application", err)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("create application %s: %w", app.SID, err)
	}
	return nil
}

// GetApplication returns one application or storage.ErrNotFound.
func (s *Store) GetApplication(ctx context.Context, sid string) (storage.Application, error) {
	app, err := scanApplication(s.pool.QueryRow(ctx, `SELECT `+applicationColumns+` FROM applications WHERE sid = $1`, sid))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Application{}, fmt.Errorf("get application %s: %w", sid, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Application{}, fmt.Errorf("get application %s: %w", sid, err)
	}
	return app, nil
}

// ListApplications returns all applications ordered by SID.
func (s *Store) ListApplications(ctx context.Context) ([]storage.Application, error) {
	apps, err := queryApplications(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return apps, nil
}

// UpdateApplication reads and locks the application, calls update with it
// and writes back what update returns but its SID and CreatedAt, in one
// transaction; UpdatedAt is set to the server's time. An error from update
// is returned as is and nothing is written. update runs while the
// application's row is locked: it must be quick and must not call the
// store. It may be called more than once, if the transaction is retried
// after a deadlock, so it must not have side effects.
func (s *Store) UpdateApplication(ctx context.Context, sid string, update func(storage.Application) (storage.Application, error)) (storage.Application, error) {
	var (
		updateErr error
		updated   storage.Application
	)
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		updateErr = nil
		cur, err := scanApplication(tx.QueryRow(ctx, `SELECT `+applicationColumns+` FROM applications WHERE sid = $1 FOR UPDATE`, sid))
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("application %w", storage.ErrNotFound)
		}
		if err != nil {
			return false, err
		}
		next, err := update(cur)
		if err != nil {
			updateErr = err
			return false, err
		}
		// RETURNING: the result is exactly what GetApplication returns.
		updated, err = scanApplication(tx.QueryRow(ctx, `
			UPDATE applications
			SET account_sid = $2, friendly_name = $3, default_grants = coalesce($4::bytea, ''::bytea),
				max_ttl_seconds = $5, region = $6, updated_at = greatest(`+nowSQL+`, updated_at)
			WHERE sid = $1
			RETURNING `+applicationColumns,
			sid, next.AccountSID, next.FriendlyName, next.DefaultGrants, next.MaxTTLSeconds, next.Region))
		if err != nil {
			return false, err
		}
		return true, nil
	})
	if updateErr != nil {
		return storage.Application{}, updateErr
	}
	if err != nil {
		return storage.Application{}, fmt.Errorf("update application %s: %w", sid, err)
	}
	return updated, nil
}

// DeleteApplication removes an application and its keys; it fails with
// storage.ErrNotFound if the application does not exist.
func (s *Store) DeleteApplication(ctx context.Context, sid string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if err := lockApplication(ctx, tx, sid); err != nil {
			return false, err
		}
		// Lock the keys in SID order before ON DELETE CASCADE deletes them
		// in whatever order: the order of every writer that locks several
		// keys.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM keys WHERE application_sid = $1 ORDER BY sid FOR UPDATE`, sid); err != nil {
			return false, fmt.Errorf("lock keys: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM applications WHERE sid = $1`, sid); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("delete application %s: %w", sid, err)
	}
	return nil
}

// DefaultApplication returns the default application's SID, "" when none
// is set.
func (s *Store) DefaultApplication(ctx context.Context) (string, error) {
	sid, err := defaultApplication(ctx, s.pool)
	if err != nil {
		return "", fmt.Errorf("read default application: %w", err)
	}
	return sid, nil
}

func defaultApplication(ctx context.Context, q querier) (string, error) {
	var sid string
	err := q.QueryRow(ctx, `SELECT application_sid FROM default_application WHERE id = 1`).Scan(&sid)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return sid, err
}

// SetDefaultApplication makes sid the default application (storage.
// ErrNotFound if it does not exist), or unsets it for "". The current
// value writes nothing.
func (s *Store) SetDefaultApplication(ctx context.Context, sid string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if sid == "" {
			tag, err := tx.Exec(ctx, `DELETE FROM default_application WHERE id = 1`)
			return err == nil && tag.RowsAffected() > 0, err
		}
		// Locked, so that a concurrent delete of the application waits
		// for this transaction (and then deletes the row by cascade).
		if err := lockApplication(ctx, tx, sid); err != nil {
			return false, err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO default_application (id, application_sid) VALUES (1, $1)
			ON CONFLICT (id) DO UPDATE SET application_sid = excluded.application_sid
			WHERE default_application.application_sid IS DISTINCT FROM excluded.application_sid`, sid)
		return err == nil && tag.RowsAffected() > 0, err
	})
	if err != nil {
		return fmt.Errorf("set default application %q: %w", sid, err)
	}
	return nil
}

// CreateKey adds a key to an existing application (storage.ErrNotFound
// otherwise); storage.ErrAlreadyExists if the application has a key with
// that SID. A key created active retires the application's active key and
// gets ActivatedAt now; a retired key keeps the ActivatedAt given.
func (s *Store) CreateKey(ctx context.Context, key storage.Key) error {
	if key.ApplicationSID == "" || key.SID == "" {
		return fmt.Errorf("create key %q for application %q: empty sid", key.SID, key.ApplicationSID)
	}
	if key.State != storage.KeyActive && key.State != storage.KeyRetired {
		return fmt.Errorf("create key %s for application %s: invalid state %q", key.SID, key.ApplicationSID, key.State)
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if err := lockApplication(ctx, tx, key.ApplicationSID); err != nil {
			return false, err
		}
		// Lock a key with that SID, if any, before touching the active
		// key: inserting over a key row that another transaction is
		// updating would wait for it while holding the active key's lock,
		// against the order of writers that lock several keys.
		_, found, err := lockKeyAndActive(ctx, tx, key.ApplicationSID, key.SID)
		if err != nil {
			return false, err
		}
		if found {
			return false, fmt.Errorf("key %w", storage.ErrAlreadyExists)
		}
		if key.State == storage.KeyActive {
			// Retire first: the unique index allows one active key at a
			// time.
			if err := retireActive(ctx, tx, key.ApplicationSID); err != nil {
				return false, err
			}
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO keys (`+keyColumns+`)
			SELECT $1::text, $2::text, coalesce($3::bytea, ''::bytea), $4::text, $5::text, ts.t,
				CASE WHEN $5::text = 'active' THEN ts.t ELSE $6::timestamptz END,
				$7::timestamptz, $8::timestamptz
			FROM (SELECT `+nowSQL+` AS t) AS ts`,
			key.ApplicationSID, key.SID, key.SealedSecret, key.MasterKeyID, string(key.State),
			nullTime(key.ActivatedAt), nullTime(key.LastSignedAt), nullTime(key.OutstandingUntil))
		if err != nil {
			return false, mapConstraintError("key", err)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("create key %s for application %s: %w", key.SID, key.ApplicationSID, err)
	}
	return nil
}

// lockKeyAndActive locks, in SID order, the key of an application with
// the given SID and the application's active key, and returns the state of
// the first, if it exists. The caller holds the application's lock.
func lockKeyAndActive(ctx context.Context, tx pgx.Tx, applicationSID, sid string) (state storage.KeyState, found bool, err error) {
	rows, err := tx.Query(ctx, `
		SELECT sid, state FROM keys
		WHERE application_sid = $1 AND (sid = $2 OR state = 'active')
		ORDER BY sid FOR UPDATE`, applicationSID, sid)
	if err != nil {
		return "", false, fmt.Errorf("lock keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var keySID, keyState string
		if err := rows.Scan(&keySID, &keyState); err != nil {
			return "", false, fmt.Errorf("lock keys: %w", err)
		}
		if keySID == sid {
			state, found = storage.KeyState(keyState), true
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, fmt.Errorf("lock keys: %w", err)
	}
	return state, found, nil
}

// retireActive retires the active key of an application, if any. The
// caller holds the application's lock.
func retireActive(ctx context.Context, tx pgx.Tx, applicationSID string) error {
	if _, err := tx.Exec(ctx, `UPDATE keys SET state = 'retired' WHERE application_sid = $1 AND state = 'active'`, applicationSID); err != nil {
		return fmt.Errorf("retire active key: %w", err)
	}
	return nil
}

// GetKey returns one key or storage.ErrNotFound.
func (s *Store) GetKey(ctx context.Context, applicationSID, sid string) (storage.Key, error) {
	key, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE application_sid = $1 AND sid = $2`, applicationSID, sid))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Key{}, fmt.Errorf("get key %s for application %s: %w", sid, applicationSID, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Key{}, fmt.Errorf("get key %s for application %s: %w", sid, applicationSID, err)
	}
	return key, nil
}

// ListKeys returns the keys of an application ordered by CreatedAt, then
// SID; storage.ErrNotFound if the application does not exist.
func (s *Store) ListKeys(ctx context.Context, applicationSID string) ([]storage.Key, error) {
	var keys []storage.Key
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if err := applicationExists(ctx, tx, applicationSID); err != nil {
			return err
		}
		var err error
		keys, err = queryKeys(ctx, tx, `SELECT `+keyColumns+` FROM keys WHERE application_sid = $1 ORDER BY created_at, sid`, applicationSID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys of application %s: %w", applicationSID, err)
	}
	return keys, nil
}

// ActivateKey makes the key the application's only active key, retiring
// the previous one, and sets its ActivatedAt to now, in one transaction
// that holds the application's lock. Activating the active key changes
// nothing, not even the revision. storage.ErrNotFound if the key does not
// exist.
func (s *Store) ActivateKey(ctx context.Context, applicationSID, sid string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if err := lockApplication(ctx, tx, applicationSID); err != nil {
			return false, err
		}
		state, found, err := lockKeyAndActive(ctx, tx, applicationSID, sid)
		if err != nil {
			return false, err
		}
		if !found {
			return false, fmt.Errorf("key %w", storage.ErrNotFound)
		}
		if state == storage.KeyActive {
			return false, nil
		}
		// Retire first: the unique index allows one active key at a time.
		if err := retireActive(ctx, tx, applicationSID); err != nil {
			return false, err
		}
		if _, err := tx.Exec(ctx, `UPDATE keys SET state = 'active', activated_at = `+nowSQL+` WHERE application_sid = $1 AND sid = $2`,
			applicationSID, sid); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("activate key %s for application %s: %w", sid, applicationSID, err)
	}
	return nil
}

// DeleteKey removes a retired key: storage.ErrNotFound if it does not
// exist, storage.ErrConflict if it is the active key.
func (s *Store) DeleteKey(ctx context.Context, applicationSID, sid string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		if err := lockApplication(ctx, tx, applicationSID); err != nil {
			return false, err
		}
		var state string
		err := tx.QueryRow(ctx, `SELECT state FROM keys WHERE application_sid = $1 AND sid = $2 FOR UPDATE`, applicationSID, sid).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("key %w", storage.ErrNotFound)
		}
		if err != nil {
			return false, err
		}
		if storage.KeyState(state) == storage.KeyActive {
			return false, fmt.Errorf("key is active: %w", storage.ErrConflict)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM keys WHERE application_sid = $1 AND sid = $2`, applicationSID, sid); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("delete key %s for application %s: %w", sid, applicationSID, err)
	}
	return nil
}

// compareKeyIDs orders keys by application SID, then SID: the order in
// which writers lock several keys, so that they queue rather than deadlock.
// A writer also updates each key row at most once per transaction: updating
// a row again makes PostgreSQL check its foreign key, which takes a lock on
// the application row after the key's, against the order of writers that
// lock the application first.
func compareKeyIDs(appA, sidA, appB, sidB string) int {
	return cmp.Or(cmp.Compare(appA, appB), cmp.Compare(sidA, sidB))
}

// ResealKeys replaces the sealed secrets and master key IDs of the given
// keys in one transaction, skipping keys that do not exist; if a key is
// given more than once, the last one wins. The revision advances if any key
// was resealed.
func (s *Store) ResealKeys(ctx context.Context, sealed []storage.Sealed) error {
	if len(sealed) == 0 {
		return nil
	}
	// Update in lock order, each key once (see compareKeyIDs): the stable
	// sort keeps duplicates in their order, the last one wins.
	sorted := slices.Clone(sealed)
	slices.SortStableFunc(sorted, func(a, b storage.Sealed) int {
		return compareKeyIDs(a.ApplicationSID, a.SID, b.ApplicationSID, b.SID)
	})
	unique := sorted[:0]
	for i, sl := range sorted {
		if i+1 < len(sorted) && compareKeyIDs(sl.ApplicationSID, sl.SID, sorted[i+1].ApplicationSID, sorted[i+1].SID) == 0 {
			continue // a later one wins
		}
		unique = append(unique, sl)
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		b := &pgx.Batch{}
		changed := int64(0)
		for _, sl := range unique {
			b.Queue(`
				UPDATE keys SET sealed_secret = coalesce($1::bytea, ''::bytea), master_key_id = $2
				WHERE application_sid = $3 AND sid = $4`,
				sl.SealedSecret, sl.MasterKeyID, sl.ApplicationSID, sl.SID,
			).Exec(func(tag pgconn.CommandTag) error {
				changed += tag.RowsAffected()
				return nil
			})
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			// No secret in the message: the statement's error names no
			// value.
			return false, err
		}
		return changed > 0, nil
	})
	if err != nil {
		return fmt.Errorf("reseal keys: %w", err)
	}
	return nil
}

// RecordKeyUsage raises LastSignedAt and OutstandingUntil of the given
// keys to at least the given times, never lowering them (a zero time
// changes nothing), skipping keys that do not exist. It does not advance
// the revision, and leaves untouched the rows it would not change.
func (s *Store) RecordKeyUsage(ctx context.Context, usage []storage.KeyUsage) error {
	// Update in lock order, each key once (see compareKeyIDs), with the
	// latest times given for it.
	sorted := make([]storage.KeyUsage, 0, len(usage))
	for _, u := range usage {
		if !u.LastSignedAt.IsZero() || !u.OutstandingUntil.IsZero() {
			sorted = append(sorted, u)
		}
	}
	if len(sorted) == 0 {
		return nil
	}
	slices.SortFunc(sorted, func(a, b storage.KeyUsage) int {
		return compareKeyIDs(a.ApplicationSID, a.SID, b.ApplicationSID, b.SID)
	})
	merged := sorted[:1]
	for _, u := range sorted[1:] {
		last := &merged[len(merged)-1]
		if compareKeyIDs(u.ApplicationSID, u.SID, last.ApplicationSID, last.SID) != 0 {
			merged = append(merged, u)
			continue
		}
		if u.LastSignedAt.After(last.LastSignedAt) {
			last.LastSignedAt = u.LastSignedAt
		}
		if u.OutstandingUntil.After(last.OutstandingUntil) {
			last.OutstandingUntil = u.OutstandingUntil
		}
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		b := &pgx.Batch{}
		for _, u := range merged {
			// greatest ignores NULLs: a NULL argument or column keeps the
			// other value.
			b.Queue(`
				UPDATE keys SET
					last_signed_at = greatest(last_signed_at, $1::timestamptz),
					outstanding_until = greatest(outstanding_until, $2::timestamptz)
				WHERE application_sid = $3 AND sid = $4
					AND (greatest(last_signed_at, $1::timestamptz) IS DISTINCT FROM last_signed_at
						OR greatest(outstanding_until, $2::timestamptz) IS DISTINCT FROM outstanding_until)`,
				nullTime(u.LastSignedAt), nullTime(u.OutstandingUntil), u.ApplicationSID, u.SID)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return false, err
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("record key usage: %w", err)
	}
	return nil
}

// Snapshot reads every application, key and credential, and the revision,
// in one REPEATABLE READ transaction. Applications are ordered by SID, keys
// by application SID, CreatedAt and SID, credentials by name.
func (s *Store) Snapshot(ctx context.Context) (storage.Snapshot, error) {
	var snap storage.Snapshot
	err := s.readTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&snap.Revision); err != nil {
			return fmt.Errorf("read revision: %w", err)
		}
		// Counted first, so that the slices are made once at their size
		// rather than grown (and copied) a row at a time.
		var nApps, nKeys int
		if err := tx.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM applications), (SELECT COUNT(*) FROM keys)`).Scan(&nApps, &nKeys); err != nil {
			return fmt.Errorf("count rows: %w", err)
		}
		var err error
		if snap.Applications, err = queryApplicationsSized(ctx, tx, nApps); err != nil {
			return fmt.Errorf("read applications: %w", err)
		}
		if snap.Keys, err = queryKeysSized(ctx, tx, nKeys, `SELECT `+keyColumns+` FROM keys ORDER BY application_sid, created_at, sid`); err != nil {
			return fmt.Errorf("read keys: %w", err)
		}
		if snap.Credentials, err = queryCredentials(ctx, tx); err != nil {
			return fmt.Errorf("read credentials: %w", err)
		}
		if snap.DefaultApplication, err = defaultApplication(ctx, tx); err != nil {
			return fmt.Errorf("read default application: %w", err)
		}
		return nil
	})
	if err != nil {
		return storage.Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
}

// MasterKeyIDs returns how many sealed secrets each master key sealed.
func (s *Store) MasterKeyIDs(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT master_key_id, COUNT(*) FROM (SELECT master_key_id FROM keys UNION ALL SELECT master_key_id FROM twilio_credentials) AS sealed GROUP BY master_key_id`)
	if err != nil {
		return nil, fmt.Errorf("read master key ids: %w", err)
	}
	ids := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { ids[id] = n; return nil }); err != nil {
		return nil, fmt.Errorf("read master key ids: %w", err)
	}
	return ids, nil
}

// Revision returns the current revision, which every write but
// RecordKeyUsage (and writes that change nothing) advances.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

const credentialColumns = `name, hash, groups, created_at`

func scanCredential(row pgx.Row) (storage.Credential, error) {
	var c storage.Credential
	if err := row.Scan(&c.Name, &c.Hash, &c.Groups, &c.CreatedAt); err != nil {
		return storage.Credential{}, err
	}
	if len(c.Groups) == 0 {
		c.Groups = nil
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}

func queryCredentials(ctx context.Context, q querier) ([]storage.Credential, error) {
	rows, err := q.Query(ctx, `SELECT `+credentialColumns+` FROM credentials ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.Credential, error) { return scanCredential(row) })
}

// CreateCredential adds a credential; it fails with
// storage.ErrAlreadyExists if its name is taken or another credential has
// the same hash (both enforced by the database, so concurrent creations
// from several replicas agree), and with the error of Credential.Validate
// if the store cannot keep it. Groups are a text[]; CreatedAt is set to the
// server's time.
func (s *Store) CreateCredential(ctx context.Context, cred storage.Credential) error {
	if err := cred.Validate(); err != nil {
		return fmt.Errorf("create %w", err)
	}
	groups := cred.Groups
	if groups == nil {
		groups = []string{} // an empty array, not NULL
	}
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		// DO NOTHING on a conflict with either unique constraint, the name
		// or the hash: a concurrent insert of either waits for the other
		// transaction and then does nothing if it committed.
		tag, err := tx.Exec(ctx, `
			INSERT INTO credentials (`+credentialColumns+`)
			VALUES ($1::text, $2::bytea, $3::text[], `+nowSQL+`)
			ON CONFLICT DO NOTHING`,
			cred.Name, cred.Hash, groups)
		if err != nil {
			return false, err
		}
		if tag.RowsAffected() > 0 {
			return true, nil
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM credentials WHERE name = $1)`, cred.Name).Scan(&exists); err != nil {
			return false, err
		}
		if exists {
			return false, fmt.Errorf("credential %w", storage.ErrAlreadyExists)
		}
		return false, fmt.Errorf("credential with the same hash %w", storage.ErrAlreadyExists)
	})
	if err != nil {
		return fmt.Errorf("create credential %s: %w", cred.Name, err)
	}
	return nil
}

// ListCredentials returns all credentials ordered by name (bytewise).
func (s *Store) ListCredentials(ctx context.Context) ([]storage.Credential, error) {
	creds, err := queryCredentials(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return creds, nil
}

// DeleteCredential removes a credential; it fails with storage.ErrNotFound
// if the credential does not exist.
func (s *Store) DeleteCredential(ctx context.Context, name string) error {
	err := s.writeTx(ctx, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, `DELETE FROM credentials WHERE name = $1`, name)
		if err != nil {
			return false, err
		}
		if tag.RowsAffected() == 0 {
			return false, fmt.Errorf("credential %w", storage.ErrNotFound)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("delete credential %q: %w", name, err)
	}
	return nil
}

// Heartbeat upserts the replica's row with an expiry ttl after the
// server's clock, deletes rows expired for longer than
// storage.ReplicaRetention, and counts the live replicas, in one
// statement. The cleanup skips rows that other heartbeats hold locked, so
// replicas cleaning up at once neither wait for nor deadlock with each
// other; a replica's own row is never cleaned up by its own heartbeat.
func (s *Store) Heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error) {
	if err := storage.ValidateReplica(id, ttl); err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	// The statements of a WITH all see the snapshot taken before any of
	// them ran: the count cannot see the upsert, so it counts the others
	// and adds this replica.
	var others int
	err := s.pool.QueryRow(ctx, `
		WITH now AS (SELECT clock_timestamp() AS t),
		gone AS (
			DELETE FROM replicas WHERE id IN (
				SELECT id FROM replicas, now
				WHERE id <> $1 AND expires_at < now.t - $3::bigint * interval '1 millisecond'
				ORDER BY id FOR UPDATE OF replicas SKIP LOCKED)
		),
		up AS (
			INSERT INTO replicas (id, expires_at)
			SELECT $1, now.t + $2::bigint * interval '1 millisecond' FROM now
			ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at
		)
		SELECT count(*) FROM replicas, now WHERE id <> $1 AND expires_at > now.t`,
		id, ttl.Milliseconds(), storage.ReplicaRetention.Milliseconds()).Scan(&others)
	if err != nil {
		return 0, fmt.Errorf("heartbeat of replica %s: %w", id, err)
	}
	return others + 1, nil
}

// AckRevision raises the replica's acknowledged revision to rev.
func (s *Store) AckRevision(ctx context.Context, id string, rev int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE replicas SET revision = $2 WHERE id = $1 AND revision < $2`, id, rev); err != nil {
		return fmt.Errorf("acknowledge revision %d for replica %s: %w", rev, id, err)
	}
	return nil
}

// ReplicasBehind lists the live replicas whose acknowledged revision is
// below rev.
func (s *Store) ReplicasBehind(ctx context.Context, rev int64) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM replicas WHERE expires_at > clock_timestamp() AND revision < $1 ORDER BY id`, rev)
	if err != nil {
		return nil, fmt.Errorf("replicas behind revision %d: %w", rev, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("replicas behind revision %d: %w", rev, err)
	}
	return ids, nil
}

// RemoveReplica deletes the replica's heartbeat row, if any.
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM replicas WHERE id = $1`, id); err != nil {
		return fmt.Errorf("remove replica %s: %w", id, err)
	}
	return nil
}
