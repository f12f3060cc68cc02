package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/storagetest"
)

// The tests that need a server read its DSN from TOKEND_TEST_POSTGRES, for
// example postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable (what
// scripts/postgres-start.sh prints), and skip without it. Each store lives
// in a schema of its own, with a random name, dropped when its test ends:
// tests and packages can share one database and run at once.
const dsnEnv = "TOKEND_TEST_POSTGRES"

func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skip(dsnEnv + " not set")
	}
	return dsn
}

// newSchema returns the name of a schema that does not exist yet, and
// drops it with everything in it when the test ends (after the stores the
// test opened later are closed: cleanups run last first).
func newSchema(t *testing.T, dsn string) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	schema := "tokend_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		// t.Context is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// openSchema opens a store in schema and closes it when the test ends.
func openSchema(t *testing.T, dsn, schema string) *Store {
	t.Helper()
	s, err := OpenSchema(t.Context(), dsn, schema)
	if err != nil {
		t.Fatalf("OpenSchema(%q) = %v", schema, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	dsn := testDSN(t)
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return openSchema(t, dsn, newSchema(t, dsn))
	})
}

// schemaVersion returns the number of migrations recorded in the store's
// schema and the highest version.
func schemaVersion(t *testing.T, s *Store) (count, version int) {
	t.Helper()
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*), coalesce(max(version), 0) FROM schema_migrations`).Scan(&count, &version); err != nil {
		t.Fatalf("read schema_migrations: %v", err)
	}
	return count, version
}

func TestConcurrentOpen(t *testing.T) {
	dsn := testDSN(t)
	// Replicas starting at once on a database with no schema yet: each
	// creates the schema (OpenSchema) or only the tables (Open of an empty
	// schema) and applies the migrations unless another did.
	t.Run("NewSchema", func(t *testing.T) {
		schema := newSchema(t, dsn)
		testConcurrentOpen(t, func() (*Store, error) { return OpenSchema(t.Context(), dsn, schema) })
	})
	t.Run("EmptySchema", func(t *testing.T) {
		schema := newSchema(t, dsn)
		createSchema(t, dsn, schema)
		dsn := withSearchPath(t, dsn, schema)
		testConcurrentOpen(t, func() (*Store, error) { return Open(t.Context(), dsn) })
	})
}

func testConcurrentOpen(t *testing.T, open func() (*Store, error)) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations() = %v", err)
	}
	const replicas = 8
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		stores [replicas]*Store
		errs   [replicas]error
	)
	for i := range replicas {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = open()
		})
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Errorf("concurrent open #%d = %v, want nil error", i, errs[i])
		}
	}
	if t.Failed() {
		return
	}
	if count, version := schemaVersion(t, stores[0]); count != len(ms) || version != len(ms) {
		t.Errorf("schema_migrations = %d rows up to version %d, want %d rows up to %d (each migration applied once)", count, version, len(ms), len(ms))
	}
	// All the replicas share one store.
	ctx := t.Context()
	app := storage.Application{SID: "AP00000000000000000000000000000001", AccountSID: "AC00000000000000000000000000000001"}
	if err := stores[0].CreateApplication(ctx, app); err != nil {
		t.Fatalf("CreateApplication = %v", err)
	}
	for i, s := range stores {
		if _, err := s.GetApplication(ctx, app.SID); err != nil {
			t.Errorf("replica %d: GetApplication(%q) = %v, want the application replica 0 created", i, app.SID, err)
		}
		if rev, err := s.Revision(ctx); err != nil || rev != 1 {
			t.Errorf("replica %d: Revision() = %d, %v, want 1", i, rev, err)
		}
	}
}

func TestReopenKeepsWrites(t *testing.T) {
	dsn := testDSN(t)
	schema := newSchema(t, dsn)
	s := storagetest.Reopen(t, func(t *testing.T) storage.Store { return openSchema(t, dsn, schema) })
	if count, version := schemaVersion(t, s.(*Store)); count != version || version == 0 {
		t.Errorf("schema_migrations = %d rows up to version %d after reopening, want one per version", count, version)
	}
}

// TestConcurrentWritersDoNotDeadlock runs every kind of write at once, on
// overlapping keys, from two stores sharing a schema (two replicas), with
// retries off: a deadlock, which PostgreSQL reports after deadlock_timeout
// (1s by default), fails the test instead of being retried.
func TestConcurrentWritersDoNotDeadlock(t *testing.T) {
	dsn := testDSN(t)
	schema := newSchema(t, dsn)
	replicas := []*Store{openSchema(t, dsn, schema), openSchema(t, dsn, schema)}
	saved := maxAttempts
	maxAttempts = 1
	t.Cleanup(func() { maxAttempts = saved })

	ctx := t.Context()
	appSID := func(n int) string { return fmt.Sprintf("AP%032x", n) }
	keySID := func(n int) string { return fmt.Sprintf("SK%032x", n) }
	const apps, keys, workers = 3, 5, 8
	// create (re)creates application a with its keys, the first active.
	create := func(s *Store, a int) error {
		if err := s.CreateApplication(ctx, storage.Application{SID: appSID(a)}); err != nil {
			return err
		}
		for k := range keys {
			state := storage.KeyRetired
			if k == 0 {
				state = storage.KeyActive
			}
			if err := s.CreateKey(ctx, storage.Key{ApplicationSID: appSID(a), SID: keySID(k), SealedSecret: []byte{0, byte(k)}, MasterKeyID: "m1", State: state}); err != nil {
				return err
			}
		}
		return nil
	}
	for a := range apps {
		if err := create(replicas[0], a); err != nil {
			t.Fatalf("create application %d: %v", a, err)
		}
	}

	deadline := time.Now().Add(3 * time.Second)
	var (
		wg     sync.WaitGroup
		writes atomic.Int64
	)
	for w := range workers {
		s := replicas[w%len(replicas)]
		wg.Go(func() {
			r := mrand.New(mrand.NewPCG(uint64(w), 1))
			someKeys := func() (ids [][2]string) { // with duplicates, in no order
				for range 6 {
					ids = append(ids, [2]string{appSID(r.IntN(apps)), keySID(r.IntN(keys))})
				}
				return ids
			}
			for time.Now().Before(deadline) && !t.Failed() {
				a := r.IntN(apps)
				var err error
				switch r.IntN(7) {
				case 0:
					err = s.ActivateKey(ctx, appSID(a), keySID(r.IntN(keys)))
				case 1:
					var usage []storage.KeyUsage
					for _, id := range someKeys() {
						now := time.Now()
						usage = append(usage, storage.KeyUsage{ApplicationSID: id[0], SID: id[1], LastSignedAt: now, OutstandingUntil: now.Add(time.Hour)})
					}
					err = s.RecordKeyUsage(ctx, usage)
				case 2:
					var sealed []storage.Sealed
					for _, id := range someKeys() {
						sealed = append(sealed, storage.Sealed{ApplicationSID: id[0], SID: id[1], SealedSecret: []byte{1, byte(w)}, MasterKeyID: "m2"})
					}
					err = s.ResealKeys(ctx, sealed)
				case 3:
					_, err = s.UpdateApplication(ctx, appSID(a), func(app storage.Application) (storage.Application, error) {
						app.MaxTTLSeconds++
						return app, nil
					})
				case 4:
					err = s.DeleteKey(ctx, appSID(a), keySID(r.IntN(keys)))
				case 5:
					err = s.CreateKey(ctx, storage.Key{ApplicationSID: appSID(a), SID: keySID(r.IntN(keys)), SealedSecret: []byte{2}, MasterKeyID: "m3", State: storage.KeyActive})
				case 6:
					if r.IntN(4) == 0 {
						if err = s.DeleteApplication(ctx, appSID(a)); err == nil {
							err = create(s, a)
						}
					}
				}
				writes.Add(1)
				if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrAlreadyExists) && !errors.Is(err, storage.ErrConflict) {
					t.Errorf("concurrent write: %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d concurrent writes", writes.Load())
	snap, err := replicas[1].Snapshot(ctx)
	if err != nil {
		t.Fatalf("Snapshot() = %v", err)
	}
	active := map[string]int{}
	for _, k := range snap.Keys {
		if k.State == storage.KeyActive {
			active[k.ApplicationSID]++
		}
	}
	for app, n := range active {
		if n > 1 {
			t.Errorf("Snapshot(): application %s has %d active keys, want at most one", app, n)
		}
	}
}

// createSchema creates an empty schema.
func createSchema(t *testing.T, dsn, schema string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
}

// withSearchPath returns dsn with its search_path set to schema.
func withSearchPath(t *testing.T, dsn, schema string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parse %s: %v", dsnEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func TestOpenSearchPath(t *testing.T) {
	dsn := testDSN(t)
	ctx := t.Context()
	schema := newSchema(t, dsn)

	// Open does not create the schema of the search_path.
	if s, err := Open(ctx, withSearchPath(t, dsn, schema)); err == nil {
		s.Close()
		t.Fatalf("Open with search_path=%s (missing schema) = nil error, want an error", schema)
	} else if !strings.Contains(err.Error(), "search_path") {
		t.Errorf("Open with search_path=%s (missing schema) = %v, want an error about the search_path", schema, err)
	}

	createSchema(t, dsn, schema)
	s, err := Open(ctx, withSearchPath(t, dsn, schema))
	if err != nil {
		t.Fatalf("Open with search_path=%s = %v", schema, err)
	}
	defer s.Close()
	if err := s.CreateApplication(ctx, storage.Application{SID: "AP00000000000000000000000000000001"}); err != nil {
		t.Fatalf("CreateApplication = %v", err)
	}
	// The application went to that schema, named in full here.
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "applications"}.Sanitize()).Scan(&n); err != nil || n != 1 {
		t.Errorf("applications in schema %s = %d, %v, want 1", schema, n, err)
	}
}

func TestDatabaseConstraints(t *testing.T) {
	dsn := testDSN(t)
	s := openSchema(t, dsn, newSchema(t, dsn))
	ctx := t.Context()
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations() = %v", err)
	}
	if count, version := schemaVersion(t, s); count != len(ms) || version != len(ms) {
		t.Errorf("schema_migrations = %d rows up to version %d, want %d rows up to %d", count, version, len(ms), len(ms))
	}

	// The database itself refuses a second active key and orphan keys, and
	// deletes the keys of a deleted application.
	if _, err := s.pool.Exec(ctx, `INSERT INTO applications VALUES ('AP1', 'AC1', '', '', 0, '', now(), now())`); err != nil {
		t.Fatalf("insert application: %v", err)
	}
	insertKey := `INSERT INTO keys (application_sid, sid, sealed_secret, master_key_id, state, created_at) VALUES ($1, $2, '\x00', 'm', $3, now())`
	if _, err := s.pool.Exec(ctx, insertKey, "AP1", "SK1", "active"); err != nil {
		t.Fatalf("insert key: %v", err)
	}
	_, err = s.pool.Exec(ctx, insertKey, "AP1", "SK2", "active")
	if e := pgError(err, codeUniqueViolation); e == nil || e.ConstraintName != "keys_one_active_per_application" {
		t.Errorf("inserting a second active key = %v, want a violation of keys_one_active_per_application", err)
	}
	_, err = s.pool.Exec(ctx, insertKey, "AP2", "SK1", "retired")
	if pgError(err, codeForeignKeyViolation) == nil {
		t.Errorf("inserting a key of a missing application = %v, want a foreign key violation", err)
	}
	_, err = s.pool.Exec(ctx, insertKey, "AP1", "SK3", "pending")
	if pgError(err, "23514") == nil {
		t.Errorf("inserting a key in state pending = %v, want a check violation", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM applications WHERE sid = 'AP1'`); err != nil {
		t.Fatalf("delete application: %v", err)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM keys`).Scan(&n); err != nil || n != 0 {
		t.Errorf("keys left after deleting their application = %d, %v, want 0", n, err)
	}
}

func TestOpenNewerSchema(t *testing.T) {
	dsn := testDSN(t)
	schema := newSchema(t, dsn)
	s := openSchema(t, dsn, schema)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatalf("loadMigrations() = %v", err)
	}
	if _, err := s.pool.Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_the_future.sql')`, len(ms)+1); err != nil {
		t.Fatalf("insert into schema_migrations: %v", err)
	}
	s2, err := OpenSchema(t.Context(), dsn, schema)
	if err == nil {
		s2.Close()
		t.Fatalf("OpenSchema on a schema at version %d = nil error, want an error (newer than the binary)", len(ms)+1)
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("OpenSchema on a newer schema = %v, want an error saying it is newer", err)
	}
}

