package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"github.com/tokend/tokend/internal/freeport"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/server/auth"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestSeedHalfSetIsAnError(t *testing.T) {
	const secret = "do-not-print-me-0123456789abcdef"
	env := envOf(map[string]string{
		"ACCOUNT_SID":      "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"API_SECRET":       secret,
		"TOKEND_DATA_DIR":  t.TempDir(),
		"TOKEND_GRPC_ADDR": "127.0.0.1:0",
		"TOKEND_HTTP_ADDR": "127.0.0.1:0",
	})
	var stderr bytes.Buffer
	err := run(context.Background(), nil, env, &bytes.Buffer{}, &stderr)
	if err == nil {
		t.Fatal("run with half the seed variables = nil, want an error")
	}
	for _, missing := range []string{"API_KEY", "TWIML_APP_SID"} {
		if !strings.Contains(err.Error(), missing) {
			t.Errorf("error %q does not name the missing %s", err, missing)
		}
	}
	if strings.Contains(err.Error()+stderr.String(), secret) {
		t.Error("the error or the log contains the API secret")
	}
}

func TestParse(t *testing.T) {
	env := envOf(map[string]string{"TOKEND_HTTP_ADDR": "127.0.0.1:1", "TOKEND_DEFAULT_IDENTITY": "alice"})
	o, err := parse([]string{"--http-addr", "127.0.0.1:2"}, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.httpAddr != "127.0.0.1:2" || o.defaultIdentity != "alice" || o.grpcAddr != "127.0.0.1:9090" || o.dataDir != "./data" {
		t.Errorf("parse = %+v, want the flag over the env, the env over the default", o)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--default-application", "AP1"}, "default-application"},
		{[]string{"--default-identity", "a b"}, "default-identity"},
		{[]string{"--max-body-bytes", "1"}, "max-body-bytes"},
		{[]string{"extra"}, "unexpected argument"},
	}
	for _, b := range bad {
		if _, err := parse(b.args, envOf(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("parse(%v) = %v, want an error naming %s", b.args, err, b.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestRunServesAndShutsDown starts tokend as `make run` does (no seed: the
// demo application), fetches GET /token like the seed's browser page, and
// stops it with a cancelled context (as SIGTERM does).
func TestRunServesAndShutsDown(t *testing.T) {
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	env := envOf(map[string]string{"TOKEND_DATA_DIR": t.TempDir()})
	ctx, cancel := context.WithCancel(context.Background())
	var stderr bytes.Buffer
	var mu sync.Mutex
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--http-addr", httpAddr, "--grpc-addr", grpcAddr}, env, &bytes.Buffer{}, lockedWriter{&mu, &stderr})
	}()
	var body map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/token")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("GET /token = %d %v", resp.StatusCode, body)
			}
			break
		}
		select {
		case runErr := <-done:
			mu.Lock()
			t.Fatalf("run returned before serving: %v\n%s", runErr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("tokend did not answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if tok, _ := body["token"].(string); strings.Count(tok, ".") != 2 {
		t.Errorf("GET /token = %v, want {\"token\": <jwt>}", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tokend did not shut down")
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{"created a new master key file", "demo application", "shutting down"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("log does not mention %q:\n%s", want, stderr.String())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokend.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sources(o *options) map[string]string {
	m := map[string]string{}
	for _, s := range o.settings {
		m[s.flag] = s.src
	}
	return m
}

// TestConfigPrecedence: flag > env > file > default, option by option.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, `# tokend test config
grpc_addr: 127.0.0.1:7001
http_addr: 127.0.0.1:7002
data_dir: /from/file
log_level: debug
max_body_bytes: 2048
`)
	env := envOf(map[string]string{
		"TOKEND_CONFIG":    path,
		"TOKEND_HTTP_ADDR": "127.0.0.1:8002",
		"TOKEND_DATA_DIR":  "/from/env",
	})
	o, err := parse([]string{"--data-dir", "/from/flag"}, env, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{o.grpcAddr, o.httpAddr, o.dataDir, o.logLevel, strconv.Itoa(o.maxBodyBytes), o.logFormat}
	want := []string{"127.0.0.1:7001", "127.0.0.1:8002", "/from/flag", "debug", "2048", "text"}
	if !slices.Equal(got, want) {
		t.Errorf("grpc, http, data dir, log level, max body, log format = %q, want %q", got, want)
	}
	wantSrc := map[string]string{
		"grpc-addr": srcFile, "http-addr": srcEnv, "data-dir": srcFlag, "log-level": srcFile,
		"max-body-bytes": srcFile, "log-format": srcDefault, "store": srcDefault,
	}
	src := sources(o)
	for name, w := range wantSrc {
		if src[name] != w {
			t.Errorf("source of %s = %q, want %q", name, src[name], w)
		}
	}
	if o.configFile != path || o.configSrc != "env TOKEND_CONFIG" {
		t.Errorf("config file %q from %q, want %q from env TOKEND_CONFIG", o.configFile, o.configSrc, path)
	}

	// --config wins over TOKEND_CONFIG; an env value over the file's.
	other := writeConfig(t, "grpc_addr: 127.0.0.1:7101\nlog_format: json\n")
	o, err = parse([]string{"--config", other}, envOf(map[string]string{
		"TOKEND_CONFIG": path, "TOKEND_LOG_FORMAT": "text",
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.grpcAddr != "127.0.0.1:7101" || o.logFormat != "text" || o.logLevel != "info" || o.configSrc != "flag --config" {
		t.Errorf("with --config: grpc %q, log format %q, log level %q, config from %q; want the --config file's grpc_addr, the env's log format, the default level",
			o.grpcAddr, o.logFormat, o.logLevel, o.configSrc)
	}

	// No config file at all: as before.
	o, err = parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range sources(o) {
		if s != srcDefault {
			t.Errorf("with no flags, env or file, %s comes from %q", name, s)
		}
	}
}

// TestConfigFileErrors: every error names the key and its line; secrets
// and unknown keys are refused.
func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "log_level: info\n\ngrpc_adr: 127.0.0.1:1\n", []string{`unknown key "grpc_adr"`, "line 3", "(did you mean grpc_addr?)"}},
		{"near miss key", "audit_file: /var/log/audit\n", []string{`unknown key "audit_file"`, "line 1", "(did you mean audit_log?)"}},
		{"misspelt key", "polcy_file: p.yaml\n", []string{`unknown key "polcy_file"`, "(did you mean policy_file?)"}},
		{"unrelated key", "colour: blue\n", []string{`unknown key "colour"`, "known keys: ", "grpc_addr", "policy_file"}},
		{"hyphenated key", "grpc-addr: 127.0.0.1:1\n", []string{`unknown key "grpc-addr"`, "line 1", "did you mean grpc_addr"}},
		{"not a number", "log_level: info\nmax_body_bytes: lots\n", []string{"max_body_bytes", "line 2", `"lots"`}},
		{"out of range", "\n\n\nmax_body_bytes: 10\n", []string{"max-body-bytes", "max_body_bytes", "line 4", "between 1024"}},
		{"bad application", "default_application: AP1\n", []string{"default-application", "default_application", "line 1"}},
		{"bad identity", "log_format: json\ndefault_identity: a b\n", []string{"default-identity", "default_identity", "line 2"}},
		{"bad log level", "log_level: loud\n", []string{"log-level", "log_level", "line 1"}},
		{"bad log format", "log_format: xml\n", []string{"log-format", "log_format", "line 1"}},
		{"a list", "http_addr: [a, b]\n", []string{"http_addr", "line 1", "single value"}},
		{"a mapping", "data_dir:\n  path: /x\n", []string{"data_dir", "line 2"}},
		{"inline master key", "master_key: aWQ6c2VjcmV0\n", []string{`"master_key"`, "line 1", "master_key_file", "TOKEND_MASTER_KEY"}},
		{"inline admin token", "log_level: info\nadmin_token: hunter2hunter2hunter2\n", []string{`"admin_token"`, "line 2", "admin_token_file"}},
		{"inline seed secret", "api_secret: shh\n", []string{`"api_secret"`, "line 1", "API_SECRET"}},
		{"store password", "store: postgres://tokend:pw-in-file@db/tokend\n", []string{"store", "line 1", "TOKEND_STORE", "password"}},
		{"store password param", "store: postgres://tokend@db/tokend?password=pw-in-file\n", []string{"store", "line 1"}},
		{"store sslpassword param", "store: postgres://tokend@db/tokend?sslmode=verify-full&sslpassword=pw-in-file\n", []string{"store", "line 1"}},
		{"store keyword password", "store: \"host=db password='pw-in-file' dbname=tokend\"\n", []string{"store", "line 1"}},
		{"duplicate", "log_level: info\nlog_level: debug\n", []string{`"log_level" given twice`, "line 2", "line 1"}},
		{"nested config", "config: /etc/other.yaml\n", []string{`"config"`, "line 1"}},
		{"not a mapping", "- grpc_addr\n", []string{"line 1", "mapping"}},
		{"syntax", "log_level: info\n  bad: [\n", []string{"tokend.yaml", "line"}},
		{"indentation", "log_level: info\nhttp_addr: 127.0.0.1:1\n\n  grpc_addr: 127.0.0.1:2\n", []string{"tokend.yaml line 4: "}},
		{"list of cors origins", "cors_origins:\n  - https://a.example\n - https://b.example\n", []string{"tokend.yaml line 3: ", "(in the block that starts at line"}},
		{"two documents", "log_level: info\n---\nlog_level: debug\n", []string{"line 2", "one YAML document"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.text)
			_, err := parse([]string{"--config", path}, envOf(nil), &bytes.Buffer{})
			if err == nil {
				t.Fatalf("config %q: parse = nil, want an error", c.text)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "pw-in-file") {
				t.Errorf("error %q holds the password", err)
			}
		})
	}
	if _, err := parse([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, envOf(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing config file: parse = %v, want an error naming it", err)
	}
	// An empty file, or one of comments only, sets nothing.
	for _, text := range []string{"", "# nothing yet\n"} {
		if _, err := parse([]string{"--config", writeConfig(t, text)}, envOf(nil), &bytes.Buffer{}); err != nil {
			t.Errorf("config %q: %v", text, err)
		}
	}
	// A bad env value still names the variable, not the file.
	_, err := parse(nil, envOf(map[string]string{"TOKEND_LOG_LEVEL": "loud"}), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "TOKEND_LOG_LEVEL") {
		t.Errorf("bad TOKEND_LOG_LEVEL: parse = %v, want an error naming it", err)
	}
}

// TestConfigFileLists: a list key (cors_origins) takes a YAML sequence,
// joined with commas as its flag takes it, or a plain value.
func TestConfigFileLists(t *testing.T) {
	known := map[string]bool{"cors_origins": true, "log_level": true}
	got, err := parseConfig("t.yaml", []byte("cors_origins:\n  - https://a.example\n  - https://b.example\nlog_level: info\n"), known)
	if err != nil {
		t.Fatal(err)
	}
	if v := got["cors_origins"]; v.value != "https://a.example,https://b.example" || v.line != 1 {
		t.Errorf("cors_origins = %+v, want the items joined, line 1", v)
	}
	got, err = parseConfig("t.yaml", []byte("cors_origins: https://a.example\n"), known)
	if err != nil || got["cors_origins"].value != "https://a.example" {
		t.Errorf("cors_origins as a value = %+v, %v", got, err)
	}
	if _, err := parseConfig("t.yaml", []byte("cors_origins: [{a: b}]\n"), known); err == nil || !strings.Contains(err.Error(), "cors_origins") {
		t.Errorf("cors_origins of mappings: %v, want an error naming the key", err)
	}
}

// TestEveryFlagHasItsEnvVar: the layering derives each option's variable
// from its flag's name; the help text must say the same.
func TestEveryFlagHasItsEnvVar(t *testing.T) {
	var help bytes.Buffer
	parse([]string{"--help"}, envOf(nil), &help)
	o, err := parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.settings) < 10 {
		t.Fatalf("only %d settings", len(o.settings))
	}
	for _, s := range o.settings {
		if !strings.Contains(help.String(), "(env "+s.env+")") {
			t.Errorf("the help of --%s does not name %s", s.flag, s.env)
		}
	}
}

// TestConfigCommand: `tokend config` prints every option with its source
// and no secret.
func TestConfigCommand(t *testing.T) {
	const (
		masterKey  = "mk1:c2VjcmV0LW1hc3Rlci1rZXktYnl0ZXMtMzItbG9uZyEhIQ=="
		adminToken = "admin-token-do-not-print-0123456789"
		apiSecret  = "api-secret-do-not-print-abcdef"
		dbPassword = "db-pass-do-not-print"
	)
	path := writeConfig(t, "grpc_addr: 0.0.0.0:9090\nlog_format: json\nmaster_key_file: /run/secrets/master.key\n")
	env := envOf(map[string]string{
		"TOKEND_MASTER_KEY":  masterKey,
		"TOKEND_ADMIN_TOKEN": adminToken,
		"API_SECRET":         apiSecret,
		"API_KEY":            "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"ACCOUNT_SID":        apiSecret, // misplaced: must not be shown either
		"TOKEND_STORE":       "postgres://tokend:" + dbPassword + "@db.internal:5432/tokend?sslmode=require&sslpassword=" + dbPassword + "-ssl",
		"TOKEND_CONFIG":      path,
	})
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"config", "--log-level", "debug"}, env, &stdout, &stderr); err != nil {
		t.Fatalf("tokend config: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, secret := range []string{masterKey, "c2VjcmV0LW1hc3Rlci1rZXk", adminToken, apiSecret, dbPassword} {
		if strings.Contains(out+stderr.String(), secret) {
			t.Errorf("tokend config printed the secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{
		"grpc_addr: 0.0.0.0:9090",
		"# file (line 1)",
		"log_format: json",
		"log_level: debug",
		"# flag (--log-level)",
		"http_addr: 127.0.0.1:8080",
		"# default",
		"store: postgres://tokend:REDACTED@db.internal:5432/tokend?sslmode=require&sslpassword=REDACTED",
		"# env (TOKEND_STORE), password redacted",
		"master_key_file: /run/secrets/master.key",
		"max_body_bytes: ",
		"TOKEND_MASTER_KEY: (set, redacted)",
		"TOKEND_ADMIN_TOKEN: (set, redacted)",
		"API_SECRET: (set, redacted)",
		"API_KEY: SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"TWIML_APP_SID: (not set)",
		"config file: " + path + " (env TOKEND_CONFIG)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tokend config output lacks %q:\n%s", want, out)
		}
	}
	// Every option is there, each with its source.
	o, err := parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range o.settings {
		if !regexp.MustCompile(`(?m)^` + s.key + `: .*  # (default|file|env|flag)`).MatchString(out) {
			t.Errorf("tokend config output has no line for %s with its source:\n%s", s.key, out)
		}
	}

	// Without a store password, the output is itself a valid config file
	// that gives the same options.
	stdout.Reset()
	if err := run(context.Background(), []string{"config", "--config", path, "--default-identity", "bob"}, envOf(nil), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	again := writeConfig(t, stdout.String())
	o, err = parse([]string{"--config", again}, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("the output of tokend config is no valid config file: %v\n%s", err, stdout.String())
	}
	if o.grpcAddr != "0.0.0.0:9090" || o.defaultIdentity != "bob" || o.logFormat != "json" {
		t.Errorf("reloaded config: %+v", o)
	}

	// An invalid configuration is an error, as for serving.
	if err := run(context.Background(), []string{"config", "--max-body-bytes", "1"}, envOf(nil), &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
		t.Error("tokend config with an invalid option = nil, want an error")
	}
}

func TestRedactStore(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "",
		"sqlite":                            "sqlite",
		"postgres://u@h/db":                 "postgres://u@h/db",
		"postgres://u:p@h:5432/db":          "postgres://u:REDACTED@h:5432/db",
		"postgresql://u:p%40ss@h/db?x=1":    "postgresql://u:REDACTED@h/db?x=1",
		"postgres://u@h/db?password=p":      "postgres://u@h/db?password=REDACTED",
		"postgres://u:p/ss@h/db":            "REDACTED",
		"host=h user=u password=p dbname=d": "host=h user=u password=REDACTED dbname=d",
		"postgres://u@h/db?sslpassword=p":   "postgres://u@h/db?sslpassword=REDACTED",
		"host=h sslpassword='p q'":          "host=h sslpassword='REDACTED'",
	} {
		if got := redactStore(in); got != want {
			t.Errorf("redactStore(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConfigCORSOrigins: cors_origins may be a YAML list in the file, and
// tokend config prints it as one.
func TestConfigCORSOrigins(t *testing.T) {
	path := writeConfig(t, "cors_origins:\n  - https://app.example.com\n  - http://localhost:3000\n")
	o, err := parse([]string{"--config", path}, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"https://app.example.com", "http://localhost:3000"}; !slices.Equal(o.corsOrigins, want) {
		t.Errorf("cors origins = %q, want %q", o.corsOrigins, want)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config", "--config", path}, envOf(nil), &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if want := "cors_origins: ['https://app.example.com', 'http://localhost:3000']"; !strings.Contains(out.String(), want) {
		t.Errorf("tokend config output lacks %q:\n%s", want, out.String())
	}
	again, err := parse([]string{"--config", writeConfig(t, out.String())}, envOf(nil), &bytes.Buffer{})
	if err != nil || !slices.Equal(again.corsOrigins, o.corsOrigins) {
		t.Errorf("tokend config output reloaded: %v, %v; want the same origins", again, err)
	}
	bad := writeConfig(t, "log_level: info\ncors_origins: [ftp://x]\n")
	if _, err := parse([]string{"--config", bad}, envOf(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "cors_origins") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad cors_origins: %v, want an error naming the key and line 2", err)
	}
}

// TestHelpHidesStorePassword: --help prints the defaults, which come from
// the environment, without the store's password.
func TestHelpHidesStorePassword(t *testing.T) {
	var help bytes.Buffer
	parse([]string{"--help"}, envOf(map[string]string{"TOKEND_STORE": "postgres://u:help-pw-secret@db/tokend"}), &help)
	if strings.Contains(help.String(), "help-pw-secret") || !strings.Contains(help.String(), "postgres://u:REDACTED@db/tokend") {
		t.Errorf("--help with TOKEND_STORE set:\n%s", help.String())
	}
}

// TestRefusesNonLoopbackWithoutPolicy: in development mode (no caller
// policy) tokend will not listen beyond loopback.
func TestRefusesNonLoopbackWithoutPolicy(t *testing.T) {
	env := envOf(map[string]string{"TOKEND_DATA_DIR": t.TempDir(), "TOKEND_AUDIT_LOG": "off"})
	err := run(context.Background(), []string{"--http-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0"}, env, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "beyond loopback") || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("run on 0.0.0.0 without a policy = %v, want a refusal naming the policy", err)
	}
}

// TestParseReplicaIntervals: the replica heartbeat and expiry come from
// flags, env or their defaults, and bad values name the option.
func TestParseReplicaIntervals(t *testing.T) {
	o, err := parse(nil, envOf(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.replicaHeartbeat != time.Second || o.replicaTTL != 3*time.Second {
		t.Errorf("parse() replica intervals = %v, %v; want 1s, 3s", o.replicaHeartbeat, o.replicaTTL)
	}
	o, err = parse([]string{"--replica-ttl", "5s"}, envOf(map[string]string{"TOKEND_REPLICA_HEARTBEAT_INTERVAL": "500ms"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.replicaHeartbeat != 500*time.Millisecond || o.replicaTTL != 5*time.Second {
		t.Errorf("parse() replica intervals = %v, %v; want 500ms, 5s", o.replicaHeartbeat, o.replicaTTL)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"HeartbeatTooShort", []string{"--replica-heartbeat-interval", "10ms"}, nil, "replica-heartbeat-interval: must be between 100ms and 1m"},
		{"HeartbeatTooLong", []string{"--replica-heartbeat-interval", "2m", "--replica-ttl", "5m"}, nil, "replica-heartbeat-interval: must be between"},
		{"TTLNotTwiceHeartbeat", []string{"--replica-ttl", "1500ms"}, nil, "replica-ttl: must be at least twice --replica-heartbeat-interval (1s)"},
		{"TTLTooLong", []string{"--replica-ttl", "11m"}, nil, "replica-ttl: must be at least twice"},
		{"NotADuration", []string{"--replica-ttl", "3"}, nil, "replica-ttl"},
		{"EnvNotADuration", nil, map[string]string{"TOKEND_REPLICA_TTL": "three"}, `TOKEND_REPLICA_TTL: "three" is not a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.args, envOf(tc.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parse(%v, %v) = %v, want an error containing %q", tc.args, tc.env, err, tc.want)
			}
		})
	}
}

// TestCallerHardeningOptions: the options of issue 12 reach the auth
// configuration, and bad values are errors naming the option.
func TestCallerHardeningOptions(t *testing.T) {
	base := []string{"--oidc-issuer", "https://login.example", "--oidc-audience", "tokend", "--trusted-proxies", "10.0.0.1"}
	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		errWant    string
		unverified bool
		groups     string
		rate       float64
		burst      int
	}{
		{name: "defaults", rate: 0.2, burst: 10},
		{name: "flags", args: []string{"--oidc-allow-unverified-email", "true", "--proxy-groups-header", "X-Forwarded-Groups", "--auth-failure-rate", "1.5", "--auth-failure-burst", "3"},
			unverified: true, groups: "X-Forwarded-Groups", rate: 1.5, burst: 3},
		{name: "env", env: map[string]string{"TOKEND_OIDC_ALLOW_UNVERIFIED_EMAIL": "1", "TOKEND_PROXY_GROUPS_HEADER": "X-Auth-Request-Groups", "TOKEND_AUTH_FAILURE_RATE": "0", "TOKEND_AUTH_FAILURE_BURST": "20"},
			unverified: true, groups: "X-Auth-Request-Groups", rate: 0, burst: 20},
		{name: "unverified_not_bool", args: []string{"--oidc-allow-unverified-email", "maybe"}, errWant: "oidc-allow-unverified-email"},
		{name: "rate_negative", args: []string{"--auth-failure-rate", "-1"}, errWant: "auth-failure-rate"},
		{name: "burst_zero", args: []string{"--auth-failure-burst", "0"}, errWant: "auth-failure-burst"},
		{name: "burst_env_not_number", env: map[string]string{"TOKEND_AUTH_FAILURE_BURST": "ten"}, errWant: "TOKEND_AUTH_FAILURE_BURST"},
		{name: "rate_env_not_number", env: map[string]string{"TOKEND_AUTH_FAILURE_RATE": "fast"}, errWant: "TOKEND_AUTH_FAILURE_RATE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parse(append(append([]string(nil), base...), tc.args...), envOf(tc.env), &bytes.Buffer{})
			var oidc *auth.OIDCConfig
			var proxy *auth.ProxyConfig
			if err == nil {
				oidc, proxy, err = callerConfig(o)
			}
			if tc.errWant != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errWant) {
					t.Fatalf("error = %v, want one naming %s", err, tc.errWant)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if oidc.AllowUnverifiedEmail != tc.unverified || proxy.GroupsHeader != tc.groups || o.authFailureRate != tc.rate || o.authFailureBurst != tc.burst {
				t.Errorf("got unverified %v, groups header %q, rate %v, burst %d; want %v, %q, %v, %d",
					oidc.AllowUnverifiedEmail, proxy.GroupsHeader, o.authFailureRate, o.authFailureBurst, tc.unverified, tc.groups, tc.rate, tc.burst)
			}
		})
	}
}

// TestUnknownFlagSuggests: an unknown flag names the nearest known one;
// a flag nothing resembles points at tokend -h. Nothing else is printed.
func TestUnknownFlagSuggests(t *testing.T) {
	for _, tc := range []struct {
		flag, want string
	}{
		{"--audit-file=x", "unknown flag --audit-file (did you mean --audit-log?)"},
		{"--grpc-adr=x", "unknown flag --grpc-adr (did you mean --grpc-addr?)"},
		{"-polcy-file=x", "unknown flag --polcy-file (did you mean --policy-file?)"},
		{"--tls_cert=x", "unknown flag --tls_cert (did you mean --tls-cert?)"},
		{"--Log-Level=debug", "unknown flag --Log-Level (did you mean --log-level?)"},
		{"--colour=blue", "unknown flag --colour (tokend -h lists the flags)"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parse([]string{tc.flag}, envOf(nil), &stderr)
			if err == nil || err.Error() != tc.want {
				t.Errorf("parse(%s) = %v, want %q", tc.flag, err, tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("parse(%s) printed %q, want nothing (the error says it all)", tc.flag, stderr.String())
			}
		})
	}
	// A bad value keeps the flag package's message.
	if _, err := parse([]string{"--max-body-bytes=lots"}, envOf(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "max-body-bytes") {
		t.Errorf("parse(--max-body-bytes=lots) = %v, want an error naming the flag", err)
	}
}

// TestHelpAndVersion: tokend -h lists the subcommands and the flags;
// tokend version prints the version and the commit, "unknown" in a test
// binary built without VCS information.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, envOf(nil), &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("run(%v) = %v, want flag.ErrHelp", args, err)
		}
		for _, want := range []string{"tokend config", "tokend rekey", "tokend keygen", "tokend version"} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("run(%v) output lacks %q:\n%s", args, want, stderr.String())
			}
		}
		if args[0] != "help" && !strings.Contains(stderr.String(), "-grpc-addr") {
			t.Errorf("run(%v) lists no flags:\n%s", args, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"version"}, envOf(nil), &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^tokend \S+\ncommit: \S+.*\ngo: go1\.`).MatchString(stdout.String()) {
		t.Errorf("tokend version printed:\n%s", stdout.String())
	}
	if err := run(context.Background(), []string{"version", "x"}, envOf(nil), &stdout, &stderr); err == nil {
		t.Error("tokend version x = nil, want an error")
	}
	err := run(context.Background(), []string{"verison"}, envOf(nil), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "did you mean version?") {
		t.Errorf("tokend verison = %v, want a suggestion", err)
	}
}

// TestSeedAliases: the variable names of Twilio's quickstarts and function
// templates seed tokend like the canonical ones; conflicting or partial
// sets refuse to start naming the variables, never the secret, and never
// fall back to the demo application.
func TestSeedAliases(t *testing.T) {
	const (
		acct   = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		key    = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		app    = "APcccccccccccccccccccccccccccccccc"
		app2   = "APdddddddddddddddddddddddddddddddd"
		secret = "do-not-print-me-0123456789abcdef"
	)
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // empty: starts with the seed application
	}{
		{name: "quickstart_names", env: map[string]string{
			"TWILIO_ACCOUNT_SID": acct, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret, "TWILIO_TWIML_APP_SID": app}},
		{name: "function_template_names", env: map[string]string{
			"TWILIO_ACCOUNT_SID": acct, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret, "TWIML_APPLICATION_SID": app}},
		{name: "mixed_names_same_value", env: map[string]string{
			"ACCOUNT_SID": acct, "TWILIO_ACCOUNT_SID": acct, "API_KEY": key, "API_SECRET": secret, "TWIML_APP_SID": app, "TWIML_APPLICATION_SID": app}},
		{name: "alias_conflict", env: map[string]string{
			"ACCOUNT_SID": acct, "API_KEY": key, "API_SECRET": secret, "TWIML_APP_SID": app, "TWIML_APPLICATION_SID": app2},
			wantErr: []string{"TWIML_APP_SID and TWIML_APPLICATION_SID are both set, to different values"}},
		{name: "secret_conflict", env: map[string]string{
			"ACCOUNT_SID": acct, "API_KEY": key, "API_SECRET": secret, "TWILIO_API_SECRET": secret + "x", "TWIML_APP_SID": app},
			wantErr: []string{"API_SECRET and TWILIO_API_SECRET are both set"}},
		{name: "only_some_aliases", env: map[string]string{"TWILIO_ACCOUNT_SID": acct, "TWILIO_API_SECRET": secret},
			wantErr: []string{"TWILIO_ACCOUNT_SID, TWILIO_API_SECRET set", "API_KEY (or TWILIO_API_KEY)", "TWIML_APP_SID (or TWILIO_TWIML_APP_SID or TWIML_APPLICATION_SID)"}},
		{name: "malformed_alias", env: map[string]string{
			"TWILIO_ACCOUNT_SID": acct, "TWILIO_API_KEY": key, "TWILIO_API_SECRET": secret, "TWIML_APPLICATION_SID": "AP123"},
			wantErr: []string{"TWIML_APPLICATION_SID must be AP followed by 32 hex digits"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"TOKEND_DATA_DIR": t.TempDir()}
			for k, v := range tt.env {
				env[k] = v
			}
			httpAddr := freeAddr(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var stderr bytes.Buffer
			var mu sync.Mutex
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"--http-addr", httpAddr, "--grpc-addr", "127.0.0.1:0"}, envOf(env), &bytes.Buffer{}, lockedWriter{&mu, &stderr})
			}()
			if len(tt.wantErr) > 0 {
				var err error
				select {
				case err = <-done:
				case <-time.After(20 * time.Second):
					t.Fatal("tokend started, want a refusal")
				}
				if err == nil {
					t.Fatal("run = nil, want an error")
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("run = %q, want it to contain %q", err, want)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if strings.Contains(err.Error()+stderr.String(), secret) {
					t.Error("the error or the log contains the API secret")
				}
				if strings.Contains(stderr.String(), "demo application") {
					t.Error("tokend fell back to the demo application")
				}
				return
			}
			var body map[string]any
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := http.Get("http://" + httpAddr + "/token")
				if err == nil {
					json.NewDecoder(resp.Body).Decode(&body)
					resp.Body.Close()
					break
				}
				select {
				case err := <-done:
					t.Fatalf("run = %v", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("tokend did not answer: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if body["application_sid"] != app || body["api_key_sid"] != key || body["account_sid"] != acct {
				t.Errorf("GET /token = %v, want a token of %s, %s, %s", body, app, key, acct)
			}
			cancel()
			<-done
		})
	}
}

// TestDefaultGrantsOption: --default-grants (flag, env, config file) is
// parsed strictly and validated, naming the option and the rule.
func TestDefaultGrantsOption(t *testing.T) {
	const incoming = `{"voice":{"incoming":{"allow":true},"outgoing":{}}}`
	cfg := writeConfig(t, "default_grants: '"+incoming+"'\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // empty: valid
		want    string // the grants, as JSON, when valid
	}{
		{name: "unset", want: "null"},
		{name: "flag", args: []string{"--default-grants", incoming}, want: `{"voice":{"incoming":{"allow":true},"outgoing":{}}}`},
		{name: "env", env: map[string]string{"TOKEND_DEFAULT_GRANTS": `{"video":{}}`}, want: `{"video":{}}`},
		{name: "config_file", args: []string{"--config", cfg}, want: `{"voice":{"incoming":{"allow":true},"outgoing":{}}}`},
		{name: "not_json", args: []string{"--default-grants", "incoming"}, wantErr: "default-grants: not a JSON object of grants"},
		{name: "unknown_field", args: []string{"--default-grants", `{"voice":{"inbound":true}}`}, wantErr: `default-grants: not a JSON object of grants such as`},
		{name: "bad_sid", args: []string{"--default-grants", `{"voice":{"outgoing":{"application_sid":"AP1"}}}`}, wantErr: "grants.voice.outgoing.application_sid"},
		{name: "env_named", env: map[string]string{"TOKEND_DEFAULT_GRANTS": `[]`}, wantErr: "(from TOKEND_DEFAULT_GRANTS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(tt.args, envOf(tt.env), &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse(%v) = %v, want an error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%v) = %v", tt.args, err)
			}
			got := "null"
			if o.defaultGrants != nil {
				b, _ := json.Marshal(json.RawMessage(protojsonString(t, o.defaultGrants)))
				got = string(b)
			}
			if got != tt.want {
				t.Errorf("parse(%v).defaultGrants = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
}

func protojsonString(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// TestConfigCommandSeedAliases: tokend config shows the seed aliases that
// are set, SIDs in the clear, the secret redacted.
func TestConfigCommandSeedAliases(t *testing.T) {
	const secret = "alias-secret-do-not-print-0123"
	env := envOf(map[string]string{
		"TWILIO_API_SECRET":     secret,
		"TWIML_APPLICATION_SID": "APcccccccccccccccccccccccccccccccc",
	})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config"}, env, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#   TWILIO_API_SECRET: (set, redacted)", "#   TWIML_APPLICATION_SID: APcccccccccccccccccccccccccccccccc", "#   TWIML_APP_SID: (not set)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tokend config lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), secret) || strings.Contains(out.String(), "TWILIO_TWIML_APP_SID") {
		t.Errorf("tokend config shows the secret or an unset alias:\n%s", out.String())
	}
}
