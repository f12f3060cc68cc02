package metrics

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCMetrics are the gRPC server metrics go-grpc-middleware's
// providers/prometheus exposes, with its names, help, labels and
// semantics (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_msg_received_total, grpc_server_msg_sent_total and the
// grpc_server_handling_seconds histogram), recorded by interceptors of
// their own.
//
// They are recorded here rather than by that package's interceptors
// because those are on the mint path and look every child up by its
// label values on every call (five label hashes and vector lookups, an
// allocated report and label slices: about a twentieth of a Mint's CPU
// under load). These keep each method's children in a map keyed by the
// full method name, built once per method: a call costs one map read.
// The key space is bounded: the server's own registered methods (an
// unknown method never reaches an interceptor).
type GRPCMetrics struct {
	started  *prometheus.CounterVec
	handled  *prometheus.CounterVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	seconds  *prometheus.HistogramVec

	methods sync.Map // grpcMethodKey -> *grpcMethodMetrics
}

type grpcMethodKey struct {
	fullMethod, typ string
}

// grpcMethodMetrics are one method's children, each created on first
// use (or by InitializeMetrics), as the vectors would; handled is indexed
// by code (a code beyond Unauthenticated, which no server sends, takes
// the vector's slow path).
type grpcMethodMetrics struct {
	started, received, sent lazy[prometheus.Counter]
	seconds                 lazy[prometheus.Observer]
	handled                 [codes.Unauthenticated + 1]lazy[prometheus.Counter]
}

// lazy is a vector's child for fixed label values, looked up once.
type lazy[T any] struct {
	p      atomic.Pointer[T]
	get    func(...string) T
	labels []string
}

func newLazy[T any](get func(...string) T, labels ...string) lazy[T] {
	return lazy[T]{get: get, labels: labels}
}

// child returns the child, creating it in its vector on first use
// (concurrent first uses get the same child from the vector).
func (l *lazy[T]) child() T {
	if c := l.p.Load(); c != nil {
		return *c
	}
	c := l.get(l.labels...)
	l.p.Store(&c)
	return c
}

// The grpc_type label values.
const (
	grpcUnary        = "unary"
	grpcClientStream = "client_stream"
	grpcServerStream = "server_stream"
	grpcBidiStream   = "bidi_stream"
)

func newGRPCMetrics() *GRPCMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &GRPCMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server.",
		}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure.",
		}, append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server.",
		}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server.",
		}, labels),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels),
	}
}

// Describe implements prometheus.Collector.
func (g *GRPCMetrics) Describe(ch chan<- *prometheus.Desc) {
	g.started.Describe(ch)
	g.handled.Describe(ch)
	g.received.Describe(ch)
	g.sent.Describe(ch)
	g.seconds.Describe(ch)
}

// Collect implements prometheus.Collector.
func (g *GRPCMetrics) Collect(ch chan<- prometheus.Metric) {
	g.started.Collect(ch)
	g.handled.Collect(ch)
	g.received.Collect(ch)
	g.sent.Collect(ch)
	g.seconds.Collect(ch)
}

// method returns the children of fullMethod ("/pkg.Service/Method") of
// grpc_type typ.
func (g *GRPCMetrics) method(fullMethod, typ string) *grpcMethodMetrics {
	key := grpcMethodKey{fullMethod, typ}
	if m, ok := g.methods.Load(key); ok {
		return m.(*grpcMethodMetrics)
	}
	service, name := splitFullMethod(fullMethod)
	m := &grpcMethodMetrics{
		started:  newLazy(g.started.WithLabelValues, typ, service, name),
		received: newLazy(g.received.WithLabelValues, typ, service, name),
		sent:     newLazy(g.sent.WithLabelValues, typ, service, name),
		seconds: newLazy(func(l ...string) prometheus.Observer {
			return g.seconds.WithLabelValues(l...)
		}, typ, service, name),
	}
	for c := range m.handled {
		m.handled[c] = newLazy(g.handled.WithLabelValues, typ, service, name, codes.Code(c).String())
	}
	actual, _ := g.methods.LoadOrStore(key, m)
	return actual.(*grpcMethodMetrics)
}

// done records a finished call: its code (a context error counts as the
// code the gRPC server itself answers it with) and its duration.
func (g *GRPCMetrics) done(m *grpcMethodMetrics, fullMethod, typ string, err error, start time.Time) {
	code := codes.OK
	if err != nil {
		s, ok := status.FromError(err)
		if !ok {
			s = status.FromContextError(err)
		}
		code = s.Code()
	}
	if int(code) < len(m.handled) {
		m.handled[code].child().Inc()
	} else {
		service, name := splitFullMethod(fullMethod)
		g.handled.WithLabelValues(typ, service, name, code.String()).Inc()
	}
	m.seconds.child().Observe(time.Since(start).Seconds())
}

// InitializeMetrics creates every method's series of srv at zero (every
// code of grpc_server_handled_total included), so that they are exported
// before the first call. Call it after registering the services.
func (g *GRPCMetrics) InitializeMetrics(srv interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}) {
	for service, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			m := g.method("/"+service+"/"+mi.Name, methodType(mi.IsClientStream, mi.IsServerStream))
			m.started.child()
			m.received.child()
			m.sent.child()
			m.seconds.child()
			for c := range m.handled {
				m.handled[c].child()
			}
		}
	}
}

// UnaryServerInterceptor records every unary call: started, one message
// received, one sent when it succeeds, handled by code, handling time.
func (g *GRPCMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		call := g.StartUnary(info.FullMethod, time.Now())
		resp, err := handler(ctx, req)
		call.Done(err)
		return resp, err
	}
}

// UnaryCall is a unary call being recorded, from StartUnary to Done.
type UnaryCall struct {
	g          *GRPCMetrics
	m          *grpcMethodMetrics
	fullMethod string
	start      time.Time
}

// StartUnary records the start of a unary call of fullMethod, started at
// start, as UnaryServerInterceptor does before it calls the handler, for
// a server that runs its interceptors as one. Call Done when it ends.
func (g *GRPCMetrics) StartUnary(fullMethod string, start time.Time) UnaryCall {
	m := g.method(fullMethod, grpcUnary)
	m.started.child().Inc()
	m.received.child().Inc()
	return UnaryCall{g: g, m: m, fullMethod: fullMethod, start: start}
}

// Done records the end of the call, with the handler's error, as
// UnaryServerInterceptor does after the handler returns.
func (c UnaryCall) Done(err error) {
	if err == nil {
		c.m.sent.child().Inc()
	}
	c.g.done(c.m, c.fullMethod, grpcUnary, err, c.start)
}

// StreamServerInterceptor records every streaming call: started, each
// message received and sent without error, handled by code, handling
// time.
func (g *GRPCMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		typ := methodType(info.IsClientStream, info.IsServerStream)
		m := g.method(info.FullMethod, typ)
		m.started.child().Inc()
		err := handler(srv, &countedStream{ServerStream: ss, m: m})
		g.done(m, info.FullMethod, typ, err, start)
		return err
	}
}

type countedStream struct {
	grpc.ServerStream
	m *grpcMethodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.m.sent.child().Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.m.received.child().Inc()
	}
	return err
}

func methodType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return grpcBidiStream
	case clientStream:
		return grpcClientStream
	case serverStream:
		return grpcServerStream
	default:
		return grpcUnary
	}
}

// splitFullMethod splits "/pkg.Service/Method" into its service and
// method, as go-grpc-middleware does.
func splitFullMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.Index(full, "/"); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "unknown", "unknown"
}
