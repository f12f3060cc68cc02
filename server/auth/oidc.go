package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// OIDCConfig accepts JWTs (ID tokens, or access tokens in JWT form) issued
// by one OpenID Connect provider to browser users.
//
// A token is accepted when its signature verifies against a key of the
// provider's JWKS whose type fits the token's alg, its alg is one of
// Algorithms, iss is Issuer, aud contains Audience, exp is present and not
// past, and nbf and iat (when present) are not in the future, each with
// 60 seconds of leeway for clock skew.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as in its tokens' iss.
	// Required.
	Issuer string
	// Audience must be among the tokens' aud: tokend's client ID at the
	// provider. Required.
	Audience string
	// JWKSURL is where the provider publishes its signing keys. Empty:
	// discovered from Issuer + "/.well-known/openid-configuration"
	// (jwks_uri) on first use.
	JWKSURL string
	// IdentityClaim names the claim whose string value, through
	// SafeIdentity, is the Twilio identity the user may mint for; default
	// "sub". "email" or "preferred_username" give readable identities, if
	// the provider guarantees them unique.
	IdentityClaim string
	// GroupsClaim names the claim listing the user's groups (an array of
	// strings, or one string); default "groups".
	GroupsClaim string
	// AllowUnverifiedEmail accepts an identity that is an email address
	// (IdentityClaim "email", or any claim whose value holds an "@") from
	// a token whose email_verified claim is not true. Off (the default),
	// such a token is refused: many providers let a user put any address
	// in their profile, so an unverified address proves nothing.
	AllowUnverifiedEmail bool
	// Algorithms are the accepted signature algorithms; default RS256,
	// ES256 and EdDSA. Supported: RS256, RS384, RS512, PS256, PS384, PS512,
	// ES256, ES384, ES512, EdDSA. "none" and the HMAC algorithms (HS*) are
	// refused: a provider's keys are public.
	Algorithms []string
	// RefreshInterval is how old the cached JWKS may get before it is
	// fetched again; default 15 minutes. A token naming an unknown kid also
	// refetches it. Fetches happen at most once every 10 seconds, whatever
	// the cause, and a failed fetch keeps the keys already cached.
	RefreshInterval time.Duration
	// HTTPClient fetches the JWKS and discovery document; default a client
	// with a 10-second timeout.
	HTTPClient *http.Client
}

// Defaults for OIDCConfig.
const (
	DefaultIdentityClaim   = "sub"
	DefaultGroupsClaim     = "groups"
	DefaultRefreshInterval = 15 * time.Minute
)

// DefaultAlgorithms are the signature algorithms accepted when
// OIDCConfig.Algorithms is empty.
var DefaultAlgorithms = []string{"RS256", "ES256", "EdDSA"}

const (
	// minJWKSRefresh bounds how often the JWKS is fetched.
	minJWKSRefresh = 10 * time.Second
	// jwtLeeway is the clock skew allowed on exp, nbf and iat.
	jwtLeeway = 60 * time.Second
	// maxTokenLen bounds the JWTs parsed: no provider issues bigger ones.
	maxTokenLen = 16 << 10
	// maxJWKSBytes bounds the JWKS and discovery documents read.
	maxJWKSBytes = 1 << 20
	// fetchTimeout bounds one JWKS or discovery fetch, whatever the
	// HTTP client's own timeout.
	fetchTimeout = 10 * time.Second
	// minRSABits is the smallest RSA modulus accepted in a JWKS.
	minRSABits = 2048
)

// supportedAlgorithms maps each supported alg to the key type it needs.
var supportedAlgorithms = map[string]func(crypto.PublicKey) bool{
	"RS256": isRSA, "RS384": isRSA, "RS512": isRSA,
	"PS256": isRSA, "PS384": isRSA, "PS512": isRSA,
	"ES256": isEC(elliptic.P256()),
	"ES384": isEC(elliptic.P384()),
	"ES512": isEC(elliptic.P521()),
	"EdDSA": isEd25519,
}

func isRSA(k crypto.PublicKey) bool { _, ok := k.(*rsa.PublicKey); return ok }

func isEd25519(k crypto.PublicKey) bool { _, ok := k.(ed25519.PublicKey); return ok }

