package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNewCredentialToken(t *testing.T) {
	shape := regexp.MustCompile(`^tkd_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 50 {
		tok, hash, err := NewCredentialToken()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(tok) || !IsCredentialToken(tok) {
			t.Fatalf("token %q is not shaped like a credential", tok)
		}
		if hash != sha256.Sum256([]byte(tok)) || hash != HashCredential(tok) {
			t.Fatal("hash is not the SHA-256 of the token")
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestIsCredentialToken(t *testing.T) {
	good, _, _ := NewCredentialToken()
	for _, tt := range []struct {
		s    string
		want bool
	}{
		{good, true},
		{"tkd_" + strings.Repeat("A", 43), true},
		{"tkd_" + strings.Repeat("A", 42) + "B", false}, // non-zero padding bits
		{"tkd_" + strings.Repeat("A", 42), false},
		{"tkd_" + strings.Repeat("A", 44), false},
		{"tkd_" + strings.Repeat("A", 42) + "=", false},
		{"tkd_" + strings.Repeat("+", 43), false},
		{"tkx_" + strings.Repeat("A", 43), false},
		{"", false},
	} {
		if got := IsCredentialToken(tt.s); got != tt.want {
			t.Errorf("IsCredentialToken(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// TestIsCredentialTokenLastCharacter holds the padding-bit check to a
// strict base64url decoder for every possible last character.
func TestIsCredentialTokenLastCharacter(t *testing.T) {
	for c := 0; c < 256; c++ {
		rest := strings.Repeat("Q", 42) + string(rune(c))
		if len(rest) != 43 {
			continue // not one byte: the length check refuses it
		}
		// The decoder skips '\r' and '\n'; the alphabet check refuses them.
		_, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		want := err == nil && c != '\r' && c != '\n'
		if got := IsCredentialToken(CredentialPrefix + rest); got != want {
			t.Errorf("IsCredentialToken(tkd_Q…%q) = %v, want %v", rune(c), got, want)
		}
	}
}

// TestCredentialHotPathAllocs: checking and hashing a credential, done on
// every authenticated call, allocates nothing.
func TestCredentialHotPathAllocs(t *testing.T) {
	tok, hash, err := NewCredentialToken()
	if err != nil {
		t.Fatal(err)
	}
	if got := HashCredential(tok); got != hash {
		t.Fatalf("HashCredential(token) = %x, want %x", got, hash)
	}
	long := strings.Repeat("x", 100)
	if got, want := HashCredential(long), sha256.Sum256([]byte(long)); got != want {
		t.Fatalf("HashCredential(100 bytes) = %x, want %x", got, want)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if !IsCredentialToken(tok) {
			t.Fatal("IsCredentialToken(token) = false")
		}
		hash = HashCredential(tok)
	})
	if allocs != 0 {
		t.Errorf("IsCredentialToken + HashCredential: %v allocations, want 0", allocs)
	}
}

// credentialStore is a CredentialLookup over a map, as tokend's store
// would be.
func credentialStore(t *testing.T, names ...string) (CredentialLookup, map[string]string) {
	t.Helper()
	byHash := map[[32]byte]string{}
	tokens := map[string]string{}
	for _, n := range names {
		tok, hash, err := NewCredentialToken()
		if err != nil {
			t.Fatal(err)
		}
		byHash[hash] = n
		tokens[n] = tok
	}
	return func(hash [32]byte) (string, []string, bool) {
		n, ok := byHash[hash]
		if !ok {
			return "", nil, false
		}
		return n, []string{"svc-" + n}, true
	}, tokens
}

func TestCredentialAuthentication(t *testing.T) {
	lookup, tokens := credentialStore(t, "backend", "billing")
	unknown, _, _ := NewCredentialToken()
	a, err := New(Config{Credentials: lookup, Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	noCreds, err := New(Config{Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		a        *Authenticator
		authz    string
		wantName string // "" for an error
		wantMsg  string
	}{
		{"hit", a, "Bearer " + tokens["backend"], "backend", ""},
		{"other hit", a, "Bearer " + tokens["billing"], "billing", ""},
		{"scheme is case-insensitive", a, "bearer " + tokens["backend"], "backend", ""},
		{"miss", a, "Bearer " + unknown, "", "unknown or revoked service credential"},
		{"malformed", a, "Bearer tkd_short", "", "malformed service credential"},
		{"credentials off", noCreds, "Bearer " + tokens["backend"], "", "service credentials are not accepted here"},
		{"basic scheme", a, "Basic " + tokens["backend"], "", "unsupported authorization scheme: use Bearer"},
		{"empty bearer", a, "Bearer ", "", "empty bearer token"},
		{"not a credential, no OIDC", a, "Bearer eyJhbGciOi.x.y", "", "bearer token not accepted: not a tokend credential, and OIDC is not configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.a.Authenticate(context.Background(), Request{Authorization: tt.authz, REST: true})
			if tt.wantName == "" {
				checkRefused(t, err, tt.wantMsg, tt.authz)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if p.Kind != KindCredential || p.Name != tt.wantName || p.Browser || p.Identity != "" || !p.HasGroup("svc-"+tt.wantName) {
				t.Fatalf("principal = %+v", p)
			}
		})
	}
}

// checkRefused checks err is Unauthenticated, with message want (if not
// empty), and quotes none of the secret.
func checkRefused(t *testing.T, err error, want, secret string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted, want Unauthenticated")
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unauthenticated {
		t.Fatalf("error %v: not an Unauthenticated status", err)
	}
	if want != "" && st.Message() != want {
		t.Errorf("message %q, want %q", st.Message(), want)
	}
	_, tok, _ := strings.Cut(secret, " ")
	if tok = strings.TrimSpace(tok); len(tok) > 8 && strings.Contains(st.Message(), tok) {
		t.Errorf("message %q contains the token", st.Message())
	}
	for _, part := range strings.Split(tok, ".") {
		if len(part) > 8 && strings.Contains(st.Message(), part) {
			t.Errorf("message %q contains part of the token", st.Message())
		}
	}
}
