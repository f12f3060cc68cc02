package tokenapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/secrets"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/storage/sqlite"
	"github.com/tokend/tokend/server/tokenapi"
)

const (
	vApp1     = "AP11111111111111111111111111111111"
	vApp2     = "AP22222222222222222222222222222222" // shares vKey1 with vApp1
	vApp3     = "AP33333333333333333333333333333333" // another account
	vAccount1 = "AC11111111111111111111111111111111"
	vAccount3 = "AC33333333333333333333333333333333"
	vKey1     = "SK11111111111111111111111111111111"
	vKey2     = "SK22222222222222222222222222222222"
	vKey3     = "SK33333333333333333333333333333333"
	vUnknown  = "SK99999999999999999999999999999999"
	vSecret1  = "secret-one-0123456789abcdefABCDEF"
	vSecret2  = "secret-two-0123456789abcdefABCDEF"
	vSecret3  = "secret-three-0123456789abcdefABCD"
	vOther    = "not-a-secret-tokend-holds-at-all!"
)

var vSecrets = []string{vSecret1, vSecret2, vSecret3}

// verifyEnv is a Service over a keystore over a real SQLite store, with a
// clock the test moves.
type verifyEnv struct {
	st  storage.Store
	ks  *keystore.Keystore
	svc *tokenapi.Service
	now atomic.Int64 // unix seconds
}

func newVerifyEnv(tb testing.TB) *verifyEnv {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "tokend.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	kr, err := secrets.ParseKeyring(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	env := &verifyEnv{st: st, ks: keystore.New(st, kr, log)}
	env.now.Store(1_760_000_000)
	for _, a := range []storage.Application{
		{SID: vApp1, AccountSID: vAccount1},
		{SID: vApp2, AccountSID: vAccount1},
		{SID: vApp3, AccountSID: vAccount3},
	} {
		if _, err := env.ks.EnsureApplication(ctx, a); err != nil {
			tb.Fatal(err)
		}
	}
	for _, k := range []struct{ app, key, secret string }{
		{vApp1, vKey1, vSecret1},
		{vApp2, vKey1, vSecret1},
		{vApp3, vKey3, vSecret3},
	} {
		if _, err := env.ks.PutKey(ctx, k.app, k.key, []byte(k.secret), true); err != nil {
			tb.Fatal(err)
		}
	}
	if err := env.ks.Reload(ctx); err != nil {
		tb.Fatal(err)
	}
	env.svc = tokenapi.New(tokenapi.Config{
		Keys: env.ks,
		Now:  func() time.Time { return time.Unix(env.now.Load(), 0) },
	})
	return env
}

func (env *verifyEnv) mint(tb testing.TB, req *tokenv1.MintRequest) string {
	tb.Helper()
	resp, err := env.svc.Mint(context.Background(), req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.GetToken()
}

// handClaims are the claims of a valid token signed by vKey1, built by
// hand.
func handClaims(now int64) jwt.MapClaims {
	return jwt.MapClaims{
		"jti": vKey1 + "-0123456789abcdef",
		"iss": vKey1,
		"sub": vAccount1,
		"iat": now,
		"exp": now + 3600,
		"grants": map[string]any{
			"identity": "alice",
			"voice":    map[string]any{"outgoing": map[string]any{"application_sid": vApp1}},
		},
	}
}

func twilioHeader() map[string]any {
	return map[string]any{"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1"}
}

// signHand signs claims under header with secret via golang-jwt.
func signHand(tb testing.TB, header map[string]any, claims jwt.MapClaims, secret string) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header = header
	s, err := t.SignedString([]byte(secret))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func algNoneToken(tb testing.TB, now int64) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodNone, handClaims(now))
	t.Header["cty"] = "twilio-fpa;v=1"
	s, err := t.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// flipLastSignatureChar changes the signature's last character to another
// canonical one (its two unused low bits stay zero), so the signature
// decodes to different bytes.
func flipLastSignatureChar(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[i^4])
}

