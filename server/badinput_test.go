package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/storage"
)

const (
	testAccount = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testKey     = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	testSecret  = "cccccccccccccccccccccccccccccccc"
	testApp     = "APdddddddddddddddddddddddddddddddd"
)

func seededHarness(t *testing.T) *harness {
	return newHarness(t, server.Config{Seed: server.Seed{
		AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp,
	}})
}

func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	return b.String()
}

// badInputs are requests tokend must refuse, each with the field its error
// must name. restOnly cases cannot be expressed as a MintRequest (the JSON
// itself is bad); query cases go to GET /token.
var badInputs = []struct {
	name        string
	body        string // JSON for POST /token and, unless restOnly, the gRPC request
	query       string // for GET /token instead of a body
	contentType string // default application/json
	restOnly    bool
	field       string
	httpStatus  int // default 400
}{
	{name: "identity_empty", body: `{"identity":""}`, field: "identity"},
	{name: "identity_space_with_voice", body: `{"identity":"alice smith"}`, field: "identity"},
	{name: "identity_at_sign_with_voice", body: `{"identity":"a@b.c","grants":{"voice":{}}}`, field: "identity"},
	{name: "identity_too_long_for_voice", body: `{"identity":"` + strings.Repeat("a", 122) + `"}`, field: "identity"},
	{name: "identity_too_long_for_video", body: `{"identity":"` + strings.Repeat("a", 129) + `","grants":{"video":{}}}`, field: "identity"},
	{name: "identity_too_long", body: `{"identity":"` + strings.Repeat("a", 257) + `","grants":{"chat":{}}}`, field: "identity"},
	{name: "identity_control_character", body: `{"identity":"a\u0007b","grants":{"chat":{}}}`, field: "identity"},
	{name: "identity_newline", body: `{"identity":"a\nb","grants":{}}`, field: "identity"},
	{name: "ttl_zero", body: `{"ttl_seconds":0}`, field: "ttl_seconds"},
	{name: "ttl_negative", body: `{"ttl_seconds":-5}`, field: "ttl_seconds"},
	{name: "ttl_over_24h", body: `{"ttl_seconds":86401}`, field: "ttl_seconds"},
	{name: "ttl_int32_max", body: `{"ttl_seconds":2147483647}`, field: "ttl_seconds"},
	{name: "application_sid_short", body: `{"application_sid":"APxyz"}`, field: "application_sid"},
	{name: "application_sid_wrong_prefix", body: `{"application_sid":"ACdddddddddddddddddddddddddddddddd"}`, field: "application_sid"},
	{name: "application_sid_not_hex", body: `{"application_sid":"APzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}`, field: "application_sid"},
	{name: "region_upper_case", body: `{"region":"IE1"}`, field: "region"},
	{name: "region_word", body: `{"region":"ireland"}`, field: "region"},
	{name: "region_injection", body: `{"region":"ie1\",\"x\":\"y"}`, field: "region"},
	{name: "params_without_application", body: `{"grants":{"voice":{"outgoing":{"params":{"a":"b"}}}}}`, field: "grants.voice.outgoing.params"},
	{name: "params_too_many", body: `{"grants":{"voice":{"outgoing":{"application_sid":"` + testApp + `","params":{` + manyParams(33) + `}}}}}`, field: "grants.voice.outgoing.params"},
	{name: "params_value_too_long", body: `{"grants":{"voice":{"outgoing":{"application_sid":"` + testApp + `","params":{"k":"` + strings.Repeat("v", 1025) + `"}}}}}`, field: "grants.voice.outgoing.params[k]"},
	{name: "outgoing_application_malformed", body: `{"grants":{"voice":{"outgoing":{"application_sid":"AP123"}}}}`, field: "grants.voice.outgoing.application_sid"},
	{name: "voice_push_credential_malformed", body: `{"grants":{"voice":{"push_credential_sid":"XX123"}}}`, field: "grants.voice.push_credential_sid"},
	{name: "voice_endpoint_control", body: `{"grants":{"voice":{"endpoint_id":"a\tb"}}}`, field: "grants.voice.endpoint_id"},
	{name: "video_room_too_long", body: `{"grants":{"video":{"room":"` + strings.Repeat("r", 129) + `"}}}`, field: "grants.video.room"},
	{name: "chat_service_wrong_prefix", body: `{"grants":{"chat":{"service_sid":"ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}}`, field: "grants.chat.service_sid"},
	{name: "chat_role_malformed", body: `{"grants":{"chat":{"deployment_role_sid":"RL"}}}`, field: "grants.chat.deployment_role_sid"},
	{name: "sync_service_malformed", body: `{"grants":{"data_sync":{"service_sid":"IS-not-a-sid"}}}`, field: "grants.data_sync.service_sid"},
	{name: "taskrouter_workspace_malformed", body: `{"grants":{"task_router":{"workspace_sid":"WS1"}}}`, field: "grants.task_router.workspace_sid"},
	{name: "taskrouter_worker_malformed", body: `{"grants":{"task_router":{"worker_sid":"WK1"}}}`, field: "grants.task_router.worker_sid"},
	{name: "taskrouter_role_too_long", body: `{"grants":{"task_router":{"role":"` + strings.Repeat("w", 65) + `"}}}`, field: "grants.task_router.role"},
	{name: "player_too_deep", body: `{"grants":{"player":` + nested(20) + `}}`, field: "grants.player"},
	{name: "player_too_large", body: `{"grants":{"player":{"x":"` + strings.Repeat("p", 5000) + `"}}}`, field: "grants.player"},

	{name: "unknown_field", body: `{"identiy":"alice"}`, restOnly: true, field: "identiy"},
	{name: "unknown_nested_field", body: `{"grants":{"voice":{"incomin":{"allow":true}}}}`, restOnly: true, field: "incomin"},
	{name: "duplicate_field", body: `{"identity":"a","identity":"b"}`, restOnly: true, field: "identity"},
	{name: "ttl_overflow", body: `{"ttl_seconds":99999999999}`, restOnly: true, field: "ttl_seconds"},
	{name: "ttl_not_a_number", body: `{"ttl_seconds":"soon"}`, restOnly: true, field: "ttl_seconds"},
	{name: "truncated_json", body: `{"identity":`, restOnly: true, field: "body"},
	{name: "json_array", body: `[1,2]`, restOnly: true, field: "body"},
	{name: "wrong_content_type", body: `identity=alice`, contentType: "application/x-www-form-urlencoded", restOnly: true, field: "body", httpStatus: http.StatusUnsupportedMediaType},
	{name: "body_too_large", body: `{"identity":"` + strings.Repeat("a", 70<<10) + `"}`, restOnly: true, field: "body", httpStatus: http.StatusRequestEntityTooLarge},
	{name: "query_unknown_parameter", query: "identiy=alice", restOnly: true, field: "identiy"},
	{name: "query_ttl_not_a_number", query: "ttl_seconds=soon", restOnly: true, field: "ttl_seconds"},
	{name: "query_ttl_zero", query: "ttl_seconds=0", restOnly: true, field: "ttl_seconds"},
	{name: "query_identity_twice", query: "identity=a&identity=b", restOnly: true, field: "identity"},
	{name: "query_region_bad", query: "region=xx", restOnly: true, field: "region"},
}

