package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
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
	"github.com/tokend/tokend/server/gctune"
)

// BenchmarkGRPCMint drives Mint through tokend's real grpc.Server (every
// option and interceptor, a service credential, policy, rate limits and
// the fail-closed audit log) over real loopback TCP, next to a bare
// grpc.Server serving only the health service with no options, as
// make load's gRPC ceiling does. The client is a child process (this test
// binary again, TestGRPCLoadClient), in two shapes: 32 workers over 2
// connections as make load drives them (c32x2), and 50 workers over 1
// connection, ghz's defaults (c50x1), so that the figures are the servers' own:
// cpu-ns/op is this process's user+system CPU per call (getrusage),
// allocs/op and B/op its allocations per call; ns/op is wall time. The
// ratio of the two cpu-ns/op is the one make load's target is on (both
// servers share this process, and its collector is tuned as tokend's).
//
//	go test -run '^$' -bench GRPCMint -benchtime 20000x ./server/
func BenchmarkGRPCMint(b *testing.B) {
	// The collector tuned as tokend's main tunes it (--gc-headroom-mib 16).
	gcCtx, stopGC := context.WithCancel(context.Background())
	defer stopGC()
	go gctune.Run(gcCtx, 16<<20)
	for _, shape := range []loadShape{{32, 2}, {50, 1}} {
		b.Run(fmt.Sprintf("health/c%dx%d", shape.workers, shape.conns), func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			gs := grpc.NewServer()
			hs := health.NewServer()
			healthpb.RegisterHealthServer(gs, hs)
			go gs.Serve(lis)
			defer gs.Stop()
			runGRPCClient(b, lis.Addr().String(), "health", "", shape)
		})
		b.Run(fmt.Sprintf("mint/c%dx%d", shape.workers, shape.conns), func(b *testing.B) {
			srv, credential := benchServer(b)
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.GRPCServer().Serve(lis)
			defer srv.GRPCServer().Stop()
			runGRPCClient(b, lis.Addr().String(), "mint", credential, shape)
		})
	}
}

// loadShape is how BenchmarkGRPCMint's client calls: workers calls in
// flight at once, over conns connections.
type loadShape struct{ workers, conns int }

// runGRPCClient runs b.N calls of kind against addr from a child process
// and reports this process's CPU per call.
func runGRPCClient(b *testing.B, addr, kind, credential string, shape loadShape) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGRPCLoadClient$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TOKEND_LOAD_ADDR="+addr, "TOKEND_LOAD_KIND="+kind,
		"TOKEND_LOAD_CALLS="+strconv.Itoa(b.N), "TOKEND_LOAD_CREDENTIAL="+credential,
		"TOKEND_LOAD_WORKERS="+strconv.Itoa(shape.workers), "TOKEND_LOAD_CONNS="+strconv.Itoa(shape.conns))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(out)
	expect := func(want string) {
		for lines.Scan() {
			if lines.Text() == want {
				return
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("load client: no %q line; stderr: %s", want, stderr.Bytes())
	}
	expect("warm")
	b.ReportAllocs()
	runtime.GC()
	cpu0 := processCPU()
	b.ResetTimer()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
	expect("done")
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// TestGRPCLoadClient is BenchmarkGRPCMint's client (it does nothing unless
// the benchmark runs it): it warms up, says "warm", waits for a line on
// stdin, makes TOKEND_LOAD_CALLS calls from TOKEND_LOAD_WORKERS workers
// over TOKEND_LOAD_CONNS connections and says "done".
func TestGRPCLoadClient(t *testing.T) {
	addr := os.Getenv("TOKEND_LOAD_ADDR")
	if addr == "" {
		t.Skip("BenchmarkGRPCMint's load client")
	}
	n, err := strconv.Atoi(os.Getenv("TOKEND_LOAD_CALLS"))
	if err != nil {
		t.Fatal(err)
	}
	workers, err := strconv.Atoi(os.Getenv("TOKEND_LOAD_WORKERS"))
	if err != nil || workers < 1 {
		t.Fatalf("TOKEND_LOAD_WORKERS: want a count, got %q", os.Getenv("TOKEND_LOAD_WORKERS"))
	}
	nconns, err := strconv.Atoi(os.Getenv("TOKEND_LOAD_CONNS"))
	if err != nil || nconns < 1 {
		t.Fatalf("TOKEND_LOAD_CONNS: want a count, got %q", os.Getenv("TOKEND_LOAD_CONNS"))
	}
	var conns []*grpc.ClientConn
	for range nconns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		conns = append(conns, cc)
	}
	var call func(context.Context, *grpc.ClientConn) error
	switch os.Getenv("TOKEND_LOAD_KIND") {
	case "health":
		req := &healthpb.HealthCheckRequest{}
		call = func(ctx context.Context, cc *grpc.ClientConn) error {
			_, err := healthpb.NewHealthClient(cc).Check(ctx, req)
			return err
		}
	default:
		md := metadata.Pairs("authorization", "Bearer "+os.Getenv("TOKEND_LOAD_CREDENTIAL"))
		req := &tokenv1.MintRequest{}
		call = func(ctx context.Context, cc *grpc.ClientConn) error {
			resp, err := tokenv1.NewTokenServiceClient(cc).Mint(metadata.NewOutgoingContext(ctx, md), req)
			if err == nil && strings.Count(resp.GetToken(), ".") != 2 {
				return errors.New("Mint: answer has no JWT")
			}
			return err
		}
	}
	ctx := context.Background()
	for i := range 200 {
		if err := call(ctx, conns[i%len(conns)]); err != nil {
			t.Fatalf("warm-up call: %v", err)
		}
	}
	fmt.Println("warm")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	var next atomic.Int64
	var failed atomic.Pointer[error]
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			cc := conns[w%len(conns)]
			for next.Add(1) <= int64(n) {
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
	if err := failed.Load(); err != nil {
		t.Fatalf("call: %v", *err)
	}
	fmt.Println("done")
}

// processCPU is the process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
