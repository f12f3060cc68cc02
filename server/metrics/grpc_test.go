package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokend/tokend/server/metrics"
)

// services is what InitializeMetrics reads: a unary, a server-streaming
// and a bidirectional method.
type services map[string]grpc.ServiceInfo

func (s services) GetServiceInfo() map[string]grpc.ServiceInfo { return s }

// fakeStream answers RecvMsg with the errors in recv, one a call, then
// io.EOF; SendMsg with sendErr.
type fakeStream struct {
	grpc.ServerStream
	recv    []error
	sendErr error
}

func (s *fakeStream) Context() context.Context { return context.Background() }
func (s *fakeStream) RecvMsg(any) error {
	if len(s.recv) == 0 {
		return io.EOF
	}
	err := s.recv[0]
	s.recv = s.recv[1:]
	return err
}
func (s *fakeStream) SendMsg(any) error { return s.sendErr }

// series flattens a registry into "name{labels} value" lines: counters
// by value, histograms by sample count (their sums and buckets depend on
// timing), with each family's help and type.
func series(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var out []string
	for _, mf := range mfs {
		out = append(out, fmt.Sprintf("# %s %s %q", mf.GetName(), mf.GetType(), mf.GetHelp()))
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			var v string
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = fmt.Sprint(m.GetCounter().GetValue())
			case dto.MetricType_HISTOGRAM:
				v = fmt.Sprintf("count=%d buckets=%d", m.GetHistogram().GetSampleCount(), len(m.GetHistogram().GetBucket()))
			default:
				v = m.String()
			}
			out = append(out, fmt.Sprintf("%s{%s} %s", mf.GetName(), strings.Join(labels, ","), v))
		}
	}
	sort.Strings(out)
	return out
}

// TestGRPCMetricsMatchGoGRPCMiddleware drives tokend's gRPC metrics and
// go-grpc-middleware's providers/prometheus (which they replace on the
// mint path) through the same calls and compares every series they
// export: names, help, types, labels and values.
func TestGRPCMetricsMatchGoGRPCMiddleware(t *testing.T) {
	ours := metrics.New().GRPC
	theirs := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	regOurs, regTheirs := prometheus.NewRegistry(), prometheus.NewRegistry()
	regOurs.MustRegister(ours)
	regTheirs.MustRegister(theirs)

	svc := services{
		"token.v1.TokenService": {Methods: []grpc.MethodInfo{{Name: "Mint"}}},
		"grpc.health.v1.Health": {Methods: []grpc.MethodInfo{{Name: "Check"}, {Name: "Watch", IsServerStream: true}}},
		"grpc.reflection.v1.ServerReflection": {Methods: []grpc.MethodInfo{
			{Name: "ServerReflectionInfo", IsClientStream: true, IsServerStream: true}}},
	}
	ours.InitializeMetrics(svc)
	theirs.InitializeMetrics(svc)

	unaryErrs := []error{
		nil, nil, nil,
		status.Error(codes.InvalidArgument, "identity: too long"),
		status.Error(codes.PermissionDenied, "denied"),
		context.Canceled,
		context.DeadlineExceeded,
		errors.New("plain"),
	}
	uOurs, uTheirs := ours.UnaryServerInterceptor(), theirs.UnaryServerInterceptor()
	for _, method := range []string{"/token.v1.TokenService/Mint", "/grpc.health.v1.Health/Check", "/other.v1.Svc/Call"} {
		for _, want := range unaryErrs {
			info := &grpc.UnaryServerInfo{FullMethod: method}
			handler := func(context.Context, any) (any, error) { return "resp", want }
			for _, ic := range []grpc.UnaryServerInterceptor{uOurs, uTheirs} {
				if _, err := ic(context.Background(), "req", info, handler); !errors.Is(err, want) && err != want {
					t.Fatalf("%s: interceptor returned %v, want %v", method, err, want)
				}
			}
		}
	}

	sOurs, sTheirs := ours.StreamServerInterceptor(), theirs.StreamServerInterceptor()
	streams := []struct {
		info    *grpc.StreamServerInfo
		recv    []error
		sendErr error
		sends   int
		err     error
	}{
		{&grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}, nil, nil, 3, nil},
		{&grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}, nil, io.ErrClosedPipe, 2, status.Error(codes.Unavailable, "gone")},
		{&grpc.StreamServerInfo{FullMethod: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", IsClientStream: true, IsServerStream: true}, []error{nil, nil, errors.New("bad frame")}, nil, 2, nil},
		{&grpc.StreamServerInfo{FullMethod: "/x.v1.Up/Load", IsClientStream: true}, []error{nil}, nil, 1, nil},
	}
	for _, s := range streams {
		for _, ic := range []grpc.StreamServerInterceptor{sOurs, sTheirs} {
			ss := &fakeStream{recv: append([]error(nil), s.recv...), sendErr: s.sendErr}
			handler := func(_ any, st grpc.ServerStream) error {
				for st.RecvMsg(nil) == nil {
				}
				for range s.sends {
					_ = st.SendMsg("m")
				}
				return s.err
			}
			if err := ic(nil, ss, s.info, handler); err != s.err {
				t.Fatalf("%s: interceptor returned %v, want %v", s.info.FullMethod, err, s.err)
			}
		}
	}

	got, want := series(t, regOurs), series(t, regTheirs)
	if len(want) < 50 {
		t.Fatalf("go-grpc-middleware exported only %d lines: the comparison would prove little", len(want))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		gotSet := map[string]bool{}
		for _, l := range got {
			gotSet[l] = true
		}
		wantSet := map[string]bool{}
		for _, l := range want {
			wantSet[l] = true
			if !gotSet[l] {
				t.Errorf("missing: %s", l)
			}
		}
		for _, l := range got {
			if !wantSet[l] {
				t.Errorf("extra:   %s", l)
			}
		}
	}
}

// TestGRPCUnaryAllocs holds the point of GRPCMetrics: a unary call that
// succeeds records its metrics without allocating.
func TestGRPCUnaryAllocs(t *testing.T) {
	g := metrics.New().GRPC
	ic := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/token.v1.TokenService/Mint"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	_, _ = ic(ctx, nil, info, handler)
	if n := testing.AllocsPerRun(100, func() { _, _ = ic(ctx, nil, info, handler) }); n > 0 {
		t.Errorf("a unary call allocates %v times in the metrics interceptor, want 0", n)
	}
}
