package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// TestMain checks that no test of the package leaves a goroutine behind:
// every harness stops its servers and background work on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The catalogue extends badInputs (badinput_test.go) with inputs a hostile
// or broken caller sends: bodies past the limit, pathological nesting,
// bytes that are not UTF-8, control characters, numbers JSON allows but an
// int32 does not, malformed SIDs, wrong content types and methods, unknown
// fields at every level, JSON that is truncated, duplicated or not an
// object, hostile query strings, and (over gRPC) bytes that are not a
// valid protobuf message at all. Each must be refused with a 4xx (REST) or
// the matching gRPC code, never 5xx, Internal or Unknown, with a field
// violation naming the field where there is one; afterwards the server
// still mints.

// catRESTCase is one REST request of the catalogue.
type catRESTCase struct {
	name        string
	method      string // default POST
	target      string // path and query; default /token
	contentType string // default application/json for a body; "-" for none
	body        string // raw bytes: may hold invalid UTF-8
	chunked     bool   // send without Content-Length
	rawHTTP     string // if set, written verbatim to a TCP connection instead
	status      int    // default 400
	field       string // the field violation; "" for none (405)
	// grpc also sends body, decoded by protojson, as a gRPC MintRequest,
	// which must fail with InvalidArgument naming field.
	grpc bool
}

// catGRPCCase is one gRPC call of the catalogue, with the request as raw
// protobuf bytes (which a generated client cannot send: it validates
// UTF-8 when marshalling).
type catGRPCCase struct {
	name   string
	method string // default /token.v1.TokenService/Mint
	req    []byte
	code   codes.Code
	field  string // a field violation and the message must name it; "" for none
}

const (
	catMint   = "/token.v1.TokenService/Mint"
	catVerify = "/token.v1.TokenService/Verify"
	catMaxMsg = 64 << 10 // httpapi.DefaultMaxBodyBytes, the harness's limit
)

func catParams(n, valueLen int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":"%s"`, i, strings.Repeat("v", valueLen))
	}
	return b.String()
}

func catOutgoing(params string) string {
	return `{"grants":{"voice":{"outgoing":{"application_sid":"` + testApp + `","params":{` + params + `}}}}}`
}

// catPadded is a valid mint body of exactly n bytes.
func catPadded(n int) string {
	const head, tail = `{"grants":{"video":{"room":"`, `"}}}`
	return head + strings.Repeat("r", n-len(head)-len(tail)) + tail
}

