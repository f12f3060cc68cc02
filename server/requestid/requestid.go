// Package requestid gives every request tokend serves an id: the caller's
// x-request-id when it is well formed, otherwise a new random one. The id
// travels in the context, comes back to the caller (X-Request-Id response
// header over HTTP, x-request-id response header metadata over gRPC), and
// is added to every log line written with that context (see Handler).
package requestid

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math/rand/v2"
	"sync"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/tap"
)

const (
	// Header is the HTTP header, in request and response.
	Header = "X-Request-Id"
	// MetadataKey is the gRPC metadata key, in request and response header.
	MetadataKey = "x-request-id"
	// LogKey is the slog attribute that carries the id.
	LogKey = "request_id"
	// MaxLen is the longest id accepted from a caller.
	MaxLen = 64
)

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return &idContext{Context: ctx, id: id}
}

// idContext is a context carrying a request id: one allocation, where
// context.WithValue and the string boxed into it were two, on every
// request. Value answers with the node itself (a pointer, no allocation).
type idContext struct {
	context.Context
	id  string
	buf Buf // a new id's digits (TapHandle)
}

func (c *idContext) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// FromContext returns the request id in ctx, or "".
func FromContext(ctx context.Context) string {
	switch v := ctx.Value(ctxKey{}).(type) {
	case *idContext:
		return v.id
	case string:
		return v
	case *string: // a context that answers IsKey with a pointer (no allocation)
		return *v
	}
	return ""
}

// New returns a new id: 16 random bytes as 32 lowercase hex digits.
//
// The bytes come from math/rand/v2's global generator (the runtime's
// ChaCha8, seeded from the operating system's randomness), not
// crypto/rand: an id needs to be unique, not secret, and every request
// without one makes one (crypto/rand's system call was about 1% of a
// REST mint's CPU).
func New() string {
	var b Buf
	return string(b.fill())
}

// Buf is room for a new id inside a struct allocated anyway (a request's
// state, its context), so that making the id allocates nothing of its
// own.
type Buf [32]byte

// New makes a new id (as New) in b and returns it. The string is b's
// memory: b must not be changed afterwards, and the id keeps whatever
// holds b alive.
func (b *Buf) New() string {
	return unsafe.String(&b.fill()[0], len(b))
}

// Ensure is Ensure, making a new id in b.
func (b *Buf) Ensure(id string) string {
	if Valid(id) {
		return id
	}
	return b.New()
}

// fill writes 16 random bytes into b as 32 lowercase hex digits.
func (b *Buf) fill() []byte {
	var r [16]byte
	binary.LittleEndian.PutUint64(r[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(r[8:], rand.Uint64())
	hex.Encode(b[:], r[:])
	return b[:]
}

// Valid reports whether a caller's id is acceptable: 1 to MaxLen
// characters from [A-Za-z0-9._:-], so it cannot forge log lines or bloat
// them.
func Valid(id string) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// Ensure returns id when it is Valid, else a New one.
func Ensure(id string) string {
	if Valid(id) {
		return id
	}
	return New()
}

func fromMetadata(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, MetadataKey); len(v) > 0 {
		return v[0]
	}
	return ""
}

// UnaryServerInterceptor takes the request id from the x-request-id
// metadata (or makes one), puts it in the context and sends it back in
// the response header metadata. Put it first in the chain, so that the
// logging interceptor and the handlers see the id.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(StartUnary(ctx), req)
	}
}

// StartUnary is what UnaryServerInterceptor does before it calls the
// handler, for a server that runs its interceptors as one: it takes the
// call's id from its x-request-id metadata (or makes one), sets the
// x-request-id response header and returns ctx carrying the id.
func StartUnary(ctx context.Context) context.Context {
	ctx, id := callID(ctx)
	// grpc-go copies the header it is given (metadata.Join), so one
	// literal MD per call is not needed: a pooled one is filled in and
	// given back.
	md := headerPool.Get().(metadata.MD)
	md[MetadataKey][0] = id
	grpc.SetHeader(ctx, md)
	md[MetadataKey][0] = ""
	headerPool.Put(md)
	return ctx
}

// callID returns the call's id and a ctx carrying it: the one TapHandle
// put in ctx, on a server that has it, else the caller's x-request-id from
// the metadata (or a new one).
func callID(ctx context.Context) (context.Context, string) {
	if id := FromContext(ctx); id != "" {
		return ctx, id
	}
	id := Ensure(fromMetadata(ctx))
	return NewContext(ctx, id), id
}

// TapHandle is a gRPC server's InTapHandle (grpc.InTapHandle): it gives
// each call its id, the caller's x-request-id when it is well formed,
// otherwise a new one, in the call's context, before any interceptor
// runs; StartUnary and StreamServerInterceptor then take it from there.
// It reads the header the transport decoded, where an interceptor can
// only search the metadata in the context: when the caller sent no id,
// that search compares every key without regard to case
// (metadata.ValueFromIncomingContext), about 1% of a Mint's CPU. The
// transport's keys are lowercase (HTTP/2 refuses others), so one lookup
// finds the id.
func TapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	var id string
	if v := info.Header[MetadataKey]; len(v) > 0 {
		id = v[0]
	}
	c := &idContext{Context: ctx}
	c.id = c.buf.Ensure(id)
	return c, nil
}

// headerPool holds response header metadata carrying one request id.
var headerPool = sync.Pool{New: func() any { return metadata.MD{MetadataKey: {""}} }}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, id := callID(ss.Context())
		ss.SetHeader(metadata.MD{MetadataKey: {id}})
		return handler(srv, &stream{ServerStream: ss, ctx: ctx})
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// Handler wraps a slog.Handler so that every record logged with a
// context that carries a request id gets a request_id attribute (unless
// the record already has one).
type Handler struct{ slog.Handler }

// NewHandler wraps h; wrapping a Handler again returns it unchanged.
func NewHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(Handler); ok {
		return h
	}
	return Handler{h}
}

// Handle implements slog.Handler.
func (h Handler) Handle(ctx context.Context, r slog.Record) error {
	if id := FromContext(ctx); id != "" && !hasKey(r, LogKey) {
		r = r.Clone()
		r.AddAttrs(slog.String(LogKey, id))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return Handler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h Handler) WithGroup(name string) slog.Handler {
	return Handler{h.Handler.WithGroup(name)}
}

func hasKey(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// IsKey reports whether key is the context key FromContext looks up. A
// context type of another package that carries the id among other
// per-request values (the REST handler's) answers Value(key) with the id
// (a string, or a *string, which costs no allocation) for it, instead of
// a context of its own per value.
func IsKey(key any) bool {
	_, ok := key.(ctxKey)
	return ok
}
