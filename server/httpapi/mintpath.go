package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
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
	// grpc.SetHeader (the retry-after of a rate-limit refusal).
	var stream runtime.ServerTransportStream
	ctx := grpc.NewContextWithServerTransportStream(r.Context(), &stream)
	inbound, outbound := runtime.MarshalerForRequest(mux, r)
	req := &tokenv1.MintRequest{}
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
	if err != nil || len(stream.Header()) > 0 || len(stream.Trailer()) > 0 {
		// The gateway's way, with the server metadata the generated
		// handler would pass.
		ctx = runtime.NewServerMetadataContext(ctx, runtime.ServerMetadata{HeaderMD: stream.Header(), TrailerMD: stream.Trailer()})
		if err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		runtime.ForwardResponseMessage(ctx, mux, outbound, w, r, resp, mux.GetForwardResponseOptions()...)
		return
	}
	w.Header()["Content-Type"] = []string{outbound.ContentType(resp)}
	for _, opt := range mux.GetForwardResponseOptions() {
		if err := opt(ctx, w, resp); err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
	}
	buf, err := outbound.Marshal(resp)
	if err != nil {
		runtime.HTTPError(ctx, mux, outbound, w, r, err)
		return
	}
	w.Write(buf)
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
