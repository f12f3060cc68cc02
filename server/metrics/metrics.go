// Package metrics defines tokend's Prometheus metrics on a registry of its
// own (not the global default), and the small adapters that record them:
// a TokenService wrapper for mints, an HTTP observation for REST latency,
// gauges over the keystore and a hook for store errors. Packages below
// server (keystore, adminapi, mint) do not import Prometheus: they take a
// plain func hook that server wires to this package.
//
// The metrics:
//
//	tokend_mints_total{application_sid, result="ok|error", code, path="grpc|rest"}
//	    Mint calls that reached the token service, by application, result,
//	    gRPC code name (OK, InvalidArgument, NotFound, ...) and path.
//	    application_sid is a known application's SID, or "unknown" when the
//	    request named none that tokend holds (so callers cannot grow the
//	    label set). REST requests rejected before the service (malformed
//	    JSON, body too large) are not mints: see the HTTP histogram.
//	tokend_http_request_duration_seconds{route, method, code}
//	    REST latency, by route pattern (never the raw path), method and
//	    HTTP status.
//	grpc_server_handling_seconds, grpc_server_started_total,
//	grpc_server_handled_total, grpc_server_msg_{received,sent}_total
//	    gRPC server metrics of go-grpc-middleware's Prometheus provider.
//	tokend_keystore_age_seconds
//	    Seconds since the in-memory keystore was last (re)loaded from the
//	    store successfully. Reloads happen at start, after admin writes and
//	    when the store's revision moves, so a steady value growing is
//	    normal when nothing changes.
//	tokend_keystore_revision
//	    The store revision the keystore holds.
//	tokend_applications
//	    Applications in the keystore.
//	tokend_rate_limited_total{scope}
//	    Mints refused by rate limiting, by scope: "principal" (per caller)
//	    or "identity" (per application and identity).
//	tokend_store_errors_total{op}
//	    Store errors, by operation: reload (reading the store into memory),
//	    watch (reading its revision), flush (writing key usage), ping
//	    (reachability check), rekey, admin (an admin API write or read),
//	    heartbeat (a replica's heartbeat).
//	tokend_replicas
//	    Live replicas sharing the store, this one included, as this
//	    replica last counted them (1 on SQLite); the rate limits are
//	    divided by it.
//	tokend_rate_limit_rate{scope}, tokend_rate_limit_burst{scope}
//	    The rate (per second) and burst this replica enforces per key, its
//	    share of the configured limit, for each configured scope.
//	tokend_audit_records_written_total, tokend_audit_records_dropped_total,
//	tokend_audit_records_failed_total
//	    Audit records written to the audit log; dropped because its queue
//	    was full (the destination stalled) or it was closed; lost because
//	    their write failed (a full disk). With --audit-required, a mint
//	    whose record is dropped or failed is refused (Unavailable).
//
// plus the Go runtime and process collectors.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// Paths of a mint, the path label of tokend_mints_total.
const (
	PathGRPC = "grpc"
	PathREST = "rest"
)

// UnknownApplication is the application_sid label of a failed mint that
// named no application tokend holds.
const UnknownApplication = "unknown"

// Metrics are tokend's metrics and the registry that holds them.
type Metrics struct {
	// Registry holds every metric below plus the Go and process
	// collectors; Handler serves it.
	Registry *prometheus.Registry
	// GRPC is the gRPC server metrics (go-grpc-middleware's, handling-time
	// histogram on; see grpc.go); use its interceptors and
	// InitializeMetrics.
	GRPC *GRPCMetrics
	// Mints is tokend_mints_total.
	Mints *prometheus.CounterVec
	// HTTPDuration is tokend_http_request_duration_seconds.
	HTTPDuration *prometheus.HistogramVec
	// RateLimited is tokend_rate_limited_total{scope}, for the rate
	// limiter to increment.
	RateLimited *prometheus.CounterVec
	// StoreErrors is tokend_store_errors_total{op}.
	StoreErrors *prometheus.CounterVec

	// httpObs caches HTTPDuration's observer of each (route, method,
	// code): a REST request then costs one map read instead of the
	// vector's label hashing and lookup. The key space is bounded (route
	// patterns, standard methods, status codes).
	httpObs sync.Map // httpKey -> prometheus.Observer
}

