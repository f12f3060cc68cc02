package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The ceilings are the cheapest servers of each protocol that still answer
// what a caller of tokend gets: tokend can do no better than them on the
// same machine. Each runs in a process of its own (this binary re-executed
// with a hidden flag), like tokend, and prints "listening <addr>" once it
// accepts connections. It exits when its standard input closes, so it never
// outlives the load generator.

// ceilingBodyLen is the size of the HTTP ceiling's answer: a token-sized
// JSON body (a JWT of the seed's voice token), as the load targets were
// first specified. tokend's REST answer is larger (852 bytes: the token
// and the fields beside it); a larger ceiling body would only flatter
// tokend's ratios, and by little (the size barely moves a loopback
// write's cost).
const ceilingBodyLen = 450

// ceilingBody is a fixed JSON object of ceilingBodyLen bytes shaped like
// tokend's answer.
func ceilingBody() []byte {
	head := `{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImN0eSI6InR3aWxpby1mcGE7dj0xIn0.`
	tail := `","identity":"user"}`
	pad := ceilingBodyLen - len(head) - len(tail)
	return []byte(head + strings.Repeat("x", pad) + tail)
}

func serveHTTPCeiling() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	body := ceilingBody()
	size := strconv.Itoa(len(body))
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read the body (POST /token's), as any server that decodes
			// it must; a GET's is empty.
			io.Copy(io.Discard, r.Body)
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", size)
			w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	announce(ln)
	go exitOnStdinEOF(func() { srv.Close() })
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func serveGRPCCeiling() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	announce(ln)
	go exitOnStdinEOF(srv.Stop)
	return srv.Serve(ln)
}

func announce(ln net.Listener) {
	fmt.Printf("listening %s\n", ln.Addr())
}

// exitOnStdinEOF waits for the parent to close our standard input (or
// die), then stops the server and exits.
func exitOnStdinEOF(stop func()) {
	io.Copy(io.Discard, os.Stdin)
	stop()
	os.Exit(0)
}

// grpcCeilingCheck is what a load worker sends the gRPC ceiling.
func grpcCeilingCheck(cc *grpc.ClientConn) func(ctx context.Context) error {
	c := healthpb.NewHealthClient(cc)
	req := &healthpb.HealthCheckRequest{}
	return func(ctx context.Context) error {
		resp, err := c.Check(ctx, req)
		if err != nil {
			return err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("health status %v", resp.GetStatus())
		}
		return nil
	}
}
