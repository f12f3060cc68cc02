package server

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the default "proto" codec wrapped here
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/reflect/protoreflect"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// Why this file exists
//
// grpc-go decodes a request before any interceptor or handler runs, and
// wraps every error of the codec's Unmarshal as codes.Internal ("grpc:
// failed to unmarshal the received message: ..."). A request whose bytes
// are not a valid message of the method's type is the caller's fault, not
// the server's, yet the caller sees Internal, metrics and alerts count a
// server error, and tokend logs nothing (no interceptor saw the call).
// Callers reach it easily: proto3 string fields must be valid UTF-8 and
// protobuf-go refuses a message whose identity, params or player strings
// carry invalid UTF-8; a google.protobuf.Struct (the player grant) nested
// past protobuf-go's recursion limit (10,000) is refused too; so is any
// truncated or garbled message.
//
// protobuf-go has no option to skip UTF-8 validation (and it should not be
// skipped: tokend signs these strings into JSON), and grpc-go has no hook
// to choose the code of a decode error. So:
//
//   - requestCodec, installed with grpc.ForceServerCodecV2, is the default
//     proto codec for everything but one case: when Unmarshal fails, it
//     resets the message (no handler ever sees half a message), records the
//     error in decodeFailures keyed by the message pointer, and returns nil;
//   - unaryDecodeInterceptor, the first unary interceptor, finds the
//     request's pointer in decodeFailures, deletes the entry and answers
//     InvalidArgument "request: invalid protobuf: <error>" with a
//     google.rpc.BadRequest field violation on "request", the same shape as
//     every other invalid argument tokend returns. No later interceptor and
//     no handler runs for such a request. For invalid UTF-8 the codec also
//     walks the wire bytes to name the first offending string field
//     (protobuf-go's error does not): the message then reads "request:
//     invalid protobuf: identity: string field contains invalid UTF-8" and
//     a second violation names that field.
//   - streamDecodeInterceptor, the first stream interceptor, does the same
//     for every RecvMsg of a streaming call (health Watch, reflection):
//     without it a stream handler would be given an empty message, and the
//     entry would never be deleted.
//
// A request that decodes but carries a field its schema does not declare
// (kept by protobuf-go as an unknown field, for forward compatibility) is
// refused the same way for token.v1 messages: REST refuses unknown JSON
// fields, and both paths must accept the same requests. checkUnknown walks
// the wire bytes without allocating and, only when it finds a suspect,
// walks the decoded message to name the field's number and where it sits
// ("invalid request: grants.voice: unknown field number 9 ..."); the
// interceptors answer it as above.
//
// The codec is the server's only: clients (and tokend's in-process REST
// gateway, which never encodes) are unaffected. Entries live only between
// the decode and the first interceptor of the same call, so the table stays
// empty at rest.

// decodeFailures maps a request message that failed to decode (its
// pointer, as the handler received it) to the decode error.
var decodeFailures sync.Map

// pendingDecodeFailures counts decodeFailures' entries, so that the
// interceptors skip the map (a hash and a lookup on every call) while it
// is empty, as it is unless a bad request is on its way. A failure is
// recorded in the goroutine that then runs the call's interceptors, so
// the count a call reads includes its own entry.
var pendingDecodeFailures atomic.Int64

// recordDecodeFailure records f for the request message v.
func recordDecodeFailure(v any, f decodeFailure) {
	if _, loaded := decodeFailures.Swap(v, f); !loaded {
		pendingDecodeFailures.Add(1)
	}
}

// requestCodec is the server's codec: the default proto codec, but a
// decode failure is left for the interceptors to answer (see above).
type requestCodec struct {
	base encoding.CodecV2
}

// newRequestCodec wraps the registered "proto" codec.
func newRequestCodec() encoding.CodecV2 {
	base := encoding.GetCodecV2("proto")
	if base == nil {
		panic("grpc proto codec not registered")
	}
	return requestCodec{base: base}
}

// Name is "proto": the codec replaces the default one for
// application/grpc and application/grpc+proto.
func (c requestCodec) Name() string { return "proto" }

