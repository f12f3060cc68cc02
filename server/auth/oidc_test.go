package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testAudience = "tokend-client"

// testIdP is an OIDC provider: a JWKS (and discovery) server and the
// private keys behind it.
type testIdP struct {
	srv     *httptest.Server
	fetches atomic.Int32
	fail    atomic.Bool

	mu   sync.Mutex
	jwks []byte
	// discoveryIssuer is the issuer the discovery document names; "" is
	// the server's URL.
	discoveryIssuer string

	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
	rsa2 *rsa.PrivateKey
}

var (
	keysOnce                 sync.Once
	sharedRSA, sharedRSA2    *rsa.PrivateKey
	sharedRSAOther, smallRSA *rsa.PrivateKey
)

// testKeys generates the RSA keys once: they are slow to make.
func testKeys(t *testing.T) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		for _, k := range []struct {
			p    **rsa.PrivateKey
			bits int
		}{{&sharedRSA, 2048}, {&sharedRSA2, 2048}, {&sharedRSAOther, 2048}, {&smallRSA, 1024}} {
			if *k.p, err = rsa.GenerateKey(rand.Reader, k.bits); err != nil {
				panic(err)
			}
		}
	})
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	testKeys(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &testIdP{rsa: sharedRSA, rsa2: sharedRSA2, ec: ec, ed: ed}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.setKeys(t, jwkOf(t, "rsa1", &p.rsa.PublicKey, "RS256"), jwkOf(t, "ec1", &p.ec.PublicKey, ""), jwkOf(t, "ed1", p.ed.Public(), ""))
	return p
}

func (p *testIdP) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/jwks":
		p.fetches.Add(1)
		if p.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		b := p.jwks
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	case "/.well-known/openid-configuration":
		p.mu.Lock()
		iss := p.discoveryIssuer
		p.mu.Unlock()
		if iss == "" {
			iss = p.srv.URL
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks"})
	default:
		http.NotFound(w, r)
	}
}

func (p *testIdP) setKeys(t *testing.T, keys ...map[string]any) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.jwks = b
	p.mu.Unlock()
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf encodes a public key as a JWK.
func jwkOf(t *testing.T, kid string, pub crypto.PublicKey, alg string) map[string]any {
	t.Helper()
	m := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"] = "RSA"
		m["n"] = b64u(k.N.Bytes())
		m["e"] = b64u(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		size := (len(b) - 1) / 2
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"], m["y"] = b64u(b[1:1+size]), b64u(b[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64u(k)
	default:
		t.Fatalf("jwkOf: %T", pub)
	}
	return m
}

