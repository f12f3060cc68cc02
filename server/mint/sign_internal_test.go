package mint

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestAppendB64(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		prefix := []byte("head.")
		got := appendB64(append([]byte(nil), prefix...), src)
		want := base64.RawURLEncoding.AppendEncode(append([]byte(nil), prefix...), src)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendB64 of %d bytes = %q, encoding/base64 gives %q", n, got, want)
		}
	}
}

// TestSignMatchesCryptoHMAC holds the signer's precomputed HMAC states to
// crypto/hmac, for secrets shorter than, as long as and longer than
// SHA-256's block (which HMAC hashes first), key SIDs of every length
// modulo 3 (which move the cut between the precomputed prefix and the
// rest), with and without a region header.
func TestSignMatchesCryptoHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, secretLen := range []int{0, 1, 31, 32, 63, 64, 65, 100, 200} {
		for _, sid := range []string{"SK", "SKb", "SKbb", "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"} {
			for _, region := range []string{"", "ie1"} {
				secret := make([]byte, secretLen)
				for i := range secret {
					secret[i] = byte(r.Uint32())
				}
				k := NewKey("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", sid, secret)
				for _, identity := range []string{"u", "us", "use", strings.Repeat("x", 200)} {
					tok := k.Sign(&Claims{Identity: identity, Region: region, IssuedAt: 1700000000, TTL: 60})
					dot := strings.LastIndexByte(tok.JWT, '.')
					m := hmac.New(sha256.New, secret)
					m.Write([]byte(tok.JWT[:dot]))
					want := base64.RawURLEncoding.EncodeToString(m.Sum(nil))
					if got := tok.JWT[dot+1:]; got != want {
						t.Fatalf("secret of %d bytes, sid %q, region %q, identity of %d: signature %s, crypto/hmac gives %s",
							secretLen, sid, region, len(identity), got, want)
					}
					sig, _ := base64.RawURLEncoding.DecodeString(want)
					if !k.Verify([]byte(tok.JWT[:dot]), sig) {
						t.Fatalf("Verify rejects the token it signed (secret of %d bytes, sid %q)", secretLen, sid)
					}
					if k.Verify([]byte(tok.JWT[:dot-1]), sig) {
						t.Fatalf("Verify accepts a changed signing input (secret of %d bytes, sid %q)", secretLen, sid)
					}
				}
			}
		}
	}
}

// TestTimesFollowClaims signs in a row with iat and exp changing one at a
// time (the scratch's cached iat/exp text must follow each change) and
// checks the times each token carries.
func TestTimesFollowClaims(t *testing.T) {
	k := NewKey("ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", []byte("secret"))
	for _, c := range []struct{ iat, ttl int64 }{{0, 0}, {0, 0}, {1700000000, 60}, {1700000000, 60}, {1700000000, 61}, {1700000001, 60}, {1700000001, 60}, {0, 0}} {
		tok := k.Sign(&Claims{Identity: "user", IssuedAt: c.iat, TTL: c.ttl})
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok.JWT, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`},"iat":%d,"exp":%d,"iss"`, c.iat, c.iat+c.ttl)
		if !strings.Contains(string(payload), want) {
			t.Errorf("iat %d, ttl %d: payload %s does not contain %s", c.iat, c.ttl, payload, want)
		}
	}
	var cache times
	for _, c := range [][2]int64{{5, 6}, {5, 7}, {4, 7}, {0, 0}} {
		if got, want := string(cache.append(nil, c[0], c[1])), string(appendTimes(nil, c[0], c[1])); got != want {
			t.Errorf("times.append(%d, %d) = %s, want %s", c[0], c[1], got, want)
		}
	}
}
