// Package server assembles tokend: the store, the master keyring, the
// in-memory keystore, the gRPC server (token service, health, reflection)
// and the REST gateway, and runs them until the context ends.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/adminapi"
	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/httpapi"
	"github.com/tokend/tokend/server/httpconn"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/metrics"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/provision"
	"github.com/tokend/tokend/server/ratelimit"
	"github.com/tokend/tokend/server/replicas"
	"github.com/tokend/tokend/server/requestid"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/postgres"
	"github.com/tokend/tokend/server/telemetry"
	"github.com/tokend/tokend/server/tokenapi"
	"github.com/tokend/tokend/server/web"
)

// Config is everything tokend needs to start.
type Config struct {
	// DataDir holds the embedded store (tokend.db) and, when no master key
	// is configured, the generated master key file (master.key).
	DataDir string
	// Store selects the store: empty for SQLite in DataDir, or a
	// postgres:// URL for a PostgreSQL server shared by replicas.
	Store string
	// MasterKey is the master keyring text (TOKEND_MASTER_KEY): one or more
	// base64 32-byte keys, optionally "id:"-prefixed, the first primary.
	MasterKey string
	// MasterKeyFile is a file holding the keyring text.
	MasterKeyFile string
	// DefaultIdentity is the identity of requests that name none.
	DefaultIdentity string
	// DefaultApplication, if set, is made the stored default application
	// (of requests that name none) at start; the admin API may change it
	// later. Without it the stored default stays (the seed application
	// becomes it when new or when none is set).
	DefaultApplication string
	// DefaultGrants, if set, are the grants of mint requests that name
	// none, for applications without default grants of their own, in
	// place of the built-in outgoing voice grant (see
	// keystore.GrantsFromTemplate: an outgoing voice grant without
	// application_sid goes through the application).
	DefaultGrants *tokenv1.Grants
	// Seed is the Twilio Function's credentials, if given.
	Seed Seed
	// AdminToken is the admin API's bearer credential; empty turns the
	// admin API off.
	AdminToken string
	// MaxBodyBytes bounds REST bodies and gRPC messages.
	MaxBodyBytes int
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// CORSOrigins are the origins (scheme://host[:port]) whose pages may
	// call the REST API from a browser; empty: no CORS headers.
	CORSOrigins []string

	// TLSCertFile and TLSKeyFile turn on TLS on both listeners (reloaded
	// when the files change); TLSClientCAFile verifies client certificates
	// (mutual TLS) when a client presents one.
	TLSCertFile, TLSKeyFile, TLSClientCAFile string
	// OIDC verifies browser callers' bearer JWTs; nil: off.
	OIDC *auth.OIDCConfig
	// Proxy trusts a user header set by a reverse proxy at these
	// addresses; nil: off.
	Proxy *auth.ProxyConfig
	// PolicyFile is the caller policy (YAML). Empty is development mode:
	// anonymous callers may mint anything, so tokend must stay on loopback.
	PolicyFile string
	// RateLimitPrincipal and RateLimitIdentity are mints per second allowed
	// per caller and per (application, identity), with RateLimitBurst; 0:
	// no limit.
	RateLimitPrincipal, RateLimitIdentity float64
	RateLimitBurst                        int
	// ReplicaHeartbeat is how often a replica on a shared store
	// (PostgreSQL) announces itself and counts the live replicas, by which
	// the rate limits are divided; ReplicaTTL how long an announcement
	// counts. Zero: ReplicaHeartbeatInterval and ReplicaTTL.
	ReplicaHeartbeat, ReplicaTTL time.Duration
	// AuthFailureRate and AuthFailureBurst slow down client addresses
	// that fail to authenticate (bad, unknown or missing credentials, a
	// wrong admin token): AuthFailureBurst failures in a row, then
	// AuthFailureRate per second, and meanwhile every request from the
	// address is refused with ResourceExhausted / 429 (see
	// auth.FailureLimiter). 0: no throttling (the tokend command's default
	// is auth.DefaultFailureRate and auth.DefaultFailureBurst).
	AuthFailureRate  float64
	AuthFailureBurst int
	// AuditLog is where audit records go: a file path, "-" or "stderr" for
	// standard error, "stdout" for standard output, or "" for none.
	AuditLog string
	// AuditRequired refuses a mint (Unavailable) whose audit record was not
	// written within AuditCommitTimeout (0: audit.DefaultCommitTimeout).
	AuditRequired      bool
	AuditCommitTimeout time.Duration
	// AuditMaxBytes rotates the audit file when it would grow past this
	// size (0: never), keeping AuditMaxFiles rotated files.
	AuditMaxBytes int64
	AuditMaxFiles int

	// TwilioAPIURL replaces Twilio's hosts for the Keys API (an egress
	// proxy or a test double); empty: Twilio's own (regional) hosts.
	TwilioAPIURL string
	// ProvisionInterval is how often scheduled key work runs (rotation,
	// deletion, reconcile); 0: ProvisionIntervalDefault.
	ProvisionInterval time.Duration
	// ProvisionGrace is added to a retired key's outstanding_until before
	// tokend deletes it at Twilio; 0: 5 minutes.
	ProvisionGrace time.Duration
	// TwilioTimeout bounds each request to Twilio; 0: 10 s.
	TwilioTimeout time.Duration
}