var catRESTCases = []catRESTCase{
	// Bodies past the limit: declared, undeclared and lied about.
	{name: "body_chunked_over_limit", body: `{"identity":"` + strings.Repeat("a", 70<<10) + `"}`, chunked: true, status: 413, field: "body"},
	{name: "body_content_length_limit_plus_one", body: catPadded(catMaxMsg + 1), status: 413, field: "body"},
	{name: "body_chunked_limit_plus_one", body: catPadded(catMaxMsg + 1), chunked: true, status: 413, field: "body"},
	{name: "body_declared_one_tebibyte", rawHTTP: "POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1099511627776\r\nConnection: close\r\n\r\n{}", status: 413, field: "body"},

	// Nesting: encoding/json's depth limit (10000), protojson's recursion
	// limit (10000 messages: a Struct level is two), tokend's (16).
	{name: "player_depth_10000_json_depth_limit", body: `{"grants":{"player":` + nested(10000) + `}}`, field: "body"},
	{name: "player_depth_9997_tokend_limit", body: `{"grants":{"player":` + nested(9997) + `}}`, field: "grants.player"},
	{name: "player_depth_9998_protojson_recursion_limit", body: `{"grants":{"player":` + nested(9998) + `}}`, field: "body"},
	{name: "player_depth_4000", body: `{"grants":{"player":` + nested(4000) + `}}`, field: "grants.player"},
	{name: "player_list_depth_6000", body: `{"grants":{"player":{"a":` + strings.Repeat("[", 6000) + strings.Repeat("]", 6000) + `}}}`, field: "grants.player"},
	{name: "player_depth_17", body: `{"grants":{"player":` + nested(17) + `}}`, field: "grants.player", grpc: true},

	// Bytes that are not UTF-8: the JSON text itself is invalid (RFC 8259
	// section 8.1), so the violation is on the body.
	{name: "identity_invalid_utf8", body: "{\"identity\":\"a\xffb\",\"grants\":{\"chat\":{}}}", field: "body"},
	{name: "identity_overlong_utf8", body: "{\"identity\":\"a\xc0\xafb\",\"grants\":{\"chat\":{}}}", field: "body"},
	{name: "params_key_invalid_utf8", body: catOutgoing("\"k\xff\":\"v\""), field: "body"},
	{name: "params_value_invalid_utf8", body: catOutgoing("\"k\":\"v\xc3\""), field: "body"},
	{name: "player_string_surrogate_bytes", body: "{\"grants\":{\"player\":{\"k\":\"\xed\xa0\x80\"}}}", field: "body"},
	{name: "player_key_invalid_utf8", body: "{\"grants\":{\"player\":{\"k\xfe\":1}}}", field: "body"},
	{name: "identity_escaped_lone_surrogate", body: `{"identity":"a\ud800b","grants":{"chat":{}}}`, field: "body"},
	{name: "field_name_invalid_utf8", body: "{\"ident\xffity\":\"a\"}", field: "body"},
	{name: "charset_latin1_non_ascii", contentType: "application/json; charset=latin1", body: "{\"identity\":\"caf\xe9\",\"grants\":{\"chat\":{}}}", field: "body"},

	// Control characters that are valid JSON escapes reach the validator.
	{name: "identity_nul", body: `{"identity":"a\u0000b","grants":{"chat":{}}}`, field: "identity", grpc: true},
	{name: "identity_del", body: "{\"identity\":\"a\x7fb\",\"grants\":{\"chat\":{}}}", field: "identity", grpc: true},
	{name: "identity_c1_next_line", body: `{"identity":"a\u0085b","grants":{"chat":{}}}`, field: "identity", grpc: true},
	{name: "identity_raw_control_byte", body: "{\"identity\":\"a\x01b\",\"grants\":{\"chat\":{}}}", field: "body"},
	{name: "params_key_nul", body: catOutgoing(`"a\u0000":"v"`), field: "grants.voice.outgoing.params", grpc: true},
	{name: "params_value_escape", body: catOutgoing(`"a":"v\u001b[31m"`), field: "grants.voice.outgoing.params[a]", grpc: true},
	{name: "video_room_newline", body: `{"grants":{"video":{"room":"a\nb"}}}`, field: "grants.video.room", grpc: true},
	{name: "chat_endpoint_carriage_return", body: `{"grants":{"chat":{"endpoint_id":"a\rb"}}}`, field: "grants.chat.endpoint_id", grpc: true},
	{name: "sync_endpoint_nul", body: `{"grants":{"data_sync":{"endpoint_id":"\u0000"}}}`, field: "grants.data_sync.endpoint_id", grpc: true},
	{name: "taskrouter_role_backspace", body: `{"grants":{"task_router":{"role":"w\bx"}}}`, field: "grants.task_router.role", grpc: true},

	// Huge params maps.
	{name: "params_3000_entries", body: catOutgoing(catParams(3000, 1)), field: "grants.voice.outgoing.params", grpc: true},
	{name: "params_over_4096_bytes", body: catOutgoing(catParams(32, 200)), field: "grants.voice.outgoing.params", grpc: true},
	{name: "params_key_too_long", body: catOutgoing(`"` + strings.Repeat("k", 129) + `":"v"`), field: "grants.voice.outgoing.params", grpc: true},
	{name: "params_key_empty", body: catOutgoing(`"":"v"`), field: "grants.voice.outgoing.params", grpc: true},

	// Lifetimes JSON can write but an int32 in 1..86400 cannot hold.
	{name: "ttl_int64_overflow", body: `{"ttl_seconds":9223372036854775808}`, field: "ttl_seconds"},
	{name: "ttl_int32_underflow", body: `{"ttl_seconds":-2147483649}`, field: "ttl_seconds"},
	{name: "ttl_1e400", body: `{"ttl_seconds":1e400}`, field: "ttl_seconds"},
	{name: "ttl_negative_zero", body: `{"ttl_seconds":-0}`, field: "ttl_seconds", grpc: true},
	{name: "ttl_fraction", body: `{"ttl_seconds":1.5}`, field: "ttl_seconds"},
	{name: "ttl_bool", body: `{"ttl_seconds":true}`, field: "ttl_seconds"},
	{name: "ttl_object", body: `{"ttl_seconds":{}}`, field: "ttl_seconds"},
	{name: "ttl_quoted_negative", body: `{"ttl_seconds":"-1"}`, field: "ttl_seconds", grpc: true},
	{name: "ttl_quoted_1e400", body: `{"ttl_seconds":"1e400"}`, field: "ttl_seconds"},
	{name: "ttl_int32_min", body: `{"ttl_seconds":-2147483648}`, field: "ttl_seconds", grpc: true},

	// Malformed SIDs.
	{name: "sid_lowercase_prefix", body: `{"application_sid":"apdddddddddddddddddddddddddddddddd"}`, field: "application_sid", grpc: true},
	{name: "sid_33_hex", body: `{"application_sid":"APddddddddddddddddddddddddddddddddd"}`, field: "application_sid", grpc: true},
	{name: "sid_unicode_digits", body: `{"application_sid":"AP٠١٢٣٤٥٦٧٨٩dddddddddddddddddddddd"}`, field: "application_sid", grpc: true},
	{name: "sid_fullwidth_prefix", body: `{"application_sid":"ＡＰdddddddddddddddddddddddddddddddd"}`, field: "application_sid", grpc: true},
	{name: "sid_trailing_newline", body: `{"application_sid":"` + testApp + `\n"}`, field: "application_sid", grpc: true},
	{name: "outgoing_sid_lowercase", body: `{"grants":{"voice":{"outgoing":{"application_sid":"apdddddddddddddddddddddddddddddddd"}}}}`, field: "grants.voice.outgoing.application_sid", grpc: true},
	{name: "chat_push_credential_33_hex", body: `{"grants":{"chat":{"push_credential_sid":"CR000000000000000000000000000000000"}}}`, field: "grants.chat.push_credential_sid", grpc: true},

	// Content types.
	{name: "content_type_text_plain", contentType: "text/plain", body: `{}`, status: 415, field: "body"},
	{name: "content_type_multipart", contentType: "multipart/form-data; boundary=x", body: "--x\r\n\r\n{}\r\n--x--", status: 415, field: "body"},
	{name: "content_type_xml", contentType: "application/xml", body: `<identity>a</identity>`, status: 415, field: "body"},
	{name: "content_type_json_patch", contentType: "application/json-patch+json", body: `[]`, status: 415, field: "body"},
	{name: "content_type_malformed", contentType: "application/", body: `{}`, status: 415, field: "body"},
	{name: "content_type_protobuf", contentType: "application/x-protobuf", body: "\x0a\x01a", status: 415, field: "body"},

	// Methods.
	{name: "method_put", method: "PUT", body: `{}`, status: 405},
	{name: "method_patch", method: "PATCH", body: `{}`, status: 405},
	{name: "method_delete_with_body", method: "DELETE", body: `{}`, status: 405},
	{name: "method_options_without_cors", method: "OPTIONS", contentType: "-", status: 405},
	{name: "verify_method_get", method: "GET", target: "/v1/tokens:verify", contentType: "-", status: 405},

	// Unknown fields at each level of the request.
	{name: "unknown_field_in_grants", body: `{"grants":{"fax":{}}}`, field: "fax"},
	{name: "unknown_field_in_voice", body: `{"grants":{"voice":{"voice_x":1}}}`, field: "voice_x"},
	{name: "unknown_field_in_outgoing", body: `{"grants":{"voice":{"outgoing":{"outgoing_x":1}}}}`, field: "outgoing_x"},
	{name: "unknown_field_in_incoming", body: `{"grants":{"voice":{"incoming":{"allow":true,"incoming_x":1}}}}`, field: "incoming_x"},
	{name: "unknown_field_in_video", body: `{"grants":{"video":{"rom":"a"}}}`, field: "rom"},
	{name: "unknown_field_in_chat", body: `{"grants":{"chat":{"chat_x":""}}}`, field: "chat_x"},
	{name: "unknown_field_in_data_sync", body: `{"grants":{"data_sync":{"sync_x":""}}}`, field: "sync_x"},
	{name: "unknown_field_in_task_router", body: `{"grants":{"task_router":{"tr_x":""}}}`, field: "tr_x"},
	{name: "unknown_field_in_verify", target: "/v1/tokens:verify", body: `{"tokn":"x"}`, field: "tokn"},

	// Truncated, duplicated and non-object JSON.
	{name: "truncated_mid_string", body: `{"identity":"al`, field: "body"},
	{name: "truncated_in_nested_object", body: `{"grants":{"voice":{`, field: "body"},
	{name: "truncated_after_comma", body: `{"identity":"a",`, field: "body"},
	{name: "duplicate_nested_field", body: `{"grants":{"video":{"room":"a","room":"b"}}}`, field: "room"},
	{name: "duplicate_grants", body: `{"grants":{},"grants":{}}`, field: "grants"},
	{name: "duplicate_by_json_name", body: `{"ttl_seconds":60,"ttlSeconds":60}`, field: "ttlSeconds"},
	{name: "second_json_value", body: `{"identity":"alice"} {"identity":"mallory"}`, field: "body"},
	{name: "trailing_garbage", body: `{}x`, field: "body"},
	{name: "body_number", body: `42`, field: "body"},
	{name: "body_string", body: `"identity"`, field: "body"},
	{name: "body_null", body: `null`, field: "body"},
	{name: "body_true", body: `true`, field: "body"},
	{name: "body_byte_order_mark", body: "\xef\xbb\xbf{}", field: "body"},
	{name: "body_nan_in_player", body: `{"grants":{"player":{"a":NaN}}}`, field: "body"},
	{name: "grants_array", body: `{"grants":[]}`, field: "grants"}, // the field at the position protojson refused

	// Query strings.
	{name: "query_identity_invalid_utf8", method: "GET", target: "/token?identity=a%FFb", field: "identity"},
	{name: "query_key_invalid_utf8", method: "GET", target: "/token?iden%FFtity=a", field: "iden\\xfftity"},
	{name: "query_params_value_invalid_utf8", method: "GET", target: "/token?grants.voice.outgoing.application_sid=" + testApp + "&grants.voice.outgoing.params[k]=%C3", field: "grants.voice.outgoing.params[k]"},
	{name: "query_identity_20k", method: "GET", target: "/token?identity=" + strings.Repeat("a", 20000), field: "identity"},
	{name: "query_params_3000", method: "GET", target: "/token?grants.voice.outgoing.application_sid=" + testApp + "&" + catQueryParams(3000), field: "grants.voice.outgoing.params"},
	{name: "query_bad_escape", method: "GET", target: "/token?identity=%zz", field: "query"},
	{name: "query_semicolon", method: "GET", target: "/token?identity=a;b", field: "query"},
	{name: "query_ttl_int64_overflow", method: "GET", target: "/token?ttl_seconds=9223372036854775808", field: "ttl_seconds"},
	{name: "query_ttl_fraction", method: "GET", target: "/token?ttl_seconds=1.5", field: "ttl_seconds"},
	{name: "query_identity_nul", method: "GET", target: "/token?identity=a%00b&grants.chat.service_sid=", field: "identity"},
	{name: "query_unknown_nested", method: "GET", target: "/token?grants.voice.outgoin.application_sid=" + testApp, field: "grants.voice.outgoin.application_sid"},
	{name: "query_map_without_key", method: "GET", target: "/token?grants.voice.outgoing.params=v", field: "grants.voice.outgoing.params"},

	// The admin API, with the admin token.
	{name: "admin_friendly_name_invalid_utf8", target: "/v1/applications", body: "{\"application_sid\":\"APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\",\"account_sid\":\"" + testAccount + "\",\"friendly_name\":\"x\xff\"}", field: "body"},
	{name: "admin_unknown_field", target: "/v1/applications", body: `{"application_sid":"APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee","acount_sid":"x"}`, field: "acount_sid"},
	{name: "admin_method_put", method: "PUT", target: "/v1/applications", body: `{}`, status: 405},
	{name: "admin_body_chunked_over_limit", target: "/v1/applications", body: `{"friendly_name":"` + strings.Repeat("n", 70<<10) + `"}`, chunked: true, status: 413, field: "body"},
	{name: "verify_token_invalid_utf8", target: "/v1/tokens:verify", body: "{\"token\":\"a\xff\"}", field: "body"},
}

