package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/requestid"
	"github.com/tokend/tokend/server/tokenapi"
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
			info.route = routeOf(r, pathParams)
		}
		next(w, r, pathParams)
	}
}

// routeOf returns the pattern the gateway matched for r as text (its
// String builds it anew each time). A pattern without path parameters
// matched a path of its own literal text, so its text is kept by method
// and path: the same method and path always match the same such pattern,
// and there are as many of them as such patterns (routeCacheMax bounds
// it all the same).
func routeOf(r *http.Request, pathParams map[string]string) string {
	pat, ok := runtime.HTTPPattern(r.Context())
	if !ok {
		return ""
	}
	if len(pathParams) > 0 {
		return pat.String()
	}
	k := routeCacheKey{r.Method, r.URL.Path}
	if v, ok := routeCache.Load(k); ok {
		return v.(string)
	}
	route := pat.String()
	if routeCacheLen.Add(1) <= routeCacheMax {
		routeCache.Store(k, route)
	}
	return route
}

type routeCacheKey struct{ method, path string }

var (
	routeCache    sync.Map // routeCacheKey -> string
	routeCacheLen atomic.Int64
)

const routeCacheMax = 256

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

// hdrDate is the Date header's (canonical) key.
const hdrDate = "Date"

// date is the Date header of the answers started in one second.
type date struct {
	sec int64
	v   []string
}

var lastDate atomic.Pointer[date]

// dateOf returns the Date header of an answer to a request started at t:
// the one made for t's second, shared by all of its answers (read only),
// or a new one when the second has changed. net/http would format the
// time on every answer that has no Date (about 1% of a REST mint's CPU).
func dateOf(t time.Time) []string {
	sec := t.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return d.v
	}
	d := &date{sec: sec, v: []string{t.UTC().Format(http.TimeFormat)}}
	lastDate.Store(d)
	return d.v
}

// observe gives each request an id (the caller's X-Request-Id when well
// formed, else a new one), returns it in the X-Request-Id response header,
// puts it in the context (so every log line of the request carries it),
// sets the Date header (dateOf),
// and when the request ends records its latency and logs it: method,
// route, status, duration, request_id; 2xx and 3xx at Debug, 4xx at Info,
// 5xx at Error, as gRPC calls are logged. mux must be the handler that
// routes (its pattern is read from the request after serving). routes, if
// set, matches a request the gateway never saw (refused before it: 401,
// 413, 415) to the gateway pattern it was for; only those requests pay
// for it.
func observe(log *slog.Logger, m Metrics, mux *http.ServeMux, routes http.Handler, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// One allocation holds everything observe keeps for the request:
		// the context carrying its id and route note, the status writer.
		// A mint's is part of a pooled mintArena instead.
		var st *reqState
		var arena *mintArena
		if isMintPath(r) {
			arena = mintArenas.Get().(*mintArena)
			st = &arena.st
			st.arena = arena
			// The id is not in the arena's memory: net/http writes the
			// answer's header (the id) after the handler returns, when the
			// arena may be another request's.
			st.id = requestid.Ensure(r.Header.Get(requestid.Header))
		} else {
			st = &reqState{}
			st.id = st.idBuf.Ensure(r.Header.Get(requestid.Header))
		}
		st.Context = r.Context()
		st.sw.ResponseWriter = w
		// The key is canonical: no Header.Set (it would canonicalise).
		st.hdr[0] = st.id
		h := w.Header()
		h[requestid.Header] = st.hdr[:]
		h[hdrDate] = dateOf(start)
		r = r.WithContext(st)
		if isMintPath(r) {
			// GET and POST /token, the hot route, go straight to the
			// handler ServeMux would route them to (its catch-all "/"):
			// the path is clean, so ServeMux would neither redirect nor
			// rewrite it.
			api.ServeHTTP(&st.sw, r)
		} else {
			mux.ServeHTTP(&st.sw, r)
		}
		d := time.Since(start)

		info := &st.info
		code := st.sw.status
		if code == 0 {
			code = http.StatusOK
		}
		route := info.route
		if route == "" {
			route = muxRoute(r.Pattern)
			if route == routeUnmatched && routes != nil {
				routes.ServeHTTP(&discardWriter{}, preflighted(r))
				if info.route == "" && code == http.StatusMethodNotAllowed {
					// A known path with a method it does not take: the
					// route of the path, whichever method it takes.
					for _, m := range routeMethods {
						c := *r // shallow: the matcher only reads the method and the path
						c.Method = m
						if routes.ServeHTTP(&discardWriter{}, &c); info.route != "" {
							break
						}
					}
				}
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
		if lvl := httpLevel(code); log.Enabled(st, lvl) {
			log.LogAttrs(st, lvl, "finished call",
				slog.String("protocol", "http"),
				slog.String("method", r.Method),
				slog.String("route", route),
				slog.Int("status", code),
				slog.Duration("duration", d),
				slog.String(requestid.LogKey, st.id),
			)
		}
		if arena != nil && st.sw.status != 0 {
			// The request is over: its handlers ran in this goroutine and
			// have returned. What net/http still reads of it (the answer
			// is written to the connection when the handler returns) is
			// not in the arena: the body was copied by Write, the header
			// was copied when it was written (WriteHeader clones it: the
			// status says it ran) and its values are not the arena's. An
			// answer whose header was not written yet, and a request that
			// panicked (it does not get here), leave their arena to the
			// collector.
			arena.clear()
			mintArenas.Put(arena)
		}
	})
}

