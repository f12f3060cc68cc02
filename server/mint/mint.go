package mint

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// MaxTTLSeconds is the longest lifetime Twilio accepts (error 20157 above).
const MaxTTLSeconds = 86400

// Key is an API key ready to sign: its SID, the account that owns it and
// its secret, held only inside HMAC states. A Key is safe for concurrent
// use and records when it last signed and the latest exp it signed.
type Key struct {
	sid        string
	accountSID string
	// plain reports that sid and accountSID need no JSON escaping (they
	// are validated SIDs in practice), so the payload's tail is appended
	// as is.
	plain bool
	// secret is the HMAC key: NewKey's copy, the only one Key keeps.
	secret []byte
	// macs pools keyed HMAC-SHA256 states; Reset returns one to its keyed
	// state, so the secret is hashed into the key pads once per state.
	// Pooled states are made on first use: a key that never signs (a
	// retired one) costs only this struct and the secret.
	macs sync.Pool

	lastSigned       atomic.Int64 // unix seconds
	outstandingUntil atomic.Int64 // unix seconds, the largest exp signed
}

// NewKey returns a signing key. The secret is used as given (its bytes, not
// base64-decoded), as Twilio does; NewKey keeps no other copy of it.
func NewKey(accountSID, keySID string, secret []byte) *Key {
	return &Key{
		sid: keySID, accountSID: accountSID,
		plain:  noEscape(keySID) && noEscape(accountSID),
		secret: append([]byte(nil), secret...),
	}
}

// noEscape reports whether AppendString would append s between quotes
// unchanged.
func noEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// mac returns a keyed HMAC state from the pool, reset, or a new one; give
// it back with k.macs.Put.
func (k *Key) mac() hash.Hash {
	if m, ok := k.macs.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, k.secret)
}

// appendTail appends `,"iss":"SK…","sub":"AC…"}`: the end of every
// payload.
func (k *Key) appendTail(p []byte) []byte {
	if k.plain {
		p = append(p, `,"iss":"`...)
		p = append(p, k.sid...)
		p = append(p, `","sub":"`...)
		p = append(p, k.accountSID...)
		return append(p, '"', '}')
	}
	p = append(p, `,"iss":`...)
	p = AppendString(p, k.sid)
	p = append(p, `,"sub":`...)
	p = AppendString(p, k.accountSID)
	return append(p, '}')
}

// SID returns the API key SID (the token's iss).
func (k *Key) SID() string { return k.sid }

// AccountSID returns the account SID (the token's sub).
func (k *Key) AccountSID() string { return k.accountSID }

// Usage returns when the key last signed and the latest exp it signed, as
// unix seconds (0 if it never signed).
func (k *Key) Usage() (lastSigned, outstandingUntil int64) {
	return k.lastSigned.Load(), k.outstandingUntil.Load()
}

// SetUsage raises the recorded usage to at least the given unix seconds;
// used to carry usage loaded from the store into a fresh Key.
func (k *Key) SetUsage(lastSigned, outstandingUntil int64) {
	raise(&k.lastSigned, lastSigned)
	raise(&k.outstandingUntil, outstandingUntil)
}

func raise(v *atomic.Int64, to int64) {
	for {
		cur := v.Load()
		if to <= cur || v.CompareAndSwap(cur, to) {
			return
		}
	}
}

// String names the key without its secret.
func (k *Key) String() string { return "mint.Key(" + k.sid + ")" }

// Verify reports whether sig is the HMAC-SHA256 of signingInput (the
// token's `header "." payload`, as sent) under the key's secret. The
// comparison takes constant time.
func (k *Key) Verify(signingInput, sig []byte) bool {
	var buf [sha256.Size]byte
	m := k.mac()
	m.Write(signingInput)
	mac := m.Sum(buf[:0])
	k.macs.Put(m)
	return hmac.Equal(mac, sig)
}

// Claims is what a token says besides iss and sub.
type Claims struct {
	// Identity is grants.identity.
	Identity string
	// Grants holds the grant members that follow identity inside the
	// grants object, as built by Grants.Append: empty, or
	// `,"voice":{…},"video":{…}`.
	Grants []byte
	// Region, if not empty, is written as the twr header.
	Region string
	// IssuedAt is iat, unix seconds.
	IssuedAt int64
	// TTL is the lifetime in seconds: exp = IssuedAt + TTL.
	TTL int64
}

// Token is a signed token and its id.
type Token struct {
	// JWT is the compact serialization.
	JWT string
	// ID is the jti: the key SID, "-", and 32 random hex digits.
	ID string
	// IssuedAt and ExpiresAt are iat and exp, unix seconds.
	IssuedAt  int64
	ExpiresAt int64
}

