package server

import (
	"bytes"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// TestRequestCodecMarshal: the server's codec encodes every answer to the
// same bytes as the default proto codec, pooled buffer or not, and the
// buffer it hands grpc-go holds exactly the message.
func TestRequestCodecMarshal(t *testing.T) {
	c := newRequestCodec().(requestCodec)
	for _, tt := range []struct {
		name string
		msg  any
	}{
		{"empty", &tokenv1.MintResponse{}},
		{"health", &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}},
		{"mint-answer", &tokenv1.MintResponse{
			Token: strings.Repeat("eyJ", 200), Identity: "agent_7", ApplicationSid: "AP" + strings.Repeat("a", 32),
			AccountSid: "AC" + strings.Repeat("b", 32), ApiKeySid: "SK" + strings.Repeat("c", 32), Jti: "SKx-123",
			IssuedAt: timestamppb.New(timestamppb.Now().AsTime()), ExpiresAt: timestamppb.Now(), Region: "ie1",
		}},
		{"over-pooling-threshold", &tokenv1.MintResponse{Token: strings.Repeat("x", 5000)}},
		{"exactly-256", &tokenv1.MintResponse{Token: strings.Repeat("x", 253)}},
		{"over-answer-buffers", &tokenv1.MintResponse{Token: strings.Repeat("x", maxAnswerBuffer)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want, err := c.base.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Marshal(tt.msg)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if g, w := got.Materialize(), want.Materialize(); !bytes.Equal(g, w) {
				t.Errorf("Marshal = %x, want %x", g, w)
			}
			if got.Len() != proto.Size(tt.msg.(proto.Message)) {
				t.Errorf("Marshal: %d bytes, want %d", got.Len(), proto.Size(tt.msg.(proto.Message)))
			}
			got.Free()
			want.Free()
		})
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Error("Marshal(a string) = nil error, want the default codec's error")
	}
}

// TestRequestCodecMarshalReusedBuffer: a buffer given back dirty (a larger
// answer's bytes still in it) and taken again for a smaller answer holds
// exactly the smaller answer.
func TestRequestCodecMarshalReusedBuffer(t *testing.T) {
	c := newRequestCodec().(requestCodec)
	for range 20 { // sync.Pool may drop a buffer; some round reuses one
		big, err := c.Marshal(&tokenv1.MintResponse{Token: strings.Repeat("z", 1000), Jti: strings.Repeat("q", 20)})
		if err != nil {
			t.Fatal(err)
		}
		big.Free()
		msg := &tokenv1.MintResponse{Token: strings.Repeat("a", 600)}
		want, _ := proto.Marshal(msg)
		got, err := c.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if g := got.Materialize(); !bytes.Equal(g, want) {
			t.Fatalf("Marshal after a larger answer = %d bytes %q..., want %d bytes", len(g), g[len(g)-8:], len(want))
		}
		got.Free()
	}
}

// TestDirtyPool: Get(n) gives n bytes in the smallest power-of-two tier
// that holds them (2 KiB at least, so that grpc-go gives it back); Put keeps only buffers of a tier's
// capacity, so no buffer too small for a later Get is ever handed out.
func TestDirtyPool(t *testing.T) {
	p := &dirtyPool{}
	for _, tt := range []struct{ size, cap int }{
		{1, 2048}, {700, 2048}, {2048, 2048}, {2049, 4096}, {4096, 4096},
		{4097, 8192}, {8193, maxAnswerBuffer}, {maxAnswerBuffer, maxAnswerBuffer},
	} {
		for round := range 3 {
			b := p.Get(tt.size)
			if len(*b) != tt.size || cap(*b) != tt.cap {
				t.Fatalf("round %d: Get(%d) = len %d cap %d, want len %d cap %d", round, tt.size, len(*b), cap(*b), tt.size, tt.cap)
			}
			p.Put(b)
		}
	}
	for _, odd := range [][]byte{make([]byte, 10, 1024), make([]byte, 10, 3000), make([]byte, 10, 2*maxAnswerBuffer)} {
		p.Put(&odd)
	}
	for _, size := range []int{100, 1500, 2048, 3000, maxAnswerBuffer} {
		for range 5 {
			if b := p.Get(size); cap(*b) < size || cap(*b) < 2048 || cap(*b)&(cap(*b)-1) != 0 || cap(*b) > maxAnswerBuffer {
				t.Fatalf("Get(%d) after odd Puts: cap %d", size, cap(*b))
			}
		}
	}
}
