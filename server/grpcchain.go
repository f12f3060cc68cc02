package server

import (
	"context"
	"time"

	"google.golang.org/grpc"

	"github.com/tokend/tokend/server/requestid"
)

// unaryInterceptor is the server's unary interceptor chain run as one
// interceptor. It does, in this order, what these interceptors would as
// a chain (grpc.ChainUnaryInterceptor), with the same effects:
//
//  1. unaryDecodeInterceptor: a request the codec could not decode, or
//     that carries an unknown field, is answered InvalidArgument; nothing
//     below runs for it (see grpccodec.go);
//  2. requestid.UnaryServerInterceptor: the call's id (the caller's
//     x-request-id or a new one) goes in the context and the response
//     header, so that everything below and every log line has it;
//  3. the gRPC metrics (metrics.GRPCMetrics.UnaryServerInterceptor):
//     started, received, sent, handled by code, handling time; they are
//     outside the panic recovery, so that a recovered panic is counted
//     as Internal;
//  4. panic recovery (as go-grpc-middleware's recovery interceptor with
//     s.recovered as its handler): a panic below becomes Internal
//     "internal error", logged at error level;
//  5. callLogger: the finished-call line, at the level of the call's code;
//  6. the authentication interceptor (auth.Authenticator.UnaryServerInterceptor):
//     the peer's address in the context, then, unless the method is
//     public, the caller's Principal, or the refusal.
//
// Why one: a Mint's CPU is measured against a bare gRPC server's health
// check (make load), and a chain of six costs a closure (an allocation)
// and a call per layer on every call, and a clock reading in two of them.
// The parts stay in their packages, whose own interceptors (used by the
// stream chain and their tests) call the same functions; the chain of
// those interceptors (with unaryDecodeInterceptor and callLogger, which
// only the tests use now) is the reference TestUnaryInterceptorMatchesChain
// holds this one to.
func (s *Server) unaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := decodeError(req); err != nil {
			return nil, err
		}
		ctx = requestid.StartUnary(ctx)
		start := time.Now()
		call := s.metrics.GRPC.StartUnary(info.FullMethod, start)
		resp, err := s.recoveredCall(ctx, req, info, handler, start)
		call.Done(err)
		return resp, err
	}
}

// recoveredCall is steps 4 to 6 of unaryInterceptor, and the handler.
func (s *Server) recoveredCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, start time.Time) (_ any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = s.recovered(ctx, r)
		}
	}()
	resp, err := s.authenticatedCall(ctx, req, info, handler)
	logCall(s.log, ctx, info.FullMethod, start, err)
	return resp, err
}

// authenticatedCall is step 6 of unaryInterceptor, and the handler.
func (s *Server) authenticatedCall(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := s.auth.AuthenticateUnary(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}
