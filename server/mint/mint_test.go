package mint_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/mint"
)

const (
	account = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keySID  = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	secret  = "cccccccccccccccccccccccccccccccc"
	app     = "APdddddddddddddddddddddddddddddddd"
)

func seedGrants() []byte {
	return mint.AppendGrants(nil, &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{
		Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app},
	}})
}

func TestSignVerifies(t *testing.T) {
	k := mint.NewKey(account, keySID, []byte(secret))
	for _, region := range []string{"", "ie1"} {
		tok := k.Sign(&mint.Claims{Identity: "user", Grants: seedGrants(), Region: region, IssuedAt: 1700000000, TTL: 3600})
		parsed, err := jwt.Parse(tok.JWT, func(*jwt.Token) (any, error) { return []byte(secret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation())
		if err != nil {
			t.Fatalf("golang-jwt rejects %q: %v", tok.JWT, err)
		}
		want := map[string]any{"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}
		if region != "" {
			want["twr"] = region
		}
		if diff := cmp.Diff(want, parsed.Header); diff != "" {
			t.Errorf("header (-want +got):\n%s", diff)
		}
		claims := parsed.Claims.(jwt.MapClaims)
		wantClaims := jwt.MapClaims{
			"jti": tok.ID, "iss": keySID, "sub": account, "iat": 1700000000.0, "exp": 1700003600.0,
			"grants": map[string]any{"identity": "user", "voice": map[string]any{"outgoing": map[string]any{"application_sid": app}}},
		}
		if diff := cmp.Diff(wantClaims, claims); diff != "" {
			t.Errorf("claims (-want +got):\n%s", diff)
		}
		if !strings.HasPrefix(tok.ID, keySID+"-") || len(tok.ID) != len(keySID)+1+32 {
			t.Errorf("jti = %q, want %s- and 32 hex digits", tok.ID, keySID)
		}
		if tok.ExpiresAt != 1700003600 {
			t.Errorf("ExpiresAt = %d, want 1700003600", tok.ExpiresAt)
		}
	}
	if last, out := k.Usage(); last != 1700000000 || out != 1700003600 {
		t.Errorf("Usage() = %d, %d, want 1700000000, 1700003600", last, out)
	}
	if _, err := jwt.Parse(mustSign(t, k), func(*jwt.Token) (any, error) { return []byte("wrong"), nil }); err == nil {
		t.Error("a token verifies with the wrong secret")
	}
}

func mustSign(t *testing.T, k *mint.Key) string {
	return k.Sign(&mint.Claims{Identity: "user", IssuedAt: 1, TTL: 1}).JWT
}

func TestJTIUnique(t *testing.T) {
	k := mint.NewKey(account, keySID, []byte(secret))
	seen := map[string]bool{}
	for range 1000 {
		tok := k.Sign(&mint.Claims{Identity: "user", IssuedAt: 1700000000, TTL: 60})
		if seen[tok.ID] {
			t.Fatalf("jti %q repeats", tok.ID)
		}
		seen[tok.ID] = true
	}
}

// TestAppendGrantsMatchesJSON compares the hand-built grants JSON with
// what encoding/json makes of the same grants, key by key.
func TestAppendGrantsMatchesJSON(t *testing.T) {
	player, err := structpb.NewStruct(map[string]any{
		"requestCredentials": nil, "playbackUrl": "https://x/y?token=z", "n": 1.5, "big": 1e21, "small": 1e-7,
		"list": []any{"a", 2.0, true, map[string]any{"k": "v"}}, "int": 42.0,
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		grants *tokenv1.Grants
		want   map[string]any
	}{
		{"none", &tokenv1.Grants{}, map[string]any{}},
		{"voice_empty", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{}}},
			map[string]any{"voice": map[string]any{}}},
		{"voice_full", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{
			Incoming:          &tokenv1.VoiceGrant_Incoming{Allow: true},
			Outgoing:          &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app, Params: map[string]string{"b": "2", "a": "\"1\"\n"}},
			PushCredentialSid: "CR1", EndpointId: "e",
		}}, map[string]any{"voice": map[string]any{
			"incoming":            map[string]any{"allow": true},
			"outgoing":            map[string]any{"application_sid": app, "params": map[string]any{"a": "\"1\"\n", "b": "2"}},
			"push_credential_sid": "CR1", "endpoint_id": "e",
		}}},
		{"all", &tokenv1.Grants{
			Video:      &tokenv1.VideoGrant{},
			Chat:       &tokenv1.ChatGrant{ServiceSid: "IS1", EndpointId: "e", DeploymentRoleSid: "RL1", PushCredentialSid: "CR1"},
			DataSync:   &tokenv1.SyncGrant{ServiceSid: "IS2"},
			TaskRouter: &tokenv1.TaskRouterGrant{WorkspaceSid: "WS1", WorkerSid: "WK1", Role: "worker"},
			Player:     player,
		}, map[string]any{
			"video":       map[string]any{},
			"chat":        map[string]any{"service_sid": "IS1", "endpoint_id": "e", "deployment_role_sid": "RL1", "push_credential_sid": "CR1"},
			"data_sync":   map[string]any{"service_sid": "IS2"},
			"task_router": map[string]any{"workspace_sid": "WS1", "worker_sid": "WK1", "role": "worker"},
			"player":      player.AsMap(),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := append([]byte(`{"identity":"x"`), mint.AppendGrants(nil, tc.grants)...)
			raw = append(raw, '}')
			var got map[string]any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatalf("AppendGrants wrote invalid JSON %s: %v", raw, err)
			}
			tc.want["identity"] = "x"
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("AppendGrants (-want +got):\n%s\nraw: %s", diff, raw)
			}
		})
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "alice", "a\"b\\c", "\x00\x1f\x7f", "日本語", "\u2028\u2029", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		raw := mint.AppendString(nil, s)
		if want := refAppendString(nil, s); !bytes.Equal(raw, want) {
			t.Fatalf("AppendString(%q) = %s, the byte-by-byte reference gives %s", s, raw, want)
		}
		var got string
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s, not a JSON string: %v", s, raw, err)
		}
		if utf8.ValidString(s) && got != s {
			t.Fatalf("AppendString(%q) decodes to %q", s, got)
		}
	})
}

