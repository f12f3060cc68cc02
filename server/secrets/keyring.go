package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"unicode"
)

// KeySize is the size in bytes of a master key (AES-256).
const KeySize = 32

// nonceSize is the GCM standard nonce size.
const nonceSize = 12

var (
	// ErrUnknownMasterKey is returned (wrapped, naming the key ID) by
	// Keyring.Open when the value was sealed under a master key that is not
	// in the keyring.
	ErrUnknownMasterKey = errors.New("unknown master key")
	// ErrCannotDecrypt is returned (wrapped) by Keyring.Open when the sealed
	// value does not authenticate: wrong master key, wrong associated data
	// (for example a ciphertext copied to another row), tampered or
	// truncated data.
	ErrCannotDecrypt = errors.New("cannot decrypt secret")
)

// MasterKey is a 32-byte AES-256 key with an ID. Create one with
// NewMasterKey or GenerateMasterKey; the zero value is not usable.
//
// A MasterKey never prints its key material: fmt (all verbs) and slog show
// only "MasterKey(ID)". Encode is the only way to get the key out.
type MasterKey struct {
	// ID names the key; it is stored next to every value the key seals.
	ID string
	// key returns the key bytes, which are never mutated. It is a func
	// because fmt prints a func as an address whatever the verb: a
	// MasterKey in an unexported struct field, where fmt cannot call
	// Format, still does not print its key (an array or even a pointer
	// would, with %v or %s).
	key func() *[KeySize]byte
}

// NewMasterKey returns a master key with the given ID and key bytes, which
// it copies. The key must be exactly 32 bytes. The ID must match
// [A-Za-z0-9._-]{1,64}; if it is empty, DeriveID(key) is used.
func NewMasterKey(id string, key []byte) (MasterKey, error) {
	if len(key) != KeySize {
		return MasterKey{}, fmt.Errorf("master key is %d bytes, want %d", len(key), KeySize)
	}
	if id == "" {
		id = DeriveID(key)
	} else if err := checkID(id); err != nil {
		return MasterKey{}, err
	}
	k := new([KeySize]byte)
	copy(k[:], key)
	return MasterKey{ID: id, key: func() *[KeySize]byte { return k }}, nil
}

// GenerateMasterKey returns a new random master key with a derived ID.
func GenerateMasterKey() (MasterKey, error) {
	var b [KeySize]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return MasterKey{}, fmt.Errorf("generate master key: %w", err)
	}
	return NewMasterKey("", b[:])
}

// DeriveID returns the default ID of a key: "mk-" followed by the first 12
// hex digits of SHA-256("tokend master key id\x00" || key). It is stable, so
// the same key always gets the same ID, and reveals nothing useful about
// the key.
func DeriveID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("tokend master key id\x00"))
	h.Write(key)
	return "mk-" + hex.EncodeToString(h.Sum(nil))[:12]
}

// checkID reports whether id matches [A-Za-z0-9._-]{1,64}. The error does
// not quote the ID, in case key material was pasted in its place.
func checkID(id string) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("master key id is %d characters, want 1 to 64", len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("master key id has a character outside [A-Za-z0-9._-] at position %d", i+1)
		}
	}
	return nil
}

// valid reports whether m was made by NewMasterKey.
func (m MasterKey) valid() bool { return m.key != nil && m.ID != "" }

// Encode returns the key as "ID:BASE64" (standard base64, padded), the
// format of one entry of a key file or of TOKEND_MASTER_KEY. It reveals
// the key material. The zero MasterKey encodes as "".
func (m MasterKey) Encode() string {
	if !m.valid() {
		return ""
	}
	return m.ID + ":" + base64.StdEncoding.EncodeToString(m.key()[:])
}

// String returns "MasterKey(ID)", never the key material.
func (m MasterKey) String() string {
	if !m.valid() {
		return "MasterKey(<none>)"
	}
	return "MasterKey(" + m.ID + ")"
}

// GoString returns the same redacted form as String, for %#v.
func (m MasterKey) GoString() string { return m.String() }

// Format prints the redacted form of String for every verb (%v, %+v, %#v,
// %s, %q, %x, ...), so no fmt verb can reveal the key.
func (m MasterKey) Format(f fmt.State, verb rune) { formatRedacted(f, verb, m.String()) }

