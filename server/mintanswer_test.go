package server

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// checkMintAnswer fails t unless the server's codec encodes m to the bytes
// of proto.Marshal, or fails where proto.Marshal fails.
func checkMintAnswer(t *testing.T, m *tokenv1.MintResponse) {
	t.Helper()
	c := newRequestCodec().(requestCodec)
	want, wantErr := proto.Marshal(m)
	got, err := c.Marshal(m)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("Marshal error %v, proto.Marshal error %v", err, wantErr)
	}
	if err != nil {
		return
	}
	defer got.Free()
	if g := got.Materialize(); !bytes.Equal(g, want) {
		t.Fatalf("Marshal =\n%x\nproto.Marshal =\n%x", g, want)
	}
}

// TestMintAnswerWire: the hand encoder gives proto.Marshal's bytes for
// every shape of answer: fields left out, empty and zero timestamps,
// negative and extreme times, non-ASCII text; and answers it does not
// encode (a dry run's Decision, invalid UTF-8) still match protobuf-go.
func TestMintAnswerWire(t *testing.T) {
	full := func() *tokenv1.MintResponse {
		return &tokenv1.MintResponse{
			Token: strings.Repeat("eyJ", 200), Identity: "agent_7", ApplicationSid: "AP" + strings.Repeat("a", 32),
			AccountSid: "AC" + strings.Repeat("b", 32), ApiKeySid: "SK" + strings.Repeat("c", 32), Jti: "SKx-123",
			IssuedAt: &timestamppb.Timestamp{Seconds: 1_796_000_000}, ExpiresAt: &timestamppb.Timestamp{Seconds: 1_796_003_600, Nanos: 5},
			Region: "ie1",
		}
	}
	for _, tt := range []struct {
		name string
		edit func(*tokenv1.MintResponse)
	}{
		{"full", func(*tokenv1.MintResponse) {}},
		{"no-region-no-jti", func(m *tokenv1.MintResponse) { m.Region, m.Jti = "", "" }},
		{"only-token", func(m *tokenv1.MintResponse) { *m = tokenv1.MintResponse{Token: "t"} }},
		{"only-region", func(m *tokenv1.MintResponse) { *m = tokenv1.MintResponse{Region: "us1"} }},
		{"no-timestamps", func(m *tokenv1.MintResponse) { m.IssuedAt, m.ExpiresAt = nil, nil }},
		{"zero-timestamps", func(m *tokenv1.MintResponse) {
			m.IssuedAt, m.ExpiresAt = &timestamppb.Timestamp{}, &timestamppb.Timestamp{}
		}},
		{"negative-times", func(m *tokenv1.MintResponse) {
			m.IssuedAt = &timestamppb.Timestamp{Seconds: -1, Nanos: -1}
			m.ExpiresAt = &timestamppb.Timestamp{Seconds: math.MinInt64, Nanos: math.MinInt32}
		}},
		{"extreme-times", func(m *tokenv1.MintResponse) {
			m.IssuedAt = &timestamppb.Timestamp{Seconds: math.MaxInt64, Nanos: math.MaxInt32}
		}},
		{"non-ascii", func(m *tokenv1.MintResponse) { m.Identity = "Zoë 🎧 ünïcode" }},
		{"long-fields", func(m *tokenv1.MintResponse) {
			m.Token = strings.Repeat("x", 20000)
			m.Identity = strings.Repeat("y", 200)
		}},
		{"just-over-one-tier", func(m *tokenv1.MintResponse) { m.Token = strings.Repeat("x", 2040) }},
		{"invalid-utf8", func(m *tokenv1.MintResponse) { m.Identity = "bad\xff" }},
		{"dry-run-decision", func(m *tokenv1.MintResponse) {
			m.Decision = &tokenv1.Decision{Allowed: true, Rule: "r", Principal: "credential:x", TokenSize: 400,
				Header: &structpb.Struct{Fields: map[string]*structpb.Value{"alg": structpb.NewStringValue("HS256")}}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := full()
			tt.edit(m)
			checkMintAnswer(t, m)
		})
	}
}

// TestMintAnswerNil: a nil answer (no handler returns one, but grpc-go
// would encode it) goes to protobuf-go, which encodes it as empty.
func TestMintAnswerNil(t *testing.T) {
	c := newRequestCodec().(requestCodec)
	out, err := c.Marshal((*tokenv1.MintResponse)(nil))
	if err != nil {
		t.Fatalf("Marshal(nil answer) = %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("Marshal(nil answer) = %d bytes, want 0", out.Len())
	}
	out.Free()
}

// TestMintAnswerUnknownFields: an answer carrying unknown fields (none of
// tokend's does, but protobuf-go keeps them) is left to protobuf-go,
// which writes them.
func TestMintAnswerUnknownFields(t *testing.T) {
	m := &tokenv1.MintResponse{Token: "t", IssuedAt: &timestamppb.Timestamp{Seconds: 1}}
	m.ProtoReflect().SetUnknown(protoreflect.RawFields{0xf8, 0x01, 0x01}) // field 31, varint 1
	if _, ok := mintAnswerSize(m); ok {
		t.Error("mintAnswerSize accepted an answer with unknown fields")
	}
	checkMintAnswer(t, m)
	m2 := &tokenv1.MintResponse{Token: "t", IssuedAt: &timestamppb.Timestamp{Seconds: 1}}
	m2.IssuedAt.ProtoReflect().SetUnknown(protoreflect.RawFields{0x18, 0x01})
	if _, ok := mintAnswerSize(m2); ok {
		t.Error("mintAnswerSize accepted a timestamp with unknown fields")
	}
	checkMintAnswer(t, m2)
}

// TestMintAnswerFields fails when MintResponse or Timestamp gains,
// loses or renumbers a field: the hand encoder (mintanswer.go) must then
// be brought in line, or it would leave the new field out of answers.
func TestMintAnswerFields(t *testing.T) {
	for _, tt := range []struct {
		msg  protoreflect.Message
		want string
	}{
		{(&tokenv1.MintResponse{}).ProtoReflect(), "1 token string,2 identity string,3 application_sid string,4 account_sid string," +
			"5 api_key_sid string,6 jti string,7 issued_at message,8 expires_at message,9 region string,10 decision message"},
		{(&timestamppb.Timestamp{}).ProtoReflect(), "1 seconds int64,2 nanos int32"},
	} {
		fs := tt.msg.Descriptor().Fields()
		var got []string
		for i := range fs.Len() {
			f := fs.Get(i)
			if f.Cardinality() == protoreflect.Repeated || f.HasPresence() && f.Kind() != protoreflect.MessageKind || f.ContainingOneof() != nil {
				t.Errorf("%s: field %s is not a plain proto3 field", tt.msg.Descriptor().FullName(), f.Name())
			}
			got = append(got, fmt.Sprintf("%d %s %s", f.Number(), f.Name(), f.Kind()))
		}
		if g := strings.Join(got, ","); g != tt.want {
			t.Errorf("%s fields:\n%s\nthe hand encoder knows:\n%s", tt.msg.Descriptor().FullName(), g, tt.want)
		}
	}
}

// FuzzMintAnswerWire: any strings and times give proto.Marshal's bytes.
func FuzzMintAnswerWire(f *testing.F) {
	f.Add("eyJhbGciOi.x.y", "alice", "AP1", "AC1", "SK1", "SK1-1", int64(1_796_000_000), int32(0), int64(1_796_003_600), int32(5), "ie1", true, true)
	f.Add("", "", "", "", "", "", int64(0), int32(0), int64(-1), int32(-1), "", false, true)
	f.Add("\xff", "é", "", "", "", "", int64(math.MinInt64), int32(math.MaxInt32), int64(0), int32(0), "x", true, false)
	f.Fuzz(func(t *testing.T, token, identity, app, account, key, jti string, iatS int64, iatN int32, expS int64, expN int32, region string, iat, exp bool) {
		m := &tokenv1.MintResponse{Token: token, Identity: identity, ApplicationSid: app, AccountSid: account,
			ApiKeySid: key, Jti: jti, Region: region}
		if iat {
			m.IssuedAt = &timestamppb.Timestamp{Seconds: iatS, Nanos: iatN}
		}
		if exp {
			m.ExpiresAt = &timestamppb.Timestamp{Seconds: expS, Nanos: expN}
		}
		checkMintAnswer(t, m)
	})
}

// BenchmarkMintAnswer: a Mint's usual answer through the server's codec
// (hand-encoded) and through protobuf-go, into the same pool and handed
// to grpc-go's buffer the same way.
func BenchmarkMintAnswer(b *testing.B) {
	m := &tokenv1.MintResponse{
		Token: strings.Repeat("eyJ", 180), Identity: "load_user", ApplicationSid: "AP" + strings.Repeat("a", 32),
		AccountSid: "AC" + strings.Repeat("b", 32), ApiKeySid: "SK" + strings.Repeat("c", 32), Jti: "SKx-1234567890",
		IssuedAt: timestamppb.Now(), ExpiresAt: timestamppb.Now(), Region: "ie1",
	}
	c := newRequestCodec().(requestCodec)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := c.Marshal(m)
			if err != nil {
				b.Fatal(err)
			}
			out.Free()
		}
	})
	b.Run("protobuf-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf := answerBuffers.Get(proto.Size(m))
			out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], m)
			if err != nil {
				b.Fatal(err)
			}
			*buf = out
			mem.BufferSlice{mem.NewBuffer(buf, answerBuffers)}.Free()
		}
	})
}