// sign makes a JWT.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// newOIDCAuth returns an Authenticator accepting the IdP's tokens, on clock.
func newOIDCAuth(t *testing.T, p *testIdP, clock *fakeClock, edit func(*OIDCConfig)) *Authenticator {
	t.Helper()
	cfg := &OIDCConfig{
		Issuer:   p.srv.URL,
		Audience: testAudience,
		JWKSURL:  p.srv.URL + "/jwks",
	}
	if edit != nil {
		edit(cfg)
	}
	log, _ := testLogger(t)
	a, err := New(Config{OIDC: cfg, Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	a.oidc.now = clock.Now
	return a
}

func bearer(tok string) Request { return Request{Authorization: "Bearer " + tok, REST: true} }

func TestOIDCTokens(t *testing.T) {
	p := newTestIdP(t)
	clock := newFakeClock()
	now := clock.Now()
	// claims returns valid claims, edited.
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss":    p.srv.URL,
			"aud":    []string{"someone-else", testAudience},
			"sub":    "user-1",
			"email":  "alice@example.com",
			"groups": []string{"ops", "dev"},
			"exp":    now.Add(5 * time.Minute).Unix(),
			"iat":    now.Unix(),
			"nbf":    now.Unix(),
		}
		if edit != nil {
			edit(c)
		}
		return c
	}
	valid := sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(nil))
	parts := strings.Split(valid, ".")
	tampered := func() string {
		c := claims(func(c jwt.MapClaims) { c["sub"] = "admin" })
		b, _ := json.Marshal(c)
		return parts[0] + "." + b64u(b) + "." + parts[2]
	}()
	pubDER, err := x509.MarshalPKIXPublicKey(&p.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa1", claims(nil))
	noneTokNoKid := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil))

	tests := []struct {
		name         string
		token        string
		edit         func(*OIDCConfig)
		wantIdentity string // "" for a refusal
		wantName     string
		wantGroups   []string
		wantMsg      string // for a refusal, when not "": its message
	}{
		{name: "RS256", token: valid, wantIdentity: "user_2D1", wantName: "oidc:user-1", wantGroups: []string{"ops", "dev"}},
		{name: "ES256", token: sign(t, jwt.SigningMethodES256, p.ec, "ec1", claims(nil)), wantIdentity: "user_2D1", wantName: "oidc:user-1"},
		{name: "EdDSA", token: sign(t, jwt.SigningMethodEdDSA, p.ed, "ed1", claims(nil)), wantIdentity: "user_2D1", wantName: "oidc:user-1"},
		{name: "no kid: any key of the right type", token: sign(t, jwt.SigningMethodES256, p.ec, "", claims(nil)), wantIdentity: "user_2D1", wantName: "oidc:user-1"},
		{name: "identity from verified email", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["email_verified"] = true })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "email" }, wantIdentity: "alice_40example_2Ecom", wantName: "oidc:user-1"},
		{name: "identity from email verified as a string", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["email_verified"] = "true" })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "email" }, wantIdentity: "alice_40example_2Ecom", wantName: "oidc:user-1"},
		{name: "email without email_verified", token: valid, edit: func(c *OIDCConfig) { c.IdentityClaim = "email" },
			wantMsg: `invalid token: the identity claim "email" is an email address the provider has not verified (email_verified is not true)`},
		{name: "email_verified false", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["email_verified"] = false })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "email" }, wantMsg: "invalid token: the identity claim \"email\" is an email address the provider has not verified (email_verified is not true)"},
		{name: "email_verified string false", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["email_verified"] = "false" })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "email" }, wantMsg: "invalid token: the identity claim \"email\" is an email address the provider has not verified (email_verified is not true)"},
		{name: "email_verified string TRUE", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["email_verified"] = "True" })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "email" }, wantMsg: "invalid token: the identity claim \"email\" is an email address the provider has not verified (email_verified is not true)"},
		{name: "email_verified number 1", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["email_verified"] = 1 })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "email" }, wantMsg: "invalid token: the identity claim \"email\" is an email address the provider has not verified (email_verified is not true)"},
		{name: "other claim holding an email, unverified", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["upn"] = "bob@example.com" })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "upn" }, wantMsg: "invalid token: the identity claim \"upn\" is an email address the provider has not verified (email_verified is not true)"},
		{name: "sub holding an email, unverified", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["sub"] = "bob@example.com" })),
			wantMsg: "invalid token: the identity claim \"sub\" is an email address the provider has not verified (email_verified is not true)"},
		{name: "other claim holding an email, verified", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["upn"] = "bob@example.com"; c["email_verified"] = true })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "upn" }, wantIdentity: "bob_40example_2Ecom", wantName: "oidc:user-1"},
		{name: "unverified email allowed by the operator", token: valid, edit: func(c *OIDCConfig) { c.IdentityClaim = "email"; c.AllowUnverifiedEmail = true },
			wantIdentity: "alice_40example_2Ecom", wantName: "oidc:user-1"},
		{name: "not an email: email_verified not needed", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["preferred_username"] = "alice" })),
			edit: func(c *OIDCConfig) { c.IdentityClaim = "preferred_username" }, wantIdentity: "alice", wantName: "oidc:user-1"},
		{name: "groups claim renamed, one string", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["roles"] = "minters" })),
			edit: func(c *OIDCConfig) { c.GroupsClaim = "roles" }, wantIdentity: "user_2D1", wantName: "oidc:user-1", wantGroups: []string{"minters"}},
		{name: "aud as a string", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["aud"] = testAudience })), wantIdentity: "user_2D1", wantName: "oidc:user-1"},
		{name: "expired within leeway", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-30 * time.Second).Unix() })), wantIdentity: "user_2D1", wantName: "oidc:user-1"},
		{name: "nbf within leeway", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(30 * time.Second).Unix() })), wantIdentity: "user_2D1", wantName: "oidc:user-1"},

		{name: "expired", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-2 * time.Minute).Unix() })), wantMsg: "invalid token: expired"},
		{name: "not yet valid", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() })), wantMsg: "invalid token: not valid yet"},
		{name: "issued in the future", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() })), wantMsg: "invalid token: issued in the future"},
		{name: "missing exp", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { delete(c, "exp") })), wantMsg: "invalid token: a required claim (exp, iss or aud) is missing"},
		{name: "wrong issuer", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), wantMsg: "invalid token: wrong issuer"},
		{name: "missing issuer", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { delete(c, "iss") }))},
		{name: "wrong audience", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["aud"] = []string{"other-app"} })), wantMsg: "invalid token: wrong audience"},
		{name: "missing audience", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { delete(c, "aud") }))},
		{name: "alg none", token: noneTok, wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "alg none, no kid", token: noneTokNoKid, wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "HS256 keyed with the public key PEM", token: sign(t, jwt.SigningMethodHS256, pubPEM, "rsa1", claims(nil)), wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "HS256 keyed with the public key DER", token: sign(t, jwt.SigningMethodHS256, pubDER, "rsa1", claims(nil)), wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "RS384 not in Algorithms", token: sign(t, jwt.SigningMethodRS384, p.rsa, "rsa1", claims(nil)), wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "JWK alg pins RS256", token: sign(t, jwt.SigningMethodPS256, p.rsa, "rsa1", claims(nil)),
			edit: func(c *OIDCConfig) { c.Algorithms = []string{"RS256", "PS256"} }, wantMsg: "invalid token: no signing key with the token's kid"},
		{name: "ES256 naming an RSA kid", token: sign(t, jwt.SigningMethodES256, p.ec, "rsa1", claims(nil)), wantMsg: "invalid token: no signing key with the token's kid"},
		{name: "unknown kid", token: sign(t, jwt.SigningMethodRS256, p.rsa, "nope", claims(nil)), wantMsg: "invalid token: no signing key with the token's kid"},
		{name: "signed by another key", token: sign(t, jwt.SigningMethodRS256, sharedRSAOther, "rsa1", claims(nil)), wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "tampered payload", token: tampered, wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".", wantMsg: "invalid token: bad signature or signing algorithm"},
		{name: "garbage", token: "not-a-jwt", wantMsg: "invalid token: malformed"},
		{name: "too large", token: parts[0] + "." + strings.Repeat("A", 20000) + "." + parts[2], wantMsg: "invalid token: too large"},
		{name: "no identity claim", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { delete(c, "sub") })),
			wantMsg: `invalid token: no "sub" claim (a non-empty string) to take the identity from`},
		{name: "identity claim not a string", token: sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", claims(func(c jwt.MapClaims) { c["sub"] = 42 }))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newOIDCAuth(t, p, clock, tt.edit)
			got, err := a.Authenticate(context.Background(), bearer(tt.token))
			if tt.wantIdentity == "" {
				checkRefused(t, err, tt.wantMsg, "Bearer "+tt.token)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if got.Kind != KindOIDC || !got.Browser || got.Identity != tt.wantIdentity || got.Name != tt.wantName {
				t.Fatalf("principal = %+v", got)
			}
			if tt.wantGroups != nil && strings.Join(got.Groups, ",") != strings.Join(tt.wantGroups, ",") {
				t.Fatalf("groups = %q, want %q", got.Groups, tt.wantGroups)
			}
		})
	}
}