// The tests below need no server.

func TestOpenSchemaInvalidName(t *testing.T) {
	for _, schema := range []string{"", strings.Repeat("s", 64), "nul\x00"} {
		s, err := OpenSchema(t.Context(), "postgres://127.0.0.1:1/x", schema)
		if err == nil {
			s.Close()
			t.Errorf("OpenSchema(%q) = nil error, want an error", schema)
		}
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	const password = "pw-that-must-not-leak"
	for _, dsn := range []string{
		"postgres://tokend:" + password + "@127.0.0.1:1/tokend?sslmode=disable&connect_timeout=2",
		"postgres://tokend:" + password + "@127.0.0.1:1/tokend?sslmode=bogus",
		"host=127.0.0.1 port=1 user=tokend password=" + password + " connect_timeout=2 sslmode=disable",
	} {
		s, err := Open(t.Context(), dsn)
		if err == nil {
			s.Close()
			t.Errorf("Open(unreachable server) = nil error, want an error")
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("Open(unreachable server) = %q, which reveals the password", err)
		}
		if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open(unreachable server) = %v, want no storage sentinel", err)
		}
	}
}

// TestHeartbeatCleansUpDeadReplicas: rows expired for longer than
// storage.ReplicaRetention are deleted by the next heartbeat of another
// replica; rows expired more recently, and the beating replica's own row,
// are kept.
func TestHeartbeatCleansUpDeadReplicas(t *testing.T) {
	dsn := testDSN(t)
	s := openSchema(t, dsn, newSchema(t, dsn))
	ctx := t.Context()
	retention := storage.ReplicaRetention
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO replicas (id, expires_at) VALUES
			('long-dead', clock_timestamp() - $1::bigint * interval '1 millisecond'),
			('recently-dead', clock_timestamp() - interval '1 second')`,
		(retention + time.Minute).Milliseconds()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Heartbeat(ctx, "alive", time.Minute); err != nil || n != 1 {
		t.Fatalf("Heartbeat(alive) = %d, %v; want 1, nil", n, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM replicas ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(ids, ","), "alive,recently-dead"; got != want {
		t.Errorf("replicas after a heartbeat = %s, want %s", got, want)
	}
}

// TestConcurrentHeartbeatCleanup: replicas cleaning up the same dead rows
// at once neither fail nor deadlock, and leave none behind.
func TestConcurrentHeartbeatCleanup(t *testing.T) {
	dsn := testDSN(t)
	s := openSchema(t, dsn, newSchema(t, dsn))
	ctx := t.Context()
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO replicas (id, expires_at)
		SELECT 'dead-' || i, clock_timestamp() - interval '1 hour' FROM generate_series(1, 200) AS i`); err != nil {
		t.Fatal(err)
	}
	const replicas = 8
	var wg sync.WaitGroup
	errs := make(chan error, replicas)
	for r := range replicas {
		wg.Go(func() {
			if _, err := s.Heartbeat(ctx, fmt.Sprintf("alive-%d", r), time.Minute); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Heartbeat = %v", err)
	}
	// A last heartbeat removes whatever rows were locked by the others.
	if n, err := s.Heartbeat(ctx, "alive-0", time.Minute); err != nil || n != replicas {
		t.Fatalf("Heartbeat(alive-0) = %d, %v; want %d, nil", n, err, replicas)
	}
	var dead int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE id LIKE 'dead-%'`).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	if dead != 0 {
		t.Errorf("%d dead rows left after the heartbeats, want 0", dead)
	}
}
