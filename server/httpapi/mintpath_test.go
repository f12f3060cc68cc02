package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// echoToken is a token service whose Mint answers with the request it got
// (as JSON in the token field), so that two decodings can be compared, and
// notes whether the call carried gateway metadata (the generated handler
// annotates the context, the lean path does not). Identity "limited" is
// refused as a rate limit is, with a retry-after header; "broken" fails
// with Internal.
type echoToken struct {
	tokenv1.UnimplementedTokenServiceServer
	mu          sync.Mutex
	withMD, all int
}

func (s *echoToken) Mint(ctx context.Context, req *tokenv1.MintRequest) (*tokenv1.MintResponse, error) {
	s.mu.Lock()
	s.all++
	if _, ok := metadata.FromIncomingContext(ctx); ok {
		s.withMD++
	}
	s.mu.Unlock()
	switch req.GetIdentity() {
	case "limited":
		grpc.SetHeader(ctx, metadata.Pairs("retry-after", "7"))
		return nil, status.Error(codes.ResourceExhausted, "rate limit of the identity reached: retry after 7 s")
	case "broken":
		return nil, status.Error(codes.Internal, "secret detail")
	}
	b, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	return &tokenv1.MintResponse{
		Token: string(b), Identity: req.GetIdentity(),
		IssuedAt: &timestamppb.Timestamp{Seconds: 1700000000}, ExpiresAt: &timestamppb.Timestamp{Seconds: 1700003600},
	}, nil
}

func (s *echoToken) counts() (withMD, all int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.withMD, s.all
}

