package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/tokend/tokend/server/storage"
)

var _ storage.Store = (*Store)(nil)

// busyTimeout is how long a connection waits for a lock held by another
// connection (another process writing the file, a checkpoint, WAL
// recovery) before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a storage.Store kept in a SQLite database file. It is safe for
// concurrent use.
//
// It holds two pools on the same file:
//
//   - write has exactly one connection, and its transactions begin with
//     BEGIN IMMEDIATE. Writers queue for that connection in database/sql,
//     in Go, honouring their contexts, instead of several SQLite
//     connections racing for the single write lock: no transaction ever
//     has to upgrade a read lock to a write lock, the SQLITE_BUSY that
//     busy_timeout cannot cure, and read-modify-write transactions such as
//     UpdateApplication run strictly one after the other. BEGIN IMMEDIATE
//     still matters if another process writes the file: the lock is taken
//     up front and waited for under busy_timeout.
//   - read has several connections with query_only set. In WAL mode
//     readers block neither the writer nor each other and see only
//     committed transactions, so a read never sees half a write, and a
//     write waiting on its fsync does not stall reads. Reads of more than
//     one statement (ListKeys, Snapshot) run in one read transaction, which
//     sees a single snapshot of the database.
type Store struct {
	write *sql.DB
	read  *sql.DB
}