// TestBadInput runs every bad input through gRPC and REST: each gets
// InvalidArgument naming the field (google.rpc.BadRequest) and a 4xx JSON
// body naming it, never a 5xx.
func TestBadInput(t *testing.T) {
	h := seededHarness(t)
	if n := len(badInputs); n < 25 {
		t.Fatalf("only %d bad inputs, want at least 25", n)
	}
	for _, tc := range badInputs {
		if !tc.restOnly {
			t.Run(tc.name+"/grpc", func(t *testing.T) {
				req := &tokenv1.MintRequest{}
				if err := protojson.Unmarshal([]byte(tc.body), req); err != nil {
					t.Fatalf("case body does not decode: %v", err)
				}
				_, err := h.token.Mint(context.Background(), req)
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument {
					t.Fatalf("Mint(%s) = %v, want InvalidArgument", tc.name, err)
				}
				if !violates(st, tc.field) {
					t.Errorf("Mint(%s) = %v, want a field violation of %q", tc.name, st.Message(), tc.field)
				}
				if !strings.Contains(st.Message(), tc.field) {
					t.Errorf("Mint(%s) message %q does not name %q", tc.name, st.Message(), tc.field)
				}
			})
		}
		t.Run(tc.name+"/rest", func(t *testing.T) {
			var code int
			var body map[string]any
			if tc.query != "" {
				code, body = h.do(t, "GET", "/token?"+tc.query, "", "")
			} else {
				ct := tc.contentType
				if ct == "" {
					ct = "application/json"
				}
				code, body = h.do(t, "POST", "/token", ct, tc.body)
			}
			want := tc.httpStatus
			if want == 0 {
				want = http.StatusBadRequest
			}
			if code != want {
				t.Errorf("status = %d, want %d (body %v)", code, want, body)
			}
			if body["code"] != float64(codes.InvalidArgument) {
				t.Errorf("body code = %v, want %d", body["code"], codes.InvalidArgument)
			}
			if !restViolates(body, tc.field) {
				t.Errorf("body %v has no field violation of %q", body, tc.field)
			}
		})
	}
}

