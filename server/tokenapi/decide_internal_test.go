package tokenapi

import (
	"strings"
	"testing"
)

// TestTrimKind holds trimKind to what it replaces,
// strings.TrimPrefix(name, kind+":").
func TestTrimKind(t *testing.T) {
	for _, kind := range []string{"credential", "oidc", "anonymous", "mtls", "proxy", ""} {
		for _, name := range []string{"", "load", "oidc:alice", "credential:load", "credential:", "credential", "credentials:x", "anonymous:browser:1", "::", ":x"} {
			if got, want := trimKind(name, kind), strings.TrimPrefix(name, kind+":"); got != want {
				t.Errorf("trimKind(%q, %q) = %q; want %q", name, kind, got, want)
			}
		}
	}
}

func FuzzTrimKind(f *testing.F) {
	f.Add("credential:load", "credential")
	f.Fuzz(func(t *testing.T, name, kind string) {
		if got, want := trimKind(name, kind), strings.TrimPrefix(name, kind+":"); got != want {
			t.Fatalf("trimKind(%q, %q) = %q; want %q", name, kind, got, want)
		}
	})
}
