package server

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// A Mint's answer is encoded by hand on the gRPC hot path: protobuf-go's
// Size and Marshal walk the message's field table through reflection-made
// coders, about 0.25 µs for a 700-byte answer, where appending seven
// strings and two timestamps takes a fraction of it. The bytes are the
// ones proto.Marshal gives (fields in number order, proto3 defaults left
// out); TestMintAnswerWire and FuzzMintAnswerWire hold it to that, and
// TestMintAnswerFields fails when MintResponse gains a field this file
// does not know. Only the common answer is encoded here: one with a
// Decision (a dry run), unknown fields, or a string that is not valid
// UTF-8 (which protobuf-go refuses with its own error) goes to protobuf-go.

// mintAnswerSize is the wire size of m, and false when m is not one
// appendMintAnswer encodes.
func mintAnswerSize(m *tokenv1.MintResponse) (int, bool) {
	if m.Decision != nil || len(m.ProtoReflect().GetUnknown()) != 0 {
		return 0, false
	}
	n := 0
	for _, s := range [...]string{m.Token, m.Identity, m.ApplicationSid, m.AccountSid, m.ApiKeySid, m.Jti, m.Region} {
		if len(s) == 0 {
			continue
		}
		if !utf8.ValidString(s) {
			return 0, false
		}
		n += 1 + protowire.SizeBytes(len(s)) // every tag here is one byte
	}
	for _, t := range [...]*timestamppb.Timestamp{m.IssuedAt, m.ExpiresAt} {
		if t == nil {
			continue
		}
		if len(t.ProtoReflect().GetUnknown()) != 0 {
			return 0, false
		}
		n += 1 + protowire.SizeBytes(timestampSize(t))
	}
	return n, true
}

// appendMintAnswer appends m's wire encoding to b; m is one
// mintAnswerSize accepted.
func appendMintAnswer(b []byte, m *tokenv1.MintResponse) []byte {
	b = appendString(b, 1, m.Token)
	b = appendString(b, 2, m.Identity)
	b = appendString(b, 3, m.ApplicationSid)
	b = appendString(b, 4, m.AccountSid)
	b = appendString(b, 5, m.ApiKeySid)
	b = appendString(b, 6, m.Jti)
	b = appendTimestamp(b, 7, m.IssuedAt)
	b = appendTimestamp(b, 8, m.ExpiresAt)
	return appendString(b, 9, m.Region)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if len(s) == 0 {
		return b
	}
	b = appendTag(b, num, protowire.BytesType)
	return append(appendVarint(b, uint64(len(s))), s...)
}

// appendTag appends the tag of a field numbered 1 to 15 (one byte).
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return append(b, byte(num)<<3|byte(typ))
}

// appendVarint is protowire.AppendVarint with the one-byte case (every
// length here but the token's) inlined.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

func timestampSize(t *timestamppb.Timestamp) int {
	n := 0
	if t.Seconds != 0 {
		n += 1 + protowire.SizeVarint(uint64(t.Seconds))
	}
	if t.Nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(int64(t.Nanos)))
	}
	return n
}

func appendTimestamp(b []byte, num protowire.Number, t *timestamppb.Timestamp) []byte {
	if t == nil {
		return b
	}
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(timestampSize(t)))
	if t.Seconds != 0 {
		b = appendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(t.Seconds))
	}
	if t.Nanos != 0 {
		b = appendTag(b, 2, protowire.VarintType)
		b = appendVarint(b, uint64(int64(t.Nanos)))
	}
	return b
}
