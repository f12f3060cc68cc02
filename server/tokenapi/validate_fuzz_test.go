package tokenapi_test

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/tokenapi"
)

// FuzzMintRequestValidation feeds arbitrary JSON to the request decoder
// and validators: they never panic, and whatever they accept encodes to
// grants JSON that is valid and carries the identity unchanged.
func FuzzMintRequestValidation(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"identity":"alice","grants":{"voice":{"incoming":{"allow":true},"outgoing":{"application_sid":"APdddddddddddddddddddddddddddddddd","params":{"a":"b"}}}}}`,
		`{"identity":"ID@example.com","grants":{"chat":{"service_sid":"ISaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}}`,
		`{"identity":"viewer","grants":{"player":{"requestCredentials":null,"playbackUrl":"https://x","n":[1,2.5,{"k":true}]}}}`,
		`{"identity":"a\u2028b","grants":{"video":{"room":"r\"1"}}}`,
		`{"ttl_seconds":86400,"region":"ie1","grants":{"task_router":{"role":"worker"}}}`,
		`{"grants":{"player":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}}}}}}}}}}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &tokenv1.MintRequest{}
		if protojson.Unmarshal(data, req) != nil {
			return
		}
		var v tokenapi.Violations
		v.CheckGrants("grants", req.GetGrants())
		identity := req.GetIdentity()
		v.CheckIdentity(identity, req.GetGrants())
		if r := req.GetRegion(); r != "" && !tokenapi.ValidRegion(r) {
			v.Add("region", "bad")
		}
		if len(v) > 0 {
			return
		}
		raw := append([]byte(`{"identity":`), mint.AppendString(nil, identity)...)
		raw = append(mint.AppendGrants(raw, req.GetGrants()), '}')
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("accepted request %s encodes to invalid JSON %s: %v", data, raw, err)
		}
		if got["identity"] != identity {
			t.Fatalf("identity %q encodes as %q", identity, got["identity"])
		}
		if len(raw) > 64<<10 {
			t.Fatalf("accepted grants encode to %d bytes", len(raw))
		}
	})
}
