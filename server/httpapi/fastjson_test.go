package httpapi

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

var protoJSON = &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}}

// sameJSON reports whether a and b hold the same JSON value (decoded, so
// whitespace and equivalent escapes do not count, key order does not).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

// keyOrder returns the top-level keys of a JSON object in order.
func keyOrder(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.Token()
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return keys
}

func TestFastMintResponseMatchesProtojson(t *testing.T) {
	fast := jsonMarshaler{protoJSON}
	rng := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "user", "alice_42", "ünïcödé ☎", "quote\" back\\slash", "ctl\x00\x01\x1f\x7f tab\t nl\n", "line\u2028sep\u2029", "<script>&amp;", strings.Repeat("x", 300)}
	pick := func() string { return strs[rng.IntN(len(strs))] }
	stamps := []*timestamppb.Timestamp{
		nil, {}, {Seconds: 1700000000}, {Seconds: 1700000000, Nanos: 1}, {Seconds: 1700000000, Nanos: 120000000},
		{Seconds: 1700000000, Nanos: 123456000}, {Seconds: 1700000000, Nanos: 999999999}, {Seconds: -62135596800},
		{Seconds: 253402300799, Nanos: 999000000}, {Seconds: -1, Nanos: 500},
	}
	pickTS := func() *timestamppb.Timestamp {
		s := stamps[rng.IntN(len(stamps))]
		if s == nil {
			return nil
		}
		return proto.Clone(s).(*timestamppb.Timestamp)
	}
	for i := range 2000 {
		r := &tokenv1.MintResponse{
			Token: pick(), Identity: pick(), ApplicationSid: pick(), AccountSid: pick(), ApiKeySid: pick(),
			Jti: pick(), IssuedAt: pickTS(), ExpiresAt: pickTS(), Region: pick(),
		}
		if i == 0 {
			r = &tokenv1.MintResponse{}
		}
		want, err := protoJSON.Marshal(r)
		if err != nil {
			t.Fatalf("protojson: %v", err)
		}
		got, err := fast.Marshal(r)
		if err != nil {
			t.Fatalf("fast: %v", err)
		}
		if !sameJSON(t, got, want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
		if g, w := keyOrder(t, got), keyOrder(t, want); strings.Join(g, ",") != strings.Join(w, ",") {
			t.Fatalf("case %d: key order %v, protojson %v", i, g, w)
		}
		var back tokenv1.MintResponse
		if err := protojson.Unmarshal(got, &back); err != nil || !proto.Equal(&back, r) {
			t.Fatalf("case %d: does not decode back (%v): %s", i, err, got)
		}
	}
}

// What the fast path does not take goes to protojson, errors included.
func TestFastMintResponseFallsBack(t *testing.T) {
	fast := jsonMarshaler{protoJSON}
	for name, r := range map[string]*tokenv1.MintResponse{
		"decision":        {Token: "t", Decision: &tokenv1.Decision{Allowed: true, Rule: "r", Header: &structpb.Struct{}}},
		"out-of-range ts": {Token: "t", IssuedAt: &timestamppb.Timestamp{Seconds: 253402300800}},
		"negative nanos":  {Token: "t", ExpiresAt: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}},
	} {
		want, werr := protoJSON.Marshal(r)
		got, gerr := fast.Marshal(r)
		if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
			t.Errorf("%s: got %s, %v; protojson %s, %v", name, got, gerr, want, werr)
		}
	}
	// protojson refuses invalid UTF-8; so does the fast path's fallback.
	if _, err := fast.Marshal(&tokenv1.MintResponse{Identity: "bad\xff"}); err == nil {
		t.Error("invalid UTF-8 marshalled without an error")
	}
}

func BenchmarkMintResponseJSON(b *testing.B) {
	r := &tokenv1.MintResponse{
		Token: strings.Repeat("eyJhbGciOiJIUzI1NiJ9", 25), Identity: "user", ApplicationSid: "AP" + strings.Repeat("d", 32),
		AccountSid: "AC" + strings.Repeat("a", 32), ApiKeySid: "SK" + strings.Repeat("b", 32), Jti: "SK" + strings.Repeat("b", 32) + "-1700000000",
		IssuedAt: &timestamppb.Timestamp{Seconds: 1700000000}, ExpiresAt: &timestamppb.Timestamp{Seconds: 1700003600},
	}
	for _, m := range []struct {
		name string
		m    runtime.Marshaler
	}{{"protojson", protoJSON}, {"fast", jsonMarshaler{protoJSON}}} {
		b.Run(m.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.m.Marshal(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
