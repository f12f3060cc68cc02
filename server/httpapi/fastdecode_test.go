package httpapi

import (
	"encoding/json"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// fastDecodeCases: fast says whether fastMintRequest must take the body
// itself; every case is also checked against protojson.
var fastDecodeCases = []struct {
	body string
	fast bool
}{
	{`{}`, true},
	{` { } `, true},
	{`{"identity":"load_user"}`, true},
	{"\t{ \"identity\" :\r\n \"a\" }\n", true},
	{`{"identity":""}`, true},
	{`{"identity":"agent_7","application_sid":"APdddddddddddddddddddddddddddddddd","ttl_seconds":600,"region":"ie1","validate_only":true}`, true},
	{`{"applicationSid":"AP1","ttlSeconds":-5,"validateOnly":false}`, true},
	{`{"ttl_seconds":0}`, true},
	{`{"ttl_seconds":-0}`, true},
	{`{"ttl_seconds":2147483647}`, true},
	{`{"ttl_seconds":-2147483648}`, true},
	{`{"identity":"a b:c/d@e.f-_~!#$%&'()*+,;<=>?[]^{|}"}`, true},
	// protojson's to decode or refuse:
	{`{"ttl_seconds":2147483648}`, false},
	{`{"ttl_seconds":-2147483649}`, false},
	{`{"ttl_seconds":99999999999999999999}`, false},
	{`{"ttl_seconds":"600"}`, false},
	{`{"ttl_seconds":6e2}`, false},
	{`{"ttl_seconds":600.0}`, false},
	{`{"ttl_seconds":600.5}`, false},
	{`{"ttl_seconds":0600}`, false},
	{`{"ttl_seconds":-}`, false},
	{`{"ttl_seconds":null}`, false},
	{`{"identity":null}`, false},
	{`{"identity":"caf\u00e9"}`, false},
	{`{"identity":"café"}`, false},
	{`{"identity":"a\"b"}`, false},
	{"{\"identity\":\"a\tb\"}", false},
	{`{"identity":1}`, false},
	{`{"identity":"a","identity":"b"}`, false},
	{`{"ttl_seconds":1,"ttlSeconds":2}`, false},
	{`{"identity":"a",}`, false},
	{`{"identity":"a"`, false},
	{`{"identity":"a"}}`, false},
	{`{"identity":"a"} {"identity":"b"}`, false},
	{`{"identity" "a"}`, false},
	{`{identity:"a"}`, false},
	{`{"Identity":"a"}`, false},
	{`{"nope":"a"}`, false},
	{`{"grants":{"voice":{"incoming_allow":true}}}`, false},
	{`{"identity":"a","grants":{}}`, false},
	{`{"validate_only":"true"}`, false},
	{`{"validate_only":tru}`, false},
	{`{"validate_only":1}`, false},
	{`[]`, false},
	{`"identity"`, false},
	{`null`, false},
	{``, false},
}

// TestFastMintRequest holds fastMintRequest to protojson: whatever it
// takes, protojson decodes to the same message; whatever it leaves,
// it leaves req untouched; and it takes the common bodies.
func TestFastMintRequest(t *testing.T) {
	for _, c := range fastDecodeCases {
		checkFastMintRequest(t, []byte(c.body), c.fast)
	}
}

// FuzzFastMintRequest is TestFastMintRequest on any body.
func FuzzFastMintRequest(f *testing.F) {
	for _, c := range fastDecodeCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastMintRequest(t, b, false) })
}

func checkFastMintRequest(t *testing.T, b []byte, mustBeFast bool) {
	t.Helper()
	want := &tokenv1.MintRequest{}
	wantErr := protojson.UnmarshalOptions{}.Unmarshal(b, want)
	sentinel := &tokenv1.MintRequest{Region: "untouched"}
	got := proto.Clone(sentinel).(*tokenv1.MintRequest)
	ok := fastMintRequest(b, got)
	switch {
	case ok && wantErr != nil:
		t.Errorf("%q: fast path took it as %v; protojson refuses it: %v", b, got, wantErr)
	case ok && !proto.Equal(got, want):
		t.Errorf("%q: fast path decoded %v, protojson %v", b, got, want)
	case !ok && !proto.Equal(got, sentinel):
		t.Errorf("%q: fast path refused it but changed the request to %v", b, got)
	case !ok && mustBeFast:
		t.Errorf("%q: fast path refused it (protojson: %v, err %v)", b, want, wantErr)
	}
}

// flatObjectCases: flat says whether flatObject must take the body
// itself; every case is also checked against json.Valid.
var flatObjectCases = []struct {
	body string
	flat bool
}{
	{`{}`, true},
	{" {\t}\r\n", true},
	{`{"identity":"load_user"}`, true},
	{`{"a":1,"b":-2,"c":0,"d":true,"e":false,"f":null,"g":""}`, true},
	{`{"a":123456789012345678901234567890}`, true},
	{`{"a":"b","a":"c"}`, true}, // duplicates are valid JSON; the decoder names them
	{`{"nope":"x"}`, true},
	// json.Valid's to answer:
	{`{"a":1.5}`, false},
	{`{"a":1e3}`, false},
	{`{"a":01}`, false},
	{`{"a":-}`, false},
	{`{"a":{}}`, false},
	{`{"a":[]}`, false},
	{`{"a":"\n"}`, false},
	{`{"a":"é"}`, false},
	{"{\"a\":\"\t\"}", false},
	{`{"a":tru}`, false},
	{`{"a":nul}`, false},
	{`{"a":truex}`, false},
	{`{"a":1,}`, false},
	{`{,}`, false},
	{`{"a"}`, false},
	{`{"a":}`, false},
	{`{"a":1`, false},
	{`{"a":1}}`, false},
	{`{"a":1} {"a":2}`, false},
	{`{"a":1}x`, false},
	{`{a:1}`, false},
	{`[]`, false},
	{`"a"`, false},
	{`1`, false},
	{``, false},
	{` `, false},
}

// TestFlatObject holds flatObject to json.Valid: whatever it takes is
// one valid JSON value, and it takes the flat bodies.
func TestFlatObject(t *testing.T) {
	for _, c := range flatObjectCases {
		checkFlatObject(t, []byte(c.body), c.flat)
	}
}

// FuzzFlatObject is TestFlatObject on any body.
func FuzzFlatObject(f *testing.F) {
	for _, c := range flatObjectCases {
		f.Add([]byte(c.body))
	}
	for _, c := range fastDecodeCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFlatObject(t, b, false) })
}

func checkFlatObject(t *testing.T, b []byte, mustBeFlat bool) {
	t.Helper()
	ok, valid := flatObject(b), json.Valid(b)
	switch {
	case ok && !valid:
		t.Errorf("%q: flatObject took it; json.Valid refuses it", b)
	case !ok && mustBeFlat:
		t.Errorf("%q: flatObject refused it (json.Valid: %v)", b, valid)
	case ok && trailingData(b):
		t.Errorf("%q: flatObject took it; trailingData finds data after it", b)
	}
}