// mintArena is the memory of one GET or POST /token request, taken from
// mintArenas when observe starts the request and put back when it ends:
// observe's state, the lean path's context and request (serveMint), and
// the tokenapi.Scratch the service builds its answer and the token in. A
// mint allocates none of them (about 1.3 KB a request the collector would
// otherwise have to reclaim). Everything in it is used only while the
// request is served, in its own goroutine: the answer is written before
// the handler returns, and what outlives the request (the audit record,
// the log line) is a copy.
type mintArena struct {
	st reqState
	ms mintStream
	sc tokenapi.Scratch
}

var mintArenas = sync.Pool{New: func() any { return new(mintArena) }}

// clear drops what the arena's request pointed to (its context, writer,
// request fields), so that a pooled arena holds nothing of it; the
// scratch is reset by the service when it is lent again, and keeps its
// token buffer.
func (a *mintArena) clear() {
	a.st = reqState{}
	a.ms = mintStream{}
}

// arenaKey is the context key under which observe's state answers the
// request's mintArena (nil for a request that has none).
type arenaKey struct{}

// reqState is what observe keeps for a request, in one allocation: it is
// the request's context (answering the request id's and the route note's
// keys, the parent's for everything else) and its status writer.
type reqState struct {
	context.Context
	id    string
	idBuf requestid.Buf // a new id's digits
	hdr   [1]string     // the X-Request-Id header's value slice
	info  reqInfo
	sw    statusWriter
	auth  auth.HTTPSlot // the caller, filled by the authentication middleware
	arena *mintArena    // the arena the state is part of, if it is
}

// Value answers the request id (requestid.FromContext), the route note
// (routeKey) and the caller (auth.ClientAddr, auth.FromContext) from the
// state, anything else from the parent context.
func (s *reqState) Value(key any) any {
	switch key.(type) {
	case routeKey:
		return &s.info
	case arenaKey:
		return s.arena
	}
	if requestid.IsKey(key) {
		return &s.id
	}
	if v, ok := s.auth.Value(key); ok {
		return v
	}
	return s.Context.Value(key)
}

// AuthSlot is where the authentication middleware puts the caller
// (auth.HTTPSlot), instead of a context and a copy of the request of its
// own.
func (s *reqState) AuthSlot() *auth.HTTPSlot { return &s.auth }

// isMintPath reports whether r is a GET or POST of exactly /token, the
// path ServeMux hands to its catch-all "/" unchanged.
func isMintPath(r *http.Request) bool {
	return r.URL.Path == mintRoute && (r.Method == http.MethodGet || r.Method == http.MethodPost)
}

// routeMethods are the methods the gateway's routes take.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// preflighted is r as the route matcher should see it: a CORS preflight
// (OPTIONS with Access-Control-Request-Method) is for the route of the
// method it asks about, which no gateway pattern lists for OPTIONS.
func preflighted(r *http.Request) *http.Request {
	if r.Method != http.MethodOptions {
		return r
	}
	switch m := r.Header.Get("Access-Control-Request-Method"); m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		c := *r // shallow: the matcher only reads the method and the path
		c.Method = m
		return &c
	}
	return r
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