func catQueryParams(n int) string {
	q := url.Values{}
	for i := range n {
		q.Set(fmt.Sprintf("grants.voice.outgoing.params[k%d]", i), "v")
	}
	return q.Encode()
}

// Protobuf wire helpers: field numbers are those of proto/token/v1.
func pbBytes(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func pbString(num protowire.Number, s string) []byte { return pbBytes(num, []byte(s)) }

func pbMsg(num protowire.Number, fields ...[]byte) []byte {
	return pbBytes(num, bytes.Join(fields, nil))
}

func pbVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// pbOutgoing is MintRequest.grants.voice.outgoing with one params entry.
func pbOutgoing(key, value string) []byte {
	entry := append(pbString(1, key), pbString(2, value)...)
	return pbMsg(5, pbMsg(1, pbMsg(2, pbString(1, testApp), pbBytes(2, entry))))
}

// pbPlayer is MintRequest.grants.player with one field, whose
// google.protobuf.Value is value.
func pbPlayer(key string, value []byte) []byte {
	entry := append(pbString(1, key), pbBytes(2, value)...)
	return pbMsg(5, pbMsg(6, pbBytes(1, entry)))
}

// pbDeepPlayer nests lists in the player n deep: 2n messages, in about 6n
// bytes (under the message size limit where nested Structs would not be).
func pbDeepPlayer(n int) []byte {
	var v []byte // google.protobuf.Value
	for range n {
		v = pbBytes(6, pbBytes(1, v)) // Value.list_value{values: [v]}
	}
	return pbPlayer("a", v)
}

var catGRPCCases = []catGRPCCase{
	// Invalid UTF-8 in proto3 strings: protobuf-go refuses to decode the
	// message; tokend must answer InvalidArgument and name the field.
	{name: "identity_invalid_utf8", req: pbString(1, "a\xffb"), code: codes.InvalidArgument, field: "identity"},
	{name: "application_sid_invalid_utf8", req: pbString(2, "AP\xff"), code: codes.InvalidArgument, field: "application_sid"},
	{name: "region_invalid_utf8", req: pbString(4, "ie\xc3"), code: codes.InvalidArgument, field: "region"},
	{name: "params_key_invalid_utf8", req: pbOutgoing("k\xff", "v"), code: codes.InvalidArgument, field: "grants.voice.outgoing.params"},
	{name: "params_value_invalid_utf8", req: pbOutgoing("k", "v\xff"), code: codes.InvalidArgument, field: "grants.voice.outgoing.params[k]"},
	{name: "player_string_invalid_utf8", req: pbPlayer("k", pbString(3, "\xed\xa0\x80")), code: codes.InvalidArgument, field: "grants.player.fields[k].string_value"},
	{name: "player_key_invalid_utf8", req: pbPlayer("k\xfe", pbVarint(4, 1)), code: codes.InvalidArgument, field: "grants.player.fields"},
	{name: "video_room_invalid_utf8", req: pbMsg(5, pbMsg(2, pbString(1, "r\x80"))), code: codes.InvalidArgument, field: "grants.video.room"},
	{name: "verify_token_invalid_utf8", method: catVerify, req: pbString(1, "eyJ\xff"), code: codes.InvalidArgument, field: "token"},
	{name: "admin_friendly_name_invalid_utf8", method: "/token.v1.AdminService/CreateApplication",
		req:  bytes.Join([][]byte{pbString(1, "APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"), pbString(2, testAccount), pbString(3, "x\xff")}, nil),
		code: codes.InvalidArgument, field: "friendly_name"},
	{name: "health_check_service_invalid_utf8", method: "/grpc.health.v1.Health/Check", req: pbString(1, "token.v1.\xff"), code: codes.InvalidArgument, field: "service"},

	// Bytes that are no message at all.
	{name: "player_depth_5001_recursion_limit", req: pbDeepPlayer(5001), code: codes.InvalidArgument, field: "request"},
	{name: "truncated_length", req: append(protowire.AppendTag(nil, 1, protowire.BytesType), 10, 'a', 'b', 'c'), code: codes.InvalidArgument, field: "request"},
	{name: "varint_overflow", req: append(protowire.AppendTag(nil, 3, protowire.VarintType), bytes.Repeat([]byte{0xff}, 11)...), code: codes.InvalidArgument, field: "request"},
	{name: "field_number_zero", req: []byte{0x02, 0x00}, code: codes.InvalidArgument, field: "request"},
	{name: "end_group_without_start", req: protowire.AppendTag(nil, 7, protowire.EndGroupType), code: codes.InvalidArgument, field: "request"},
	{name: "nested_message_truncated", req: pbBytes(5, pbBytes(1, []byte{0x12, 0x05, 'x'})), code: codes.InvalidArgument, field: "request"},

	// Decodable, refused by the validator.
	{name: "ttl_minus_one_as_ten_byte_varint", req: pbVarint(3, ^uint64(0)), code: codes.InvalidArgument, field: "ttl_seconds"},
	{name: "ttl_varint_wraps_to_int32_min", req: pbVarint(3, 1<<31), code: codes.InvalidArgument, field: "ttl_seconds"},
	{name: "player_depth_17", req: pbDeepPlayer(17), code: codes.InvalidArgument, field: "grants.player"},

	// Size and routing.
	{name: "message_over_limit", req: pbString(1, strings.Repeat("a", catMaxMsg)), code: codes.ResourceExhausted},
	{name: "unknown_method", method: "/token.v1.TokenService/Burn", req: nil, code: codes.Unimplemented},
	{name: "unknown_service", method: "/token.v2.TokenService/Mint", req: nil, code: codes.Unimplemented},
}

// rawCodec sends and receives protobuf bytes as they are.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// catSend sends one REST case and returns the status and the raw body.
func catSend(t *testing.T, h *harness, tc catRESTCase) (int, []byte) {
	t.Helper()
	if tc.rawHTTP != "" {
		u, _ := url.Parse(h.httpURL)
		conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, tc.rawHTTP); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, raw
	}
	method, target := tc.method, tc.target
	if method == "" {
		method = "POST"
	}
	if target == "" {
		target = "/token"
	}
	var body io.Reader
	if tc.body != "" {
		body = strings.NewReader(tc.body)
		if tc.chunked {
			body = io.MultiReader(body) // hides the length: Transfer-Encoding: chunked
		}
	}
	req, err := http.NewRequest(method, h.httpURL+target, body)
	if err != nil {
		t.Fatal(err)
	}
	if tc.chunked && req.ContentLength != 0 {
		t.Fatalf("chunked request has Content-Length %d", req.ContentLength)
	}
	switch ct := tc.contentType; {
	case ct == "-":
	case ct != "":
		req.Header.Set("Content-Type", ct)
	case tc.body != "" || method == "POST":
		req.Header.Set("Content-Type", "application/json")
	}
	if isAdminPath(target) {
		req.Header.Set("Authorization", h.authz)
	}
	return h.doRaw(t, req)
}