func TestOIDCKeyRotation(t *testing.T) {
	p := newTestIdP(t)
	clock := newFakeClock()
	a := newOIDCAuth(t, p, clock, func(c *OIDCConfig) { c.RefreshInterval = time.Hour })
	tokenBy := func(key *rsa.PrivateKey, kid string) string {
		now := clock.Now()
		return sign(t, jwt.SigningMethodRS256, key, kid, jwt.MapClaims{
			"iss": p.srv.URL, "aud": testAudience, "sub": "u", "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
		})
	}
	ok := func(tok string) {
		t.Helper()
		if _, err := a.Authenticate(context.Background(), bearer(tok)); err != nil {
			t.Fatalf("refused: %v", err)
		}
	}
	refused := func(tok string) {
		t.Helper()
		_, err := a.Authenticate(context.Background(), bearer(tok))
		checkRefused(t, err, "invalid token: no signing key with the token's kid", "Bearer "+tok)
	}
	fetches := func(want int32) {
		t.Helper()
		if got := p.fetches.Load(); got != want {
			t.Fatalf("%d JWKS fetches, want %d", got, want)
		}
	}

	ok(tokenBy(p.rsa, "rsa1"))
	fetches(1)
	ok(tokenBy(p.rsa, "rsa1"))
	fetches(1) // cached

	// The provider rotates to rsa2. Within 10 s of the last fetch, an
	// unknown kid does not fetch again.
	p.setKeys(t, jwkOf(t, "rsa2", &p.rsa2.PublicKey, "RS256"))
	clock.Advance(5 * time.Second)
	refused(tokenBy(p.rsa2, "rsa2"))
	fetches(1)
	// After 10 s it does, and the new key is picked up.
	clock.Advance(6 * time.Second)
	ok(tokenBy(p.rsa2, "rsa2"))
	fetches(2)
	// rsa1 is gone from the cache too.
	clock.Advance(11 * time.Second)
	refused(tokenBy(p.rsa, "rsa1"))
	fetches(3)
	// An unknown kid, after a refresh, is still unknown; and hammering it
	// does not hammer the provider.
	clock.Advance(11 * time.Second)
	for range 20 {
		refused(tokenBy(p.rsa, "nope"))
	}
	fetches(4)

	// RefreshInterval: a known kid is re-fetched once the cache is an hour
	// old, so a key the provider withdrew stops working.
	ok(tokenBy(p.rsa2, "rsa2"))
	fetches(4)
	p.setKeys(t, jwkOf(t, "rsa1", &p.rsa.PublicKey, "RS256"))
	clock.Advance(time.Hour)
	refused(tokenBy(p.rsa2, "rsa2"))
	fetches(5)
	ok(tokenBy(p.rsa, "rsa1"))
	fetches(5)

	// A provider outage keeps the cached keys, even past RefreshInterval.
	p.fail.Store(true)
	clock.Advance(2 * time.Hour)
	ok(tokenBy(p.rsa, "rsa1"))
	fetches(6)
}

