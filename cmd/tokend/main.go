// Command tokend mints Twilio access tokens over gRPC and REST from API
// keys it keeps per TwiML application. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/internal/buildinfo"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/gctune"
	"github.com/tokend/tokend/server/httpapi"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/replicas"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/tokenapi"
	"github.com/tokend/tokend/server/twilioapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tokend:", err)
		}
		os.Exit(2)
	}
}

// options are tokend's settings: each flag has an environment variable of
// the same meaning (TOKEND_ and the flag's name in capitals) and a config
// file key (the flag's name with underscores). A flag given on the command
// line wins over the environment, which wins over the config file, which
// wins over the default (see layer in config.go).
type options struct {
	configFile, configSrc         string
	settings                      []setting // every option but --config, by flag name
	grpcAddr, httpAddr, dataDir   string
	store                         string
	masterKeyFile, adminTokenFile string
	defaultIdentity, defaultApp   string
	defaultGrantsRaw              string
	defaultGrants                 *tokenv1.Grants // parsed from defaultGrantsRaw
	logLevel, logFormat           string
	maxBodyBytes                  int
	corsOriginsRaw                string
	corsOrigins                   []string // parsed from corsOriginsRaw

	// Callers: TLS, authentication, policy, limits, audit.
	tlsCert, tlsKey, tlsClientCA                  string
	oidcIssuer, oidcAudience, oidcJWKS, oidcClaim string
	oidcGroupsClaim, oidcAllowUnverifiedEmail     string
	trustedProxies, proxyUserHeader               string
	proxyGroupsHeader                             string
	policyFile, auditLog                          string
	auditRequired                                 autoBool
	auditMaxBytes                                 int64
	auditMaxFiles                                 int
	rateLimitPrincipal, rateLimitIdentity         float64
	rateLimitBurst                                int
	replicaHeartbeat, replicaTTL                  time.Duration
	authFailureRate                               float64
	authFailureBurst                              int

	gcHeadroomMiB int

	twilioAPIURL                  string
	keyScheduleEvery, keyDelGrace time.Duration
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	o := &options{}
	fs := flag.NewFlagSet("tokend", flag.ContinueOnError)
	// The flag package writes nothing: -h prints the usage below, and a
	// wrong flag is the error run returns, with the nearest flag named.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.configFile, configFlag, env("TOKEND_CONFIG", ""), "YAML file of options, keys named like the flags with underscores (grpc_addr); flags and env win over it (env TOKEND_CONFIG)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", env("TOKEND_GRPC_ADDR", "127.0.0.1:9090"), "gRPC listen address (env TOKEND_GRPC_ADDR)")
	fs.StringVar(&o.httpAddr, "http-addr", env("TOKEND_HTTP_ADDR", "127.0.0.1:8080"), "REST listen address (env TOKEND_HTTP_ADDR)")
	fs.StringVar(&o.dataDir, "data-dir", env("TOKEND_DATA_DIR", "./data"), "directory of the embedded store and generated master key (env TOKEND_DATA_DIR)")
	fs.StringVar(&o.store, "store", env("TOKEND_STORE", ""), "store: empty for SQLite in the data dir, or a postgres:// URL shared by replicas (env TOKEND_STORE)")
	fs.StringVar(&o.masterKeyFile, "master-key-file", env("TOKEND_MASTER_KEY_FILE", ""), "file holding the master keyring; TOKEND_MASTER_KEY (env only) wins over it (env TOKEND_MASTER_KEY_FILE)")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", env("TOKEND_ADMIN_TOKEN_FILE", ""), "file holding the admin API bearer token; TOKEND_ADMIN_TOKEN (env only) wins over it; neither: admin API off (env TOKEND_ADMIN_TOKEN_FILE)")
	fs.StringVar(&o.defaultIdentity, "default-identity", env("TOKEND_DEFAULT_IDENTITY", tokenapi.DefaultIdentity), "identity of mint requests that name none (env TOKEND_DEFAULT_IDENTITY)")
	fs.StringVar(&o.defaultApp, "default-application", env("TOKEND_DEFAULT_APPLICATION", ""), "make this application (SID, in the store) the stored default of mint requests that name none, at start; the admin API may change it later (env TOKEND_DEFAULT_APPLICATION)")
	fs.StringVar(&o.defaultGrantsRaw, "default-grants", env("TOKEND_DEFAULT_GRANTS", ""), `grants (JSON, as in a mint request) of mint requests that name none, for applications without default grants of their own; an outgoing voice grant without application_sid goes through the application, e.g. {"voice":{"incoming":{"allow":true},"outgoing":{}}}; empty: outgoing voice only (env TOKEND_DEFAULT_GRANTS)`)
	fs.StringVar(&o.logLevel, "log-level", env("TOKEND_LOG_LEVEL", "info"), "debug, info, warn or error (env TOKEND_LOG_LEVEL)")
	fs.StringVar(&o.logFormat, "log-format", env("TOKEND_LOG_FORMAT", "text"), "text or json (env TOKEND_LOG_FORMAT)")
	maxBody, err := strconv.Atoi(env("TOKEND_MAX_BODY_BYTES", strconv.Itoa(httpapi.DefaultMaxBodyBytes)))
	if err != nil {
		return nil, fmt.Errorf("TOKEND_MAX_BODY_BYTES: not a number")
	}
	fs.IntVar(&o.maxBodyBytes, "max-body-bytes", maxBody, "largest REST body or gRPC message accepted, in bytes (env TOKEND_MAX_BODY_BYTES)")
	fs.StringVar(&o.corsOriginsRaw, "cors-origins", env("TOKEND_CORS_ORIGINS", ""), "comma-separated origins (scheme://host[:port]) whose web pages may call the REST API from a browser; empty: no CORS (env TOKEND_CORS_ORIGINS)")
	fs.StringVar(&o.tlsCert, "tls-cert", env("TOKEND_TLS_CERT", ""), "PEM certificate for TLS on both listeners, reloaded when it changes (env TOKEND_TLS_CERT)")
	fs.StringVar(&o.tlsKey, "tls-key", env("TOKEND_TLS_KEY", ""), "PEM private key of --tls-cert (env TOKEND_TLS_KEY)")
	fs.StringVar(&o.tlsClientCA, "tls-client-ca", env("TOKEND_TLS_CLIENT_CA", ""), "PEM CA bundle that verifies client certificates (mutual TLS; the principal is the certificate's URI or DNS SAN) (env TOKEND_TLS_CLIENT_CA)")
	fs.StringVar(&o.oidcIssuer, "oidc-issuer", env("TOKEND_OIDC_ISSUER", ""), "OIDC issuer whose JWTs browsers may present as bearer tokens; empty: off (env TOKEND_OIDC_ISSUER)")
	fs.StringVar(&o.oidcAudience, "oidc-audience", env("TOKEND_OIDC_AUDIENCE", ""), "audience the OIDC JWTs must carry (env TOKEND_OIDC_AUDIENCE)")
	fs.StringVar(&o.oidcJWKS, "oidc-jwks-url", env("TOKEND_OIDC_JWKS_URL", ""), "JWKS URL of the issuer; empty: discovered from the issuer (env TOKEND_OIDC_JWKS_URL)")
	fs.StringVar(&o.oidcClaim, "oidc-identity-claim", env("TOKEND_OIDC_IDENTITY_CLAIM", "sub"), "claim that holds the user's identity (env TOKEND_OIDC_IDENTITY_CLAIM)")
	fs.StringVar(&o.oidcGroupsClaim, "oidc-groups-claim", env("TOKEND_OIDC_GROUPS_CLAIM", "groups"), "claim that holds the user's groups (env TOKEND_OIDC_GROUPS_CLAIM)")
	fs.StringVar(&o.oidcAllowUnverifiedEmail, "oidc-allow-unverified-email", env("TOKEND_OIDC_ALLOW_UNVERIFIED_EMAIL", "false"), "true: accept an identity that is an email address from a token whose email_verified claim is not true (refused by default) (env TOKEND_OIDC_ALLOW_UNVERIFIED_EMAIL)")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", env("TOKEND_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDRs of reverse proxies whose user header is trusted; empty: off (env TOKEND_TRUSTED_PROXIES)")
	fs.StringVar(&o.proxyUserHeader, "proxy-user-header", env("TOKEND_PROXY_USER_HEADER", "X-Auth-Request-User"), "header a trusted proxy sets to the user (env TOKEND_PROXY_USER_HEADER)")
	fs.StringVar(&o.proxyGroupsHeader, "proxy-groups-header", env("TOKEND_PROXY_GROUPS_HEADER", ""), "header a trusted proxy sets to the user's groups (comma-separated); empty: proxy users have no groups (env TOKEND_PROXY_GROUPS_HEADER)")
	fs.StringVar(&o.policyFile, "policy-file", env("TOKEND_POLICY_FILE", ""), "caller policy (YAML), reloaded on SIGHUP and on change; empty: development mode, loopback only (env TOKEND_POLICY_FILE)")
	fs.StringVar(&o.auditLog, "audit-log", env("TOKEND_AUDIT_LOG", ""), "audit log (JSON lines): a path (reopened on SIGHUP), stdout, stderr (or -), off for none; empty: audit.log in the data dir (env TOKEND_AUDIT_LOG)")
	if err := o.auditRequired.Set(getenv("TOKEND_AUDIT_REQUIRED")); err != nil {
		return nil, fmt.Errorf("TOKEND_AUDIT_REQUIRED: %q: %v", getenv("TOKEND_AUDIT_REQUIRED"), err)
	}
	fs.Var(&o.auditRequired, "audit-required", "refuse a mint (Unavailable, HTTP 503) whose audit record cannot be written: true, false or auto (on with --policy-file, off in development mode) (env TOKEND_AUDIT_REQUIRED)")
	fs.Int64Var(&o.auditMaxBytes, "audit-max-bytes", int64(envFloat(getenv, "TOKEND_AUDIT_MAX_BYTES", 0)), "rotate the audit file when it would grow past this many bytes (to audit.log.1, .2, ...); 0: never (use logrotate and SIGHUP) (env TOKEND_AUDIT_MAX_BYTES)")
	fs.IntVar(&o.auditMaxFiles, "audit-max-files", int(envFloat(getenv, "TOKEND_AUDIT_MAX_FILES", 10)), "rotated audit files kept by --audit-max-bytes; older ones are deleted (env TOKEND_AUDIT_MAX_FILES)")
	fs.Float64Var(&o.rateLimitPrincipal, "rate-limit-principal", envFloat(getenv, "TOKEND_RATE_LIMIT_PRINCIPAL", 0), "mints and explanations, allowed or denied, per second per caller; 0: no limit (env TOKEND_RATE_LIMIT_PRINCIPAL)")
	fs.Float64Var(&o.rateLimitIdentity, "rate-limit-identity", envFloat(getenv, "TOKEND_RATE_LIMIT_IDENTITY", 0), "mints per second per application and identity; 0: no limit (env TOKEND_RATE_LIMIT_IDENTITY)")
	fs.IntVar(&o.rateLimitBurst, "rate-limit-burst", int(envFloat(getenv, "TOKEND_RATE_LIMIT_BURST", 10)), "burst of both rate limits (env TOKEND_RATE_LIMIT_BURST)")
	fs.DurationVar(&o.replicaHeartbeat, "replica-heartbeat-interval", envDuration(getenv, "TOKEND_REPLICA_HEARTBEAT_INTERVAL", replicas.DefaultInterval), "on a PostgreSQL store, how often a replica announces itself and counts the live replicas, which divide the rate limits (env TOKEND_REPLICA_HEARTBEAT_INTERVAL)")
	fs.DurationVar(&o.replicaTTL, "replica-ttl", envDuration(getenv, "TOKEND_REPLICA_TTL", replicas.DefaultTTL), "how long a replica's announcement counts: a replica that dies is counted out after it (env TOKEND_REPLICA_TTL)")
	fs.Float64Var(&o.authFailureRate, "auth-failure-rate", envFloat(getenv, "TOKEND_AUTH_FAILURE_RATE", auth.DefaultFailureRate), "failed authentications per second a client address earns back once its burst is spent; meanwhile its requests get 429 / ResourceExhausted; 0: no throttling (env TOKEND_AUTH_FAILURE_RATE)")
	fs.IntVar(&o.authFailureBurst, "auth-failure-burst", int(envFloat(getenv, "TOKEND_AUTH_FAILURE_BURST", auth.DefaultFailureBurst)), "failed authentications a client address may make in a row before it is slowed down (env TOKEND_AUTH_FAILURE_BURST)")
	fs.IntVar(&o.gcHeadroomMiB, "gc-headroom-mib", int(envFloat(getenv, "TOKEND_GC_HEADROOM_MIB", DefaultGCHeadroomMiB)), "let the heap grow at least this many MiB over the live heap between garbage collections (GOGC is raised for a small heap, never below 100); 0: the Go default; ignored when GOGC is set (env TOKEND_GC_HEADROOM_MIB)")
	fs.StringVar(&o.twilioAPIURL, "twilio-api-url", env("TOKEND_TWILIO_API_URL", ""), "base URL for Twilio's Keys API (an egress proxy or a test double); empty: Twilio's own regional hosts (env TOKEND_TWILIO_API_URL)")
	fs.DurationVar(&o.keyScheduleEvery, "key-schedule-interval", envDuration(getenv, "TOKEND_KEY_SCHEDULE_INTERVAL", server.ProvisionIntervalDefault), "how often tokend reconciles, rotates and deletes the keys it manages at Twilio (env TOKEND_KEY_SCHEDULE_INTERVAL)")
	fs.DurationVar(&o.keyDelGrace, "key-delete-grace", envDuration(getenv, "TOKEND_KEY_DELETE_GRACE", 5*time.Minute), "wait after a retired key's last token expires before deleting it at Twilio (env TOKEND_KEY_DELETE_GRACE)")
	// --help shows the defaults, which come from the environment: never
	// the store's password.
	fs.Lookup("store").DefValue = redactStore(fs.Lookup("store").DefValue)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage, "\nflags (each also an environment variable TOKEND_… and a config file key):\n")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, suggestFlag(fs, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := checkNumericEnv(getenv); err != nil {
		return nil, err
	}
	if err := layer(fs, o, getenv); err != nil {
		return nil, err
	}
	if o.maxBodyBytes < 1024 || o.maxBodyBytes > 16<<20 {
		return nil, o.invalid("max-body-bytes", "must be between 1024 and %d", 16<<20)
	}
	if o.replicaHeartbeat < 100*time.Millisecond || o.replicaHeartbeat > time.Minute {
		return nil, o.invalid("replica-heartbeat-interval", "must be between 100ms and 1m")
	}
	if o.replicaTTL < 2*o.replicaHeartbeat || o.replicaTTL > 10*time.Minute {
		return nil, o.invalid("replica-ttl", "must be at least twice --replica-heartbeat-interval (%v) and at most 10m", o.replicaHeartbeat)
	}
	if o.keyScheduleEvery < time.Second || o.keyScheduleEvery > 24*time.Hour {
		return nil, o.invalid("key-schedule-interval", "must be between 1s and 24h")
	}
	if o.keyDelGrace < 10*time.Second || o.keyDelGrace > 7*24*time.Hour {
		return nil, o.invalid("key-delete-grace", "must be between 10s and 168h (it must exceed the 2 s at which replicas record key usage)")
	}
	if o.twilioAPIURL != "" {
		if _, err := twilioapi.New(twilioapi.Config{BaseURL: o.twilioAPIURL}); err != nil {
			return nil, o.invalid("twilio-api-url", "must be http(s)://host[:port][/prefix], without a user or password")
		}
	}
	if o.gcHeadroomMiB < 0 || o.gcHeadroomMiB > 4096 {
		return nil, o.invalid("gc-headroom-mib", "must be between 0 and 4096")
	}
	if o.defaultApp != "" && !tokenapi.ValidSID(o.defaultApp, "AP") {
		return nil, o.invalid("default-application", "must be AP followed by 32 hex digits")
	}
	if o.defaultGrants, err = parseDefaultGrants(o.defaultGrantsRaw); err != nil {
		return nil, o.invalid("default-grants", "%v", err)
	}
	var v tokenapi.Violations
	// The default identity must suit the default grants (voice): letters,
	// digits and underscore.
	v.CheckIdentity(o.defaultIdentity, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{}})
	if len(v) > 0 {
		return nil, o.invalid("default-identity", "%s", v[0].Description)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, o.invalid("log-level", "must be debug, info, warn or error")
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, o.invalid("log-format", "must be text or json")
	}
	if o.corsOrigins, err = httpapi.ParseOrigins(o.corsOriginsRaw); err != nil {
		return nil, o.invalid("cors-origins", "%v", err)
	}
	if err := checkAudit(o); err != nil {
		return nil, err
	}
	return o, nil
}

