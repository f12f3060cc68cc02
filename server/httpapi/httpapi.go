// Package httpapi serves tokend's REST API: grpc-gateway maps the gRPC
// services to JSON over HTTP, calling them in process (no second hop), with
// strict decoding (unknown or misspelt fields are errors that name them),
// proto field names both ways, bounded request bodies, and errors that are
// google.rpc.Status JSON with the right HTTP status.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tokend/tokend"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/tokenapi"
)

// DefaultMaxBodyBytes bounds a request body unless configured otherwise.
const DefaultMaxBodyBytes = 64 << 10

// Config configures the handler.
type Config struct {
	// Token is the token service; required.
	Token tokenv1.TokenServiceServer
	// Admin is the admin service; required.
	Admin tokenv1.AdminServiceServer
	// MaxBodyBytes bounds request bodies; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Readyz reports readiness for /readyz: whether tokend can mint, and
	// details (such as whether the store takes writes); nil means ready.
	Readyz func(context.Context) (ready bool, detail map[string]string)
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
	// CORSOrigins are the origins (scheme://host[:port]) whose pages may
	// call the API from a browser; empty: no CORS headers at all.
	CORSOrigins []string
	// Authenticate, if set, wraps the API handler: it authenticates each
	// request and puts the caller in its context (auth.HTTPMiddleware).
	Authenticate func(http.Handler) http.Handler
	// Page, if set, serves the browser page at / and its bundle under
	// /assets/.
	Page http.Handler
	// Metrics, if set, records REST latency and is served at GET /metrics.
	Metrics Metrics
	// LoopbackOnly answers 421 Misdirected Request, on every route, to
	// requests whose Host header is not localhost, 127.0.0.1 or [::1]
	// (with or without a port): development mode sets it, so that a web
	// page cannot reach tokend through DNS rebinding.
	LoopbackOnly bool
}

// New returns the REST handler.
func New(ctx context.Context, cfg Config) (http.Handler, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	unmarshal := protojson.UnmarshalOptions{DiscardUnknown: false}
	var gw *runtime.ServeMux
	gw = runtime.NewServeMux(
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		// No request header becomes gRPC metadata but what the gateway
		// always passes (Authorization, for the admin API's bearer token,
		// and X-Forwarded-Host/For): the REST handlers learn the caller
		// from the authentication middleware's context, not from metadata,
		// and turning every header into metadata was a few percent of a
		// REST mint's CPU.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonMarshaler{&runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: unmarshal,
		}}),
		runtime.SetQueryParameterParser(strictQueryParser{}),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithDisableHTTPMethodOverride(),
		// recordRoute first: mintPath reads the route it notes.
		runtime.WithMiddlewares(recordRoute, mintPath(func() *runtime.ServeMux { return gw }, cfg.Token, unmarshal)),
	)
	// The admin routes first: the gateway tries a method's patterns
	// newest first, each miss costing a match and an errors.As, so the
	// token routes (the hot /token among them) registered last are tried
	// first. No admin pattern overlaps a token one (/token, /v1/tokens
	// against /v1/applications, /v1/credentials, /v1/keyring), so the
	// order decides nothing else.
	if err := tokenv1.RegisterAdminServiceHandlerServer(ctx, gw, cfg.Admin); err != nil {
		return nil, fmt.Errorf("register admin gateway: %w", err)
	}
	if err := tokenv1.RegisterTokenServiceHandlerServer(ctx, gw, cfg.Token); err != nil {
		return nil, fmt.Errorf("register token gateway: %w", err)
	}
	// routes matches a request against the gateway's patterns without
	// serving it, to label the requests refused before the gateway (401,
	// 413, 415) with the route they were for.
	routes := runtime.NewServeMux(
		runtime.WithRoutingErrorHandler(func(context.Context, *runtime.ServeMux, runtime.Marshaler, http.ResponseWriter, *http.Request, int) {}),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(), // it would read a form body
		runtime.WithMiddlewares(notePattern),
	)
	if err := tokenv1.RegisterTokenServiceHandlerServer(ctx, routes, cfg.Token); err != nil {
		return nil, fmt.Errorf("register token routes: %w", err)
	}
	if err := tokenv1.RegisterAdminServiceHandlerServer(ctx, routes, cfg.Admin); err != nil {
		return nil, fmt.Errorf("register admin routes: %w", err)
	}
	mux := http.NewServeMux()
	// /healthz: the process is alive and serving HTTP.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(tokend.OpenAPI)
	})
	// /readyz: ready to mint (keys in memory); the detail says whether
	// the store is reachable for writes.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, detail := true, map[string]string{}
		if cfg.Readyz != nil {
			ready, detail = cfg.Readyz(r.Context())
		}
		body := map[string]any{"status": "ready"}
		for k, v := range detail {
			body[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			body["status"] = "not ready"
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(body)
	})
	if cfg.Page != nil {
		mux.Handle("GET /{$}", cfg.Page)
		mux.Handle("GET /assets/", cfg.Page)
	}
	var api http.Handler = limitBody(cfg.MaxBodyBytes, gw)
	if cfg.Authenticate != nil {
		api = cfg.Authenticate(api)
	}
	// The admin API never answers cross-origin: no page, whatever its
	// origin, may drive it from a browser (see noCORS).
	cors, admin := CORS(cfg.CORSOrigins, api), noCORS(api)
	root := noStore(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsAdminPath(r.URL.Path) {
			admin.ServeHTTP(w, r)
			return
		}
		cors.ServeHTTP(w, r)
	}))
	mux.Handle("/", root)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics.Handler())
	}
	// Every request gets a request id, a log line and a latency sample.
	h := observe(cfg.Logger, cfg.Metrics, mux, routes, root)
	if cfg.LoopbackOnly {
		h = loopbackOnly(cfg.Logger, h)
	}
	return h, nil
}