func catHarness(t *testing.T) *harness {
	return adminHarness(t, server.Config{})
}

// TestBadInputCatalogue runs the catalogue through REST and gRPC.
func TestBadInputCatalogue(t *testing.T) {
	h := catHarness(t)
	grpcFromJSON := 0
	for _, tc := range catRESTCases {
		if tc.grpc {
			grpcFromJSON++
		}
	}
	total := len(catRESTCases) + grpcFromJSON + len(catGRPCCases)
	t.Logf("%d REST cases, %d gRPC cases from their JSON, %d raw gRPC cases: %d in all", len(catRESTCases), grpcFromJSON, len(catGRPCCases), total)
	if total < 40 {
		t.Fatalf("only %d cases, want at least 40", total)
	}
	// A body of badInputs sent the same way would be no new case.
	seen := map[string]bool{}
	for _, b := range badInputs {
		seen[b.body+"|"+b.query] = true
	}

	for _, tc := range catRESTCases {
		t.Run("rest/"+tc.name, func(t *testing.T) {
			if seen[tc.body+"|"] && tc.method == "" && tc.rawHTTP == "" && !tc.chunked {
				t.Fatalf("duplicates a case of badInputs")
			}
			code, raw := catSend(t, h, tc)
			want := tc.status
			if want == 0 {
				want = http.StatusBadRequest
			}
			if code >= 500 {
				t.Fatalf("status %d, a server error for bad input: %s", code, raw)
			}
			var body map[string]any
			jsonErr := json.Unmarshal(raw, &body)
			if code != want {
				t.Fatalf("status = %d, want %d: %s", code, want, clip(raw))
			}
			if jsonErr != nil {
				t.Fatalf("body is not JSON: %v: %q", jsonErr, clip(raw))
			}
			wantCode := codes.InvalidArgument
			if want == http.StatusMethodNotAllowed {
				wantCode = codes.Unimplemented
			}
			if body["code"] != float64(wantCode) {
				t.Errorf("body code = %v, want %d (%v)", body["code"], wantCode, wantCode)
			}
			if tc.field != "" {
				if !restViolates(body, tc.field) {
					t.Errorf("no field violation of %q in %s", tc.field, clip(raw))
				}
				if msg, _ := body["message"].(string); !strings.Contains(msg, tc.field) {
					t.Errorf("message %q does not name %q", msg, tc.field)
				}
			}
		})
		if !tc.grpc {
			continue
		}
		t.Run("grpc/"+tc.name, func(t *testing.T) {
			req := &tokenv1.MintRequest{}
			if err := protojson.Unmarshal([]byte(tc.body), req); err != nil {
				t.Fatalf("case body does not decode: %v", err)
			}
			_, err := h.token.Mint(context.Background(), req)
			catCheckStatus(t, err, codes.InvalidArgument, tc.field)
		})
	}

	for _, tc := range catGRPCCases {
		t.Run("grpc/raw/"+tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = catMint
			}
			ctx := context.Background()
			if strings.HasPrefix(method, "/token.v1.AdminService/") {
				ctx = adminCtx()
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			in, out := tc.req, []byte(nil)
			err := h.conn.Invoke(ctx, method, &in, &out, grpc.ForceCodecV2(rawCodec{}))
			catCheckStatus(t, err, tc.code, tc.field)
		})
	}

	// A streaming call (health Watch) whose request does not decode: the
	// stream fails with InvalidArgument rather than watching "".
	t.Run("grpc/raw/health_watch_service_invalid_utf8", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		in := pbString(1, "token.v1.\xff")
		if err := st.SendMsg(&in); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		var out []byte
		err = st.RecvMsg(&out)
		if err == nil {
			resp := &healthpb.HealthCheckResponse{}
			_ = proto.Unmarshal(out, resp)
			t.Fatalf("Watch with an undecodable request answered %v, want InvalidArgument", resp)
		}
		catCheckStatus(t, err, codes.InvalidArgument, "service")
	})

	t.Run("still_serving", func(t *testing.T) { catMintOK(t, h) })
}

