package mint

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	fastb64 "github.com/segmentio/asm/base64"
)

// MaxTTLSeconds is the longest lifetime Twilio accepts (error 20157 above).
const MaxTTLSeconds = 86400

// Key is an API key ready to sign: its SID, the account that owns it and
// its secret. A Key is safe for concurrent use and records when it last
// signed and the latest exp it signed.
type Key struct {
	sid        string
	accountSID string
	// plain reports that sid and accountSID need no JSON escaping (they
	// are validated SIDs in practice), so the payload's tail is appended
	// as is.
	plain bool
	// secret is the HMAC key: NewKey's copy, the only one Key keeps.
	secret []byte
	// signer holds the key's precomputed HMAC states, made on the first
	// Sign: a key that never signs (a retired one) costs only this struct
	// and the secret.
	signer atomic.Pointer[signer]

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

// signer is what a key signs with. HMAC-SHA256 (RFC 2104) is
// SHA-256(opad-block ‖ SHA-256(ipad-block ‖ message)); the SHA-256 states
// after the key blocks are computed once, as crypto/hmac does, and so is
// the state after the part of every token that depends only on the key:
// the plain header, the dot, and the payload's `{"jti":"SK…-` as base64url.
// TestSignMatchesCryptoHMAC holds the result to crypto/hmac.
type signer struct {
	// prefix is the plain header, ".", and the base64url of the payload's
	// first cut bytes (a multiple of 3, so the rest encodes on its own).
	prefix string
	cut    int
	// ipad, prefixed and opad are marshalled SHA-256 states: after the
	// ipad block, after the ipad block and prefix, after the opad block.
	ipad, prefixed, opad []byte
}

func (k *Key) loadSigner() *signer {
	if sg := k.signer.Load(); sg != nil {
		return sg
	}
	sg := newSigner(k.secret, k.sid)
	if !k.signer.CompareAndSwap(nil, sg) {
		return k.signer.Load()
	}
	return sg
}

func newSigner(secret []byte, sid string) *signer {
	var pads [2][sha256.BlockSize]byte
	if len(secret) > sha256.BlockSize {
		sum := sha256.Sum256(secret)
		copy(pads[0][:], sum[:])
	} else {
		copy(pads[0][:], secret)
	}
	pads[1] = pads[0]
	for i := range pads[0] {
		pads[0][i] ^= 0x36
		pads[1][i] ^= 0x5c
	}
	jti := appendJTIPrefix(nil, sid)
	cut := len(jti) / 3 * 3
	prefix := appendB64(append([]byte(plainHeader), '.'), jti[:cut])

	h := sha256.New()
	h.Write(pads[0][:])
	ipad := marshal(h)
	h.Write(prefix)
	prefixed := marshal(h)
	h.Reset()
	h.Write(pads[1][:])
	opad := marshal(h)
	clear(pads[:])
	return &signer{prefix: string(prefix), cut: cut, ipad: ipad, prefixed: prefixed, opad: opad}
}

func marshal(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("mint: SHA-256 state cannot be saved: " + err.Error())
	}
	return b
}

// restore sets h to a state marshal saved.
func restore(h hash.Hash, state []byte) {
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		panic("mint: SHA-256 state cannot be restored: " + err.Error())
	}
}

// mac appends to dst the HMAC-SHA256 of a message whose start the state
// inner has already hashed (after the ipad block: nothing, with sg.ipad;
// sg.prefix, with sg.prefixed) and whose rest is msg. h is a scratch
// SHA-256 state.
func (sg *signer) mac(dst []byte, h hash.Hash, inner, msg []byte) []byte {
	n := len(dst)
	restore(h, inner)
	h.Write(msg)
	dst = h.Sum(dst) // the inner hash, overwritten by the outer below
	restore(h, sg.opad)
	h.Write(dst[n:])
	return h.Sum(dst[:n])
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
	sg := k.loadSigner()
	mac := sg.mac(buf[:0], sha256.New(), sg.ipad, signingInput)
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
	rng   *mrand.ChaCha8
	rnd   [16]byte
	mac   [sha256.Size]byte
	sha   hash.Hash
	times times
}

// times holds `},"iat":…,"exp":…` as last written by a scratch: tokens
// minted in the same second with the same TTL share it, and the two
// numbers are formatted once.
type times struct {
	iat, exp int64
	text     []byte
}

func (t *times) append(p []byte, iat, exp int64) []byte {
	if t == nil {
		return appendTimes(p, iat, exp)
	}
	if t.text == nil || t.iat != iat || t.exp != exp {
		t.text = appendTimes(t.text[:0], iat, exp)
		t.iat, t.exp = iat, exp
	}
	return append(p, t.text...)
}

func appendTimes(p []byte, iat, exp int64) []byte {
	p = append(p, `},"iat":`...)
	p = strconv.AppendInt(p, iat, 10)
	p = append(p, `,"exp":`...)
	return strconv.AppendInt(p, exp, 10)
}

