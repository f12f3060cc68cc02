package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/tokenapi"
)

// mintRoute is the label (and gateway pattern) of GET and POST /token.
const mintRoute = "/token"

// mintFilter is the generated handler's query filter for GET /token (no
// path parameters: nothing filtered).
var mintFilter = &utilities.DoubleArray{Encoding: map[string]int{}, Base: []int(nil), Check: []int(nil)}

// mintPath is a gateway middleware that serves GET and POST /token, the
// hot route, on a leaner path than the generated handler; every other
// route, and a /token request the lean path does not cover, goes on to the
// generated handler (next). The route is still declared in the proto,
// matched by the gateway's mux, and passes its other middlewares
// (recordRoute) and everything in front of the gateway (observe, CORS,
// authentication, limitBody) as before.
//
// What the generated handler does and this one leaves out, because
// nothing on the mint path uses it:
//   - annotating the context with the request's headers as incoming gRPC
//     metadata (the gateway's AnnotateIncomingContext: a metadata map, a
//     lower-cased copy of each passed header, the RPC method name). The
//     REST caller is known from the authentication middleware's context
//     (auth.FromContext), the request id from observe's; the token
//     service reads neither from metadata. A request carrying
//     Grpc-Timeout (which the annotation turns into a deadline, or an
//     error when malformed) takes the generated handler;
//   - a cancellable context of its own: the request's context is
//     cancelled by net/http when the call ends or the client goes away;
//   - ForwardResponseMessage's metadata and trailer handling when the
//     service set no header or trailer metadata and the caller asked for
//     no trailers (TE): the answer is one Content-Type and one write of
//     the marshaled response. Anything else (a rate-limit refusal's
//     retry-after, an error) goes through the gateway's own
//     ForwardResponseMessage and HTTPError with the same server metadata
//     the generated handler would give them, so the errors, their HTTP
//     statuses and headers are the same.
//
// Decoding is the generated handler's, with one shortcut: a POST body is
// unmarshaled straight into the MintRequest by protojson with the
// marshaler's options (the gateway decodes it into a json.RawMessage
// first, then does the same); when that fails, the body is decoded again
// the gateway's way, so that the error, which the error handler turns into
// a field violation, is word for word the gateway's.
func mintPath(mux func() *runtime.ServeMux, svc tokenv1.TokenServiceServer, unmarshal protojson.UnmarshalOptions) runtime.Middleware {
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, pathParams map[string]string) {
			if !isMintRoute(r) || !leanOK(r) {
				next(w, r, pathParams)
				return
			}
			serveMint(mux(), svc, unmarshal, w, r)
		}
	}
}

// isMintRoute reports whether the gateway routed r to GET or POST /token.
func isMintRoute(r *http.Request) bool {
	if r.URL.Path != mintRoute || (r.Method != http.MethodGet && r.Method != http.MethodPost) {
		return false
	}
	// The path alone names the route today; the pattern the gateway
	// matched (which recordRoute noted) makes sure of it.
	if info, ok := r.Context().Value(routeKey{}).(*reqInfo); ok && info.route != "" {
		return info.route == mintRoute
	}
	pat, ok := runtime.HTTPPattern(r.Context())
	return ok && pat.String() == mintRoute
}

// leanOK reports whether the lean path does all the generated handler
// would for r: no Grpc-Timeout (a deadline, or a malformed value's
// error), no TE (trailers). Header keys are looked up as net/http stores
// them (canonical), without canonicalising.
func leanOK(r *http.Request) bool {
	_, timeout := r.Header["Grpc-Timeout"]
	_, te := r.Header["Te"]
	return !timeout && !te
}

func serveMint(mux *runtime.ServeMux, svc tokenv1.TokenServiceServer, unmarshal protojson.UnmarshalOptions, w http.ResponseWriter, r *http.Request) {
	// The transport stream collects what the service sets with
	// grpc.SetHeader (the retry-after of a rate-limit refusal). It is the
	// context's value itself, and holds the request: one allocation for
	// the three.
	var ctx *mintStream
	if a, _ := r.Context().Value(arenaKey{}).(*mintArena); a != nil {
		// observe's arena for this request (cleared when it was put
		// back): no allocation, and the service builds its answer in the
		// arena's scratch.
		ctx = &a.ms
		ctx.Context, ctx.scratch = r.Context(), &a.sc
	} else {
		ctx = &mintStream{Context: r.Context()}
	}
	inbound, outbound := marshalersFor(mux, r)
	req := &ctx.req
	var err error
	if r.Method == http.MethodPost {
		err = decodeMintBody(inbound, unmarshal, r.Body, req)
	} else if r.URL.RawQuery != "" {
		// As local_request_TokenService_Mint_0 does. Without a query
		// there is nothing to parse.
		if err = r.ParseForm(); err != nil {
			err = status.Errorf(codes.InvalidArgument, "%v", err)
		} else if err = runtime.PopulateQueryParameters(req, r.Form, mintFilter); err != nil {
			err = status.Errorf(codes.InvalidArgument, "%v", err)
		}
	}
	var resp *tokenv1.MintResponse
	if err == nil {
		resp, err = svc.Mint(ctx, req)
	}
	if err != nil || len(ctx.header) > 0 || len(ctx.trailer) > 0 {
		// The gateway's way, with the server metadata the generated
		// handler would pass.
		mctx := runtime.NewServerMetadataContext(ctx, runtime.ServerMetadata{HeaderMD: ctx.header, TrailerMD: ctx.trailer})
		if err != nil {
			runtime.HTTPError(mctx, mux, outbound, w, r, err)
			return
		}
		runtime.ForwardResponseMessage(mctx, mux, outbound, w, r, resp, mux.GetForwardResponseOptions()...)
		return
	}
	if ct := outbound.ContentType(resp); ct == jsonContentType[0] {
		w.Header()["Content-Type"] = jsonContentType // shared, never modified
	} else {
		w.Header()["Content-Type"] = []string{ct}
	}
	for _, opt := range mux.GetForwardResponseOptions() {
		if err := opt(ctx, w, resp); err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
	}
	if m, ok := outbound.(jsonMarshaler); ok {
		// The hot answer, encoded into a pooled buffer.
		bp := answerPool.Get().(*[]byte)
		if b, ok := m.appendMint((*bp)[:0], resp); ok {
			w.Write(b)
			*bp = b
			answerPool.Put(bp)
			return
		}
		answerPool.Put(bp)
	}
	buf, err := outbound.Marshal(resp)
	if err != nil {
		runtime.HTTPError(ctx, mux, outbound, w, r, err)
		return
	}
	w.Write(buf)
}