// catCheckStatus checks a gRPC error: the code, never Internal or
// Unknown, and, if field is set, a field violation and a message naming it.
func catCheckStatus(t *testing.T, err error, want codes.Code, field string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil {
		t.Fatalf("call succeeded, want %v", want)
	}
	if st.Code() == codes.Internal || st.Code() == codes.Unknown {
		t.Fatalf("code %v for bad input: %v", st.Code(), st.Message())
	}
	if st.Code() != want {
		t.Fatalf("code = %v (%s), want %v", st.Code(), st.Message(), want)
	}
	if field == "" {
		return
	}
	if !violates(st, field) {
		t.Errorf("no field violation of %q: %v (details %v)", field, st.Message(), st.Details())
	}
	if !strings.Contains(st.Message(), field) {
		t.Errorf("message %q does not name %q", st.Message(), field)
	}
}

// catMintOK mints through both paths and verifies the tokens.
func catMintOK(t *testing.T, h *harness) {
	t.Helper()
	resp, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{})
	if err != nil {
		t.Fatalf("valid gRPC mint after the catalogue: %v", err)
	}
	verifyJWT(t, resp.GetToken(), testSecret)
	code, body := h.do(t, "POST", "/token", "application/json", `{"identity":"alice"}`)
	if code != http.StatusOK {
		t.Fatalf("valid REST mint after the catalogue = %d %v", code, body)
	}
	tok, _ := body["token"].(string)
	verifyJWT(t, tok, testSecret)
}

