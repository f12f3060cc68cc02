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
		{"rlo", "alice\u202Egpj.exe", chat, "category Cf, such as right-to-left overrides and zero-width joiners): found U+202E"},
		{"zwj", "a\u200Db", nil, "found U+200D"},
		{"zwsp", "\u200B", chat, "found U+200B"},
		{"bom", "x\uFEFF", nil, "found U+FEFF"},
		{"soft_hyphen", "co\u00ADop", chat, "found U+00AD"},
		{"word_joiner", "a\u2060b", chat, "found U+2060"},
		{"tag", "a\U000E0001", nil, "found U+E0001"},
		{"voice", "bob\u202E", voice, "found U+202E"},
		{"hangul_filler", "alice\u3164", chat, "invisible characters"},
		{"halfwidth_hangul_filler", "\uFFA0bob", nil, "invisible characters"},
		{"combining_grapheme_joiner", "a\u034Fb", chat, "invisible characters"},
		{"variation_selector", "carol\uFE0F", chat, "invisible characters"},
		{"mongolian_variation_selector", "d\u180Bave", nil, "invisible characters"},
		{"line_separator", "alice\u2028admin", chat, "line or paragraph separators: found U+2028"},
		{"paragraph_separator", "\u2029bob", nil, "line or paragraph separators: found U+2029"},
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
			if len(v) != 1 || v[0].GetField() != "identity" || !strings.Contains(v[0].GetDescription(), "must not contain ") ||
				!strings.Contains(v[0].GetDescription(), tc.want) {
				t.Fatalf("CheckIdentity(%q) = %v, want one identity violation naming %s", tc.identity, v, tc.want)
			}
		})
	}
}

// TestCheckGrantsFormatCharacters: every text a grant carries into the
// token (room, role, endpoint ids, outgoing params keys and values)
// refuses Unicode format characters, naming the field; other Unicode is
// kept.
func TestCheckGrantsFormatCharacters(t *testing.T) {
	const app = "AP0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name  string
		g     *tokenv1.Grants
		field string // "" for no violation
	}{
		{"room_rlo", &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "support-1\u202E9"}}, "grants.video.room"},
		{"room_zwsp", &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "\u200Bsupport-1"}}, "grants.video.room"},
		{"role_bom", &tokenv1.Grants{TaskRouter: &tokenv1.TaskRouterGrant{Role: "worker\uFEFF"}}, "grants.task_router.role"},
		{"voice_endpoint", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{EndpointId: "e\u2066p"}}, "grants.voice.endpoint_id"},
		{"chat_endpoint", &tokenv1.Grants{Chat: &tokenv1.ChatGrant{EndpointId: "e\u200Dp"}}, "grants.chat.endpoint_id"},
		{"sync_endpoint", &tokenv1.Grants{DataSync: &tokenv1.SyncGrant{EndpointId: "e\u00ADp"}}, "grants.data_sync.endpoint_id"},
		{"param_key", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app, Params: map[string]string{"t\u200Bo": "x"}}}}, "grants.voice.outgoing.params"},
		{"param_value", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app, Params: map[string]string{"to": "+1555\u202E0100"}}}}, "grants.voice.outgoing.params[to]"},
		{"room_line_separator", &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "support-1\u2028admin"}}, "grants.video.room"},
		{"room_unicode_ok", &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "salle-café"}}, ""},
		{"param_unicode_ok", &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Outgoing: &tokenv1.VoiceGrant_Outgoing{ApplicationSid: app, Params: map[string]string{"nom": "zoë"}}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v tokenapi.Violations
			v.CheckGrants("grants", tc.g)
			if tc.field == "" {
				if len(v) != 0 {
					t.Fatalf("CheckGrants(%v) = %v, want no violation", tc.g, v)
				}
				return
			}
			if len(v) != 1 || v[0].GetField() != tc.field || !strings.Contains(v[0].GetDescription(), "must not contain ") {
				t.Fatalf("CheckGrants(%v) = %v, want one violation of %s naming category Cf", tc.g, v, tc.field)
			}
		})
	}
}