func TestVerify(t *testing.T) {
	env := newVerifyEnv(t)
	t0 := env.now.Load()
	minted := env.mint(t, &tokenv1.MintRequest{ApplicationSid: vApp1, Region: "ie1"})
	mintedApp3 := env.mint(t, &tokenv1.MintRequest{ApplicationSid: vApp3})

	with := func(edit func(c jwt.MapClaims)) jwt.MapClaims {
		c := handClaims(t0)
		edit(c)
		return c
	}
	header := func(edit func(h map[string]any)) map[string]any {
		h := twilioHeader()
		edit(h)
		return h
	}

	tests := []struct {
		name     string
		token    string
		at       int64 // seconds after t0
		code     int32
		app      string
		keyState string
		reason   string // a substring of the reason
	}{
		{name: "minted", token: minted, code: 0, app: vApp1, keyState: "active"},
		{name: "minted, last second", token: minted, at: 3600, code: 0, app: vApp1, keyState: "active"},
		{name: "other account", token: mintedApp3, code: 0, app: vApp3, keyState: "active"},
		{name: "by hand", token: signHand(t, twilioHeader(), handClaims(t0), vSecret1), code: 0, app: vApp1, keyState: "active"},
		{name: "no iat, go style nbf", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c, "iat"); c["nbf"] = t0 }), vSecret1), code: 0, app: vApp1, keyState: "active"},
		{name: "expired", token: minted, at: 3601, code: 20104, app: vApp1, keyState: "active", reason: "expired 1 s ago"},
		{name: "not yet valid", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["nbf"] = t0 + 600 }), vSecret1), code: 20105, app: vApp1, keyState: "active", reason: "nbf"},
		{name: "nbf not a number", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["nbf"] = "soon" }), vSecret1), code: 20105, app: vApp1, keyState: "active"},
		{name: "lifetime 90000 s", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["exp"] = t0 + 90000 }), vSecret1), code: 20157, app: vApp1, keyState: "active", reason: "90000"},
		{name: "lifetime 86401 s without iat", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c, "iat"); c["exp"] = t0 + 86401 }), vSecret1), code: 20157, app: vApp1, keyState: "active", reason: "after now"},
		{name: "lifetime 86400 s", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["exp"] = t0 + 86400 }), vSecret1), code: 0, app: vApp1, keyState: "active"},
		{name: "exp missing", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c, "exp") }), vSecret1), code: 20104, app: vApp1, keyState: "active", reason: "exp is missing"},
		{name: "exp not a number", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), vSecret1), code: 20104, app: vApp1, keyState: "active"},
		{name: "iat not a number", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["iat"] = true }), vSecret1), code: 20101, app: vApp1, keyState: "active"},
		{name: "signature flipped", token: flipLastSignatureChar(minted), code: 20107, app: vApp1, keyState: "active"},
		{name: "signature empty", token: minted[:strings.LastIndexByte(minted, '.')+1], code: 20107, app: vApp1, keyState: "active"},
		{name: "another secret", token: signHand(t, twilioHeader(), handClaims(t0), vOther), code: 20107, app: vApp1, keyState: "active"},
		{name: "payload changed", token: resign(minted, with(func(c jwt.MapClaims) {})), code: 20107, app: vApp1, keyState: "active"},
		{name: "alg none", token: algNoneToken(t, t0), code: 20102, reason: `"none"`},
		{name: "alg HS512", token: signHS512(t, handClaims(t0)), code: 20102, reason: "HS512"},
		{name: "no alg", token: unsigned(t, header(func(h map[string]any) { delete(h, "alg") }), handClaims(t0)), code: 20102},
		{name: "wrong cty", token: signHand(t, header(func(h map[string]any) { h["cty"] = "JWT" }), handClaims(t0), vSecret1), code: 20102, reason: "cty"},
		{name: "no cty", token: signHand(t, header(func(h map[string]any) { delete(h, "cty") }), handClaims(t0), vSecret1), code: 20102, reason: "cty"},
		{name: "wrong typ", token: signHand(t, header(func(h map[string]any) { h["typ"] = "jwt" }), handClaims(t0), vSecret1), code: 20102, reason: "typ"},
		{name: "bad twr", token: signHand(t, header(func(h map[string]any) { h["twr"] = "US1" }), handClaims(t0), vSecret1), code: 20102, reason: "twr"},
		{name: "empty twr", token: signHand(t, header(func(h map[string]any) { h["twr"] = "" }), handClaims(t0), vSecret1), code: 20102, reason: "twr"},
		{name: "unknown iss", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["iss"] = vUnknown; c["jti"] = vUnknown + "-1" }), vSecret1), code: 20103, reason: "holds no API key"},
		{name: "iss not a key SID", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["iss"] = vApp1 }), vSecret1), code: 20103, reason: "iss"},
		{name: "iss missing", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c, "iss") }), vSecret1), code: 20103, reason: "iss"},
		{name: "sub not an account SID", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["sub"] = "user" }), vSecret1), code: 20103, reason: "sub"},
		// A sub that is not the account owning the key is a bad subject
		// (20103), decided before the signature.
		{name: "sub of another account", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["sub"] = vAccount3 }), vSecret1), code: 20103, app: vApp1, keyState: "active", reason: "not the account"},
		{name: "garbage", token: "garbage", code: 20101},
		{name: "four parts", token: minted + ".x", code: 20101},
		{name: "padded base64", token: padded(minted), code: 20101, reason: "base64url"},
		{name: "payload not JSON", token: "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", code: 20101, reason: "payload"},
		{name: "payload an array", token: "eyJhbGciOiJIUzI1NiJ9.WzFd.c2ln", code: 20101, reason: "payload"},
		{name: "voice identity with a space", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["grants"].(map[string]any)["identity"] = "alice smith" }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "grants.identity"},
		{name: "identity with a format character", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) {
			c["grants"] = map[string]any{"identity": "ali\u202Ece", "chat": map[string]any{}}
		}), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "grants.identity must not contain Unicode format characters"},
		{name: "identity missing", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c["grants"].(map[string]any), "identity") }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "identity"},
		{name: "identity empty", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["grants"].(map[string]any)["identity"] = "" }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "identity"},
		{name: "grants missing", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c, "grants") }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "grants"},
		{name: "grants not an object", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["grants"] = []any{"voice"} }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "grants"},
		{name: "unknown grant", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["grants"].(map[string]any)["fax"] = map[string]any{} }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: `"fax"`},
		{name: "camelCase grant", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["grants"].(map[string]any)["dataSync"] = map[string]any{} }), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: `"dataSync"`},
		{name: "camelCase grant field", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) {
			c["grants"].(map[string]any)["voice"] = map[string]any{"outgoing": map[string]any{"applicationSid": vApp1}}
		}), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "applicationSid"},
		{name: "bad grant SID", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) {
			c["grants"].(map[string]any)["voice"] = map[string]any{"outgoing": map[string]any{"application_sid": "AP1"}}
		}), vSecret1), code: 20106, app: vApp1, keyState: "active", reason: "application_sid"},
		{name: "jti of another key", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["jti"] = vKey2 + "-1" }), vSecret1), code: 20101, app: vApp1, keyState: "active", reason: "jti"},
		{name: "jti missing", token: signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { delete(c, "jti") }), vSecret1), code: 20101, app: vApp1, keyState: "active", reason: "jti"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.now.Store(t0 + tt.at)
			resp := verifyOK(t, env.svc, tt.token)
			if resp.GetTwilioErrorCode() != tt.code || resp.GetValid() != (tt.code == 0) {
				t.Fatalf("valid=%v code=%d reason=%q, want code %d", resp.GetValid(), resp.GetTwilioErrorCode(), resp.GetReason(), tt.code)
			}
			if tt.code == 0 && resp.GetReason() != "" {
				t.Errorf("reason = %q for a valid token", resp.GetReason())
			}
			if tt.code != 0 && !strings.Contains(resp.GetReason(), tt.reason) {
				t.Errorf("reason = %q, want it to contain %q", resp.GetReason(), tt.reason)
			}
			if resp.GetApplicationSid() != tt.app || resp.GetKeyState() != tt.keyState {
				t.Errorf("application_sid=%q key_state=%q, want %q %q", resp.GetApplicationSid(), resp.GetKeyState(), tt.app, tt.keyState)
			}
		})
	}
	env.now.Store(t0)

	t.Run("decoded", func(t *testing.T) {
		resp := verifyOK(t, env.svc, minted)
		h := resp.GetHeader().AsMap()
		if h["alg"] != "HS256" || h["cty"] != "twilio-fpa;v=1" || h["twr"] != "ie1" {
			t.Errorf("header = %v", h)
		}
		c := resp.GetClaims().AsMap()
		if c["iss"] != vKey1 || c["sub"] != vAccount1 || c["exp"] != float64(t0+3600) {
			t.Errorf("claims = %v", c)
		}
		if resp.GetApiKeySid() != vKey1 {
			t.Errorf("api_key_sid = %q, want %s", resp.GetApiKeySid(), vKey1)
		}
		if got := resp.GetExpiresAt().GetSeconds(); got != t0+3600 {
			t.Errorf("expires_at = %d, want %d", got, t0+3600)
		}
		// Decoded even when the token is rejected.
		resp = verifyOK(t, env.svc, signHand(t, header(func(h map[string]any) { h["cty"] = "x" }), handClaims(t0), vSecret1))
		if resp.GetClaims().AsMap()["iss"] != vKey1 || resp.GetExpiresAt().GetSeconds() != t0+3600 {
			t.Errorf("a rejected token's claims are not decoded: %v", resp)
		}
		resp = verifyOK(t, env.svc, signHand(t, twilioHeader(), with(func(c jwt.MapClaims) { c["iss"] = vUnknown }), vSecret1))
		if resp.GetApiKeySid() != vUnknown || resp.GetKeyState() != "" || resp.GetApplicationSid() != "" {
			t.Errorf("unknown key: api_key_sid=%q key_state=%q application_sid=%q", resp.GetApiKeySid(), resp.GetKeyState(), resp.GetApplicationSid())
		}
	})

	t.Run("retired key", func(t *testing.T) {
		ctx := context.Background()
		if _, err := env.ks.PutKey(ctx, vApp1, vKey2, []byte(vSecret2), true); err != nil {
			t.Fatal(err)
		}
		if err := env.ks.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		resp := verifyOK(t, env.svc, minted)
		if !resp.GetValid() || resp.GetKeyState() != "retired" || resp.GetApplicationSid() != vApp1 {
			t.Fatalf("old token: valid=%v code=%d key_state=%q application_sid=%q, want valid, retired, %s",
				resp.GetValid(), resp.GetTwilioErrorCode(), resp.GetKeyState(), resp.GetApplicationSid(), vApp1)
		}
		fresh := env.mint(t, &tokenv1.MintRequest{ApplicationSid: vApp1})
		resp = verifyOK(t, env.svc, fresh)
		if !resp.GetValid() || resp.GetKeyState() != "active" || resp.GetApiKeySid() != vKey2 {
			t.Fatalf("new token: valid=%v code=%d key_state=%q api_key_sid=%q", resp.GetValid(), resp.GetTwilioErrorCode(), resp.GetKeyState(), resp.GetApiKeySid())
		}
		// vKey1 is still active in vApp2, which holds it too.
		if refs := env.ks.FindKey(vKey1); len(refs) != 2 || refs[0].App.SID != vApp1 || refs[0].Active || refs[1].App.SID != vApp2 || !refs[1].Active {
			t.Errorf("FindKey(%s) = %+v", vKey1, refs)
		}
	})

	t.Run("bounds", func(t *testing.T) {
		for _, tok := range []string{"", strings.Repeat("a", tokenapi.MaxVerifyTokenBytes+1)} {
			resp, err := env.svc.Verify(context.Background(), &tokenv1.VerifyRequest{Token: tok})
			if status.Code(err) != codes.InvalidArgument || resp != nil {
				t.Fatalf("Verify(%d bytes) = %v, %v; want InvalidArgument", len(tok), resp, err)
			}
			var fields []string
			for _, d := range status.Convert(err).Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, f := range br.GetFieldViolations() {
						fields = append(fields, f.GetField())
					}
				}
			}
			if len(fields) != 1 || fields[0] != "token" {
				t.Errorf("field violations = %v, want [token]", fields)
			}
		}
		resp := verifyOK(t, env.svc, strings.Repeat("a", tokenapi.MaxVerifyTokenBytes))
		if resp.GetTwilioErrorCode() != 20101 {
			t.Errorf("16 KiB of garbage: code %d, want 20101", resp.GetTwilioErrorCode())
		}
	})
}

