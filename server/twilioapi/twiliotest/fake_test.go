package twiliotest

import (
	"fmt"
	"strings"
	"testing"
)

// TestKeyInfoHidesSecret: printing the fake's keys (as a failing test
// does) shows no secret.
func TestKeyInfoHidesSecret(t *testing.T) {
	f := New()
	defer f.Close()
	f.AddAccount("AC0123456789abcdef0123456789abcdef", "token")
	k := f.AddKey("AC0123456789abcdef0123456789abcdef", "main", true)
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(format, []KeyInfo{k}); strings.Contains(got, k.Secret) || !strings.Contains(got, k.SID) {
			t.Errorf("Sprintf(%q, keys) = %s, want the SID and not the secret", format, got)
		}
	}
}