// Marshal encodes as the default codec does, but into a pooled buffer
// whatever the message's size: the default codec pools only messages over
// mem.BufferPoolingThreshold (1 KiB) and allocates a new slice for smaller
// ones. A Mint's answer (about 700 bytes) is one of those, on every call,
// and on this kind of machine an allocation costs about in proportion to
// its size. A Mint's usual answer is encoded by hand (mintanswer.go).
// The buffer comes from answerBuffers, which does not clear it
// (see there); grpc-go gives it back once the message is written.
func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	if a, ok := v.(*tokenv1.MintResponse); ok && a != nil {
		if size, ok := mintAnswerSize(a); ok && size > 0 && size <= maxAnswerBuffer {
			buf := answerBuffers.Get(size)
			*buf = appendMintAnswer((*buf)[:0], a)
			return mem.BufferSlice{mem.NewBuffer(buf, answerBuffers)}, nil
		}
	}
	m := messageOf(v)
	if m == nil {
		return c.base.Marshal(v)
	}
	size := proto.Size(m)
	if size == 0 {
		return c.base.Marshal(v)
	}
	var pool mem.BufferPool = answerBuffers
	if size > maxAnswerBuffer {
		pool = mem.DefaultBufferPool()
	}
	buf := pool.Get(size)
	// UseCachedSize: the size was just computed (as the default codec does).
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = out
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// maxAnswerBuffer is the largest answer answerBuffers holds a buffer for
// (16 KiB); larger ones (a token with many grants) use grpc-go's pool.
const maxAnswerBuffer = 1 << dirtyMaxShift

// answerBuffers is a mem.BufferPool for Marshal that does not clear the
// buffers it hands out. grpc-go's default pool clears every buffer over
// its whole capacity when it is taken (4 KiB for a Mint's answer, about
// 0.2 µs a call under load), so that a reader never sees old bytes; but
// Marshal appends to buf[:0] and grpc-go writes only what it appended, so
// the old bytes past it are never read. One sync.Pool per power of two
// from 2 KiB to maxAnswerBuffer: grpc-go pools (gives back on Free) only
// a buffer whose capacity is over mem.BufferPoolingThreshold (1 KiB).
var answerBuffers = &dirtyPool{}

type dirtyPool struct {
	tiers [dirtyTiers]sync.Pool
}

const (
	dirtyMinShift = 11 // 2 KiB: over mem.BufferPoolingThreshold
	dirtyMaxShift = 14
	dirtyTiers    = dirtyMaxShift - dirtyMinShift + 1
)

// tier is the index of the smallest tier whose buffers hold size bytes
// (size <= maxAnswerBuffer).
func (p *dirtyPool) tier(size int) int {
	return max(bits.Len(uint(size-1)), dirtyMinShift) - dirtyMinShift
}

// Get returns a buffer of length size whose bytes are not cleared.
func (p *dirtyPool) Get(size int) *[]byte {
	t := p.tier(size)
	if b, ok := p.tiers[t].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<(t+dirtyMinShift))
	return &b
}

// Put takes back a buffer of Get's; one of another capacity is dropped.
func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<dirtyMinShift || c > maxAnswerBuffer || c&(c-1) != 0 {
		return
	}
	p.tiers[p.tier(c)].Put(b)
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return checkUnknown(v, data)
	}
	m := messageOf(v)
	if m == nil {
		return err // not a message: nothing to record against; grpc-go answers Internal
	}
	f := decodeFailure{err: err}
	var utf8Err interface{ InvalidUTF8() bool }
	if errors.As(err, &utf8Err) && utf8Err.InvalidUTF8() {
		f.field = invalidUTF8Field(m.ProtoReflect().Descriptor(), data.Materialize(), "", 0)
	}
	proto.Reset(m)
	recordDecodeFailure(v, f)
	return nil
}

// strictPackage is the package whose requests must carry no unknown
// field: tokend's own API. Health and reflection requests stay lenient.
const strictPackage = "token.v1."

// checkUnknown records a decode failure for a tokend request that carries
// a field its schema does not have, at any depth. protobuf-go keeps such
// fields as unknown bytes (proto3 forward compatibility) and has no option
// to refuse them; REST refuses unknown JSON fields, and both paths must
// accept the same requests: a client that sends a field tokend does not
// know (a misspelt or future grant option) would otherwise believe it was
// honoured. It always returns nil (see Unmarshal).
func checkUnknown(v any, data mem.BufferSlice) error {
	m := messageOf(v)
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	md := r.Descriptor()
	if !strings.HasPrefix(string(md.FullName()), strictPackage) {
		return nil
	}
	// A walk of the wire bytes, without allocation, says whether there
	// can be an unknown field; only then does the reflective walk find
	// and name it (it allocates).
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		b = data.Materialize()
	}
	if !mayHaveUnknown(md, b, 0) {
		return nil
	}
	path, num, found := unknownField(r, 0)
	if !found {
		return nil
	}
	proto.Reset(m)
	recordDecodeFailure(v, decodeFailure{
		err:     fmt.Errorf("unknown field number %d", num),
		unknown: true,
		field:   path,
	})
	return nil
}