// verifyOK calls Verify, which must not fail, and checks the response
// holds no secret.
func verifyOK(tb testing.TB, svc *tokenapi.Service, tok string) *tokenv1.VerifyResponse {
	tb.Helper()
	resp, err := svc.Verify(context.Background(), &tokenv1.VerifyRequest{Token: tok})
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	b, err := protojson.Marshal(resp)
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range vSecrets {
		if bytes.Contains(b, []byte(s)) {
			tb.Fatalf("the response holds a secret: %s", b)
		}
	}
	return resp
}

// resign replaces the payload of tok, keeping its header and signature.
func resign(tok string, claims jwt.MapClaims) string {
	p := strings.Split(tok, ".")
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	s, _ := t.SigningString()
	return p[0] + "." + strings.Split(s, ".")[1] + "." + p[2]
}

func signHS512(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodHS512, claims)
	t.Header["cty"] = "twilio-fpa;v=1"
	s, err := t.SignedString([]byte(vSecret1))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// unsigned encodes header and claims with a dummy signature.
func unsigned(tb testing.TB, header map[string]any, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	t.Header = header
	s, err := t.SigningString()
	if err != nil {
		tb.Fatal(err)
	}
	return s + ".c2ln"
}

// padded adds base64 padding to the payload of tok.
func padded(tok string) string {
	p := strings.Split(tok, ".")
	for len(p[1])%4 != 0 {
		p[1] += "="
	}
	if !strings.HasSuffix(p[1], "=") {
		p[1] += "===="
	}
	return strings.Join(p, ".")
}
