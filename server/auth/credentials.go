package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// CredentialPrefix starts every tokend service credential.
const CredentialPrefix = "tkd_"

// credentialSecretLen is the length of the base64url (unpadded) text of a
// credential's 32 random bytes.
const credentialSecretLen = 43

// CredentialLookup finds the service credential whose token hashes (SHA-256,
// see HashCredential) to hash, returning its name and groups, or ok false
// when there is none (or it was revoked). tokend backs it with its store.
//
// Because callers are looked up by the hash of what they present, never by
// comparing secrets, lookups leak nothing useful through timing: learning
// that a hash prefix exists does not help anyone find a preimage.
type CredentialLookup func(hash [32]byte) (name string, groups []string, ok bool)

// NewCredentialToken returns a new random service credential,
// "tkd_" followed by 43 base64url characters (256 random bits), and its
// SHA-256 hash, which is what the store should keep. The token itself is
// shown to the operator once and never stored.
func NewCredentialToken() (token string, hash [32]byte, err error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", [32]byte{}, fmt.Errorf("auth: new credential: %w", err)
	}
	token = CredentialPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	return token, HashCredential(token), nil
}

// HashCredential returns the SHA-256 of the whole credential token, prefix
// included: the key a CredentialLookup is asked for.
func HashCredential(token string) [32]byte {
	// A credential is hashed on every authenticated call: through a
	// buffer on the stack, as []byte(token) would allocate for a token
	// longer than 32 bytes. Longer input (not a well-formed credential)
	// takes the allocation.
	var buf [64]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// IsCredentialToken reports whether s is shaped like a tokend credential:
// "tkd_" and 43 base64url characters. It says nothing about whether the
// credential exists.
func IsCredentialToken(s string) bool {
	rest, ok := strings.CutPrefix(s, CredentialPrefix)
	if !ok || len(rest) != credentialSecretLen {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	// The last character carries 2 padding bits, which must be zero for the
	// text to be the canonical encoding of 32 bytes (what a strict
	// base64url decoder checks; tested against one).
	return strings.IndexByte(base64URLAlphabet, rest[len(rest)-1])&3 == 0
}

// base64URLAlphabet is base64url's alphabet, in the order of the values
// its characters stand for.
const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// authenticateCredential resolves a "tkd_" bearer token.
func (a *Authenticator) authenticateCredential(token string) (Principal, error) {
	if a.cfg.Credentials == nil {
		return Principal{}, unauthenticated("service credentials are not accepted here")
	}
	if !IsCredentialToken(token) {
		return Principal{}, unauthenticated("malformed service credential")
	}
	name, groups, ok := a.cfg.Credentials(HashCredential(token))
	if !ok {
		return Principal{}, unauthenticated("unknown or revoked service credential")
	}
	return Principal{Kind: KindCredential, Name: name, Groups: groups}, nil
}