// mayHaveUnknown reports whether the wire-format message b of type md
// holds a field md does not declare, or a declared field with a wire type
// that does not fit it (protobuf-go keeps both as unknown fields), at any
// depth. It allocates nothing; false positives (a malformed nested
// message, a walk too deep) only cost the reflective walk.
func mayHaveUnknown(md protoreflect.MessageDescriptor, b []byte, depth int) bool {
	if depth > maxWalkDepth {
		return true
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return true
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd == nil || !wireTypeFits(fd, typ) {
			return true
		}
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return true
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return true
		}
		b = b[n:]
		if fd.Message() != nil && mayHaveUnknown(fd.Message(), v, depth+1) {
			return true // a map entry is a message too: key 1, value 2
		}
	}
	return false
}

// wireTypeFits reports whether protobuf-go decodes wire type typ into fd
// (rather than keeping it as an unknown field).
func wireTypeFits(fd protoreflect.FieldDescriptor, typ protowire.Type) bool {
	switch fd.Kind() {
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return typ == protowire.BytesType
	case protoreflect.GroupKind:
		return typ == protowire.StartGroupType
	}
	if typ == protowire.BytesType && fd.IsList() {
		return true // packed
	}
	switch fd.Kind() {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return typ == protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return typ == protowire.Fixed64Type
	}
	return typ == protowire.VarintType
}

// unknownField returns the path (proto names, "" for the request itself)
// and number of the first unknown field in m or a message it holds.
func unknownField(m protoreflect.Message, depth int) (path string, num protowire.Number, found bool) {
	segs, num, found := unknownIn(m, depth)
	if !found {
		return "", 0, false
	}
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		if b.Len() > 0 && !strings.HasPrefix(segs[i], "[") {
			b.WriteByte('.')
		}
		b.WriteString(segs[i])
	}
	return b.String(), num, true
}

// unknownIn finds the first unknown field under m; segs is its path,
// innermost first (built only when one is found: a request without
// unknown fields costs no allocation but for maps of messages).
func unknownIn(m protoreflect.Message, depth int) (segs []string, num protowire.Number, found bool) {
	if u := m.GetUnknown(); len(u) > 0 {
		n, _, l := protowire.ConsumeTag(u)
		if l < 0 {
			n = 0
		}
		return nil, n, true
	}
	if depth > maxWalkDepth {
		return nil, 0, false
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Message() == nil || !m.Has(fd) {
			continue
		}
		name := string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			m.Get(fd).Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
				if segs, num, found = unknownIn(v.Message(), depth+1); found {
					segs = append(segs, "["+clipKey([]byte(k.String()))+"]", name)
				}
				return !found
			})
		case fd.IsList():
			l := m.Get(fd).List()
			for j := 0; j < l.Len() && !found; j++ {
				if segs, num, found = unknownIn(l.Get(j).Message(), depth+1); found {
					segs = append(segs, "["+strconv.Itoa(j)+"]", name)
				}
			}
		default:
			if segs, num, found = unknownIn(m.Get(fd).Message(), depth+1); found {
				segs = append(segs, name)
			}
		}
		if found {
			return segs, num, true
		}
	}
	return nil, 0, false
}

func messageOf(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}

// decodeError returns, and forgets, the decode error recorded for req.
func decodeError(req any) error {
	if req == nil {
		return nil
	}
	if pendingDecodeFailures.Load() == 0 {
		return nil
	}
	v, ok := decodeFailures.LoadAndDelete(req)
	if !ok {
		return nil
	}
	pendingDecodeFailures.Add(-1)
	f, _ := v.(decodeFailure)
	if f.unknown {
		return unknownFieldError(f)
	}
	desc := "invalid protobuf: " + f.err.Error()
	violations := []*errdetails.BadRequest_FieldViolation{{Field: "request", Description: desc}}
	if f.field != "" {
		desc = "invalid protobuf: " + f.field + ": " + f.err.Error()
		violations[0].Description = desc
		violations = append(violations, &errdetails.BadRequest_FieldViolation{Field: f.field, Description: "must be valid UTF-8"})
	}
	st := status.New(codes.InvalidArgument, "request: "+desc)
	if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: violations}); derr == nil {
		st = d
	}
	return st.Err()
}

