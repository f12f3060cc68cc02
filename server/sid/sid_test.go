package sid_test

import (
	"testing"

	"github.com/tokend/tokend/server/sid"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		s, prefix string
		want      bool
	}{
		{"APdddddddddddddddddddddddddddddddd", "AP", true},
		{"AP0123456789ABCDEFabcdef0123456789", "AP", true},
		{"ACdddddddddddddddddddddddddddddddd", "AP", false},
		{"APddddddddddddddddddddddddddddddd", "AP", false},
		{"APdddddddddddddddddddddddddddddddg", "AP", false},
		{"apdddddddddddddddddddddddddddddddd", "AP", false},
		{"", "AP", false},
	} {
		if got := sid.Valid(tc.s, tc.prefix); got != tc.want {
			t.Errorf("Valid(%q, %q) = %v, want %v", tc.s, tc.prefix, got, tc.want)
		}
	}
}