// Open opens the SQLite database at path, creating the file with mode
// 0600 if it does not exist, and brings its schema up to date. The
// directory of path must exist. Close the store when done.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("sqlite: open %s: directory %s does not exist", path, dir)
	case err != nil:
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("sqlite: open %s: %s is not a directory", path, dir)
	}
	if err := createFile(abs); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	write, err := sql.Open("sqlite", dsn(abs, url.Values{
		"_journal_mode": {"WAL"},
		"_txlock":       {"immediate"},
	}))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	if err := checkPragmas(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	read, err := sql.Open("sqlite", dsn(abs, url.Values{
		"_query_only": {"1"},
	}))
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	s := &Store{write: write, read: read}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

// createFile creates the database file with mode 0600 unless it exists:
// SQLite would create it 0644. The WAL and shared-memory files SQLite
// creates next to it take the database file's mode.
func createFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", path)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Make the new directory entry durable, as SQLite does for the files
	// it creates.
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// dsn returns the modernc.org/sqlite data source name of the database at
// the absolute path, with the settings of every connection and extra
// ones. The path goes in a file: URI, escaped, so that any file name
// works; mode=rw keeps SQLite from creating the file (createFile does, with
// the right mode).
func dsn(path string, extra url.Values) string {
	q := url.Values{
		"mode":          {"rw"},
		"_busy_timeout": {strconv.FormatInt(busyTimeout.Milliseconds(), 10)},
		"_foreign_keys": {"1"},
		// FULL: in WAL mode, every commit is synced to disk before it
		// returns, so acknowledged writes survive a crash or power loss.
		"_synchronous": {"FULL"},
	}
	for k, v := range extra {
		q[k] = v
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	if !strings.HasPrefix(u.Path, "/") {
		u.Path = "/" + u.Path // Windows: file:///C:/...
	}
	return u.String()
}

// checkPragmas checks that the write connection got the settings the
// store's guarantees rest on: SQLite can silently refuse WAL mode (on some
// file systems, for one).
func checkPragmas(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	for _, p := range []struct {
		name string
		want int
	}{
		{"synchronous", 2}, // FULL
		{"foreign_keys", 1},
	} {
		var got int
		if err := db.QueryRowContext(ctx, "PRAGMA "+p.name).Scan(&got); err != nil {
			return fmt.Errorf("read %s: %w", p.name, err)
		}
		if got != p.want {
			return fmt.Errorf("pragma %s is %d, want %d", p.name, got, p.want)
		}
	}
	return nil
}

// Close closes the database. Closing the last connection checkpoints the
// WAL into the database file.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// Ping reports whether the database can be read.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.Revision(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Time conversion: INTEGER unix milliseconds, UTC; the zero time is NULL.

func millis(t time.Time) int64 { return t.UnixMilli() }

func nullMillis(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func fromNullMillis(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMillis(n.Int64)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

const applicationColumns = `sid, account_sid, friendly_name, default_grants, max_ttl_seconds, region, created_at, updated_at`

func scanApplication(row scanner) (storage.Application, error) {
	var (
		a                storage.Application
		created, updated int64
	)
	if err := row.Scan(&a.SID, &a.AccountSID, &a.FriendlyName, &a.DefaultGrants, &a.MaxTTLSeconds, &a.Region, &created, &updated); err != nil {
		return storage.Application{}, err
	}
	a.CreatedAt, a.UpdatedAt = fromMillis(created), fromMillis(updated)
	return a, nil
}

const keyColumns = `application_sid, sid, sealed_secret, master_key_id, state, created_at, activated_at, last_signed_at, outstanding_until`

func scanKey(row scanner) (storage.Key, error) {
	var (
		k                                       storage.Key
		state                                   string
		created                                 int64
		activated, lastSigned, outstandingUntil sql.NullInt64
	)
	if err := row.Scan(&k.ApplicationSID, &k.SID, &k.SealedSecret, &k.MasterKeyID, &state, &created, &activated, &lastSigned, &outstandingUntil); err != nil {
		return storage.Key{}, err
	}
	k.State = storage.KeyState(state)
	k.CreatedAt = fromMillis(created)
	k.ActivatedAt = fromNullMillis(activated)
	k.LastSignedAt = fromNullMillis(lastSigned)
	k.OutstandingUntil = fromNullMillis(outstandingUntil)
	return k, nil
}

// queryer is a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queryApplications reads every application; n is how many there are
// likely to be (a capacity, 0 if unknown).
func queryApplications(ctx context.Context, q queryer, n int) ([]storage.Application, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+applicationColumns+` FROM applications ORDER BY sid`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	apps := make([]storage.Application, 0, n)
	for rows.Next() {
		a, err := scanApplication(rows)
		if err != nil {
			return nil, err
		}
		apps = append(apps, a)
	}
	return apps, rows.Err()
}

func queryKeys(ctx context.Context, q queryer, query string, args ...any) ([]storage.Key, error) {
	return queryKeysSized(ctx, q, 0, query, args...)
}

// queryKeysSized is queryKeys with a capacity for the result.
func queryKeysSized(ctx context.Context, q queryer, n int, query string, args ...any) ([]storage.Key, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := make([]storage.Key, 0, n)
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// applicationExists returns an error wrapping storage.ErrNotFound unless
// the application exists.
func applicationExists(ctx context.Context, q queryer, sid string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM applications WHERE sid = ?`, sid).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("application %w", storage.ErrNotFound)
	}
	return err
}

// keyState returns the state of a key, or an error wrapping
// storage.ErrNotFound.
func keyState(ctx context.Context, q queryer, applicationSID, sid string) (storage.KeyState, error) {
	var state string
	err := q.QueryRowContext(ctx, `SELECT state FROM keys WHERE application_sid = ? AND sid = ?`, applicationSID, sid).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("key %w", storage.ErrNotFound)
	}
	return storage.KeyState(state), err
}

// writeTx runs fn in a write transaction (BEGIN IMMEDIATE on the single
// write connection) and commits it. If fn reports a change, the revision
// is advanced in the same transaction. Nothing is written if fn fails.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) (changed bool, err error)) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	changed, err := fn(tx)
	if err != nil {
		return err
	}
	if changed {
		if _, err := tx.ExecContext(ctx, `UPDATE revision SET value = value + 1 WHERE id = 1`); err != nil {
			return fmt.Errorf("advance revision: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// readTx runs fn in a read transaction, which sees one snapshot of the
// database.
func (s *Store) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// CreateApplication adds an application; it fails with
// storage.ErrAlreadyExists if its SID is taken.
func (s *Store) CreateApplication(ctx context.Context, app storage.Application) error {
	if app.SID == "" {
		return errors.New("create application: empty sid")
	}
	now := millis(time.Now())
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO applications (`+applicationColumns+`)
			VALUES (?, ?, ?, coalesce(?, X''), ?, ?, ?, ?)
			ON CONFLICT (sid) DO NOTHING`,
			app.SID, app.AccountSID, app.FriendlyName, app.DefaultGrants, app.MaxTTLSeconds, app.Region, now, now)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n == 0 {
			return false, fmt.Errorf("application %w", storage.ErrAlreadyExists)
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
	app, err := scanApplication(s.read.QueryRowContext(ctx, `SELECT `+applicationColumns+` FROM applications WHERE sid = ?`, sid))
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Application{}, fmt.Errorf("get application %s: %w", sid, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Application{}, fmt.Errorf("get application %s: %w", sid, err)
	}
	return app, nil
}

// ListApplications returns all applications ordered by SID.
func (s *Store) ListApplications(ctx context.Context) ([]storage.Application, error) {
	apps, err := queryApplications(ctx, s.read, 0)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return apps, nil
}

// UpdateApplication reads the application, calls update with it and
// writes back what update returns but its SID and CreatedAt, in one
// transaction; UpdatedAt is set to now. An error from update is returned
// as is and nothing is written. update runs while the store's write lock
// is held: it must be quick and must not call the store.
func (s *Store) UpdateApplication(ctx context.Context, sid string, update func(storage.Application) (storage.Application, error)) (storage.Application, error) {
	var (
		updateErr error
		updated   storage.Application
	)
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		const query = `SELECT ` + applicationColumns + ` FROM applications WHERE sid = ?`
		cur, err := scanApplication(tx.QueryRowContext(ctx, query, sid))
		if errors.Is(err, sql.ErrNoRows) {
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
		if _, err := tx.ExecContext(ctx, `
			UPDATE applications
			SET account_sid = ?, friendly_name = ?, default_grants = coalesce(?, X''),
				max_ttl_seconds = ?, region = ?, updated_at = ?
			WHERE sid = ?`,
			next.AccountSID, next.FriendlyName, next.DefaultGrants, next.MaxTTLSeconds, next.Region, millis(time.Now()), sid); err != nil {
			return false, err
		}
		// Read back, so the result is exactly what GetApplication returns.
		if updated, err = scanApplication(tx.QueryRowContext(ctx, query, sid)); err != nil {
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

// DeleteApplication removes an application and its keys (and the default
// application setting naming it); it fails with
// storage.ErrNotFound if the application does not exist.
func (s *Store) DeleteApplication(ctx context.Context, sid string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		// The keys go by ON DELETE CASCADE.
		res, err := tx.ExecContext(ctx, `DELETE FROM applications WHERE sid = ?`, sid)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n == 0 {
			return false, fmt.Errorf("application %w", storage.ErrNotFound)
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
	sid, err := defaultApplication(ctx, s.read)
	if err != nil {
		return "", fmt.Errorf("read default application: %w", err)
	}
	return sid, nil
}

func defaultApplication(ctx context.Context, q queryer) (string, error) {
	var sid string
	err := q.QueryRowContext(ctx, `SELECT application_sid FROM default_application WHERE id = 1`).Scan(&sid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return sid, err
}

// SetDefaultApplication makes sid the default application (storage.
// ErrNotFound if it does not exist), or unsets it for "". The current
// value writes nothing.
func (s *Store) SetDefaultApplication(ctx context.Context, sid string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		cur, err := defaultApplication(ctx, tx)
		if err != nil {
			return false, err
		}
		if cur == sid {
			return false, nil
		}
		if sid == "" {
			_, err := tx.ExecContext(ctx, `DELETE FROM default_application WHERE id = 1`)
			return err == nil, err
		}
		if err := applicationExists(ctx, tx, sid); err != nil {
			return false, err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO default_application (id, application_sid) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET application_sid = excluded.application_sid`, sid)
		return err == nil, err
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
	now := time.Now()
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		if err := applicationExists(ctx, tx, key.ApplicationSID); err != nil {
			return false, err
		}
		_, err := keyState(ctx, tx, key.ApplicationSID, key.SID)
		if err == nil {
			return false, fmt.Errorf("key %w", storage.ErrAlreadyExists)
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return false, err
		}
		activatedAt := nullMillis(key.ActivatedAt)
		if key.State == storage.KeyActive {
			if err := retireActive(ctx, tx, key.ApplicationSID); err != nil {
				return false, err
			}
			activatedAt = nullMillis(now)
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO keys (`+keyColumns+`)
			VALUES (?, ?, coalesce(?, X''), ?, ?, ?, ?, ?, ?)`,
			key.ApplicationSID, key.SID, key.SealedSecret, key.MasterKeyID, string(key.State), millis(now),
			activatedAt, nullMillis(key.LastSignedAt), nullMillis(key.OutstandingUntil))
		if err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("create key %s for application %s: %w", key.SID, key.ApplicationSID, err)
	}
	return nil
}

// retireActive retires the active key of an application, if any.
func retireActive(ctx context.Context, tx *sql.Tx, applicationSID string) error {
	_, err := tx.ExecContext(ctx, `UPDATE keys SET state = 'retired' WHERE application_sid = ? AND state = 'active'`, applicationSID)
	return err
}

// GetKey returns one key or storage.ErrNotFound.
func (s *Store) GetKey(ctx context.Context, applicationSID, sid string) (storage.Key, error) {
	key, err := scanKey(s.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE application_sid = ? AND sid = ?`, applicationSID, sid))
	if errors.Is(err, sql.ErrNoRows) {
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
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := applicationExists(ctx, tx, applicationSID); err != nil {
			return err
		}
		var err error
		keys, err = queryKeys(ctx, tx, `SELECT `+keyColumns+` FROM keys WHERE application_sid = ? ORDER BY created_at, sid`, applicationSID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys of application %s: %w", applicationSID, err)
	}
	return keys, nil
}

// ActivateKey makes the key the application's only active key, retiring
// the previous one, and sets its ActivatedAt to now. Activating the active
// key changes nothing, not even the revision. storage.ErrNotFound if the
// key does not exist.
func (s *Store) ActivateKey(ctx context.Context, applicationSID, sid string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		state, err := keyState(ctx, tx, applicationSID, sid)
		if err != nil {
			return false, err
		}
		if state == storage.KeyActive {
			return false, nil
		}
		// Retire first: the unique index allows one active key at a time.
		if err := retireActive(ctx, tx, applicationSID); err != nil {
			return false, err
		}
		_, err = tx.ExecContext(ctx, `UPDATE keys SET state = 'active', activated_at = ? WHERE application_sid = ? AND sid = ?`,
			millis(time.Now()), applicationSID, sid)
		if err != nil {
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
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		state, err := keyState(ctx, tx, applicationSID, sid)
		if err != nil {
			return false, err
		}
		if state == storage.KeyActive {
			return false, fmt.Errorf("key is active: %w", storage.ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM keys WHERE application_sid = ? AND sid = ?`, applicationSID, sid); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("delete key %s for application %s: %w", sid, applicationSID, err)
	}
	return nil
}

// ResealKeys replaces the sealed secrets and master key IDs of the given
// keys in one transaction, skipping keys that do not exist. The revision
// advances if any key was resealed.
func (s *Store) ResealKeys(ctx context.Context, sealed []storage.Sealed) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		stmt, err := tx.PrepareContext(ctx, `
			UPDATE keys SET sealed_secret = coalesce(?, X''), master_key_id = ?
			WHERE application_sid = ? AND sid = ?`)
		if err != nil {
			return false, err
		}
		defer stmt.Close()
		var changed int64
		for _, sl := range sealed {
			res, err := stmt.ExecContext(ctx, sl.SealedSecret, sl.MasterKeyID, sl.ApplicationSID, sl.SID)
			if err != nil {
				// No secret in the message: only which key.
				return false, fmt.Errorf("key %s for application %s: %w", sl.SID, sl.ApplicationSID, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return false, err
			}
			changed += n
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
// the revision.
func (s *Store) RecordKeyUsage(ctx context.Context, usage []storage.KeyUsage) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		stmt, err := tx.PrepareContext(ctx, `
			UPDATE keys SET
				last_signed_at = CASE
					WHEN ?1 IS NOT NULL AND (last_signed_at IS NULL OR last_signed_at < ?1) THEN ?1
					ELSE last_signed_at END,
				outstanding_until = CASE
					WHEN ?2 IS NOT NULL AND (outstanding_until IS NULL OR outstanding_until < ?2) THEN ?2
					ELSE outstanding_until END
			WHERE application_sid = ?3 AND sid = ?4`)
		if err != nil {
			return false, err
		}
		defer stmt.Close()
		for _, u := range usage {
			if u.LastSignedAt.IsZero() && u.OutstandingUntil.IsZero() {
				continue
			}
			if _, err := stmt.ExecContext(ctx, nullMillis(u.LastSignedAt), nullMillis(u.OutstandingUntil), u.ApplicationSID, u.SID); err != nil {
				return false, fmt.Errorf("key %s for application %s: %w", u.SID, u.ApplicationSID, err)
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("record key usage: %w", err)
	}
	return nil
}

// Snapshot reads every application, key and credential, and the revision,
// in one read transaction. Applications are ordered by SID, keys by
// application SID, CreatedAt and SID, credentials by name.
func (s *Store) Snapshot(ctx context.Context) (storage.Snapshot, error) {
	var snap storage.Snapshot
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&snap.Revision); err != nil {
			return fmt.Errorf("read revision: %w", err)
		}
		// Counted first, so that the slices are made once at their size
		// rather than grown (and copied) a row at a time.
		var nApps, nKeys int
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM applications), (SELECT COUNT(*) FROM keys)`).Scan(&nApps, &nKeys); err != nil {
			return fmt.Errorf("count rows: %w", err)
		}
		var err error
		if snap.Applications, err = queryApplications(ctx, tx, nApps); err != nil {
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
	rows, err := s.read.QueryContext(ctx, `SELECT master_key_id, COUNT(*) FROM (SELECT master_key_id FROM keys UNION ALL SELECT master_key_id FROM twilio_credentials) AS sealed GROUP BY master_key_id`)
	if err != nil {
		return nil, fmt.Errorf("read master key ids: %w", err)
	}
	defer rows.Close()
	ids := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("read master key ids: %w", err)
		}
		ids[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read master key ids: %w", err)
	}
	return ids, nil
}

// Revision returns the current revision, which every write but
// RecordKeyUsage (and writes that change nothing) advances.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.read.QueryRowContext(ctx, `SELECT value FROM revision WHERE id = 1`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

const credentialColumns = `name, hash, groups, created_at`

func scanCredential(row scanner) (storage.Credential, error) {
	var (
		c       storage.Credential
		groups  string
		created int64
	)
	if err := row.Scan(&c.Name, &c.Hash, &groups, &created); err != nil {
		return storage.Credential{}, err
	}
	if err := json.Unmarshal([]byte(groups), &c.Groups); err != nil {
		return storage.Credential{}, fmt.Errorf("credential %s: groups: %w", c.Name, err)
	}
	if len(c.Groups) == 0 {
		c.Groups = nil
	}
	c.CreatedAt = fromMillis(created)
	return c, nil
}

func queryCredentials(ctx context.Context, q queryer) ([]storage.Credential, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+credentialColumns+` FROM credentials ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var creds []storage.Credential
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			return nil, err
		}
		creds = append(creds, c)
	}
	return creds, rows.Err()
}

// CreateCredential adds a credential; it fails with
// storage.ErrAlreadyExists if its name is taken or another credential has
// the same hash, and with the error of Credential.Validate if the store
// cannot keep it. Groups are stored as a JSON array; CreatedAt is set to
// now.
func (s *Store) CreateCredential(ctx context.Context, cred storage.Credential) error {
	if err := cred.Validate(); err != nil {
		return fmt.Errorf("create %w", err)
	}
	groups := cred.Groups
	if groups == nil {
		groups = []string{}
	}
	// Valid UTF-8 strings round-trip through encoding/json exactly.
	groupsJSON, err := json.Marshal(groups)
	if err != nil {
		return fmt.Errorf("create credential %s: groups: %w", cred.Name, err)
	}
	now := millis(time.Now())
	err = s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		// DO NOTHING on a conflict with either unique constraint, the
		// name or the hash; the error says which, not the hash.
		res, err := tx.ExecContext(ctx, `
			INSERT INTO credentials (`+credentialColumns+`)
			VALUES (?, ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			cred.Name, cred.Hash, string(groupsJSON), now)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n > 0 {
			return true, nil
		}
		var one int
		switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM credentials WHERE name = ?`, cred.Name).Scan(&one); {
		case err == nil:
			return false, fmt.Errorf("credential %w", storage.ErrAlreadyExists)
		case !errors.Is(err, sql.ErrNoRows):
			return false, err
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
	creds, err := queryCredentials(ctx, s.read)
	if err != nil {
		return nil, fmt.Errorf("list credentials: %w", err)
	}
	return creds, nil
}

// DeleteCredential removes a credential; it fails with storage.ErrNotFound
// if the credential does not exist.
func (s *Store) DeleteCredential(ctx context.Context, name string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, `DELETE FROM credentials WHERE name = ?`, name)
		if err != nil {
			return false, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n == 0 {
			return false, fmt.Errorf("credential %w", storage.ErrNotFound)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("delete credential %q: %w", name, err)
	}
	return nil
}

// Heartbeat upserts the replica's row with an expiry ttl after this
// process's clock (the store's clock: SQLite has no server), deletes rows
// expired for longer than storage.ReplicaRetention, and counts the live
// replicas, in one write transaction.
func (s *Store) Heartbeat(ctx context.Context, id string, ttl time.Duration) (int, error) {
	if err := storage.ValidateReplica(id, ttl); err != nil {
		return 0, fmt.Errorf("heartbeat: %w", err)
	}
	var live int
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		now := time.Now()
		if _, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE id <> ? AND expires_at < ?`,
			id, millis(now.Add(-storage.ReplicaRetention))); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO replicas (id, expires_at) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at`,
			id, millis(now.Add(ttl))); err != nil {
			return false, err
		}
		return false, tx.QueryRowContext(ctx, `SELECT count(*) FROM replicas WHERE expires_at > ?`, millis(now)).Scan(&live)
	})
	if err != nil {
		return 0, fmt.Errorf("heartbeat of replica %s: %w", id, err)
	}
	return live, nil
}

// AckRevision raises the replica's acknowledged revision to rev.
func (s *Store) AckRevision(ctx context.Context, id string, rev int64) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `UPDATE replicas SET revision = ? WHERE id = ? AND revision < ?`, rev, id, rev)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("acknowledge revision %d for replica %s: %w", rev, id, err)
	}
	return nil
}

// ReplicasBehind lists the live replicas whose acknowledged revision is
// below rev.
func (s *Store) ReplicasBehind(ctx context.Context, rev int64) ([]string, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id FROM replicas WHERE expires_at > ? AND revision < ? ORDER BY id`, millis(time.Now()), rev)
	if err != nil {
		return nil, fmt.Errorf("replicas behind revision %d: %w", rev, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("replicas behind revision %d: %w", rev, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("replicas behind revision %d: %w", rev, err)
	}
	return ids, nil
}

// RemoveReplica deletes the replica's heartbeat row, if any.
func (s *Store) RemoveReplica(ctx context.Context, id string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) (bool, error) {
		_, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE id = ?`, id)
		return false, err
	})
	if err != nil {
		return fmt.Errorf("remove replica %s: %w", id, err)
	}
	return nil
}