func TestOIDCConcurrentFirstUse(t *testing.T) {
	p := newTestIdP(t)
	clock := newFakeClock()
	a := newOIDCAuth(t, p, clock, nil)
	now := clock.Now()
	tok := sign(t, jwt.SigningMethodES256, p.ec, "ec1", jwt.MapClaims{
		"iss": p.srv.URL, "aud": testAudience, "sub": "u", "exp": now.Add(time.Minute).Unix(),
	})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := a.Authenticate(context.Background(), bearer(tok)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}
}

func TestOIDCDiscovery(t *testing.T) {
	p := newTestIdP(t)
	clock := newFakeClock()
	now := clock.Now()
	tok := sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", jwt.MapClaims{
		"iss": p.srv.URL, "aud": testAudience, "sub": "u", "exp": now.Add(time.Minute).Unix(),
	})
	a := newOIDCAuth(t, p, clock, func(c *OIDCConfig) { c.JWKSURL = "" })
	if _, err := a.Authenticate(context.Background(), bearer(tok)); err != nil {
		t.Fatalf("with discovery: %v", err)
	}

	// A discovery document naming another issuer is not believed.
	p.mu.Lock()
	p.discoveryIssuer = "https://evil.example"
	p.mu.Unlock()
	a = newOIDCAuth(t, p, clock, func(c *OIDCConfig) { c.JWKSURL = "" })
	_, err := a.Authenticate(context.Background(), bearer(tok))
	checkRefused(t, err, "invalid token: the provider's signing keys are unavailable", "Bearer "+tok)
}