var scratches = sync.Pool{New: func() any {
	var seed [32]byte
	rand.Read(seed[:]) // never fails: it crashes the program if the OS cannot give randomness
	return &scratch{payload: make([]byte, 0, 512), out: make([]byte, 0, 1024), rng: mrand.NewChaCha8(seed), sha: sha256.New()}
}}

// Sign builds and signs a token. It cannot fail: the jti's randomness
// comes from the scratch's ChaCha8, seeded when the scratch was made.
//
// The token is built in a pooled buffer (cache-hot: building it in fresh
// memory was slower than copying it once at the end), followed by its jti,
// and both strings are cut from one string of the two: one allocation per
// token.
func (k *Key) Sign(c *Claims) Token { return k.sign(c, nil) }

// SignInto is Sign with the token's text (the JWT and the jti) in *buf
// instead of a new string: *buf is reused (grown when it is too small),
// and the Token's strings are valid only until *buf is written again. A
// caller that serves one token at a time (the REST /token answer, written
// before the request ends) saves the token's allocation (about 650
// bytes) and the collector's work for it.
func (k *Key) SignInto(c *Claims, buf *[]byte) Token { return k.sign(c, buf) }

func (k *Key) sign(c *Claims, buf *[]byte) Token {
	s := scratches.Get().(*scratch)
	defer scratches.Put(s)

	binary.LittleEndian.PutUint64(s.rnd[:8], s.rng.Uint64())
	binary.LittleEndian.PutUint64(s.rnd[8:], s.rng.Uint64())
	exp := c.IssuedAt + c.TTL
	sg := k.loadSigner()

	p, jtiEnd := k.appendPayload(s.payload[:0], &s.rnd, &s.times, c, exp)
	s.payload = p
	jti := p[len(`{"jti":"`):jtiEnd]

	// The signing input, header "." payload; inner is the HMAC state that
	// has hashed o[:hashed] already.
	var o []byte
	var inner []byte
	var hashed int
	if c.Region == "" {
		o = append(s.out[:0], sg.prefix...)
		o = appendB64(o, p[sg.cut:])
		inner, hashed = sg.prefixed, len(sg.prefix)
	} else {
		o = append(s.out[:0], header(c.Region)...)
		o = append(o, '.')
		o = appendB64(o, p)
		inner, hashed = sg.ipad, 0
	}
	n := len(o)
	o = append(o, '.')
	o = appendB64(o, sg.mac(s.mac[:0], s.sha, inner, o[hashed:n]))
	n = len(o)
	o = append(o, jti...)
	s.out = o
	var all string
	if buf != nil {
		*buf = append((*buf)[:0], o...)
		all = unsafe.String(unsafe.SliceData(*buf), len(*buf))
	} else {
		all = string(o)
	}

	raise(&k.lastSigned, c.IssuedAt)
	raise(&k.outstandingUntil, exp)
	return Token{JWT: all[:n], ID: all[n:], IssuedAt: c.IssuedAt, ExpiresAt: exp}
}

// appendB64 appends the unpadded base64url encoding of src to dst, with
// segmentio/asm's encoder: AVX2 on amd64, NEON on arm64, about eight
// times faster than encoding/base64 on a token's payload; the same bytes
// (TestAppendB64 holds it to encoding/base64).
func appendB64(dst, src []byte) []byte {
	n, m := len(dst), fastb64.RawURLEncoding.EncodedLen(len(src))
	dst = slices.Grow(dst, m)[:n+m]
	fastb64.RawURLEncoding.Encode(dst[n:], src)
	return dst
}

// appendPayload appends the claims JSON and returns it with the offset
// where the jti ends; t, if not nil, caches the iat and exp text.
func (k *Key) appendPayload(p []byte, rnd *[16]byte, t *times, c *Claims, exp int64) ([]byte, int) {
	p = appendJTIPrefix(p, k.sid)
	p = hex.AppendEncode(p, rnd[:])
	jtiEnd := len(p)
	p = append(p, `","grants":{"identity":`...)
	p = AppendString(p, c.Identity)
	p = append(p, c.Grants...)
	p = t.append(p, c.IssuedAt, exp)
	p = k.appendTail(p)
	return p, jtiEnd
}

// appendJTIPrefix appends the start of every payload a key signs:
// `{"jti":"SK…-`.
func appendJTIPrefix(p []byte, sid string) []byte {
	p = append(p, `{"jti":"`...)
	p = append(p, sid...)
	return append(p, '-')
}

// Preview returns the header and claims JSON a token for c would carry
// (with a jti of zeros in place of the random one) and the size of that
// token in bytes, without signing.
func (k *Key) Preview(c *Claims) (header, claims []byte, size int) {
	var rnd [16]byte
	claims, _ = k.appendPayload(nil, &rnd, nil, c, c.IssuedAt+c.TTL)
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