// TestCatalogueAccepted documents inputs that look odd but are valid, so
// tokend accepts them (each with the meaning stated).
func TestCatalogueAccepted(t *testing.T) {
	h := catHarness(t)
	cases := []struct {
		name, contentType, body string
		ttl                     int64 // the token's exp - iat
		identity                string
	}{
		// An empty POST body is an empty request: the same as {} and as
		// GET /token without parameters (defaults for everything).
		{name: "empty_body", body: "", ttl: 3600, identity: "user"},
		{name: "empty_body_without_content_type", contentType: "-", body: "", ttl: 3600, identity: "user"},
		{name: "whitespace_body", body: " \n\t ", ttl: 3600, identity: "user"},
		// The proto3 JSON mapping allows an int32 as a string, and a
		// number in exponent or fraction notation when it is integral;
		// null means the field is absent.
		{name: "ttl_quoted", body: `{"ttl_seconds":"600"}`, ttl: 600, identity: "user"},
		{name: "ttl_exponent", body: `{"ttl_seconds":6e2}`, ttl: 600, identity: "user"},
		{name: "ttl_integral_fraction", body: `{"ttl_seconds":600.0}`, ttl: 600, identity: "user"},
		{name: "ttl_null", body: `{"ttl_seconds":null}`, ttl: 3600, identity: "user"},
		// JSON has no charset but UTF-8 (RFC 8259): the parameter is
		// ignored; non-ASCII bytes that are not UTF-8 are refused (see
		// charset_latin1_non_ascii in the catalogue).
		{name: "charset_latin1_ascii_body", contentType: "application/json; charset=latin1", body: `{"identity":"bob"}`, ttl: 3600, identity: "bob"},
		{name: "content_type_upper_case", contentType: "APPLICATION/JSON", body: `{"identity":"bob"}`, ttl: 3600, identity: "bob"},
		// Field names in their lowerCamelCase JSON form, as protojson
		// accepts them.
		{name: "json_field_names", body: `{"ttlSeconds":60,"applicationSid":"` + testApp + `"}`, ttl: 60, identity: "user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, raw := catSend(t, h, catRESTCase{body: tc.body, contentType: tc.contentType})
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, clip(raw))
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatal(err)
			}
			tok, _ := body["token"].(string)
			claims := verifyJWT(t, tok, testSecret)
			exp, _ := claims["exp"].(float64)
			iat, _ := claims["iat"].(float64)
			if got := int64(exp - iat); got != tc.ttl {
				t.Errorf("lifetime %d, want %d", got, tc.ttl)
			}
			if body["identity"] != tc.identity {
				t.Errorf("identity %v, want %q", body["identity"], tc.identity)
			}
		})
	}
	// Over gRPC an unknown field is refused as REST refuses an unknown
	// JSON field: InvalidArgument naming the field number and the message
	// that holds it, at any depth. Health requests stay lenient.
	for _, tc := range []struct {
		name, method string
		req          []byte
		field, num   string
	}{
		{name: "top_level", req: append(pbString(1, "carol"), pbString(99, "future field")...), field: "request", num: "99"},
		{name: "top_level_varint", req: append(pbString(1, "carol"), pbVarint(17, 1)...), field: "request", num: "17"},
		{name: "known_number_wrong_wire_type", req: pbVarint(1, 5), field: "request", num: "1"},
		{name: "in_outgoing_message_field", req: pbMsg(5, pbMsg(1, pbMsg(2, pbString(1, testApp), pbMsg(3, pbVarint(1, 1))))), field: "grants.voice.outgoing", num: "3"},
		{name: "in_grants", req: pbMsg(5, pbVarint(40, 1)), field: "grants", num: "40"},
		{name: "in_voice", req: pbMsg(5, pbMsg(1, pbVarint(9, 1))), field: "grants.voice", num: "9"},
		{name: "in_outgoing", req: pbMsg(5, pbMsg(1, pbMsg(2, pbString(1, testApp), pbString(12, "x")))), field: "grants.voice.outgoing", num: "12"},
		{name: "in_video", req: pbMsg(5, pbMsg(2, pbString(1, "room"), pbString(3, "x"))), field: "grants.video", num: "3"},
		{name: "in_player_value", req: pbPlayer("k", pbVarint(30, 1)), field: "grants.player.fields[k]", num: "30"},
		{name: "verify", method: catVerify, req: append(pbString(1, "x"), pbString(2, "y")...), field: "request", num: "2"},
	} {
		t.Run("grpc_unknown_field/"+tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = catMint
			}
			in, out := tc.req, []byte(nil)
			err := h.conn.Invoke(context.Background(), method, &in, &out, grpc.ForceCodecV2(rawCodec{}))
			catCheckStatus(t, err, codes.InvalidArgument, tc.field)
			if msg := status.Convert(err).Message(); !strings.Contains(msg, "unknown field number "+tc.num) {
				t.Errorf("message %q does not name field number %s", msg, tc.num)
			}
		})
	}
	t.Run("grpc_unknown_field/health_lenient", func(t *testing.T) {
		in, out := append(pbString(1, ""), pbString(9, "x")...), []byte(nil)
		if err := h.conn.Invoke(context.Background(), "/grpc.health.v1.Health/Check", &in, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
			t.Fatalf("health check with an unknown field = %v, want OK", err)
		}
	})
	// The same request without the unknown field mints.
	t.Run("grpc_known_fields_mint", func(t *testing.T) {
		in, out := pbString(1, "carol"), []byte(nil)
		if err := h.conn.Invoke(context.Background(), catMint, &in, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
			t.Fatalf("Mint = %v", err)
		}
		resp := &tokenv1.MintResponse{}
		if err := proto.Unmarshal(out, resp); err != nil {
			t.Fatal(err)
		}
		if resp.GetIdentity() != "carol" {
			t.Errorf("identity %q, want carol", resp.GetIdentity())
		}
		verifyJWT(t, resp.GetToken(), testSecret)
	})
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
