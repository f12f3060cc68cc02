package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	reSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)`)
	reLabel  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape GETs /metrics and parses the samples.
func (h *harness) scrape(t *testing.T) []sample {
	t.Helper()
	resp, err := http.Get(h.httpURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	var out []sample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := reSample.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("cannot parse metrics line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range reLabel.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// find returns the value of the sample with that name and (at least)
// those labels, and whether there is one.
func find(samples []sample, name string, labels map[string]string) (float64, bool) {
next:
	for _, s := range samples {
		if s.name != name {
			continue
		}
		for k, v := range labels {
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

// restCall sends a REST request with the given headers and returns the
// response (body read and closed).
func (h *harness) restCall(t *testing.T, method, path, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, raw
}

// TestMetrics mints through gRPC and REST, succeeding and failing, and
// checks what /metrics says about it.
func TestMetrics(t *testing.T) {
	h := seededHarness(t)
	ctx := context.Background()
	const unknownApp = "APeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
	badTTL := int32(1 << 30)

	// gRPC: two successes (named and default application), one bad
	// request, one unknown application.
	for _, req := range []*tokenv1.MintRequest{{ApplicationSid: testApp}, {}} {
		if _, err := h.token.Mint(ctx, req); err != nil {
			t.Fatalf("gRPC Mint(%v) = %v", req, err)
		}
	}
	if _, err := h.token.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: testApp, TtlSeconds: &badTTL}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC Mint(bad ttl) = %v, want InvalidArgument", err)
	}
	if _, err := h.token.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: unknownApp}); status.Code(err) != codes.NotFound {
		t.Fatalf("gRPC Mint(unknown application) = %v, want NotFound", err)
	}

	// REST: one success, two bad requests (one with the default
	// application), one request the gateway refuses before the service.
	if code, body := h.do(t, "POST", "/token", "application/json", `{"application_sid":"`+testApp+`"}`); code != http.StatusOK {
		t.Fatalf("POST /token = %d %v", code, body)
	}
	for _, body := range []string{`{"application_sid":"` + testApp + `","ttl_seconds":1073741824}`, `{"ttl_seconds":0}`} {
		if code, resp := h.do(t, "POST", "/token", "application/json", body); code != http.StatusBadRequest {
			t.Fatalf("POST /token %s = %d %v, want 400", body, code, resp)
		}
	}
	if code, resp := h.do(t, "POST", "/token", "application/json", `{"nonsense":1}`); code != http.StatusBadRequest {
		t.Fatalf("POST /token with an unknown field = %d %v, want 400", code, resp)
	}
	// An admin route (the admin API is off: 403), for its route label.
	h.do(t, "GET", "/v1/applications/"+testApp, "", "")

	samples := h.scrape(t)
	mints := []struct {
		app, result, code, path string
		want                    float64
	}{
		{testApp, "ok", "OK", "grpc", 2},
		{testApp, "error", "InvalidArgument", "grpc", 1},
		{"unknown", "error", "NotFound", "grpc", 1},
		{testApp, "ok", "OK", "rest", 1},
		{testApp, "error", "InvalidArgument", "rest", 2},
	}
	var total float64
	for _, m := range mints {
		got, ok := find(samples, "tokend_mints_total", map[string]string{
			"application_sid": m.app, "result": m.result, "code": m.code, "path": m.path,
		})
		if !ok || got != m.want {
			t.Errorf("tokend_mints_total{application_sid=%q,result=%q,code=%q,path=%q} = %v (present %v), want %v",
				m.app, m.result, m.code, m.path, got, ok, m.want)
		}
		total += m.want
	}
	var all float64
	for _, s := range samples {
		if s.name == "tokend_mints_total" {
			all += s.value
			if s.labels["application_sid"] == unknownApp {
				t.Errorf("a caller's unknown application SID became a label: %v", s.labels)
			}
		}
	}
	if all != total {
		t.Errorf("tokend_mints_total sums to %v, want %v (the gateway's own refusals are not mints)", all, total)
	}

	if n, ok := find(samples, "grpc_server_handling_seconds_count", map[string]string{
		"grpc_service": "token.v1.TokenService", "grpc_method": "Mint",
	}); !ok || n < 4 {
		t.Errorf("grpc_server_handling_seconds_count for Mint = %v (present %v), want >= 4", n, ok)
	}
	if n, ok := find(samples, "grpc_server_handled_total", map[string]string{
		"grpc_service": "token.v1.TokenService", "grpc_method": "Mint", "grpc_code": "InvalidArgument",
	}); !ok || n != 1 {
		t.Errorf("grpc_server_handled_total{Mint, InvalidArgument} = %v (present %v), want 1", n, ok)
	}
	for _, c := range []struct {
		code string
		want float64
	}{{"200", 1}, {"400", 3}} {
		if n, ok := find(samples, "tokend_http_request_duration_seconds_count", map[string]string{
			"route": "/token", "method": "POST", "code": c.code,
		}); !ok || n != c.want {
			t.Errorf("tokend_http_request_duration_seconds_count{route=/token,method=POST,code=%s} = %v (present %v), want %v", c.code, n, ok, c.want)
		}
	}
	if _, ok := find(samples, "tokend_http_request_duration_seconds_count", map[string]string{
		"route": "/v1/applications/{application_sid=*}", "method": "GET",
	}); !ok {
		t.Error("no tokend_http_request_duration_seconds sample for the route /v1/applications/{application_sid=*}")
	}
	for _, s := range samples {
		if s.name == "tokend_http_request_duration_seconds_count" && strings.Contains(s.labels["route"], testApp) {
			t.Errorf("a raw path became a route label: %v", s.labels)
		}
	}
	if age, ok := find(samples, "tokend_keystore_age_seconds", nil); !ok || age < 0 || age > 600 {
		t.Errorf("tokend_keystore_age_seconds = %v (present %v), want a small age", age, ok)
	}
	if n, ok := find(samples, "tokend_applications", nil); !ok || n != 1 {
		t.Errorf("tokend_applications = %v (present %v), want 1", n, ok)
	}
	if _, ok := find(samples, "tokend_keystore_revision", nil); !ok {
		t.Error("tokend_keystore_revision is missing")
	}
	if _, ok := find(samples, "go_goroutines", nil); !ok {
		t.Error("the Go collector's go_goroutines is missing")
	}

	// The rate limiter's counter exists for it to use.
	h.srv.Metrics().RateLimited.WithLabelValues("application").Inc()
	if n, ok := find(h.scrape(t), "tokend_rate_limited_total", map[string]string{"scope": "application"}); !ok || n != 1 {
		t.Errorf("tokend_rate_limited_total{scope=application} = %v (present %v), want 1", n, ok)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// lines returns the JSON log records written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(b.b.Bytes(), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// waitLog waits for a log record with that request_id and message.
func (b *syncBuffer) waitLog(t *testing.T, id, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range b.lines(t) {
			if l["request_id"] == id && l["msg"] == msg {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line with request_id %s", msg, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var reHex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestRequestID: an incoming request id is echoed (REST header, gRPC
// response header metadata) and logged; a missing or malformed one is
// replaced by a generated one.
func TestRequestID(t *testing.T) {
	logs := &syncBuffer{}
	h := newHarness(t, server.Config{
		Seed:   server.Seed{AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp},
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	mintBody := `{"application_sid":"` + testApp + `"}`

	resp, raw := h.restCall(t, "POST", "/token", mintBody, http.Header{"X-Request-Id": {"abc123"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /token = %d %s", resp.StatusCode, raw)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "abc123" {
		t.Errorf("X-Request-Id = %q, want abc123 echoed", got)
	}
	l := logs.waitLog(t, "abc123", "finished call")
	if l["route"] != "/token" || l["method"] != "POST" || l["status"] != float64(200) || l["level"] != "DEBUG" || l["duration"] == nil {
		t.Errorf("REST log line = %v, want route /token, method POST, status 200, level DEBUG, a duration", l)
	}

	resp, _ = h.restCall(t, "POST", "/token", `{"ttl_seconds":0}`, nil)
	gen := resp.Header.Get("X-Request-Id")
	if !reHex32.MatchString(gen) {
		t.Errorf("generated X-Request-Id = %q, want 32 hex digits", gen)
	}
	if l := logs.waitLog(t, gen, "finished call"); l["level"] != "INFO" || l["status"] != float64(400) {
		t.Errorf("REST client error log line = %v, want level INFO, status 400", l)
	}

	for _, bad := range []string{strings.Repeat("a", 65), "has space", "quote\"d"} {
		resp, _ := h.restCall(t, "GET", "/healthz", "", http.Header{"X-Request-Id": {bad}})
		if got := resp.Header.Get("X-Request-Id"); !reHex32.MatchString(got) {
			t.Errorf("X-Request-Id for the malformed %q = %q, want a generated one", bad, got)
		}
	}

	var hdr metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "grpc-req-1")
	if _, err := h.token.Mint(ctx, &tokenv1.MintRequest{ApplicationSid: testApp}, grpc.Header(&hdr)); err != nil {
		t.Fatalf("gRPC Mint() = %v", err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || got[0] != "grpc-req-1" {
		t.Errorf("gRPC response header x-request-id = %q, want [grpc-req-1]", got)
	}
	if l := logs.waitLog(t, "grpc-req-1", "finished call"); l["grpc.method"] != "Mint" {
		t.Errorf("gRPC log line = %v, want grpc.method Mint", l)
	}

	hdr = nil
	if _, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: testApp}, grpc.Header(&hdr)); err != nil {
		t.Fatalf("gRPC Mint() = %v", err)
	}
	if got := hdr.Get("x-request-id"); len(got) != 1 || !reHex32.MatchString(got[0]) {
		t.Errorf("gRPC response header x-request-id = %q, want one generated 32-hex id", got)
	}

	// A request id appears once per log line, even where the logging
	// interceptor adds it too.
	for _, l := range logs.lines(t) {
		if l["msg"] == "finished call" && l["request_id"] == nil {
			t.Errorf("request log line without request_id: %v", l)
		}
	}
}

// TestRouteLabelOfRefusals: REST requests refused before the gateway
// routes them (401 without a credential, 413, 415) are labelled with the
// gateway route they were for in tokend_http_request_duration_seconds,
// and so are CORS preflights (the route of the method they ask about) and
// methods a path does not take (405); only a path no route matches is
// "unmatched".
func TestRouteLabelOfRefusals(t *testing.T) {
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	h := adminHarness(t, server.Config{PolicyFile: policyFile, CORSOrigins: []string{"https://app.example.com"}})
	resp, err := tokenv1.NewAdminServiceClient(h.conn).CreateCredential(adminCtx(), &tokenv1.CreateCredentialRequest{Name: "backend"})
	if err != nil {
		t.Fatal(err)
	}
	cred := http.Header{"Authorization": {"Bearer " + resp.GetToken()}}
	admin := http.Header{"Authorization": {"Bearer " + adminToken}}
	textPlain := func(h http.Header) http.Header {
		c := h.Clone()
		if c == nil {
			c = http.Header{}
		}
		c.Set("Content-Type", "text/plain")
		return c
	}
	preflight := func(origin, method string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}}
	}
	cases := []struct {
		name, method, path, body string
		header                   http.Header
		code                     int
		route                    string
	}{
		{"preflight of POST /token", "OPTIONS", "/token", "", preflight("https://app.example.com", "POST"), 204, "/token"},
		{"preflight of GET /token, unlisted origin", "OPTIONS", "/token", "", preflight("https://evil.example", "GET"), 403, "/token"},
		{"preflight of an admin path", "OPTIONS", "/v1/credentials", "", preflight("https://app.example.com", "POST"), 403, "/v1/credentials"},
		{"anonymous POST /token", "POST", "/token", `{"identity":"alice"}`, nil, 401, "/token"},
		{"anonymous GET /token", "GET", "/token?identity=alice", "", nil, 401, "/token"},
		{"POST /token as text", "POST", "/token", `{"identity":"alice"}`, textPlain(cred), 415, "/token"},
		{"POST /token too large", "POST", "/token", `{"identity":"` + strings.Repeat("a", 70000) + `"}`, cred, 413, "/token"},
		{"admin create as text", "POST", "/v1/applications", `{}`, textPlain(admin), 415, "/v1/applications"},
		{"admin show, anonymous", "GET", "/v1/applications/" + testApp, "", nil, 401, "/v1/applications/{application_sid=*}"},
		{"a path no route has", "GET", "/v2/nothing", "", cred, 404, "unmatched"},
		{"a method /token does not take", "DELETE", "/token", "", cred, 405, "/token"},
		{"OPTIONS /token, not a preflight", "OPTIONS", "/token", "", cred, 405, "/token"},
		{"a method an admin path does not take", "PUT", "/v1/applications", "", admin, 405, "/v1/applications"},
		{"POST /token, a credential", "POST", "/token", `{"identity":"alice"}`, cred, 200, "/token"},
	}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, h.httpURL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, vs := range c.header {
			req.Header[k] = vs
		}
		if code, body := h.doRaw(t, req); code != c.code {
			t.Fatalf("%s: %s %s = %d %s, want %d", c.name, c.method, c.path, code, body, c.code)
		}
	}
	samples := h.scrape(t)
	for _, c := range cases {
		if n, ok := find(samples, "tokend_http_request_duration_seconds_count", map[string]string{
			"route": c.route, "method": c.method, "code": strconv.Itoa(c.code),
		}); !ok || n < 1 {
			t.Errorf("%s: no tokend_http_request_duration_seconds sample {route=%q,method=%s,code=%d}", c.name, c.route, c.method, c.code)
		}
	}
	var unmatched float64
	for _, s := range samples {
		if s.name == "tokend_http_request_duration_seconds_count" && s.labels["route"] == "unmatched" {
			unmatched += s.value
		}
	}
	if unmatched != 1 {
		t.Errorf("%v requests labelled route=unmatched, want 1 (the unknown path)", unmatched)
	}
}