// jsonContentType is the Content-Type header value of a JSON answer.
var jsonContentType = []string{"application/json"}

// answerPool holds the buffers /token answers are encoded into (about
// 900 bytes each): net/http copies the answer into its own buffer on
// Write, so the buffer is free again when Write returns.
var answerPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// mintStream is the lean path's context and grpc.ServerTransportStream in
// one: it collects the header and trailer metadata the service sets, as
// the gateway's runtime.ServerTransportStream does, and answers
// grpc.ServerTransportStreamFromContext itself.
type mintStream struct {
	context.Context
	header, trailer metadata.MD
	req             tokenv1.MintRequest // the request served (never copied)
	// scratch is lent to the service for the answer (tokenapi.Scratch):
	// the arena's, or nil.
	scratch *tokenapi.Scratch
}

// MintScratch lends the service the arena's scratch (tokenapi.ScratchLender).
func (s *mintStream) MintScratch() *tokenapi.Scratch { return s.scratch }

// Value answers the transport stream's key (grpc's
// streamKey, through grpc.ServerTransportStreamFromContext) with the
// stream; grpc.NewContextWithServerTransportStream would wrap the context
// in a value context of its own for that.
func (s *mintStream) Value(key any) any {
	if key == transportStreamKey {
		return grpc.ServerTransportStream(s)
	}
	return s.Context.Value(key)
}

func (*mintStream) Method() string { return tokenv1.TokenService_Mint_FullMethodName }

func (s *mintStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *mintStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *mintStream) SetTrailer(md metadata.MD) error {
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

// decodeMintBody decodes a POST /token body into req as
// local_request_TokenService_Mint_1 does (an empty body is an empty
// request), unmarshaling straight into req when the body is valid.
func decodeMintBody(inbound runtime.Marshaler, unmarshal protojson.UnmarshalOptions, body io.Reader, req *tokenv1.MintRequest) error {
	var b []byte
	if rb, ok := body.(*readBody); ok && rb.Len() == len(rb.body) {
		b = rb.body // read by limitBody, not yet by anyone else
	} else {
		var err error
		if b, err = io.ReadAll(body); err != nil {
			return status.Errorf(codes.InvalidArgument, "%v", err)
		}
	}
	if len(bytes.Trim(b, " \t\r\n")) == 0 {
		return nil // JSON whitespace only: the gateway's decoder says io.EOF, not an error
	}
	if fastMintRequest(b, req) || unmarshal.Unmarshal(b, req) == nil {
		return nil
	}
	// The gateway's decoder, for its error.
	req.Reset()
	if err := inbound.NewDecoder(bytes.NewReader(b)).Decode(req); err != nil && !errors.Is(err, io.EOF) {
		return status.Errorf(codes.InvalidArgument, "%v", err)
	}
	return nil
}

// transportStreamKey is grpc's (unexported) context key of the server
// transport stream, caught once by asking grpc to look it up in a context
// that notes the key it is asked for.
var transportStreamKey = func() any {
	var c keyCatcher
	grpc.ServerTransportStreamFromContext(&c)
	return c.key
}()

type keyCatcher struct {
	context.Context
	key any
}

func (c *keyCatcher) Value(key any) any {
	c.key = key
	return nil
}

// commonMarshalers caches runtime.MarshalerForRequest's answer for the two
// common /token requests, neither with an Accept header: one without a
// Content-Type (GET) and one with Content-Type: application/json (POST).
// The gateway parses the Content-Type (mime.ParseMediaType, an
// allocation) and looks both headers up in its registry on every call;
// the answer depends on nothing else.
var commonMarshalers sync.Map // *runtime.ServeMux -> *[2][2]runtime.Marshaler

// marshalersFor is runtime.MarshalerForRequest(mux, r), from the cache for
// the common requests.
func marshalersFor(mux *runtime.ServeMux, r *http.Request) (inbound, outbound runtime.Marshaler) {
	if _, ok := r.Header["Accept"]; ok {
		return runtime.MarshalerForRequest(mux, r)
	}
	i := 0
	switch ct := r.Header["Content-Type"]; {
	case len(ct) == 0:
	case len(ct) == 1 && ct[0] == "application/json":
		i = 1
	default:
		return runtime.MarshalerForRequest(mux, r)
	}
	c, ok := commonMarshalers.Load(mux)
	if !ok {
		var m [2][2]runtime.Marshaler
		for j, h := range []http.Header{{}, {"Content-Type": {"application/json"}}} {
			m[j][0], m[j][1] = runtime.MarshalerForRequest(mux, &http.Request{Header: h})
		}
		c, _ = commonMarshalers.LoadOrStore(mux, &m)
	}
	m := c.(*[2][2]runtime.Marshaler)
	return m[i][0], m[i][1]
}
