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