// refAppendString is AppendString as it was before its eight-bytes-at-a-
// time prefix scan: one byte at a time. AppendString must give the same
// bytes for every input.
func refAppendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// TestAppendStringMatchesReference: random strings of every length up to
// 40, each byte from a set weighted towards the bytes the prefix scan must
// stop at (every position of an 8-byte word, and across words).
func TestAppendStringMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	special := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', '\\', 0x5b, 0x5d, 0x7e, 0x7f, 0x80, 0xc3, 0xa9, 0xe2, 0x80, 0xa8, 0xff}
	for n := range 200_000 {
		b := make([]byte, rng.IntN(41))
		for i := range b {
			if rng.IntN(8) == 0 {
				b[i] = special[rng.IntN(len(special))]
			} else {
				b[i] = byte('a' + rng.IntN(26))
			}
		}
		s := string(b)
		if got, want := mint.AppendString(nil, s), refAppendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("case %d: AppendString(%q) = %s, reference %s", n, s, got, want)
		}
	}
}

// BenchmarkSign mints the seed's voice token: the mint core. make bench
// compares it with its floor and with twilio-go (module bench/).
func BenchmarkSign(b *testing.B) {
	k := mint.NewKey(account, keySID, []byte(secret))
	c := &mint.Claims{Identity: "user", Grants: seedGrants(), IssuedAt: 1700000000, TTL: 3600}
	b.ReportAllocs()
	for b.Loop() {
		k.Sign(c)
	}
}

// TestSignInto: a token signed into a caller's buffer is the token Sign
// makes (it verifies, its jti is its own), lives in that buffer (reused,
// so the next token replaces it), and costs no allocation once the buffer
// is large enough.
func TestSignInto(t *testing.T) {
	k := mint.NewKey(account, keySID, []byte(secret))
	for _, region := range []string{"", "ie1"} {
		var buf []byte
		c := &mint.Claims{Identity: "user", Grants: seedGrants(), Region: region, IssuedAt: 1700000000, TTL: 3600}
		tok := k.SignInto(c, &buf)
		if len(buf) != len(tok.JWT)+len(tok.ID) || string(buf) != tok.JWT+tok.ID {
			t.Fatalf("region %q: buffer holds %q, want the token and its jti", region, buf)
		}
		parsed, err := jwt.Parse(tok.JWT, func(*jwt.Token) (any, error) { return []byte(secret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation())
		if err != nil {
			t.Fatalf("region %q: golang-jwt rejects %q: %v", region, tok.JWT, err)
		}
		if got := parsed.Claims.(jwt.MapClaims)["jti"]; got != tok.ID {
			t.Errorf("region %q: jti claim %v, Token.ID %q", region, got, tok.ID)
		}
		// Same claims, same length: the next token is built in the same
		// memory and differs from the first only by its jti and signature.
		first, firstID := strings.Clone(tok.JWT), strings.Clone(tok.ID)
		next := k.SignInto(c, &buf)
		if tok.JWT != next.JWT {
			t.Errorf("region %q: the first token's string no longer shows the buffer's content", region)
		}
		if next.JWT == first || next.ID == firstID {
			t.Errorf("region %q: the second token is the first", region)
		}
		if raceEnabled {
			continue
		}
		if a := testing.AllocsPerRun(100, func() { k.SignInto(c, &buf) }); a != 0 {
			t.Errorf("region %q: SignInto allocates %v times a token, want 0", region, a)
		}
	}
}