// Pre-built header values of noStore: setting them allocates nothing per
// request (the keys are already canonical, so no Header.Set).
var (
	noStoreValue = []string{"no-store"}
	noCacheValue = []string{"no-cache"}
)

const (
	hdrCacheControl = "Cache-Control"
	hdrPragma       = "Pragma"
)

// noStore marks every answer of the API (tokens, credentials, and the
// errors and admin answers beside them) as not to be stored by any cache:
// a GET /token answer kept by a shared cache would hand one user's token
// to another. Pragma: no-cache is for HTTP/1.0 caches.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h[hdrCacheControl] = noStoreValue
		h[hdrPragma] = noCacheValue
		next.ServeHTTP(w, r)
	})
}

// limitBody refuses bodies over max bytes (413) and bodies that are not
// JSON (415) before the gateway reads them.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > max {
			writeStatus(w, http.StatusRequestEntityTooLarge, bodyViolation(fmt.Sprintf("must be at most %d bytes, got %d", max, r.ContentLength)))
			return
		}
		// The common "application/json" needs no parsing (ParseMediaType
		// allocates its parameter map).
		if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				writeStatus(w, http.StatusUnsupportedMediaType, bodyViolation("Content-Type must be application/json"))
				return
			}
		}
		// Read the (bounded) body once to refuse anything after the first
		// JSON value: the gateway's decoder would read one value and
		// silently drop the rest ({"identity":"a"} {"identity":"b"}).
		body, err := readAll(w, r, max)
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeStatus(w, http.StatusRequestEntityTooLarge, bodyViolation(fmt.Sprintf("must be at most %d bytes", max)))
				return
			}
			writeStatus(w, http.StatusBadRequest, bodyViolation("could not be read"))
			return
		}
		if trailingData(body) {
			writeStatus(w, http.StatusBadRequest, bodyViolation("must be a single JSON value: there is data after it"))
			return
		}
		rb := &readBody{body: body}
		rb.Reset(body)
		r.Body = rb
		next.ServeHTTP(w, r)
	})
}

// readBody is a request body limitBody has read: the handler after it
// reads it as any body, and the lean /token path (mintPath) takes the
// bytes without copying them again.
type readBody struct {
	bytes.Reader
	body []byte
}