// LogValue implements slog.LogValuer with the redacted form of String.
func (m MasterKey) LogValue() slog.Value { return slog.StringValue(m.String()) }

func formatRedacted(f fmt.State, verb rune, s string) {
	if verb == 'q' {
		s = strconv.Quote(s)
	}
	io.WriteString(f, s)
}

// Keyring holds master keys. The first is the primary, which seals new
// secrets; the others can only open. A Keyring is immutable and safe for
// concurrent use.
type Keyring struct {
	keys []MasterKey
	// aeads[i] returns the AES-GCM instance of keys[i]. Funcs, like
	// MasterKey.key, so fmt cannot print the expanded key schedule.
	aeads []func() cipher.AEAD
	byID  map[string]int
}

// NewKeyring returns a keyring whose primary is primary and which can also
// open values sealed under others. Duplicate IDs are an error.
func NewKeyring(primary MasterKey, others ...MasterKey) (*Keyring, error) {
	keys := append([]MasterKey{primary}, others...)
	k := &Keyring{
		keys:  keys,
		aeads: make([]func() cipher.AEAD, len(keys)),
		byID:  make(map[string]int, len(keys)),
	}
	for i, m := range keys {
		if !m.valid() {
			return nil, fmt.Errorf("master key %d: not initialized (use NewMasterKey)", i+1)
		}
		if j, dup := k.byID[m.ID]; dup {
			return nil, fmt.Errorf("master key %d: duplicate id %s (also master key %d)", i+1, m.ID, j+1)
		}
		k.byID[m.ID] = i
		block, err := aes.NewCipher(m.key()[:])
		if err != nil { // cannot happen with a 32-byte key
			return nil, fmt.Errorf("master key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("master key %d: %w", i+1, err)
		}
		k.aeads[i] = func() cipher.AEAD { return aead }
	}
	return k, nil
}

// ParseKeyring parses a keyring from text: one or more entries separated by
// commas, whitespace or newlines. A line whose first non-blank character is
// '#' is a comment, as is the rest of a line from an entry starting with
// '#'. An entry is "ID:BASE64" or a bare "BASE64" (the ID is then
// DeriveID of the key); base64 may be standard or URL-safe, padded or not,
// and must decode to 32 bytes. The first entry is the primary.
//
// Errors name the entry by position ("master key 2: ...") and never contain
// the text or key material.
func ParseKeyring(text string) (*Keyring, error) {
	var keys []MasterKey
	n := 0
	for line := range strings.Lines(text) {
		for _, entry := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			if strings.HasPrefix(entry, "#") {
				break // comment to end of line
			}
			n++
			m, err := parseEntry(entry)
			if err != nil {
				return nil, fmt.Errorf("master key %d: %w", n, err)
			}
			keys = append(keys, m)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no master keys found")
	}
	return NewKeyring(keys[0], keys[1:]...)
}

func parseEntry(entry string) (MasterKey, error) {
	id, b64, hasID := strings.Cut(entry, ":")
	if !hasID {
		id, b64 = "", entry
	} else if err := checkID(id); err != nil {
		return MasterKey{}, err
	}
	if b64 == "" {
		return MasterKey{}, errors.New("empty key")
	}
	key, err := decodeBase64(b64)
	if err != nil {
		return MasterKey{}, err
	}
	defer clear(key)
	if len(key) != KeySize {
		return MasterKey{}, fmt.Errorf("decodes to %d bytes, want %d", len(key), KeySize)
	}
	return NewMasterKey(id, key)
}

// decodeBase64 accepts standard or URL-safe base64, padded or not. Its
// error deliberately says nothing about the input.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not valid base64 (standard or URL-safe)")
}

// Primary returns the primary master key, which seals new secrets.
func (k *Keyring) Primary() MasterKey {
	if k == nil || len(k.keys) == 0 {
		return MasterKey{}
	}
	return k.keys[0]
}

// IDs returns the IDs of the keys, primary first.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	ids := make([]string, len(k.keys))
	for i, m := range k.keys {
		ids[i] = m.ID
	}
	return ids
}

// Encode returns the keyring in the format ParseKeyring reads: one
// "ID:BASE64" entry per line, primary first, each line ending in a newline.
// It reveals the key material.
func (k *Keyring) Encode() string {
	if k == nil {
		return ""
	}
	var b strings.Builder
	for _, m := range k.keys {
		b.WriteString(m.Encode())
		b.WriteByte('\n')
	}
	return b.String()
}