func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("log-level: must be debug, info, warn or error")
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("log-format: must be text or json")
}

const usage = `usage:
  tokend [flags]                 serve (see tokend --help for the flags)
  tokend rekey [--generate] [flags]
                                 re-encrypt every secret under the primary master key;
                                 --generate first adds a new primary key to the keyring file
  tokend config [flags]          print the effective configuration as YAML, each value's
                                 source as a comment, secrets redacted
  tokend keygen                  print a new master key entry (id:base64) for TOKEND_MASTER_KEY or a key file
  tokend version                 print tokend's version and the commit it was built from
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
	case "keygen":
		if len(args) > 0 {
			return fmt.Errorf("keygen: unexpected argument %q", args[0])
		}
		mk, err := secrets.GenerateMasterKey()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, mk.Encode())
		return nil
	case "rekey":
		generate := false
		rest := args[:0:0]
		for _, a := range args {
			if a == "--generate" || a == "-generate" {
				generate = true
				continue
			}
			rest = append(rest, a)
		}
		args = rest
		o, err := parse(args, getenv, stderr)
		if err != nil {
			return err
		}
		log, err := newLogger(o, stderr)
		if err != nil {
			return err
		}
		n, primary, err := server.Rekey(ctx, server.Config{
			DataDir: o.dataDir, Store: o.store, MasterKey: getenv(secrets.EnvVar), MasterKeyFile: o.masterKeyFile, Logger: log,
		}, generate)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-encrypted %d secrets; every secret is now under master key %s\n", n, primary)
		return nil
	case "config":
		o, err := parse(args, getenv, stderr)
		if err != nil {
			return err
		}
		return printConfig(stdout, o, getenv)
	case "version":
		if len(args) > 0 {
			return fmt.Errorf("version: unexpected argument %q", args[0])
		}
		fmt.Fprint(stdout, buildinfo.Read().String("tokend"))
		return nil
	case "help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		if n := nearest(cmd, []string{"config", "rekey", "keygen", "version", "help"}); n != "" {
			return fmt.Errorf("unknown command %q (did you mean %s?)", cmd, n)
		}
		return fmt.Errorf("unknown command %q", cmd)
	}
	o, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	adminToken, err := loadAdminToken(getenv("TOKEND_ADMIN_TOKEN"), o.adminTokenFile)
	if err != nil {
		return err
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	seed, err := server.SeedFromEnv(getenv)
	if err != nil {
		return err
	}
	oidc, proxy, err := callerConfig(o)
	if err != nil {
		return err
	}
	// From here on SIGHUP reopens the audit file (once it is open) and
	// never kills tokend.
	var opened atomic.Pointer[server.Server]
	defer reopenAuditOnSIGHUP(ctx, func() {
		if s := opened.Load(); s != nil {
			s.ReopenAudit()
		}
	})()
	srv, err := server.New(ctx, server.Config{
		DataDir:            o.dataDir,
		Store:              o.store,
		MasterKey:          getenv(secrets.EnvVar),
		MasterKeyFile:      o.masterKeyFile,
		DefaultIdentity:    o.defaultIdentity,
		DefaultApplication: o.defaultApp,
		DefaultGrants:      o.defaultGrants,
		Seed:               seed,
		AdminToken:         adminToken,
		MaxBodyBytes:       o.maxBodyBytes,
		Logger:             log,
		CORSOrigins:        o.corsOrigins,
		TLSCertFile:        o.tlsCert,
		TLSKeyFile:         o.tlsKey,
		TLSClientCAFile:    o.tlsClientCA,
		OIDC:               oidc,
		Proxy:              proxy,
		PolicyFile:         o.policyFile,
		RateLimitPrincipal: o.rateLimitPrincipal,
		RateLimitIdentity:  o.rateLimitIdentity,
		RateLimitBurst:     o.rateLimitBurst,
		ReplicaHeartbeat:   o.replicaHeartbeat,
		ReplicaTTL:         o.replicaTTL,
		AuthFailureRate:    o.authFailureRate,
		AuthFailureBurst:   o.authFailureBurst,
		AuditLog:           auditPath(o),
		AuditRequired:      auditRequired(o),
		AuditMaxBytes:      o.auditMaxBytes,
		AuditMaxFiles:      o.auditMaxFiles,
		TwilioAPIURL:       o.twilioAPIURL,
		ProvisionInterval:  o.keyScheduleEvery,
		ProvisionGrace:     o.keyDelGrace,
	})
	if err != nil {
		return err
	}
	opened.Store(srv)
	var lc net.ListenConfig
	grpcLn, err := lc.Listen(ctx, "tcp", o.grpcAddr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("grpc-addr: %w", err)
	}
	httpLn, err := lc.Listen(ctx, "tcp", o.httpAddr)
	if err != nil {
		grpcLn.Close()
		srv.Close()
		return fmt.Errorf("http-addr: %w", err)
	}
	for _, ln := range []net.Listener{grpcLn, httpLn} {
		if !isLoopback(ln.Addr()) && o.policyFile == "" {
			grpcLn.Close()
			httpLn.Close()
			srv.Close()
			return fmt.Errorf("refusing to listen on %s beyond loopback without caller authentication: anyone reaching it could mint any identity; set --policy-file (and TLS, OIDC, a trusted proxy or credentials), or listen on 127.0.0.1", ln.Addr())
		}
	}
	// Tune the collector for as long as tokend serves (see gctune; Run
	// returns at once when it is off).
	gcCtx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	go gctune.Run(gcCtx, uint64(o.gcHeadroomMiB)<<20)
	return srv.Serve(ctx, grpcLn, httpLn)
}

// parseDefaultGrants parses --default-grants: strict protojson of a
// token.v1.Grants, valid as a mint request's grants once each
// application's SID fills an outgoing grant without one. Empty is nil
// (the built-in default).
func parseDefaultGrants(raw string) (*tokenv1.Grants, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	g := &tokenv1.Grants{}
	if err := protojson.Unmarshal([]byte(raw), g); err != nil {
		return nil, fmt.Errorf("not a JSON object of grants such as {\"voice\":{\"incoming\":{\"allow\":true},\"outgoing\":{}}}: %s", strings.TrimPrefix(err.Error(), "proto: "))
	}
	var v tokenapi.Violations
	v.CheckGrants("grants", keystore.GrantsFromTemplate(g, "AP00000000000000000000000000000000"))
	if len(v) > 0 {
		msgs := make([]string, len(v))
		for i, fv := range v {
			msgs[i] = fv.Field + ": " + fv.Description
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	return g, nil
}

// DefaultGCHeadroomMiB is --gc-headroom-mib's default: with a live heap of
// 4 MiB (a small store) it sets GOGC 400, so the collector runs about a
// quarter as often under load, for about 15 MiB more peak RSS
// (BENCHMARKS.md has the load figures with and without).
const DefaultGCHeadroomMiB = 16

// MinAdminTokenLen is the shortest admin token accepted.
const MinAdminTokenLen = 16

// loadAdminToken returns the admin bearer token from the environment value
// or the file (trimmed), or "" when neither is set.
func loadAdminToken(env, file string) (string, error) {
	tok := env
	if tok == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("admin-token-file: %w", err)
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	if tok != "" && len(tok) < MinAdminTokenLen {
		return "", fmt.Errorf("admin token: must be at least %d characters", MinAdminTokenLen)
	}
	if (env != "" || file != "") && tok == "" {
		return "", fmt.Errorf("admin token: empty")
	}
	return tok, nil
}

func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