// readAll reads r's body, at most max bytes (a longer one is a
// *http.MaxBytesError, as http.MaxBytesReader gives). A body of a known
// length is read into a buffer of that length at once; one of unknown
// length (chunked) grows as io.ReadAll does.
func readAll(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= max {
		// net/http's body reader ends at Content-Length: one byte more
		// of room sees the end without a second buffer.
		buf := make([]byte, n+1)
		got, err := io.ReadFull(r.Body, buf)
		switch {
		case err == io.ErrUnexpectedEOF || err == io.EOF:
			if int64(got) == n {
				// All of it, and net/http's body saw its end: closed
				// now, it spares net/http its own look for unread bytes
				// once the handler is done (an io.CopyN into io.Discard,
				// about 1% of a POST /token).
				r.Body.Close()
			}
			return buf[:got], nil
		case err != nil:
			return nil, err
		}
		// Never for a body net/http bounds by its Content-Length.
		return nil, &http.MaxBytesError{Limit: max}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err == nil {
		r.Body.Close() // read to its end (see above)
	}
	return b, err
}

func (*readBody) Close() error { return nil }

// trailingData reports whether body holds more than one JSON value (or
// bytes after the first one). Malformed JSON is left to the decoder, which
// names the problem.
func trailingData(body []byte) bool {
	// One valid JSON value and nothing after it, the common case, is
	// checked without allocating: a flat object of plain values (a
	// POST /token body) by a quick scan, anything else by json.Valid
	// (json.Decoder copies).
	if flatObject(body) || json.Valid(body) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		return false
	}
	_, err := dec.Token()
	return err != io.EOF
}

func bodyViolation(desc string) *status.Status {
	return violation("body", desc)
}

func violation(field, desc string) *status.Status {
	st := status.New(codes.InvalidArgument, "invalid request: "+field+": "+desc)
	d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}}})
	if err != nil {
		return st
	}
	return d
}

var errorMarshaler = &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}}

func writeStatus(w http.ResponseWriter, httpStatus int, st *status.Status) {
	b, err := errorMarshaler.Marshal(st.Proto())
	if err != nil {
		b = []byte(`{"code":13,"message":"cannot encode the error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	w.Write(b)
}

var (
	// Messages of protojson decoding errors, as the gateway passes them on.
	reUnknownField   = regexp.MustCompile(`unknown field "([^"]+)"`)
	reDuplicateField = regexp.MustCompile(`duplicate field "([^"]+)"`)
	reInvalidValue   = regexp.MustCompile(`invalid value for [a-z0-9]+ field ([A-Za-z0-9_]+): (.*)$`)
	reQueryParam     = regexp.MustCompile(`^query parameter "([^"]*)": (.*)$`)
	// protojson writes a space or, at random per build, a no-break
	// space after "proto:" (so that nobody relies on its wording).
	rePosition = regexp.MustCompile(`^proto:[ \x{00a0}](?:syntax error )?\(line \d+:\d+\):[ \x{00a0}]`)
	reLineCol  = regexp.MustCompile(`^proto:[ \x{00a0}](?:syntax error )?\(line (\d+):(\d+)\):[ \x{00a0}](?:invalid google\.protobuf\.|unexpected token )`)
)

// errorHandler writes errors as google.rpc.Status JSON. Decoding errors
// the gateway raises (InvalidArgument without details) are turned into
// field violations naming the field.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	if st.Code() == codes.InvalidArgument && len(st.Details()) == 0 {
		msg := st.Message()
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe) || strings.Contains(msg, "http: request body too large"):
			writeStatus(w, http.StatusRequestEntityTooLarge, bodyViolation("is too large"))
			return
		case strings.Contains(msg, "invalid URL escape") || strings.Contains(msg, "invalid semicolon separator"):
			st = violation("query", "malformed query string: "+msg)
		case reQueryParam.MatchString(msg):
			sm := reQueryParam.FindStringSubmatch(msg)
			st = violation(sm[1], sm[2])
		case reUnknownField.MatchString(msg):
			field := reUnknownField.FindStringSubmatch(msg)[1]
			st = violation(field, "unknown field"+fieldHint(field))
		case reDuplicateField.MatchString(msg):
			st = violation(reDuplicateField.FindStringSubmatch(msg)[1], "duplicate field")
		case reInvalidValue.MatchString(msg):
			sm := reInvalidValue.FindStringSubmatch(msg)
			st = violation(snakeCase(sm[1]), "invalid value: "+sm[2])
		default:
			detail := rePosition.ReplaceAllString(msg, "")
			if field := fieldAtError(r, msg); field != "" {
				// A value protojson refused at a position: name the
				// field whose value is there, and its rule.
				st = violation(field, "invalid value: "+detail+wellKnownRule(detail))
			} else {
				st = bodyViolation("malformed JSON: " + detail)
			}
		}
	}
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		// Never pass internal detail to a caller.
		st = status.New(st.Code(), "internal error")
	}
	if st.Code() == codes.FailedPrecondition && hasReason(st, tokenapi.ReasonNoDefaultApplication) {
		// The server's configuration is at fault, not the request: 503,
		// as /readyz answers meanwhile, rather than the gateway's 400.
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: http.StatusServiceUnavailable, Err: st.Err()})
		return
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