type httpKey struct {
	route, method string
	code          int
}

// New creates the metrics on a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		GRPC:     newGRPCMetrics(),
		Mints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_mints_total",
			Help: "Mint calls that reached the token service, by application, result (ok or error), gRPC code and path (grpc or rest).",
		}, []string{"application_sid", "result", "code", "path"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokend_http_request_duration_seconds",
			Help:    "Latency of REST requests, by route pattern, method and HTTP status code.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route", "method", "code"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_rate_limited_total",
			Help: "Requests refused by rate limiting, by scope.",
		}, []string{"scope"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_store_errors_total",
			Help: "Store errors, by operation (reload, watch, flush, ping, rekey, admin, heartbeat).",
		}, []string{"op"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.GRPC, m.Mints, m.HTTPDuration, m.RateLimited, m.StoreErrors,
	)
	return m
}

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// AuditStats is what the audit counters read, at scrape time.
type AuditStats interface {
	Written() uint64
	Dropped() uint64
	Failed() uint64
}

// ObserveAudit registers tokend_audit_records_{written,dropped,failed}_total
// over a. Call it once.
func (m *Metrics) ObserveAudit(a AuditStats) {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	m.Registry.MustRegister(
		counter("tokend_audit_records_written_total", "Audit records written to the audit log.", a.Written),
		counter("tokend_audit_records_dropped_total", "Audit records dropped because the audit queue was full (the destination stalled) or closed.", a.Dropped),
		counter("tokend_audit_records_failed_total", "Audit records lost because their write to the audit log failed.", a.Failed),
	)
}

// KeystoreStats is what the keystore gauges read, at scrape time.
type KeystoreStats interface {
	// LastReload is when the keystore was last loaded successfully.
	LastReload() time.Time
	// Revision is the store revision the keystore holds.
	Revision() int64
	// Len is the number of applications.
	Len() int
}

// ObserveKeystore registers tokend_keystore_age_seconds,
// tokend_keystore_revision and tokend_applications over ks. Call it once.
func (m *Metrics) ObserveKeystore(ks KeystoreStats) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokend_keystore_age_seconds",
			Help: "Seconds since the in-memory keystore was last loaded from the store successfully.",
		}, func() float64 {
			t := ks.LastReload()
			if t.IsZero() {
				return 0
			}
			return time.Since(t).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokend_keystore_revision",
			Help: "Store revision held by the in-memory keystore.",
		}, func() float64 { return float64(ks.Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tokend_applications",
			Help: "Applications in the in-memory keystore.",
		}, func() float64 { return float64(ks.Len()) }),
	)
}

// ObserveReplicas registers tokend_replicas over live. Call it once.
func (m *Metrics) ObserveReplicas(live func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokend_replicas",
		Help: "Live replicas sharing the store, this one included, as last counted (1 on SQLite); the rate limits are divided by it.",
	}, func() float64 { return float64(live()) }))
}

// RateLimitShare is what the rate limit gauges read, at scrape time
// (ratelimit.Limiter).
type RateLimitShare interface {
	// Share returns the number of replicas the limit is shared by, and
	// the rate (per second) and burst in force on this replica.
	Share() (n int, rps float64, burst int)
}