// ProvisionIntervalDefault is how often scheduled key work runs by default.
const ProvisionIntervalDefault = time.Minute

// checkMasterKeys fails, before anything is written, when secrets in the
// store are sealed under master keys the keyring lacks: a wrong or missing
// master key is a start-up error, never garbage tokens.
func checkMasterKeys(ctx context.Context, store storage.Store, keyring *secrets.Keyring) error {
	used, err := store.MasterKeyIDs(ctx)
	if err != nil {
		return fmt.Errorf("read store: %w", err)
	}
	have := map[string]bool{}
	for _, id := range keyring.IDs() {
		have[id] = true
	}
	var parts []string
	for id, n := range used {
		if !have[id] {
			parts = append(parts, fmt.Sprintf("%d under %s", n, id))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	sort.Strings(parts)
	return fmt.Errorf("wrong master key: the store holds secrets sealed under master keys this keyring (%s) does not have: %s",
		strings.Join(keyring.IDs(), ", "), strings.Join(parts, ", "))
}

// Intervals of the background work of a serving tokend.
var (
	// RevokeSettle is how long a revoke waits at most for every replica
	// to serve the fresh key before it deletes the revoked one at Twilio
	// (see provision.Config.Settle).
	RevokeSettle = 10 * time.Second
	// WatchInterval is how often the store's revision is checked for
	// changes made by other replicas or processes.
	WatchInterval = 250 * time.Millisecond
	// UsageFlushInterval is how often key usage (last signed, outstanding
	// until) is written to the store.
	UsageFlushInterval = 2 * time.Second
	// StorePingInterval is how often the store's reachability is checked
	// for /readyz and the admin service's health.
	StorePingInterval = time.Second
	// ReplicaHeartbeatInterval is how often a replica on a shared store
	// (PostgreSQL) announces itself there and counts the live replicas;
	// ReplicaTTL is how long an announcement counts (the defaults of
	// Config.ReplicaHeartbeat and Config.ReplicaTTL). The rate limits are
	// divided by the count: a replica that joins or stops cleanly is
	// counted within the interval, one that dies within TTL + interval.
	ReplicaHeartbeatInterval = replicas.DefaultInterval
	ReplicaTTL               = replicas.DefaultTTL
)

// Server is an assembled tokend.
type Server struct {
	cfg    Config
	log    *slog.Logger
	store  storage.Store
	keys   *keystore.Keystore
	token  *tokenapi.Service
	admin  *adminapi.Service
	grpc   *grpc.Server
	health *health.Server
	http   http.Handler

	// prov manages keys at Twilio (see package provision).
	prov *provision.Provisioner

	// storeDown is set while the store does not answer (see monitorStore).
	storeDown atomic.Bool
	// replicas counts the replicas sharing the store, by which the rate
	// limits are divided; nil on a store of one process (SQLite).
	replicas *replicas.Membership
	// share is the number of replicas the rate limits are divided by (1
	// until a heartbeat counts more); a reloaded policy's anonymous rules
	// take it at once.
	share atomic.Int64

	// metrics are the Prometheus metrics, served at /metrics.
	metrics *metrics.Metrics
	// stopTracing flushes and stops tracing (a no-op when it is off).
	stopTracing func(context.Context) error

	// Callers (see callers.go).
	auth                          *auth.Authenticator
	tls                           *tls.Config
	policy                        *policy.Holder
	principalLimit, identityLimit *ratelimit.Limiter
	authFailures                  *auth.FailureLimiter
	audit                         *audit.Logger
	// stopWatch ends the policy file watcher.
	stopWatch context.CancelFunc
}

// New opens the store and the keyring, applies the seed credentials (or
// creates the demo application), loads every key into memory and builds
// the gRPC server and REST handler.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Every line logged with a request's context carries its request_id.
	cfg.Logger = slog.New(requestid.NewHandler(cfg.Logger.Handler()))
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = httpapi.DefaultMaxBodyBytes
	}
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	keyring, source, created, err := secrets.Load(cfg.MasterKey, cfg.MasterKeyFile, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if created {
		log.Warn("no master key configured: created a new master key file; keep it safe and back it up, the secrets in the store cannot be read without it",
			"path", filepath.Join(cfg.DataDir, "master.key"), "master_key_id", keyring.Primary().ID)
	} else {
		log.Info("master key loaded", "source", source, "master_key_id", keyring.Primary().ID)
	}
	store, storeDesc, err := openStore(ctx, cfg.Store, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Server{cfg: cfg, log: log, store: store, metrics: metrics.New()}
	if err := checkMasterKeys(ctx, store, keyring); err != nil {
		store.Close()
		if created {
			// Do not leave behind a key that opens nothing: the operator
			// has to restore the right one.
			os.Remove(filepath.Join(cfg.DataDir, secrets.DataDirKeyFile))
			err = fmt.Errorf("%w (no master key was configured and %s was missing, so tokend generated one; it has been removed again: restore the original key file or set %s)",
				err, filepath.Join(cfg.DataDir, secrets.DataDirKeyFile), secrets.EnvVar)
		}
		return nil, err
	}
	if err := s.init(ctx, keyring); err != nil {
		store.Close()
		if s.stopTracing != nil {
			s.stopTracing(ctx)
		}
		return nil, err
	}
	log.Info("store opened", "store", storeDesc, "applications", s.keys.Len())
	return s, nil
}

func (s *Server) init(ctx context.Context, keyring *secrets.Keyring) error {
	s.keys = keystore.New(s.store, keyring, s.log)
	s.keys.SetKeyringLoader(func() (*secrets.Keyring, error) {
		kr, _, _, err := secrets.Load(s.cfg.MasterKey, s.cfg.MasterKeyFile, s.cfg.DataDir)
		return kr, err
	})
	s.keys.SetStoreErrorHook(s.metrics.StoreError)
	s.keys.SetDefaultGrants(s.cfg.DefaultGrants)
	s.metrics.ObserveKeystore(s.keys)
	if err := s.keys.Reload(ctx); err != nil {
		return fmt.Errorf("load keys: %w", err)
	}
	if err := applySeed(ctx, s.keys, s.cfg.Seed, s.log); err != nil {
		return err
	}
	// --default-application sets the stored default (writing only when it
	// changes it); the admin API may change it later.
	if d := s.cfg.DefaultApplication; d != "" {
		if err := s.store.SetDefaultApplication(ctx, d); errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("default application %s is not in the store: create it first (tokenctl apps create, POST /v1/applications, or the seed variables), or name one that tokenctl apps list shows", d)
		} else if err != nil {
			return fmt.Errorf("set the default application: %w", err)
		}
	}
	// Load again only if the seed wrote something (a first start, a new
	// seed key): keys that did not change are not opened again.
	if rev, err := s.store.Revision(ctx); err != nil {
		return fmt.Errorf("load keys: %w", err)
	} else if rev != s.keys.Revision() {
		if err := s.keys.Reload(ctx); err != nil {
			return fmt.Errorf("load keys: %w", err)
		}
	}
	// Loading a large store reads it whole (the snapshot) before building
	// the view from it; give the snapshot's memory back to the OS now
	// rather than leave it to the background scavenger: with 100,000
	// applications it is about 100 MiB of RSS, held for minutes.
	if s.keys.Len() >= freeAfterLoadApps {
		debug.FreeOSMemory()
	}
	if s.keys.Len() > 1 && s.keys.Default() == nil {
		s.log.Warn("no default application: requests that name no application fail (FailedPrecondition) and /readyz answers 503 until one is set (tokenctl apps default AP…, or PUT /v1/default-application)",
			"applications", s.keys.Len())
	}
	if err := s.initCallers(); err != nil {
		return err
	}
	s.initReplicas()
	s.token = tokenapi.New(tokenapi.Config{
		Keys:            s.keys,
		DefaultIdentity: s.cfg.DefaultIdentity,
		Policy:          s.policy,
		PrincipalLimit:  s.principalLimit,
		IdentityLimit:   s.identityLimit,
		OnRateLimited:   func(scope string) { s.metrics.RateLimited.WithLabelValues(scope).Inc() },
		Audit:           s.audit,
	})

	// Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT is set; off, no
	// instrumentation is added and no exporter endpoint is ever contacted.
	var tracing bool
	var err error
	s.stopTracing, tracing, err = telemetry.Setup(ctx, "tokend")
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	grpcOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxBodyBytes),
		// Requests that do not decode are InvalidArgument, not Internal
		// (see grpccodec.go).
		grpc.ForceServerCodecV2(newRequestCodec()),
		// Limits that keep one caller from holding the server: a slow
		// handshake, idle connections, too many streams, pings.
		grpc.ConnectionTimeout(10 * time.Second),
		grpc.MaxConcurrentStreams(1000),
		// A pool of goroutines serves the streams: one goroutine per
		// call would start on a small stack and grow it (copystack) on
		// every call, about a tenth of a Mint's CPU under load. A stream
		// that finds every worker busy still gets a goroutine of its own.
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// The request id comes first so that everything after it (and
		// every log line) has it; metrics come before recovery so that a
		// recovered panic is counted as Internal. The unary chain is one
		// interceptor doing the same (grpcchain.go): it is on the mint
		// path.
		grpc.UnaryInterceptor(s.unaryInterceptor()),
		// The call's request id is taken from its header before the
		// interceptors run (requestid.TapHandle).
		grpc.InTapHandle(requestid.TapHandle),
		grpc.ChainStreamInterceptor(
			streamDecodeInterceptor(),
			requestid.StreamServerInterceptor(),
			s.metrics.GRPC.StreamServerInterceptor(),
			recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(s.recovered)),
			s.auth.StreamServerInterceptor(),
		),
	}
	if s.tls != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(s.tls)))
	}
	if tracing {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	if err := s.initProvisioning(); err != nil {
		return err
	}
	s.admin = adminapi.New(adminapi.Config{Keys: s.keys, AdminToken: s.cfg.AdminToken, Logger: s.log, DemoApplicationSID: DemoApplicationSID, OnStoreError: s.metrics.StoreError, Audit: s.audit,
		Failures: s.authFailures, OnAuthFailure: s.authFailure, Provisioner: s.prov})
	if s.cfg.AdminToken == "" {
		s.log.Info("admin API off: no admin credential configured (set TOKEND_ADMIN_TOKEN or --admin-token-file)")
	}
	// Both paths mint through the metrics wrapper: it counts each mint once.
	tokenv1.RegisterTokenServiceServer(s.grpc, s.metrics.TokenService(s.token, metrics.PathGRPC, s.token.ApplicationFor))
	tokenv1.RegisterAdminServiceServer(s.grpc, s.admin)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(tokenv1.TokenService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(tokenv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(s.grpc)
	s.metrics.GRPC.InitializeMetrics(s.grpc)

	s.http, err = httpapi.New(ctx, httpapi.Config{
		Token:        s.metrics.TokenService(s.token, metrics.PathREST, s.token.ApplicationFor),
		Metrics:      s.metrics,
		Admin:        s.admin,
		MaxBodyBytes: int64(s.cfg.MaxBodyBytes),
		Readyz:       s.readyz,
		Logger:       s.log,
		CORSOrigins:  s.cfg.CORSOrigins,
		Page:         web.Handler(),
		Authenticate: s.auth.HTTPMiddleware,
		LoopbackOnly: !s.cfg.Authenticated(),
	})
	if err != nil {
		return err
	}
	if tracing {
		s.http = otelhttp.NewHandler(s.http, "tokend.http")
	}
	return nil
}

func (s *Server) recovered(ctx context.Context, p any) error {
	s.log.ErrorContext(ctx, "panic in handler", "panic", fmt.Sprint(p))
	return status.Error(codes.Internal, "internal error")
}

// readyz: tokend can mint while it holds keys in memory, store or not;
// writes (the admin API) need the store.
func (s *Server) readyz(ctx context.Context) (bool, map[string]string) {
	detail := map[string]string{"store": "ok", "writes": "ready"}
	if s.storeDown.Load() {
		detail["store"], detail["writes"] = "unreachable", "not ready"
	}
	if s.keys.Len() == 0 {
		detail["mint"] = "no applications"
		return false, detail
	}
	detail["mint"] = "ready"
	if s.prov != nil {
		if missing := s.prov.Missing(); len(missing) > 0 {
			detail["twilio_keys"] = "missing at Twilio: " + strings.Join(missing, ", ")
		}
	}
	if s.replicas != nil {
		detail["replicas"] = strconv.Itoa(s.replicas.Live())
	}
	if app := s.keys.Default(); app != nil {
		detail["default_application"] = app.SID
	} else {
		// Requests naming their application could be served, but every
		// request naming none fails: the operator must act.
		detail["default_application"] = fmt.Sprintf("none: tokend holds %d applications and none is the default, so requests that name no application fail; set one with tokenctl apps default AP… (PUT /v1/default-application)", s.keys.Len())
		return false, detail
	}
	return true, detail
}

// initReplicas divides the rate limits among the replicas that share a
// PostgreSQL store, counted by their heartbeats (see package replicas).
// A SQLite store serves one process: nothing to share, no heartbeat, the
// limits are the configured ones.
func (s *Server) initReplicas() {
	live := func() int { return 1 }
	if _, shared := s.store.(*postgres.Store); shared {
		s.replicas = replicas.New(replicas.Config{
			Store:    s.store,
			Interval: cmp.Or(s.cfg.ReplicaHeartbeat, ReplicaHeartbeatInterval),
			TTL:      cmp.Or(s.cfg.ReplicaTTL, ReplicaTTL),
			OnChange: func(n int) {
				s.share.Store(int64(n))
				s.principalLimit.SetShare(n)
				s.identityLimit.SetShare(n)
				if s.policy != nil {
					s.policy.Policy().ShareAnonymousLimits(n)
				}
			},
			OnError: func(err error) { s.metrics.StoreError("heartbeat", err) },
			Logger:  s.log,
			// Beats acknowledge the revision the keystore serves, at once
			// after a reload: a revoke waits for every replica to serve
			// the replacement key before it deletes the revoked one.
			Revision: s.keys.Revision,
		})
		s.keys.SetReloadHook(s.replicas.Poke)
		live = s.replicas.Live
	}
	s.metrics.ObserveReplicas(live)
	limits := map[string]metrics.RateLimitShare{}
	if s.principalLimit != nil {
		limits["principal"] = s.principalLimit
	}
	if s.identityLimit != nil {
		limits["identity"] = s.identityLimit
	}
	s.metrics.ObserveRateLimits(limits)
}

// monitorStore pings the store every interval, keeps storeDown and the
// admin service's gRPC health in step, and logs each change.
func (s *Server) monitorStore(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		err := s.store.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		down := err != nil
		if down {
			s.metrics.StoreError("ping", err)
		}
		if s.storeDown.Swap(down) == down {
			continue
		}
		admin := tokenv1.AdminService_ServiceDesc.ServiceName
		if down {
			s.log.Error("store unreachable: still minting from the keys in memory; admin writes fail until it returns", "error", err)
			s.health.SetServingStatus(admin, healthpb.HealthCheckResponse_NOT_SERVING)
		} else {
			s.log.Info("store reachable again")
			s.health.SetServingStatus(admin, healthpb.HealthCheckResponse_SERVING)
		}
	}
}

// GRPCServer returns the gRPC server, for serving on a listener of the
// caller's choosing (tests use bufconn).
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// HTTPHandler returns the REST handler.
func (s *Server) HTTPHandler() http.Handler { return s.http }

// Replicas returns the count of replicas sharing the store (Serve makes it
// beat), or nil on a store of one process (SQLite).
func (s *Server) Replicas() *replicas.Membership { return s.replicas }

// Keystore returns the in-memory keystore.
func (s *Server) Keystore() *keystore.Keystore { return s.keys }

// Metrics returns the Prometheus metrics, served at /metrics (a rate
// limiter counts its refusals in Metrics().RateLimited).
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// freeAfterLoadApps is the store size (in applications) from which New
// returns the memory of the initial load to the OS at once.
const freeAfterLoadApps = 1000

// streamWorkers is the size of the gRPC server's stream worker pool.
//
// A call holds its worker until it is answered, which with the fail-closed
// audit log includes the wait for its record: under load the calls in
// flight are about as many as the clients keep open (ghz's default is
// 50), and every call over the pool's size gets a goroutine of its own
// whose stack grows on every call (2 µs a call at 50 in flight with a
// pool of 32). A larger pool has a price of its own: workers take calls
// in turn (grpc-go's channel queues them first in, first out), the
// collector shrinks the stacks of the idle ones, and each regrows its
// stack on its next call (0.4 µs a call with a pool of 64 at 32 in
// flight, 0.7 µs with 128). 32 per CPU, at least 64, covers ghz's default
// at the smallest price (see BENCHMARKS.md).
func streamWorkers() uint32 {
	return uint32(max(64, 32*runtime.GOMAXPROCS(0)))
}

// Serve serves gRPC on grpcLn and REST on httpLn until ctx ends, then
// shuts down gracefully: HTTP first (in-flight requests finish, up to 10
// s), then gRPC (GracefulStop, falling back to Stop), then the store.
func (s *Server) Serve(ctx context.Context, grpcLn, httpLn net.Listener) error {
	hs := &http.Server{
		Handler:           s.http,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	bg, stopBG := context.WithCancel(context.Background())
	bgDone := make(chan struct{}, 3)
	bgWorkers := 2
	go func() { s.keys.Watch(bg, WatchInterval); bgDone <- struct{}{} }()
	go func() { s.keys.FlushUsageEvery(bg, UsageFlushInterval); bgDone <- struct{}{} }()
	if s.replicas != nil {
		// Count the replicas before serving, so that the first requests
		// already see this replica's share (on an error, the whole limit
		// until a beat succeeds), and remove the heartbeat on the way out.
		s.replicas.Beat(bg)
		s.log.Info("replica announced in the store", "replica", s.replicas.ID(), "replicas", s.replicas.Live(),
			"heartbeat_interval", s.replicas.Interval(), "ttl", s.replicas.TTL())
		bgWorkers++
		go func() { s.replicas.Run(bg); bgDone <- struct{}{} }()
	}
	go s.monitorStore(bg, StorePingInterval)
	provDone := make(chan struct{})
	go func() { s.prov.Run(bg, s.cfg.ProvisionInterval); close(provDone) }()
	// Deadlines reach the socket only when a read or write can be held
	// to them (net/http sets them about eight times a request), and
	// net/http's background read waits without a system call while a
	// short handler runs: see httpconn.
	httpLn = httpconn.Listener(httpLn)
	if s.tls != nil {
		httpLn = tls.NewListener(httpLn, s.tls)
	}
	errc := make(chan error, 2)
	go func() {
		if err := s.grpc.Serve(grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	go func() {
		if err := hs.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http server: %w", err)
		}
	}()
	s.log.Info("tokend serving", "grpc_addr", grpcLn.Addr().String(), "http_addr", httpLn.Addr().String())
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.health.Shutdown()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		s.grpc.Stop()
	}
	stopBG() // the usage flusher writes once more on its way out
	for range bgWorkers {
		<-bgDone
	}
	<-provDone
	if err := s.stopTracing(sctx); err != nil {
		s.log.Warn("flush traces at shutdown", "error", err)
	}
	return errors.Join(serveErr, s.Close())
}

// Close stops the gRPC server (and its stream workers) if Serve did not,
// stops the policy watcher, flushes and closes the audit log, and closes
// the store.
func (s *Server) Close() error {
	if s.grpc != nil {
		s.grpc.Stop()
	}
	if s.stopWatch != nil {
		s.stopWatch()
	}
	var err error
	if s.audit != nil {
		err = s.audit.Close()
	}
	return errors.Join(err, s.store.Close())
}
