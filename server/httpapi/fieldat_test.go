package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// TestFieldAtError: the field of a value protojson refuses at a position
// is found in the body, for the messages it writes.
func TestFieldAtError(t *testing.T) {
	for _, tc := range []struct {
		body string
		msg  func() *tokenv1.SetTwilioCredentialRequest
		want string
	}{
		{body: `{"application_sid":"AP1","rotate_every":"30d"}`, want: "rotate_every"},
		{body: "{\"application_sid\":\"AP1\",\n  \"rotateEvery\": \"30d\"}", want: "rotate_every"},
		{body: `{"rotate_every": 5}`, want: "rotate_every"},
		{body: `{"rotate_every": {"seconds": 5}}`, want: "rotate_every"},
		{body: `{"auth_token":"é","rotate_every":"1 day"}`, want: "rotate_every"},
		{body: `{"rotate_every": "30d", "auth_token": "x"}`, want: "rotate_every"},
	} {
		err := protojson.Unmarshal([]byte(tc.body), &tokenv1.SetTwilioCredentialRequest{})
		if err == nil {
			t.Fatalf("%s: protojson accepted it", tc.body)
		}
		r := &http.Request{Body: &readBody{body: []byte(tc.body)}}
		if got := fieldAtError(r, err.Error()); got != tc.want {
			t.Errorf("fieldAtError(%s, %q) = %q, want %q", tc.body, err, got, tc.want)
		}
	}
	// Not a value error, or no body at hand: no field.
	r := &http.Request{Body: &readBody{body: []byte(`{"x":1}`)}}
	if got := fieldAtError(r, `proto: (line 1:2): unknown field "x"`); got != "" {
		t.Errorf("unknown field: %q, want none", got)
	}
	if got := fieldAtError(&http.Request{Body: http.NoBody}, `proto: (line 1:17): invalid google.protobuf.Duration value "30d"`); got != "" {
		t.Errorf("no body: %q, want none", got)
	}
	if !strings.Contains(wellKnownRule(`invalid google.protobuf.Duration value "30d"`), `"3600s"`) {
		t.Error("no rule for a Duration")
	}
}

// TestJSONFieldAtNested: nested keys make a dotted path.
func TestJSONFieldAtNested(t *testing.T) {
	body := []byte(`{"grants": {"voice": {"outgoing": {"params": [1, {"k": "v"}]}}}, "ttl_seconds": "x"}`)
	off := strings.Index(string(body), `"v"}`)
	if got := jsonFieldAt(body, off); got != "grants.voice.outgoing.params.k" {
		t.Errorf("jsonFieldAt = %q", got)
	}
	off = strings.Index(string(body), `"x"`)
	if got := jsonFieldAt(body, off); got != "ttl_seconds" {
		t.Errorf("jsonFieldAt = %q", got)
	}
	if got := jsonFieldAt(body, 1); got != "" { // a key, not a value
		t.Errorf("jsonFieldAt(key) = %q, want none", got)
	}
}
