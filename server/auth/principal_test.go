package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var twilioIdentity = regexp.MustCompile(`^[A-Za-z0-9_]{0,121}$`)

// decodeIdentity reverses SafeIdentity for identities that were not cut.
func decodeIdentity(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '_' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '_' {
			b.WriteByte('_')
			i++
			continue
		}
		if i+2 >= len(s) {
			t.Fatalf("truncated escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
			t.Fatalf("bad escape %q in %q", s[i:i+3], s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String()
}

func TestSafeIdentity(t *testing.T) {
	hashOf := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])[:32]
	}
	long := strings.Repeat("a", 200)
	longAt := strings.Repeat("@", 100)
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"alice", "alice"},
		{"Alice42", "Alice42"},
		{"alice_smith", "alice__smith"},
		{"alice@example.com", "alice_40example_2Ecom"},
		{"user-1", "user_2D1"},
		{"a b", "a_20b"},
		{"é", "_C3_A9"},
		{"a_40b", "a__40b"}, // not "a@b"'s mapping
		{"a@b", "a_40b"},
		{"spiffe://x/y", "spiffe_3A_2F_2Fx_2Fy"},
		{strings.Repeat("b", 121), strings.Repeat("b", 121)},
		{long, strings.Repeat("a", 87) + "_h" + hashOf(long)},
		// Cut between escapes, never inside one: 29 escapes are 87 bytes.
		{longAt, strings.Repeat("_40", 29) + "_h" + hashOf(longAt)},
		{strings.Repeat("_", 61), strings.Repeat("_", 86) + "_h" + hashOf(strings.Repeat("_", 61))},
	}
	for _, tt := range tests {
		got := SafeIdentity(tt.in)
		if got != tt.want {
			t.Errorf("SafeIdentity(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !twilioIdentity.MatchString(got) {
			t.Errorf("SafeIdentity(%q) = %q: not a valid Twilio identity", tt.in, got)
		}
		if len(tt.in) <= 40 { // not cut: decodes back
			if back := decodeIdentity(t, got); back != tt.in {
				t.Errorf("decode(SafeIdentity(%q)) = %q", tt.in, back)
			}
		}
	}
	// One-to-one over a set of look-alikes.
	seen := map[string]string{}
	for _, in := range []string{"a_b", "a__b", "a-b", "a_2Db", "a.b", "a_2Eb", "A_B", "a b", "a_20b", "a\x00b", "a_00b"} {
		out := SafeIdentity(in)
		if prev, ok := seen[out]; ok {
			t.Errorf("SafeIdentity(%q) = SafeIdentity(%q) = %q", in, prev, out)
		}
		seen[out] = in
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		0: "none", KindAnonymous: "anonymous", KindMTLS: "mtls", KindCredential: "credential",
		KindOIDC: "oidc", KindProxy: "proxy", Kind(99): "Kind(99)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestPrincipalContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := FromContext(ctx); ok {
		t.Fatal("FromContext on an empty context: ok")
	}
	p := Principal{Kind: KindOIDC, Name: "oidc:u1", Identity: "alice", Groups: []string{"ops"}, Browser: true}
	got, ok := FromContext(NewContext(ctx, p))
	if !ok || got.Name != p.Name || got.Identity != p.Identity || !got.Browser || !got.HasGroup("ops") || got.HasGroup("dev") {
		t.Fatalf("FromContext = %+v, %v", got, ok)
	}
	if s, want := p.String(), `oidc "oidc:u1" identity=alice groups=[ops]`; s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
	if s, want := (Principal{Kind: KindMTLS, Name: "spiffe://test/backend"}).String(), `mtls "spiffe://test/backend"`; s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
}
