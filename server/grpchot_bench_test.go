package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/tokenapi"
)

// BenchmarkGRPCMint drives Mint through tokend's real grpc.Server (every
// option and interceptor, a service credential, policy, rate limits and
// the fail-closed audit log) over real loopback TCP, next to a bare
// grpc.Server serving only the health service with no options, as
// make load's gRPC ceiling does. Client and servers share the process,
// so besides ns/op (wall time, 32 calls in flight over 2 connections,
// as make load drives them) it reports the process's CPU per call
// (cpu-ns/op: user+system from getrusage, client included, the same
// client work on both sides) and allocations per call (both sides).
// What tokend adds per call is the difference between the two.
//
//	go test -run '^$' -bench GRPCMint -benchtime 20000x ./server/
func BenchmarkGRPCMint(b *testing.B) {
	b.Run("health", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		gs := grpc.NewServer()
		hs := health.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		go gs.Serve(lis)
		defer gs.Stop()
		conns := dialN(b, lis.Addr().String(), 2)
		req := &healthpb.HealthCheckRequest{}
		runGRPC(b, conns, func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := healthpb.NewHealthClient(cc).Check(ctx, req)
			return err
		})
	})
	b.Run("mint", func(b *testing.B) {
		dir := b.TempDir()
		policyFile := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(policyFile, []byte(testPolicy), 0o600); err != nil {
			b.Fatal(err)
		}
		srv, err := server.New(context.Background(), server.Config{
			DataDir:         dir,
			MasterKey:       base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
			Logger:          slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
			PolicyFile:      policyFile,
			AuditLog:        filepath.Join(dir, "audit.log"),
			AuditRequired:   true,
			AdminToken:      adminToken,
			DefaultIdentity: tokenapi.DefaultIdentity,
			Seed:            server.Seed{AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp},
		})
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		req := httptest.NewRequest("POST", "http://127.0.0.1:8080/v1/credentials", strings.NewReader(`{"name":"backend"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.HTTPHandler().ServeHTTP(rec, req)
		var cred struct{ Token string }
		if err := json.Unmarshal(rec.Body.Bytes(), &cred); err != nil || cred.Token == "" {
			b.Fatalf("create credential: %d %s", rec.Code, rec.Body)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		go srv.GRPCServer().Serve(lis)
		defer srv.GRPCServer().Stop()
		conns := dialN(b, lis.Addr().String(), 2)
		md := metadata.Pairs("authorization", "Bearer "+cred.Token)
		mreq := &tokenv1.MintRequest{}
		runGRPC(b, conns, func(ctx context.Context, cc *grpc.ClientConn) error {
			resp, err := tokenv1.NewTokenServiceClient(cc).Mint(metadata.NewOutgoingContext(ctx, md), mreq)
			if err == nil && strings.Count(resp.GetToken(), ".") != 2 {
				return errors.New("Mint: answer has no JWT")
			}
			return err
		})
	})
}

func dialN(b *testing.B, addr string, n int) []*grpc.ClientConn {
	b.Helper()
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		conns[i] = cc
	}
	return conns
}

// runGRPC makes b.N calls from 32 goroutines over conns, after a short
// warm-up, and reports the process's CPU per call.
func runGRPC(b *testing.B, conns []*grpc.ClientConn, call func(context.Context, *grpc.ClientConn) error) {
	b.Helper()
	ctx := context.Background()
	for i := range 200 {
		if err := call(ctx, conns[i%len(conns)]); err != nil {
			b.Fatalf("warm-up call: %v", err)
		}
	}
	const workers = 32
	var next atomic.Int64
	var failed atomic.Pointer[error]
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			cc := conns[w%len(conns)]
			for next.Add(1) <= int64(b.N) {
				if err := call(ctx, cc); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	for range workers {
		<-done
	}
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatalf("call: %v", *err)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