// ObserveRateLimits registers tokend_rate_limit_rate{scope} and
// tokend_rate_limit_burst{scope} over the given limiters, by scope; nil
// limiters (a scope without a limit) are left out. Call it once.
func (m *Metrics) ObserveRateLimits(limits map[string]RateLimitShare) {
	rate := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokend_rate_limit_rate",
		Help: "Requests per second per key that this replica allows: its share of the configured rate limit, by scope.",
	}, []string{"scope"})
	burst := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokend_rate_limit_burst",
		Help: "Burst per key that this replica allows: its share of the configured burst, by scope.",
	}, []string{"scope"})
	m.Registry.MustRegister(shareCollector{rate: rate, burst: burst, limits: limits})
}

// shareCollector sets the rate limit gauges from the limiters when
// scraped.
type shareCollector struct {
	rate, burst *prometheus.GaugeVec
	limits      map[string]RateLimitShare
}

func (c shareCollector) Describe(ch chan<- *prometheus.Desc) {
	c.rate.Describe(ch)
	c.burst.Describe(ch)
}

func (c shareCollector) Collect(ch chan<- prometheus.Metric) {
	for scope, l := range c.limits {
		if l == nil {
			continue
		}
		_, rps, burst := l.Share()
		c.rate.WithLabelValues(scope).Set(rps)
		c.burst.WithLabelValues(scope).Set(float64(burst))
	}
	c.rate.Collect(ch)
	c.burst.Collect(ch)
}

// StoreError counts a store error of op; a cancelled context is not one.
// Its signature fits the OnStoreError hooks of keystore and adminapi.
func (m *Metrics) StoreError(op string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	m.StoreErrors.WithLabelValues(op).Inc()
}

// ObserveHTTP records one REST request in tokend_http_request_duration_seconds.
// route must be a pattern (bounded), not the raw path.
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	method = httpMethod(method)
	k := httpKey{route, method, code}
	if o, ok := m.httpObs.Load(k); ok {
		o.(prometheus.Observer).Observe(d.Seconds())
		return
	}
	o := m.HTTPDuration.WithLabelValues(route, method, strconv.Itoa(code))
	m.httpObs.Store(k, o)
	o.Observe(d.Seconds())
}

// httpMethod bounds the method label to the standard methods.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// TokenService wraps the token service so that every Mint is counted in
// tokend_mints_total with the given path label (PathGRPC or PathREST).
// The gRPC server and the REST gateway each register a wrapper of the
// same implementation, so every mint, whichever way it came, is counted
// here and only here.
//
// resolve returns the SID of the known application a request naming sid
// (possibly "") is for, or "" (tokenapi.Service.ApplicationFor); it labels
// failed mints, and is only called when a mint fails. A successful mint
// costs a sync.Map lookup and an atomic add: the label child of each
// (application, ok) pair is resolved once and cached.
func (m *Metrics) TokenService(next tokenv1.TokenServiceServer, path string, resolve func(sid string) string) tokenv1.TokenServiceServer {
	return &tokenService{TokenServiceServer: next, m: m, path: path, resolve: resolve}
}

type tokenService struct {
	// The embedded service passes through every other method (uncounted).
	tokenv1.TokenServiceServer
	m       *Metrics
	path    string
	resolve func(string) string
	ok      sync.Map // application SID -> prometheus.Counter (result ok)
}

func (s *tokenService) Mint(ctx context.Context, req *tokenv1.MintRequest) (*tokenv1.MintResponse, error) {
	resp, err := s.TokenServiceServer.Mint(ctx, req)
	if err == nil {
		s.okCounter(resp.GetApplicationSid()).Inc()
		return resp, nil
	}
	app := ""
	if s.resolve != nil {
		app = s.resolve(req.GetApplicationSid())
	}
	if app == "" {
		app = UnknownApplication
	}
	s.m.Mints.WithLabelValues(app, "error", status.Code(err).String(), s.path).Inc()
	return resp, err
}

func (s *tokenService) okCounter(app string) prometheus.Counter {
	if c, ok := s.ok.Load(app); ok {
		return c.(prometheus.Counter)
	}
	c := s.m.Mints.WithLabelValues(app, "ok", codes.OK.String(), s.path)
	s.ok.Store(app, c)
	return c
}