func violates(st *status.Status, field string) bool {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field && v.GetDescription() != "" {
					return true
				}
			}
		}
	}
	return false
}

func restViolates(body map[string]any, field string) bool {
	details, _ := body["details"].([]any)
	for _, d := range details {
		dm, _ := d.(map[string]any)
		if dm["@type"] != "type.googleapis.com/google.rpc.BadRequest" {
			continue
		}
		vs, _ := dm["field_violations"].([]any)
		for _, v := range vs {
			vm, _ := v.(map[string]any)
			if vm["field"] == field && vm["description"] != "" {
				return true
			}
		}
	}
	return false
}

// TestMintErrors covers the errors that are not about the request's
// shape: an unknown application, one without an active key, an ambiguous
// request when several applications exist and none is the default.
func TestMintErrors(t *testing.T) {
	h := seededHarness(t)
	ctx := context.Background()
	const noKeyApp = "APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
	if err := h.srv.Keystore().Store().CreateApplication(ctx, storage.Application{SID: noKeyApp, AccountSID: testAccount}); err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Keystore().Reload(ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		app      string
		grpcCode codes.Code
		httpCode int
	}{
		{"unknown_application", "APffffffffffffffffffffffffffffffff", codes.NotFound, http.StatusNotFound},
		{"no_active_key", noKeyApp, codes.FailedPrecondition, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/grpc", func(t *testing.T) {
			_, err := h.token.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: tc.app})
			if got := status.Code(err); got != tc.grpcCode {
				t.Errorf("Mint(%s) = %v, want %v", tc.app, err, tc.grpcCode)
			}
			if err != nil && !strings.Contains(err.Error(), tc.app) {
				t.Errorf("Mint(%s) error %q does not name the application", tc.app, err)
			}
		})
		t.Run(tc.name+"/rest", func(t *testing.T) {
			code, body := h.do(t, "GET", "/token?application_sid="+tc.app, "", "")
			if code != tc.httpCode || body["code"] != float64(tc.grpcCode) {
				t.Errorf("GET /token = %d %v, want %d with code %d", code, body, tc.httpCode, tc.grpcCode)
			}
		})
	}
	t.Run("wrong_method", func(t *testing.T) {
		code, body := h.do(t, "DELETE", "/token", "", "")
		if code != http.StatusMethodNotAllowed {
			t.Errorf("DELETE /token = %d %v, want 405", code, body)
		}
	})
	t.Run("unknown_path", func(t *testing.T) {
		code, body := h.do(t, "GET", "/tokens", "", "")
		if code != http.StatusNotFound {
			t.Errorf("GET /tokens = %d %v, want 404", code, body)
		}
	})
}