// hasReason reports whether st carries a google.rpc.ErrorInfo with reason.
func hasReason(st *status.Status, reason string) bool {
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetReason() == reason {
			return true
		}
	}
	return false
}

func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var st *status.Status
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		st = status.Newf(codes.Unimplemented, "method %s is not allowed on %s", r.Method, r.URL.Path)
	case http.StatusNotFound:
		st = status.Newf(codes.NotFound, "no such path: %s", r.URL.Path)
	default:
		st = status.New(codes.InvalidArgument, http.StatusText(httpStatus))
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: st.Err()})
}

// strictQueryParser is the gateway's query parser, but a parameter that
// names no field is an error instead of being dropped, and every error
// names its parameter.
type strictQueryParser struct{}

func (strictQueryParser) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	seen := make(map[string]string, len(values))
	for key, vals := range values {
		if key == CacheBustParam {
			continue
		}
		path, err := fieldPath(msg.ProtoReflect().Descriptor(), key)
		if err != nil {
			return fmt.Errorf("query parameter %q: %v%s", key, err, fieldHint(key))
		}
		if other, ok := seen[path]; ok {
			return fmt.Errorf("query parameter %q: sets the same field as %q", key, other)
		}
		seen[path] = key
		if err := (&runtime.DefaultQueryParser{}).Parse(msg, url.Values{key: vals}, filter); err != nil {
			return fmt.Errorf("query parameter %q: %v", key, err)
		}
	}
	return nil
}

// CacheBustParam is the query parameter a browser library adds to defeat
// caches (jQuery's cache: false adds _=<milliseconds>): it is accepted and
// ignored on every route, any number of times.
const CacheBustParam = "_"

// fieldHints name the field a caller probably meant by a name tokend does
// not know: Twilio's own option names.
var fieldHints = map[string]string{
	"ttl": "ttl_seconds",
}

// fieldHint returns "; did you mean X?" for a known misnaming, else "".
func fieldHint(field string) string {
	if want, ok := fieldHints[field]; ok {
		return "; did you mean " + want + "? (the token's lifetime in seconds, as Twilio's ttl option)"
	}
	return ""
}

// fieldPath resolves a query key such as "grants.voice.outgoing.params[k]"
// against the message descriptor and returns its canonical path.
func fieldPath(md protoreflect.MessageDescriptor, key string) (string, error) {
	name, mapKey := key, ""
	if i := strings.IndexByte(key, '['); i >= 0 && strings.HasSuffix(key, "]") {
		name, mapKey = key[:i], key[i:]
	}
	parts := strings.Split(name, ".")
	canon := make([]string, 0, len(parts))
	var fd protoreflect.FieldDescriptor
	for _, p := range parts {
		if md == nil {
			return "", errors.New("unknown field")
		}
		fd = md.Fields().ByName(protoreflect.Name(p))
		if fd == nil {
			fd = md.Fields().ByJSONName(p)
		}
		if fd == nil {
			return "", errors.New("unknown field")
		}
		canon = append(canon, string(fd.Name()))
		md = nil
		if fd.Message() != nil && !fd.IsMap() {
			md = fd.Message()
		}
	}
	if fd.IsMap() != (mapKey != "") {
		return "", errors.New("a map field is set as name[key]=value, and only a map field")
	}
	return strings.Join(canon, ".") + mapKey, nil
}

// snakeCase turns a JSON field name as protojson reports it (ttlSeconds)
// into the proto name that tokend's API uses (ttl_seconds).
func snakeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// outgoingHeader passes gRPC response headers to HTTP: retry-after as
// Retry-After (with a 429 from ResourceExhausted), the others as the
// gateway does by default (Grpc-Metadata-*).
func outgoingHeader(key string) (string, bool) {
	if key == "retry-after" {
		return "Retry-After", true
	}
	return runtime.MetadataHeaderPrefix + key, true
}
