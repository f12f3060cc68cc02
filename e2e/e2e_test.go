// Package e2e runs tokend as real processes (the binary that `make build`
// makes) against real backing services: several replicas on one
// PostgreSQL server, and a PostgreSQL server that goes away under load.
//
// The tests need a PostgreSQL server: its DSN in TOKEND_TEST_POSTGRES
// (scripts/postgres-start.sh prints one; .ci/run always sets it). Without
// it they skip.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/tokend/tokend/internal/freeport"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

const (
	dsnEnv     = "TOKEND_TEST_POSTGRES"
	adminToken = "e2e-admin-token-0123456789abcdef"
	account    = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	key1       = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	secret1    = "cccccccccccccccccccccccccccccccc"
	app        = "APdddddddddddddddddddddddddddddddd"
	key2       = "SK22222222222222222222222222222222"
	secret2    = "second-secret-for-the-e2e-tests-2"
)

var tokendBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tokend-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tokendBin = filepath.Join(dir, "tokend")
	build := exec.Command("go", "build", "-o", tokendBin, "github.com/tokend/tokend/cmd/tokend")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tokend:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func postgresDSN(t *testing.T) string {
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skip(dsnEnv + " not set")
	}
	return dsn
}

// freshSchema creates an empty schema for one test and returns a DSN whose
// search_path selects it.
func freshSchema(t *testing.T, dsn string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	schema := "e2e_" + randHex(6)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err == nil {
			c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// replica is one tokend process.
type replica struct {
	name     string
	httpAddr string
	grpcAddr string
	cmd      *exec.Cmd
	log      *syncBuffer
	client   *client.Client // mints, anonymously (development mode)
	admin    *client.Client // calls the admin API with the admin token
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var masterKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))

// startReplica starts tokend on store and waits until /readyz answers.
func startReplica(t *testing.T, name, store string) *replica {
	t.Helper()
	r := &replica{name: name, httpAddr: freeAddr(t), grpcAddr: freeAddr(t), log: &syncBuffer{}}
	r.cmd = exec.Command(tokendBin, "--http-addr", r.httpAddr, "--grpc-addr", r.grpcAddr,
		"--data-dir", t.TempDir(), "--store", store, "--log-level", "debug")
	r.cmd.Env = append(os.Environ(),
		"TOKEND_MASTER_KEY="+masterKey, "TOKEND_ADMIN_TOKEN="+adminToken,
		"ACCOUNT_SID="+account, "API_KEY="+key1, "API_SECRET="+secret1, "TWIML_APP_SID="+app)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			r.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", r.name, r.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := getJSON("http://" + r.httpAddr + "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready:\n%s", name, r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c, err := client.New(r.grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	a, err := client.New(r.grpcAddr, client.WithBearerToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Close() })
	r.client, r.admin = c, a
	return r
}

func getJSON(url string) (int, map[string]any) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestReplicasShareChanges: two tokend processes on one PostgreSQL; a key
// added and activated through one signs the tokens of the other within a
// second, and so does a new application.
func TestReplicasShareChanges(t *testing.T) {
	store := freshSchema(t, postgresDSN(t))
	// Both start at once: migrations and the seed race on an empty schema.
	var a, b *replica
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = startReplica(t, "replica-a", store) }()
	go func() { defer wg.Done(); b = startReplica(t, "replica-b", store) }()
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}
	ctx := context.Background()

	if _, err := a.admin.Admin().AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app, ApiKeySid: key2, Secret: secret2}); err != nil {
		t.Fatalf("AddKey via a = %v", err)
	}
	if _, err := a.admin.Admin().ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: app, ApiKeySid: key2}); err != nil {
		t.Fatalf("ActivateKey via a = %v", err)
	}
	activated := time.Now()
	for {
		resp, err := b.client.Mint(ctx, &tokenv1.MintRequest{})
		if err != nil {
			t.Fatalf("Mint via b = %v", err)
		}
		if resp.GetApiKeySid() == key2 {
			t.Logf("b signs with the new key %v after the activation through a", time.Since(activated).Round(time.Millisecond))
			break
		}
		if time.Since(activated) > time.Second {
			t.Fatalf("b still signs with %s more than 1 s after the activation through a", resp.GetApiKeySid())
		}
		time.Sleep(10 * time.Millisecond)
	}

	const app2 = "AP22222222222222222222222222222222"
	if _, err := b.admin.Admin().CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: app2, AccountSid: account}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.Admin().AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app2, ApiKeySid: key1, Secret: secret1}); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	for {
		resp, err := a.client.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: app2})
		if err == nil && resp.GetApplicationSid() == app2 {
			break
		}
		if time.Since(created) > time.Second {
			t.Fatalf("a cannot mint for the application created through b 1 s later: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The default application is shared: a second application left the
	// seed's the default on both; set through b, a follows.
	if resp, err := a.client.Mint(ctx, &tokenv1.MintRequest{}); err != nil || resp.GetApplicationSid() != app {
		t.Fatalf("Mint via a with two applications = %v, %v, want the seed application %s", resp, err, app)
	}
	if _, err := b.admin.Admin().SetDefaultApplication(ctx, &tokenv1.SetDefaultApplicationRequest{ApplicationSid: app2}); err != nil {
		t.Fatalf("SetDefaultApplication via b = %v", err)
	}
	changed := time.Now()
	for {
		resp, err := a.client.Mint(ctx, &tokenv1.MintRequest{})
		if err == nil && resp.GetApplicationSid() == app2 {
			t.Logf("a serves requests naming no application from the new default %v after the change through b", time.Since(changed).Round(time.Millisecond))
			break
		}
		if time.Since(changed) > time.Second {
			t.Fatalf("a still mints %v, %v more than 1 s after the default changed through b", resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pgInstance is a PostgreSQL server of the test's own, so that it can be
// stopped and started without disturbing other tests.
type pgInstance struct {
	bin, dir, port string
	asPostgres     bool
}

func (p *pgInstance) run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	if p.asPostgres {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(p.bin, name)}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func (p *pgInstance) start(t *testing.T) {
	p.run(t, "pg_ctl", "-D", p.dir, "-w", "-t", "60", "-l", filepath.Join(p.dir, "log"),
		"-o", "-p "+p.port+" -k "+p.dir+" -c listen_addresses=127.0.0.1", "start")
}

func (p *pgInstance) stop(t *testing.T) {
	p.run(t, "pg_ctl", "-D", p.dir, "-w", "-m", "immediate", "stop")
}

// newPostgres makes and starts a PostgreSQL server with the binaries of
// the installed server (the one scripts/postgres-start.sh installs).
func newPostgres(t *testing.T) *pgInstance {
	t.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		t.Fatalf("%s is set but no PostgreSQL server binaries are installed (/usr/lib/postgresql/*/bin)", dsnEnv)
	}
	_, portStr, _ := net.SplitHostPort(freeAddr(t))
	p := &pgInstance{bin: filepath.Dir(initdbs[len(initdbs)-1]), port: portStr, asPostgres: os.Geteuid() == 0}
	dir, err := os.MkdirTemp("", "tokend-e2e-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = filepath.Join(dir, "data")
	if p.asPostgres { // the server refuses to run as root
		if out, err := exec.Command("chown", "-R", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	p.run(t, "initdb", "-D", p.dir, "-U", "postgres", "--auth=trust", "--no-sync")
	p.start(t)
	t.Cleanup(func() {
		exec.Command("runuser", "-u", "postgres", "--", filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-m", "immediate", "stop").Run()
		exec.Command(filepath.Join(p.bin, "pg_ctl"), "-D", p.dir, "-m", "immediate", "stop").Run()
		os.RemoveAll(dir)
	})
	return p
}

// TestPostgresOutage stops and starts the real PostgreSQL server under
// mint load: no mint fails, the replicas report the store unreachable and
// writes not ready while it is away, refuse admin writes, and recover by
// themselves when it returns.
func TestPostgresOutage(t *testing.T) {
	postgresDSN(t)
	pg := newPostgres(t)
	store := "postgres://postgres@127.0.0.1:" + pg.port + "/postgres?sslmode=disable"
	a := startReplica(t, "replica-a", store)
	b := startReplica(t, "replica-b", store)
	replicas := []*replica{a, b}

	ctx, stopLoad := context.WithCancel(context.Background())
	var mu sync.Mutex
	minted, failed := 0, 0
	var failures []string
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := replicas[w%2]
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				if i%2 == 0 {
					_, err = r.client.Mint(context.Background(), &tokenv1.MintRequest{})
				} else if code, body := getJSON("http://" + r.httpAddr + "/token"); code != 200 {
					err = fmt.Errorf("GET /token = %d %v", code, body)
				}
				mu.Lock()
				minted++
				if err != nil {
					failed++
					if len(failures) < 5 {
						failures = append(failures, r.name+": "+err.Error())
					}
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after %v: %s", limit, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	storeIs := func(state string) func() bool {
		return func() bool {
			for _, r := range replicas {
				code, body := getJSON("http://" + r.httpAddr + "/readyz")
				if code != 200 || body["store"] != state {
					return false
				}
			}
			return true
		}
	}

	time.Sleep(time.Second)
	pg.stop(t)
	waitFor("both replicas report the store unreachable and still ready to mint", 10*time.Second, storeIs("unreachable"))
	_, err := a.admin.Admin().AddKey(context.Background(), &tokenv1.AddKeyRequest{ApplicationSid: app, ApiKeySid: key2, Secret: secret2})
	if err == nil {
		t.Errorf("AddKey with PostgreSQL down succeeded")
	}
	time.Sleep(2 * time.Second)
	pg.start(t)
	waitFor("both replicas report the store reachable again", 20*time.Second, storeIs("ok"))
	if _, err := a.admin.Admin().AddKey(context.Background(), &tokenv1.AddKeyRequest{ApplicationSid: app, ApiKeySid: key2, Secret: secret2, Activate: true}); err != nil {
		t.Fatalf("AddKey after PostgreSQL returned = %v", err)
	}
	waitFor("b signs with the key activated through a after the outage", 5*time.Second, func() bool {
		resp, err := b.client.Mint(context.Background(), &tokenv1.MintRequest{})
		return err == nil && resp.GetApiKeySid() == key2
	})
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	wg.Wait()
	t.Logf("%d mints under the outage, %d failed", minted, failed)
	if failed != 0 {
		t.Fatalf("%d of %d mints failed, first: %v", failed, minted, failures)
	}
	if minted < 100 {
		t.Fatalf("only %d mints: the load did not run", minted)
	}
}