func isEC(c elliptic.Curve) func(crypto.PublicKey) bool {
	return func(k crypto.PublicKey) bool {
		ec, ok := k.(*ecdsa.PublicKey)
		return ok && ec.Curve == c
	}
}

// withDefaults fills in the defaults and checks the configuration.
func (c OIDCConfig) withDefaults() (OIDCConfig, error) {
	if c.Issuer == "" {
		return c, errors.New("auth: OIDC issuer is required")
	}
	if c.Audience == "" {
		return c, errors.New("auth: OIDC audience is required")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return c, fmt.Errorf("auth: OIDC JWKS URL %q is not an http(s) URL", c.JWKSURL)
		}
	} else if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return c, fmt.Errorf("auth: OIDC issuer %q is not an http(s) URL, so the JWKS URL cannot be discovered; set it", c.Issuer)
	}
	if c.IdentityClaim == "" {
		c.IdentityClaim = DefaultIdentityClaim
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	c.Algorithms = slices.Clone(c.Algorithms)
	for _, alg := range c.Algorithms {
		if strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS") {
			return c, fmt.Errorf("auth: OIDC algorithm %q is refused: only public-key signatures are accepted", alg)
		}
		if supportedAlgorithms[alg] == nil {
			return c, fmt.Errorf("auth: OIDC algorithm %q is not supported", alg)
		}
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	return c, nil
}

// verificationKey is one usable key of the JWKS.
type verificationKey struct {
	kid string
	alg string // the JWK's alg, if it names one
	key crypto.PublicKey
}

// oidcVerifier verifies JWTs against a cached JWKS.
type oidcVerifier struct {
	cfg        OIDCConfig
	log        *slog.Logger
	now        func() time.Time
	minRefresh time.Duration

	fetchMu sync.Mutex // held while fetching: one fetch at a time

	mu        sync.RWMutex
	keys      []verificationKey
	fetched   time.Time // of the keys in use; zero before the first success
	attempted time.Time // of the last fetch, successful or not
	jwksURL   string    // cfg.JWKSURL, or discovered
}

func newOIDCVerifier(cfg OIDCConfig, log *slog.Logger) (*oidcVerifier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if u, _ := url.Parse(cfg.JWKSURL); u != nil && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		log.Warn("auth: the OIDC JWKS is fetched over plain HTTP: anyone on the path can substitute signing keys", "jwks_url", cfg.JWKSURL)
	}
	return &oidcVerifier{
		cfg:        cfg,
		log:        log,
		now:        time.Now,
		minRefresh: minJWKSRefresh,
		jwksURL:    cfg.JWKSURL,
	}, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// keyError is a key lookup failure whose message is safe to show.
type keyError struct{ msg string }

func (e *keyError) Error() string { return e.msg }

// verify checks raw and returns the browser principal it names.
func (v *oidcVerifier) verify(ctx context.Context, raw string) (Principal, error) {
	if len(raw) > maxTokenLen {
		return Principal{}, unauthenticated("invalid token: too large")
	}
	claims := jwt.MapClaims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods(v.cfg.Algorithms),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(jwtLeeway),
		jwt.WithTimeFunc(v.now),
	)
	_, err := parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		keys, err := v.keysFor(ctx, kid, t.Method.Alg())
		if err != nil {
			return nil, err
		}
		if len(keys) == 1 {
			return keys[0], nil
		}
		set := jwt.VerificationKeySet{}
		for _, k := range keys {
			set.Keys = append(set.Keys, k)
		}
		return set, nil
	})
	if err != nil {
		return Principal{}, unauthenticated(describeJWTError(err))
	}

	identity, _ := claims[v.cfg.IdentityClaim].(string)
	if identity == "" {
		return Principal{}, unauthenticated(fmt.Sprintf("invalid token: no %q claim (a non-empty string) to take the identity from", v.cfg.IdentityClaim))
	}
	if !v.cfg.AllowUnverifiedEmail && (v.cfg.IdentityClaim == "email" || strings.Contains(identity, "@")) && !emailVerified(claims["email_verified"]) {
		return Principal{}, unauthenticated(fmt.Sprintf(
			"invalid token: the identity claim %q is an email address the provider has not verified (email_verified is not true)", v.cfg.IdentityClaim))
	}
	sub, _ := claims["sub"].(string)
	if sub == "" {
		sub = identity
	}
	return Principal{
		Kind:     KindOIDC,
		Name:     "oidc:" + sub,
		Identity: SafeIdentity(identity),
		Groups:   stringsClaim(claims[v.cfg.GroupsClaim]),
		Browser:  true,
	}, nil
}