// String returns "Keyring(primary=ID, n=N)", never key material.
func (k *Keyring) String() string {
	if k == nil || len(k.keys) == 0 {
		return "Keyring(<nil>)"
	}
	return fmt.Sprintf("Keyring(primary=%s, n=%d)", k.keys[0].ID, len(k.keys))
}

// GoString returns the same redacted form as String, for %#v.
func (k *Keyring) GoString() string { return k.String() }

// Format prints the redacted form of String for every fmt verb.
func (k *Keyring) Format(f fmt.State, verb rune) { formatRedacted(f, verb, k.String()) }

// LogValue implements slog.LogValuer with the redacted form of String.
func (k *Keyring) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Seal encrypts plaintext with AES-256-GCM under the primary key, binding
// it to the associated data ad (see AssociatedData). It returns
// nonce||ciphertext||tag, with a random 12-byte nonce, and the ID of the
// key that sealed it, which must be stored alongside for Open.
func (k *Keyring) Seal(plaintext, ad []byte) (sealed []byte, keyID string, err error) {
	if k == nil || len(k.keys) == 0 {
		return nil, "", errors.New("seal: empty keyring")
	}
	aead := k.aeads[0]()
	nonce := make([]byte, nonceSize, nonceSize+len(plaintext)+aead.Overhead())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, "", fmt.Errorf("seal: read nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, ad), k.keys[0].ID, nil
}

// Open decrypts a value returned by Seal, given the ID of the key that
// sealed it and the same associated data. It fails with an error wrapping
// ErrUnknownMasterKey if keyID is not in the keyring, and with one wrapping
// ErrCannotDecrypt if the value does not authenticate.
func (k *Keyring) Open(sealed []byte, keyID string, ad []byte) ([]byte, error) {
	if k == nil {
		return nil, errors.New("open: empty keyring")
	}
	i, ok := k.byID[keyID]
	if !ok {
		return nil, fmt.Errorf("%w: sealed under master key %s, which is not in the keyring", ErrUnknownMasterKey, quoteID(keyID))
	}
	aead := k.aeads[i]()
	if len(sealed) < nonceSize+aead.Overhead() {
		return nil, fmt.Errorf("%w: sealed value is %d bytes, too short (master key %s)", ErrCannotDecrypt, len(sealed), keyID)
	}
	plaintext, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%w: wrong master key, wrong associated data or tampered value (master key %s)", ErrCannotDecrypt, keyID)
	}
	return plaintext, nil
}

// quoteID prints a key ID read from storage: as is when it is a valid ID,
// quoted and truncated otherwise, so a corrupt column cannot garble logs.
func quoteID(id string) string {
	if checkID(id) == nil {
		return id
	}
	if len(id) > 64 {
		id = id[:64] + "..."
	}
	return strconv.Quote(id)
}

// WithPrimary returns a new keyring whose primary is m and which keeps the
// other keys of k for opening, so values sealed before a rekey still open.
// If m is already in k it is promoted. An m whose ID is in k with different
// key bytes is an error. k is not modified.
func (k *Keyring) WithPrimary(m MasterKey) (*Keyring, error) {
	if !m.valid() {
		return nil, errors.New("new primary master key is not initialized (use NewMasterKey)")
	}
	if k == nil {
		return NewKeyring(m)
	}
	others := make([]MasterKey, 0, len(k.keys))
	for _, o := range k.keys {
		if o.ID != m.ID {
			others = append(others, o)
			continue
		}
		if subtle.ConstantTimeCompare(o.key()[:], m.key()[:]) != 1 {
			return nil, fmt.Errorf("master key id %s is already in the keyring with a different key", m.ID)
		}
	}
	return NewKeyring(m, others...)
}

// AssociatedData returns the associated data that binds a sealed secret to
// its row: the application SID and the API key SID. Opening a ciphertext
// with the associated data of another row fails with ErrCannotDecrypt.
//
// The encoding is "tokend/v1/" + len(applicationSID) + ":" +
// applicationSID + "/" + keySID; the length prefix makes it unambiguous
// whatever the SIDs contain. It must never change for existing data.
func AssociatedData(applicationSID, keySID string) []byte {
	return []byte("tokend/v1/" + strconv.Itoa(len(applicationSID)) + ":" + applicationSID + "/" + keySID)
}
