package main

import (
	"testing"

	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/tokenapi"
)

// FuzzParseDefaultGrants: --default-grants never panics, and what it
// accepts is valid mint request grants for any application.
func FuzzParseDefaultGrants(f *testing.F) {
	for _, seed := range []string{
		"", "{}", `{"voice":{"incoming":{"allow":true},"outgoing":{}}}`, `{"video":{"room":"r"}}`,
		`{"voice":{"outgoing":{"application_sid":"AP1"}}}`, `{"voice":{"outgoing":{"params":{"a":"b"}}}}`,
		`{"player":{"a":[1,2,{"b":null}]}}`, `[]`, `{"ttl":1}`, "{\"voice\":{\"endpoint_id\":\"\xff\"}}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		g, err := parseDefaultGrants(raw)
		if err != nil || g == nil {
			return
		}
		var v tokenapi.Violations
		v.CheckGrants("grants", keystore.GrantsFromTemplate(g, "APffffffffffffffffffffffffffffffff"))
		if len(v) > 0 {
			t.Fatalf("parseDefaultGrants(%q) accepted grants that are not valid: %v", raw, v)
		}
	})
}