func TestOIDCProviderDown(t *testing.T) {
	p := newTestIdP(t)
	p.fail.Store(true)
	clock := newFakeClock()
	now := clock.Now()
	tok := sign(t, jwt.SigningMethodRS256, p.rsa, "rsa1", jwt.MapClaims{
		"iss": p.srv.URL, "aud": testAudience, "sub": "u", "exp": now.Add(time.Minute).Unix(),
	})
	a := newOIDCAuth(t, p, clock, nil)
	_, err := a.Authenticate(context.Background(), bearer(tok))
	checkRefused(t, err, "invalid token: the provider's signing keys are unavailable", "Bearer "+tok)
	// Back up: the next fetch, 10 s later, succeeds.
	p.fail.Store(false)
	_, err = a.Authenticate(context.Background(), bearer(tok))
	checkRefused(t, err, "invalid token: the provider's signing keys are unavailable", "Bearer "+tok)
	clock.Advance(11 * time.Second)
	if _, err := a.Authenticate(context.Background(), bearer(tok)); err != nil {
		t.Fatal(err)
	}
}

func TestOIDCConfigChecks(t *testing.T) {
	base := func() OIDCConfig {
		return OIDCConfig{Issuer: "https://idp.example", Audience: "tokend", JWKSURL: "https://idp.example/jwks"}
	}
	for _, tt := range []struct {
		name string
		edit func(*OIDCConfig)
		ok   bool
	}{
		{"defaults", func(*OIDCConfig) {}, true},
		{"discovery", func(c *OIDCConfig) { c.JWKSURL = "" }, true},
		{"no issuer", func(c *OIDCConfig) { c.Issuer = "" }, false},
		{"no audience", func(c *OIDCConfig) { c.Audience = "" }, false},
		{"none", func(c *OIDCConfig) { c.Algorithms = []string{"RS256", "none"} }, false},
		{"HS256", func(c *OIDCConfig) { c.Algorithms = []string{"HS256"} }, false},
		{"unknown alg", func(c *OIDCConfig) { c.Algorithms = []string{"RS1"} }, false},
		{"bad JWKS URL", func(c *OIDCConfig) { c.JWKSURL = "file:///etc/jwks" }, false},
		{"issuer not a URL, no JWKS URL", func(c *OIDCConfig) { c.Issuer, c.JWKSURL = "idp", "" }, false},
	} {
		c := base()
		tt.edit(&c)
		_, err := New(Config{OIDC: &c})
		if (err == nil) != tt.ok {
			t.Errorf("%s: New error %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	c := base()
	got, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.IdentityClaim != "sub" || got.GroupsClaim != "groups" || got.RefreshInterval != 15*time.Minute ||
		strings.Join(got.Algorithms, ",") != "RS256,ES256,EdDSA" || got.HTTPClient == nil {
		t.Fatalf("defaults = %+v", got)
	}
}

func TestParseJWK(t *testing.T) {
	testKeys(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good := jwkOf(t, "k", &sharedRSA.PublicKey, "")
	tests := []struct {
		name string
		jwk  map[string]any
		ok   bool
	}{
		{"RSA", good, true},
		{"P-384", jwkOf(t, "k", &ec.PublicKey, "ES384"), true},
		{"small RSA", jwkOf(t, "k", &smallRSA.PublicKey, ""), false},
		{"encryption key", with(good, "use", "enc"), false},
		{"alg HS256", with(good, "alg", "HS256"), false},
		{"alg does not fit the key", with(good, "alg", "ES256"), false},
		{"even exponent", with(good, "e", b64u([]byte{1, 0, 0})), false},
		{"unknown kty", with(good, "kty", "oct"), false},
		{"point off the curve", with(jwkOf(t, "k", &ec.PublicKey, ""), "y", b64u(make([]byte, 48))), false},
		{"wrong coordinate size", with(jwkOf(t, "k", &ec.PublicKey, ""), "x", b64u(make([]byte, 32))), false},
		{"unknown curve", with(jwkOf(t, "k", &ec.PublicKey, ""), "crv", "P-192"), false},
		{"short Ed25519", map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64u(make([]byte, 31))}, false},
		{"X25519", map[string]any{"kty": "OKP", "crv": "X25519", "x": b64u(make([]byte, 32))}, false},
	}
	for _, tt := range tests {
		raw, _ := json.Marshal(tt.jwk)
		_, err := parseJWK(raw)
		if (err == nil) != tt.ok {
			t.Errorf("%s: parseJWK error %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for mk, mv := range m {
		out[mk] = mv
	}
	out[k] = v
	return out
}