func leanTestHandler(t *testing.T, svc tokenv1.TokenServiceServer) http.Handler {
	t.Helper()
	h, err := New(context.Background(), Config{
		Token: svc, Admin: tokenv1.UnimplementedAdminServiceServer{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// TestMintLeanPathMatchesGateway sends each request twice: as is, which
// takes the lean /token path, and with a TE header (not "trailers"), which
// makes the lean path hand the request to the generated gateway handler
// and changes nothing else. Status, body and headers must be the same,
// and the first must not have gone through the gateway's metadata
// annotation while the second did.
func TestMintLeanPathMatchesGateway(t *testing.T) {
	cases := []struct {
		name, method, target, contentType, body string
		wantStatus                              int
	}{
		{name: "get_bare", method: "GET", target: "/token", wantStatus: 200},
		{name: "get_query", method: "GET", target: "/token?identity=alice&ttl_seconds=600&grants.voice.incoming.allow=true", wantStatus: 200},
		{name: "get_query_map", method: "GET", target: "/token?grants.voice.outgoing.params[to]=bob", wantStatus: 200},
		{name: "get_unknown_param", method: "GET", target: "/token?identiy=alice", wantStatus: 400},
		{name: "get_bad_number", method: "GET", target: "/token?ttl_seconds=soon", wantStatus: 400},
		{name: "get_twice", method: "GET", target: "/token?identity=a&identity=b", wantStatus: 400},
		{name: "get_bad_escape", method: "GET", target: "/token?identity=%zz", wantStatus: 400},
		{name: "get_semicolon", method: "GET", target: "/token?identity=a;b", wantStatus: 400},
		{name: "get_rate_limited", method: "GET", target: "/token?identity=limited", wantStatus: 429},
		{name: "get_internal", method: "GET", target: "/token?identity=broken", wantStatus: 500},
		{name: "post_empty", method: "POST", target: "/token", contentType: "application/json", wantStatus: 200},
		{name: "post_whitespace", method: "POST", target: "/token", contentType: "application/json", body: " \n\t ", wantStatus: 200},
		{name: "post_nbsp", method: "POST", target: "/token", contentType: "application/json", body: "\u00a0", wantStatus: 400},
		{name: "post_object", method: "POST", target: "/token", contentType: "application/json", body: `{"identity":"alice","ttl_seconds":600}`, wantStatus: 200},
		{name: "post_json_names", method: "POST", target: "/token", contentType: "application/json", body: `{"ttlSeconds":"600","applicationSid":"AP00000000000000000000000000000000"}`, wantStatus: 200},
		{name: "post_grants", method: "POST", target: "/token", body: `{"grants":{"voice":{"outgoing":{"params":{"to":"bob"}}},"video":{"room":"r"}}}`, wantStatus: 200},
		{name: "post_query_ignored", method: "POST", target: "/token?identity=zed", contentType: "application/json", body: `{}`, wantStatus: 200},
		{name: "post_unknown_field", method: "POST", target: "/token", contentType: "application/json", body: `{"identiy":"alice"}`, wantStatus: 400},
		{name: "post_duplicate_field", method: "POST", target: "/token", contentType: "application/json", body: `{"identity":"a","identity":"b"}`, wantStatus: 400},
		{name: "post_bad_value", method: "POST", target: "/token", contentType: "application/json", body: `{"ttl_seconds":"soon"}`, wantStatus: 400},
		{name: "post_malformed", method: "POST", target: "/token", contentType: "application/json", body: `{"identity":`, wantStatus: 400},
		{name: "post_not_object", method: "POST", target: "/token", contentType: "application/json", body: `[1,2]`, wantStatus: 400},
		{name: "post_null", method: "POST", target: "/token", contentType: "application/json", body: `null`, wantStatus: 400},
		{name: "post_trailing", method: "POST", target: "/token", contentType: "application/json", body: `{} {}`, wantStatus: 400},
		{name: "post_rate_limited", method: "POST", target: "/token", contentType: "application/json", body: `{"identity":"limited"}`, wantStatus: 429},
		{name: "post_internal", method: "POST", target: "/token", contentType: "application/json", body: `{"identity":"broken"}`, wantStatus: 500},
		{name: "put_not_allowed", method: "PUT", target: "/token", contentType: "application/json", body: `{}`, wantStatus: 405},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := &echoToken{}
			h := leanTestHandler(t, svc)
			serve := func(te bool) *httptest.ResponseRecorder {
				r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
				if tc.contentType != "" {
					r.Header.Set("Content-Type", tc.contentType)
				}
				if te {
					r.Header.Set("TE", "deflate")
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			lean := serve(false)
			leanMD, leanAll := svc.counts()
			gateway := serve(true)
			gwMD, gwAll := svc.counts()

			if lean.Code != tc.wantStatus {
				t.Errorf("%s %s: status %d, want %d (body %s)", tc.method, tc.target, lean.Code, tc.wantStatus, lean.Body)
			}
			if lean.Code != gateway.Code {
				t.Errorf("%s %s: lean path status %d, gateway %d", tc.method, tc.target, lean.Code, gateway.Code)
			}
			if lean.Body.String() != gateway.Body.String() {
				t.Errorf("%s %s: bodies differ:\nlean:    %s\ngateway: %s", tc.method, tc.target, lean.Body, gateway.Body)
			}
			for _, k := range headerKeys(lean.Header(), gateway.Header()) {
				if k == "X-Request-Id" {
					continue
				}
				if l, g := lean.Header().Values(k), gateway.Header().Values(k); !slices.Equal(l, g) {
					t.Errorf("%s %s: header %s: lean %q, gateway %q", tc.method, tc.target, k, l, g)
				}
			}
			if tc.wantStatus == 429 && lean.Header().Get("Retry-After") != "7" {
				t.Errorf("%s %s: Retry-After = %q, want 7", tc.method, tc.target, lean.Header().Get("Retry-After"))
			}
			if strings.Contains(lean.Body.String(), "secret detail") {
				t.Errorf("%s %s: internal detail in the answer: %s", tc.method, tc.target, lean.Body)
			}
			// Which path served: the lean one never annotates metadata.
			if leanAll == 1 && leanMD != 0 {
				t.Errorf("%s %s: the plain request went through the gateway's annotation, not the lean path", tc.method, tc.target)
			}
			if gwAll-leanAll == 1 && gwMD-leanMD != 1 {
				t.Errorf("%s %s: the TE request did not go through the generated handler", tc.method, tc.target)
			}
		})
	}
}

// TestMintLeanPathTaken holds that plain GET and POST /token reach the
// service without gateway metadata (the lean path), and that a request
// with Grpc-Timeout or TE: trailers takes the generated handler.
func TestMintLeanPathTaken(t *testing.T) {
	cases := []struct {
		name, method string
		header       map[string]string
		wantMD       bool
	}{
		{name: "get", method: "GET"},
		{name: "post", method: "POST"},
		{name: "get_grpc_timeout", method: "GET", header: map[string]string{"Grpc-Timeout": "5S"}, wantMD: true},
		{name: "post_te_trailers", method: "POST", header: map[string]string{"TE": "trailers"}, wantMD: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := &echoToken{}
			h := leanTestHandler(t, svc)
			body := ""
			if tc.method == "POST" {
				body = `{"identity":"alice"}`
			}
			r := httptest.NewRequest(tc.method, "/token", strings.NewReader(body))
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("%s /token: status %d: %s", tc.method, w.Code, w.Body)
			}
			withMD, all := svc.counts()
			if all != 1 || (withMD == 1) != tc.wantMD {
				t.Errorf("%s /token %v: %d of %d calls with gateway metadata, want metadata %v", tc.method, tc.header, withMD, all, tc.wantMD)
			}
		})
	}
}

func headerKeys(hs ...http.Header) []string {
	var keys []string
	for _, h := range hs {
		for k := range h {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// TestMintStreamIsTheTransportStream: grpc.SetHeader on the lean path's
// context reaches the lean path's stream (what a rate-limit refusal's
// retry-after needs), and other values still come from the parent.
func TestMintStreamIsTheTransportStream(t *testing.T) {
	if transportStreamKey == nil {
		t.Fatal("grpc's transport stream key was not caught")
	}
	type k struct{}
	s := &mintStream{Context: context.WithValue(context.Background(), k{}, "v")}
	if got := grpc.ServerTransportStreamFromContext(s); got != grpc.ServerTransportStream(s) {
		t.Fatalf("ServerTransportStreamFromContext = %v, want the mintStream", got)
	}
	if err := grpc.SetHeader(s, metadata.Pairs("retry-after", "3")); err != nil {
		t.Fatal(err)
	}
	if err := grpc.SetTrailer(s, metadata.Pairs("x", "y")); err != nil {
		t.Fatal(err)
	}
	if got := s.header.Get("retry-after"); len(got) != 1 || got[0] != "3" {
		t.Errorf("header = %v, want retry-after 3", s.header)
	}
	if got := s.trailer.Get("x"); len(got) != 1 {
		t.Errorf("trailer = %v, want x", s.trailer)
	}
	if s.Value(k{}) != "v" {
		t.Error("a parent value is lost")
	}
}

// TestMarshalersForMatchesTheGateway: the cached marshalers of the common
// requests are the gateway's, and requests with other headers still ask
// the gateway, with a registry that has more than the wildcard.
func TestMarshalersForMatchesTheGateway(t *testing.T) {
	other := &runtime.JSONPb{}
	for _, mux := range []*runtime.ServeMux{
		runtime.NewServeMux(),
		runtime.NewServeMux(runtime.WithMarshalerOption("application/json", other)),
	} {
		for _, h := range []http.Header{
			{},
			{"Content-Type": {"application/json"}},
			{"Content-Type": {"application/json; charset=utf-8"}},
			{"Accept": {"application/json"}},
			{"Content-Type": {"text/plain"}},
		} {
			r := &http.Request{Header: h}
			in, out := marshalersFor(mux, r)
			win, wout := runtime.MarshalerForRequest(mux, r)
			if in != win || out != wout {
				t.Errorf("marshalersFor(%v) = %T %T, want the gateway's %T %T", h, in, out, win, wout)
			}
		}
	}
}
