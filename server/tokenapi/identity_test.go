package tokenapi_test

import (
	"strings"
	"testing"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/tokenapi"
)

// TestCheckIdentityFormatCharacters: an identity holding a Unicode format
// character (category Cf) is refused whatever grants the token carries;
// other Unicode is not.
func TestCheckIdentityFormatCharacters(t *testing.T) {
	chat := &tokenv1.Grants{Chat: &tokenv1.ChatGrant{}}
	voice := &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{}}
	for _, tc := range []struct {
		name, identity string
		g              *tokenv1.Grants
		want           string // "" for no violation
	}{
		{"rlo", "alice\u202Egpj.exe", chat, "found U+202E"},
		{"zwj", "a\u200Db", nil, "found U+200D"},
		{"zwsp", "\u200B", chat, "found U+200B"},
		{"bom", "x\uFEFF", nil, "found U+FEFF"},
		{"soft_hyphen", "co\u00ADop", chat, "found U+00AD"},
		{"word_joiner", "a\u2060b", chat, "found U+2060"},
		{"tag", "a\U000E0001", nil, "found U+E0001"},
		{"voice", "bob\u202E", voice, "found U+202E"},
		{"accents_ok", "zoë_ñ", chat, ""},
		{"cjk_ok", "用户", nil, ""},
		{"ascii_ok", "agent_7", voice, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v tokenapi.Violations
			v.CheckIdentity(tc.identity, tc.g)
			if tc.want == "" {
				if len(v) != 0 {
					t.Fatalf("CheckIdentity(%q) = %v, want no violation", tc.identity, v)
				}
				return
			}
			if len(v) != 1 || v[0].GetField() != "identity" || !strings.Contains(v[0].GetDescription(), "must not contain Unicode format characters (category Cf") ||
				!strings.Contains(v[0].GetDescription(), tc.want) {
				t.Fatalf("CheckIdentity(%q) = %v, want one identity violation naming category Cf and %s", tc.identity, v, tc.want)
			}
		})
	}
}