// decodeFailure is what the codec records of a request it could not
// decode: the error and, for invalid UTF-8, the path of the first string
// field that holds it (protobuf-go's error does not name the field).
type decodeFailure struct {
	err   error
	field string
	// unknown: the request decoded but carries an unknown field (err
	// names its number, field the message that holds it).
	unknown bool
}

// unknownFieldError is the InvalidArgument answer to a request with an
// unknown field: "invalid request: grants.voice: unknown field number 99
// (...)", the shape REST uses for an unknown JSON field ("request" when
// the unknown field is at the top level).
func unknownFieldError(f decodeFailure) error {
	field := f.field
	if field == "" {
		field = "request"
	}
	desc := f.err.Error() + " (not in this server's schema: misspelt, or newer than this server)"
	st := status.New(codes.InvalidArgument, "invalid request: "+field+": "+desc)
	if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}}}); derr == nil {
		st = d
	}
	return st.Err()
}

// maxWalkDepth bounds invalidUTF8Field's recursion: the field is named
// for ordinary requests; a pathological nesting is reported without it.
const maxWalkDepth = 64

// invalidUTF8Field returns the path of the first string field of the
// wire-format message b (of type md) that is not valid UTF-8, in the
// proto names tokend's errors use ("grants.voice.outgoing.params[k]"), or
// "" if there is none or b cannot be walked.
func invalidUTF8Field(md protoreflect.MessageDescriptor, b []byte, prefix string, depth int) string {
	if depth > maxWalkDepth {
		return ""
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return ""
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		path := prefix + string(fd.Name())
		switch {
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return path
			}
		case fd.IsMap():
			if p := invalidUTF8MapEntry(fd, v, path, depth); p != "" {
				return p
			}
		case fd.Message() != nil:
			if p := invalidUTF8Field(fd.Message(), v, path+".", depth+1); p != "" {
				return p
			}
		}
	}
	return ""
}

// invalidUTF8MapEntry checks one map entry of the map field fd at path:
// an invalid key is reported as the map, an invalid value as map[key].
func invalidUTF8MapEntry(fd protoreflect.FieldDescriptor, entry []byte, path string, depth int) string {
	var key, val []byte
	for len(entry) > 0 {
		num, typ, n := protowire.ConsumeTag(entry)
		if n < 0 {
			return ""
		}
		entry = entry[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, entry); n < 0 {
				return ""
			}
			entry = entry[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(entry)
		if n < 0 {
			return ""
		}
		entry = entry[n:]
		switch num {
		case 1:
			key = v
		case 2:
			val = v
		}
	}
	if fd.MapKey().Kind() == protoreflect.StringKind && !utf8.Valid(key) {
		return path
	}
	at := path + "[" + clipKey(key) + "]"
	switch vd := fd.MapValue(); {
	case vd.Kind() == protoreflect.StringKind:
		if !utf8.Valid(val) {
			return at
		}
	case vd.Message() != nil:
		return invalidUTF8Field(vd.Message(), val, at+".", depth+1)
	}
	return ""
}

// unaryDecodeInterceptor answers InvalidArgument for a request the codec
// could not decode. It must be the first unary interceptor.
func unaryDecodeInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := decodeError(req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// streamDecodeInterceptor fails a streaming call's RecvMsg with
// InvalidArgument for a message the codec could not decode. It must be the
// first stream interceptor.
func streamDecodeInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, decodeCheckedStream{ss})
	}
}

type decodeCheckedStream struct{ grpc.ServerStream }

func (s decodeCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return decodeError(m)
}

// maxKeyInPath bounds a map key quoted in a field path: the error stays
// small whatever the request holds.
const maxKeyInPath = 64

// clipKey returns a valid UTF-8 map key, cut to maxKeyInPath bytes.
func clipKey(key []byte) string {
	if len(key) <= maxKeyInPath {
		return string(key)
	}
	cut := maxKeyInPath
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return string(key[:cut]) + "…"
}