type scratch struct {
	payload []byte
	out     []byte
	// rng makes the jti's random part: ChaCha8, a cryptographically
	// strong generator, seeded from crypto/rand when the scratch is made.
	// It is several times cheaper per token than a crypto/rand read.
	rng *mrand.ChaCha8
	rnd [16]byte
	mac [sha256.Size]byte
}

var scratches = sync.Pool{New: func() any {
	var seed [32]byte
	rand.Read(seed[:]) // never fails: it crashes the program if the OS cannot give randomness
	return &scratch{payload: make([]byte, 0, 512), out: make([]byte, 0, 1024), rng: mrand.NewChaCha8(seed)}
}}

// Sign builds and signs a token. It cannot fail: the jti's randomness
// comes from the scratch's ChaCha8, seeded when the scratch was made.
//
// The token is built in a pooled buffer (cache-hot: building it in fresh
// memory was slower than copying it once at the end), followed by its jti,
// and both strings are cut from one string of the two: one allocation per
// token.
func (k *Key) Sign(c *Claims) Token {
	s := scratches.Get().(*scratch)
	defer scratches.Put(s)

	s.rng.Read(s.rnd[:])
	exp := c.IssuedAt + c.TTL

	p, jtiEnd := k.appendPayload(s.payload[:0], &s.rnd, c, exp)
	s.payload = p
	jti := p[len(`{"jti":"`):jtiEnd]

	b64 := base64.RawURLEncoding
	o := append(s.out[:0], header(c.Region)...)
	o = append(o, '.')
	o = b64.AppendEncode(o, p)
	m := k.mac()
	m.Write(o)
	mac := m.Sum(s.mac[:0])
	k.macs.Put(m)
	o = append(o, '.')
	o = b64.AppendEncode(o, mac)
	n := len(o)
	o = append(o, jti...)
	s.out = o
	all := string(o)

	raise(&k.lastSigned, c.IssuedAt)
	raise(&k.outstandingUntil, exp)
	return Token{JWT: all[:n], ID: all[n:], IssuedAt: c.IssuedAt, ExpiresAt: exp}
}

// appendPayload appends the claims JSON and returns it with the offset
// where the jti ends.
func (k *Key) appendPayload(p []byte, rnd *[16]byte, c *Claims, exp int64) ([]byte, int) {
	p = append(p, `{"jti":"`...)
	p = append(p, k.sid...)
	p = append(p, '-')
	p = hex.AppendEncode(p, rnd[:])
	jtiEnd := len(p)
	p = append(p, `","grants":{"identity":`...)
	p = AppendString(p, c.Identity)
	p = append(p, c.Grants...)
	p = append(p, `},"iat":`...)
	p = strconv.AppendInt(p, c.IssuedAt, 10)
	p = append(p, `,"exp":`...)
	p = strconv.AppendInt(p, exp, 10)
	p = k.appendTail(p)
	return p, jtiEnd
}

// Preview returns the header and claims JSON a token for c would carry
// (with a jti of zeros in place of the random one) and the size of that
// token in bytes, without signing.
func (k *Key) Preview(c *Claims) (header, claims []byte, size int) {
	var rnd [16]byte
	claims, _ = k.appendPayload(nil, &rnd, c, c.IssuedAt+c.TTL)
	header = headerJSON(c.Region)
	b64 := base64.RawURLEncoding
	size = b64.EncodedLen(len(header)) + 1 + b64.EncodedLen(len(claims)) + 1 + b64.EncodedLen(sha256.Size)
	return header, claims, size
}

// plainHeader is the base64url header of a token without a region.
var plainHeader = encodeHeader("")

// regionHeaders caches encoded headers per region. Regions are validated
// by the caller (a short pattern), and the cache stops growing at
// maxRegionHeaders entries; past that, headers are encoded per token.
var (
	regionHeaders     sync.Map // string → string
	regionHeaderCount atomic.Int32
)

const maxRegionHeaders = 64

func header(region string) string {
	if region == "" {
		return plainHeader
	}
	if h, ok := regionHeaders.Load(region); ok {
		return h.(string)
	}
	h := encodeHeader(region)
	if regionHeaderCount.Load() < maxRegionHeaders {
		if _, loaded := regionHeaders.LoadOrStore(region, h); !loaded {
			regionHeaderCount.Add(1)
		}
	}
	return h
}

func encodeHeader(region string) string {
	return base64.RawURLEncoding.EncodeToString(headerJSON(region))
}

func headerJSON(region string) []byte {
	h := []byte(`{"alg":"HS256","typ":"JWT","cty":"twilio-fpa;v=1"`)
	if region != "" {
		h = append(h, `,"twr":`...)
		h = AppendString(h, region)
	}
	return append(h, '}')
}
