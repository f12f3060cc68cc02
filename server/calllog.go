package server

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callLogger logs each finished gRPC call at the level grpcLevel gives its
// code, with the method, code, duration, peer and error; the request id
// comes from the logger's handler (requestid.NewHandler).
//
// It is written by hand rather than using go-grpc-middleware's logging
// interceptor because it is on the mint path: that interceptor builds its
// fields for every call even when the level is disabled (about 12 µs of a
// 90 µs call in the load profile), while this one builds nothing unless
// the line will be written (OK calls log at debug).
func callLogger(l *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(l, ctx, info.FullMethod, start, err)
		return resp, err
	}
}

// logCall writes the finished-call line of a gRPC call of fullMethod
// started at start that ended with err, if its level is enabled.
func logCall(l *slog.Logger, ctx context.Context, fullMethod string, start time.Time, err error) {
	code := status.Code(err)
	lvl := grpcLevel(code)
	if !l.Enabled(ctx, lvl) {
		return
	}
	service, method := splitMethod(fullMethod)
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String("protocol", "grpc"),
		slog.String("grpc.service", service),
		slog.String("grpc.method", method),
		slog.String("grpc.code", code.String()),
		slog.Duration("duration", time.Since(start)))
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, slog.String("peer.address", p.Addr.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("grpc.error", status.Convert(err).Message()))
	}
	l.LogAttrs(ctx, lvl, "finished call", attrs...)
}

func grpcLevel(c codes.Code) slog.Level {
	switch c {
	case codes.OK:
		return slog.LevelDebug
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unavailable:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// splitMethod splits "/pkg.Service/Method" into its service and method.
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "", full
}
