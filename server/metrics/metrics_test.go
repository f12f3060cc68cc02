package metrics_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/metrics"
)

const app = "APdddddddddddddddddddddddddddddddd"

// trivial is a token service that allocates nothing.
type trivial struct {
	tokenv1.UnimplementedTokenServiceServer
	resp *tokenv1.MintResponse
	err  error
}

func (s *trivial) Mint(context.Context, *tokenv1.MintRequest) (*tokenv1.MintResponse, error) {
	return s.resp, s.err
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// count returns how many series a collector has.
func count(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

func resolve(sid string) string {
	if sid == app || sid == "" {
		return app
	}
	return ""
}

// TestMintAllocs: counting a successful mint costs at most one
// allocation (in practice none: a cached label child and an atomic add).
func TestMintAllocs(t *testing.T) {
	m := metrics.New()
	inner := &trivial{resp: &tokenv1.MintResponse{ApplicationSid: app}}
	svc := m.TokenService(inner, metrics.PathGRPC, resolve)
	ctx := context.Background()
	req := &tokenv1.MintRequest{ApplicationSid: app}
	svc.Mint(ctx, req) // resolve the label child once
	base := testing.AllocsPerRun(1000, func() { inner.Mint(ctx, req) })
	got := testing.AllocsPerRun(1000, func() { svc.Mint(ctx, req) })
	if got-base > 1 {
		t.Errorf("the metrics wrapper adds %v allocations per mint, want at most 1", got-base)
	}
	t.Logf("allocations per mint: inner %v, wrapped %v", base, got)
	if n := value(t, m.Mints.WithLabelValues(app, "ok", "OK", "grpc")); n != 1002 {
		t.Errorf("tokend_mints_total ok = %v, want 1002 (one call, then AllocsPerRun's warm-up and 1000 runs)", n)
	}
}

// TestMintLabels: failures are labelled with the code and only with
// known applications.
func TestMintLabels(t *testing.T) {
	m := metrics.New()
	inner := &trivial{err: status.Error(codes.NotFound, "no")}
	svc := m.TokenService(inner, metrics.PathREST, resolve)
	svc.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: "APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"})
	svc.Mint(context.Background(), &tokenv1.MintRequest{})
	if n := value(t, m.Mints.WithLabelValues(metrics.UnknownApplication, "error", "NotFound", "rest")); n != 1 {
		t.Errorf("unknown application errors = %v, want 1", n)
	}
	if n := value(t, m.Mints.WithLabelValues(app, "error", "NotFound", "rest")); n != 1 {
		t.Errorf("default application errors = %v, want 1", n)
	}
	if n := count(m.Mints); n != 2 {
		t.Errorf("tokend_mints_total has %d series, want 2", n)
	}
}

func TestStoreError(t *testing.T) {
	m := metrics.New()
	m.StoreError("flush", context.Canceled)
	m.StoreError("flush", nil)
	m.StoreError("flush", status.Error(codes.Unavailable, "down"))
	if n := value(t, m.StoreErrors.WithLabelValues("flush")); n != 1 {
		t.Errorf("tokend_store_errors_total{op=flush} = %v, want 1 (cancellations and nil are not errors)", n)
	}
}

func BenchmarkMint(b *testing.B) {
	m := metrics.New()
	svc := m.TokenService(&trivial{resp: &tokenv1.MintResponse{ApplicationSid: app}}, metrics.PathGRPC, resolve)
	ctx := context.Background()
	req := &tokenv1.MintRequest{ApplicationSid: app}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			svc.Mint(ctx, req)
		}
	})
}