// emailVerified reports whether an email_verified claim says true: the
// JSON boolean true, or the string "true" (some providers, Amazon Cognito
// among them, send it as a string).
func emailVerified(c any) bool {
	switch c := c.(type) {
	case bool:
		return c
	case string:
		return c == "true"
	}
	return false
}

// stringsClaim reads a groups claim: an array of strings (other elements
// are skipped) or one string.
func stringsClaim(c any) []string {
	switch c := c.(type) {
	case string:
		if c != "" {
			return []string{c}
		}
	case []any:
		var out []string
		for _, e := range c {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// describeJWTError turns a jwt error into a message that never quotes the
// token.
func describeJWTError(err error) string {
	var ke *keyError
	switch {
	case errors.As(err, &ke):
		return "invalid token: " + ke.msg
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "invalid token: malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "invalid token: bad signature or signing algorithm"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "invalid token: expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "invalid token: not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "invalid token: issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "invalid token: wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "invalid token: wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "invalid token: a required claim (exp, iss or aud) is missing"
	}
	return "invalid token"
}

// keysFor returns the cached keys that may have signed a token with this
// kid and alg, refreshing the cache when it is older than RefreshInterval
// or has no such key.
func (v *oidcVerifier) keysFor(ctx context.Context, kid, alg string) ([]crypto.PublicKey, error) {
	v.mu.RLock()
	keys, fetched := v.keys, v.fetched
	v.mu.RUnlock()
	found := matchKeys(keys, kid, alg)
	fresh := !fetched.IsZero() && v.now().Sub(fetched) < v.cfg.RefreshInterval
	if len(found) > 0 && fresh {
		return found, nil
	}
	v.refresh(ctx) // a failure is logged; the keys cached are still used
	v.mu.RLock()
	keys, fetched = v.keys, v.fetched
	v.mu.RUnlock()
	if found = matchKeys(keys, kid, alg); len(found) > 0 {
		return found, nil
	}
	if fetched.IsZero() {
		return nil, &keyError{"the provider's signing keys are unavailable"}
	}
	if kid != "" {
		return nil, &keyError{"no signing key with the token's kid"}
	}
	return nil, &keyError{"no signing key for the token's algorithm"}
}

// matchKeys returns the keys that fit kid (when the token names one) and
// alg.
func matchKeys(keys []verificationKey, kid, alg string) []crypto.PublicKey {
	fits := supportedAlgorithms[alg]
	if fits == nil {
		return nil
	}
	var out []crypto.PublicKey
	for _, k := range keys {
		if kid != "" && k.kid != kid {
			continue
		}
		if k.alg != "" && k.alg != alg {
			continue
		}
		if fits(k.key) {
			out = append(out, k.key)
		}
	}
	return out
}

// refresh fetches the JWKS unless a fetch was tried in the last
// minRefresh. A failure keeps the keys cached and is logged.
func (v *oidcVerifier) refresh(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	now := v.now()
	v.mu.Lock()
	if !v.attempted.IsZero() && now.Sub(v.attempted) < v.minRefresh {
		v.mu.Unlock()
		return nil // fetched (or tried) just now: by another caller while we waited, perhaps
	}
	v.attempted = now
	v.mu.Unlock()

	// The fetch serves every caller: one whose request is cancelled must
	// not spoil it for the others.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	keys, err := v.fetch(ctx)
	if err != nil {
		v.log.WarnContext(ctx, "auth: cannot fetch the OIDC signing keys; keeping those cached", "issuer", v.cfg.Issuer, "error", err)
		return err
	}
	v.mu.Lock()
	v.keys, v.fetched = keys, now
	v.mu.Unlock()
	v.log.DebugContext(ctx, "auth: OIDC signing keys fetched", "issuer", v.cfg.Issuer, "keys", len(keys))
	return nil
}

// fetch discovers the JWKS URL if need be and fetches the keys.
func (v *oidcVerifier) fetch(ctx context.Context) ([]verificationKey, error) {
	v.mu.RLock()
	jwksURL := v.jwksURL
	v.mu.RUnlock()
	if jwksURL == "" {
		var err error
		if jwksURL, err = v.discover(ctx); err != nil {
			return nil, err
		}
		v.mu.Lock()
		v.jwksURL = jwksURL
		v.mu.Unlock()
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := v.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var keys []verificationKey
	for i, raw := range set.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			v.log.DebugContext(ctx, "auth: JWKS key skipped", "index", i, "reason", err)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS at %s has no usable signing key", jwksURL)
	}
	return keys, nil
}

// discover reads jwks_uri from the issuer's discovery document.
func (v *oidcVerifier) discover(ctx context.Context) (string, error) {
	u := strings.TrimSuffix(v.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, u, &doc); err != nil {
		return "", fmt.Errorf("OIDC discovery: %w", err)
	}
	if doc.Issuer != v.cfg.Issuer {
		return "", fmt.Errorf("OIDC discovery: %s names issuer %q, not %q", u, doc.Issuer, v.cfg.Issuer)
	}
	if p, err := url.Parse(doc.JWKSURI); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return "", fmt.Errorf("OIDC discovery: %s has no usable jwks_uri", u)
	}
	return doc.JWKSURI, nil
}

func (v *oidcVerifier) getJSON(ctx context.Context, u string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("GET %s: larger than %d bytes", u, maxJWKSBytes)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

// jwkJSON holds the JWK members tokend reads (RFC 7517, RFC 7518 section 6,
// RFC 8037).
type jwkJSON struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWK parses one public signing key. Keys for encryption (use "enc"),
// of unknown types or curves, or RSA keys under 2048 bits are refused.
func parseJWK(raw []byte) (verificationKey, error) {
	var j jwkJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return verificationKey{}, err
	}
	if j.Use != "" && j.Use != "sig" {
		return verificationKey{}, fmt.Errorf("kid %q: use %q is not sig", j.Kid, j.Use)
	}
	if j.Alg != "" && supportedAlgorithms[j.Alg] == nil {
		return verificationKey{}, fmt.Errorf("kid %q: alg %q is not supported", j.Kid, j.Alg)
	}
	k := verificationKey{kid: j.Kid, alg: j.Alg}
	var err error
	switch j.Kty {
	case "RSA":
		k.key, err = parseRSAJWK(j)
	case "EC":
		k.key, err = parseECJWK(j)
	case "OKP":
		k.key, err = parseOKPJWK(j)
	default:
		err = fmt.Errorf("kty %q is not supported", j.Kty)
	}
	if err != nil {
		return verificationKey{}, fmt.Errorf("kid %q: %w", j.Kid, err)
	}
	if k.alg != "" && !supportedAlgorithms[k.alg](k.key) {
		return verificationKey{}, fmt.Errorf("kid %q: alg %q does not fit the key", j.Kid, j.Alg)
	}
	return k, nil
}

func b64(field, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is missing", field)
	}
	return b, nil
}

func parseRSAJWK(j jwkJSON) (*rsa.PublicKey, error) {
	n, err := b64("n", j.N)
	if err != nil {
		return nil, err
	}
	e, err := b64("e", j.E)
	if err != nil {
		return nil, err
	}
	if len(e) > 4 {
		return nil, errors.New("e is too large")
	}
	var exp int
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
		return nil, fmt.Errorf("e %d is not a valid RSA exponent", exp)
	}
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	if key.N.BitLen() < minRSABits {
		return nil, fmt.Errorf("RSA key of %d bits is under %d", key.N.BitLen(), minRSABits)
	}
	return key, nil
}

func parseECJWK(j jwkJSON) (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	switch j.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "P-521":
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("EC curve %q is not supported", j.Crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := b64("x", j.X)
	if err != nil {
		return nil, err
	}
	y, err := b64("y", j.Y)
	if err != nil {
		return nil, err
	}
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("EC coordinates are not %d bytes", size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(point, 4)
	point = append(point, x...)
	point = append(point, y...)
	// ParseUncompressedPublicKey checks that the point is on the curve.
	return ecdsa.ParseUncompressedPublicKey(curve, point)
}

func parseOKPJWK(j jwkJSON) (ed25519.PublicKey, error) {
	if j.Crv != "Ed25519" {
		return nil, fmt.Errorf("OKP curve %q is not supported", j.Crv)
	}
	x, err := b64("x", j.X)
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 key is not %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}
