package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/tokend/tokend/server/requestid"
)

// Metrics is what the handler records REST requests in and serves at
// /metrics (implemented by *metrics.Metrics).
type Metrics interface {
	// Handler serves the metrics.
	Handler() http.Handler
	// ObserveHTTP records a request's latency by route pattern, method
	// and HTTP status.
	ObserveHTTP(route, method string, code int, d time.Duration)
}

// routeUnmatched is the route label of a request no route matched.
const routeUnmatched = "unmatched"

type routeKey struct{}

// reqInfo is filled in while a request is served: the gateway's route
// pattern, when the gateway matched one.
type reqInfo struct{ route string }

// recordRoute is a gateway middleware: it notes the matched gateway
// pattern (such as /v1/applications/{application_sid=*}) for observe.
func recordRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, pathParams map[string]string) {
		if info, ok := r.Context().Value(routeKey{}).(*reqInfo); ok {
			if pat, ok := runtime.HTTPPattern(r.Context()); ok {
				info.route = pat.String()
			}
		}
		next(w, r, pathParams)
	}
}

// notePattern is the middleware of the route matcher New builds: it notes
// the matched gateway pattern and serves nothing.
func notePattern(runtime.HandlerFunc) runtime.HandlerFunc {
	return func(_ http.ResponseWriter, r *http.Request, _ map[string]string) {
		if info, ok := r.Context().Value(routeKey{}).(*reqInfo); ok {
			if pat, ok := runtime.HTTPPattern(r.Context()); ok {
				info.route = pat.String()
			}
		}
	}
}

// discardWriter is the ResponseWriter of the route matcher: it writes
// nothing anywhere.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}
func (*discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (*discardWriter) WriteHeader(int)             {}

// observe gives each request an id (the caller's X-Request-Id when well
// formed, else a new one), returns it in the X-Request-Id response header,
// puts it in the context (so every log line of the request carries it),
// and when the request ends records its latency and logs it: method,
// route, status, duration, request_id; 2xx and 3xx at Debug, 4xx at Info,
// 5xx at Error, as gRPC calls are logged. mux must be the handler that
// routes (its pattern is read from the request after serving). routes, if
// set, matches a request the gateway never saw (refused before it: 401,
// 413, 415) to the gateway pattern it was for; only those requests pay
// for it.
func observe(log *slog.Logger, m Metrics, mux *http.ServeMux, routes http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestid.Ensure(r.Header.Get(requestid.Header))
		w.Header().Set(requestid.Header, id)
		info := &reqInfo{}
		ctx := context.WithValue(requestid.NewContext(r.Context(), id), routeKey{}, info)
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		mux.ServeHTTP(sw, r)
		d := time.Since(start)

		code := sw.status
		if code == 0 {
			code = http.StatusOK
		}
		route := info.route
		if route == "" {
			route = muxRoute(r.Pattern)
			if route == routeUnmatched && routes != nil {
				routes.ServeHTTP(&discardWriter{}, r)
				if info.route != "" {
					route = info.route
				}
			}
		}
		if m != nil {
			m.ObserveHTTP(route, r.Method, code, d)
		}
		// Attributes only for a line that will be written (a 2xx is at
		// Debug, off in production).
		if lvl := httpLevel(code); log.Enabled(ctx, lvl) {
			log.LogAttrs(ctx, lvl, "finished call",
				slog.String("protocol", "http"),
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.Int("status", code),
				slog.Duration("duration", d),
				slog.String(requestid.LogKey, id),
			)
		}
	})
}

// muxRoute turns a ServeMux pattern ("GET /healthz") into a route label
// ("/healthz"). The catch-all "/" hands requests to the gateway, which
// noted its own pattern if one matched: reaching here, none did.
func muxRoute(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = path
	}
	if pattern == "" || pattern == "/" {
		return routeUnmatched
	}
	return pattern
}

func httpLevel(code int) slog.Level {
	switch {
	case code >= 500:
		return slog.LevelError
	case code >= 400:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes flushes on, so streaming keeps working.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
