package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// keyBytes returns a deterministic 32-byte key whose bytes all differ.
func keyBytes(seed byte) []byte {
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = seed + byte(i)*7 + 0x41
	}
	return b
}

func mustKey(t testing.TB, id string, seed byte) MasterKey {
	t.Helper()
	m, err := NewMasterKey(id, keyBytes(seed))
	if err != nil {
		t.Fatalf("NewMasterKey: %v", err)
	}
	return m
}

func mustKeyring(t testing.TB, primary MasterKey, others ...MasterKey) *Keyring {
	t.Helper()
	kr, err := NewKeyring(primary, others...)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return kr
}

// encodings returns the ways key material could leak into a string.
func encodings(key []byte) []string {
	return []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		base64.URLEncoding.EncodeToString(key),
		base64.RawURLEncoding.EncodeToString(key),
		base64.StdEncoding.EncodeToString(key[:12]),
		hex.EncodeToString(key),
		hex.EncodeToString(key[:8]),
		strings.ToUpper(hex.EncodeToString(key[:8])),
		strings.Trim(fmt.Sprint(key[:6]), "[]"), // decimal, as %v of a byte array
		string(key[:8]),
	}
}

func assertNoLeak(t *testing.T, what, s string, key []byte) {
	t.Helper()
	for _, enc := range encodings(key) {
		if strings.Contains(s, enc) {
			t.Errorf("%s leaks key material %q: %s", what, enc, s)
		}
	}
}

func TestNewMasterKey(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		key     []byte
		wantID  string
		wantErr bool
	}{
		{name: "explicit id", id: "prod-2024.1_a", key: keyBytes(1), wantID: "prod-2024.1_a"},
		{name: "derived id", id: "", key: keyBytes(1), wantID: DeriveID(keyBytes(1))},
		{name: "64 char id", id: strings.Repeat("a", 64), key: keyBytes(1), wantID: strings.Repeat("a", 64)},
		{name: "65 char id", id: strings.Repeat("a", 65), key: keyBytes(1), wantErr: true},
		{name: "bad id char", id: "a/b", key: keyBytes(1), wantErr: true},
		{name: "id with space", id: "a b", key: keyBytes(1), wantErr: true},
		{name: "short key", key: keyBytes(1)[:16], wantErr: true},
		{name: "long key", key: append(keyBytes(1), 0), wantErr: true},
		{name: "nil key", key: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMasterKey(tt.id, tt.key)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewMasterKey = %v, want error", m)
				}
				assertNoLeak(t, "error", err.Error(), keyBytes(1))
				return
			}
			if err != nil {
				t.Fatalf("NewMasterKey: %v", err)
			}
			if m.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", m.ID, tt.wantID)
			}
		})
	}
}

func TestNewMasterKeyCopiesKey(t *testing.T) {
	b := keyBytes(1)
	m, err := NewMasterKey("a", b)
	if err != nil {
		t.Fatal(err)
	}
	clear(b)
	if !bytes.Equal(m.key()[:], keyBytes(1)) {
		t.Error("MasterKey shares the caller's slice")
	}
}

func TestDeriveID(t *testing.T) {
	id := DeriveID(keyBytes(1))
	if !strings.HasPrefix(id, "mk-") || len(id) != 15 {
		t.Errorf("DeriveID = %q, want mk- and 12 hex digits", id)
	}
	if _, err := hex.DecodeString(id[3:]); err != nil {
		t.Errorf("DeriveID = %q, not hex: %v", id, err)
	}
	if again := DeriveID(keyBytes(1)); again != id {
		t.Errorf("DeriveID not stable: %q then %q", id, again)
	}
	if other := DeriveID(keyBytes(2)); other == id {
		t.Errorf("DeriveID same for different keys: %q", id)
	}
	if err := checkID(id); err != nil {
		t.Errorf("derived ID is not a valid ID: %v", err)
	}
}

func TestGenerateMasterKey(t *testing.T) {
	a, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || bytes.Equal(a.key()[:], b.key()[:]) {
		t.Error("two generated keys are equal")
	}
	if a.ID != DeriveID(a.key()[:]) {
		t.Errorf("ID = %q, want derived %q", a.ID, DeriveID(a.key()[:]))
	}
}

func TestSealOpen(t *testing.T) {
	kr := mustKeyring(t, mustKey(t, "k1", 1), mustKey(t, "k2", 2))
	ad := AssociatedData("AP0123", "SK0123")
	tests := []struct {
		name      string
		plaintext []byte
		ad        []byte
	}{
		{name: "secret", plaintext: []byte("twilio api key secret"), ad: ad},
		{name: "empty plaintext", plaintext: []byte{}, ad: ad},
		{name: "nil ad", plaintext: []byte("x"), ad: nil},
		{name: "large", plaintext: bytes.Repeat([]byte{0xAB}, 1<<16), ad: ad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, id, err := kr.Seal(tt.plaintext, tt.ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if id != "k1" {
				t.Errorf("Seal key ID = %q, want primary k1", id)
			}
			if want := nonceSize + len(tt.plaintext) + 16; len(sealed) != want {
				t.Errorf("len(sealed) = %d, want %d", len(sealed), want)
			}
			if len(tt.plaintext) > 4 && bytes.Contains(sealed, tt.plaintext) {
				t.Error("sealed value contains the plaintext")
			}
			got, err := kr.Open(sealed, id, tt.ad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if diff := cmp.Diff(tt.plaintext, got, cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("Open mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSealNonceIsRandom(t *testing.T) {
	kr := mustKeyring(t, mustKey(t, "k1", 1))
	a, _, err := kr.Seal([]byte("same"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := kr.Seal([]byte("same"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[:nonceSize], b[:nonceSize]) || bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext share a nonce")
	}
}

func TestOpenFails(t *testing.T) {
	k1 := mustKey(t, "k1", 1)
	kr := mustKeyring(t, k1, mustKey(t, "k2", 2))
	ad := AssociatedData("AP1", "SK1")
	sealed, id, err := kr.Seal([]byte("the secret"), ad)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	// Same key ID, different key bytes: what a wrong key file looks like.
	impostor := mustKeyring(t, mustKey(t, "k1", 9))

	tests := []struct {
		name    string
		kr      *Keyring
		sealed  []byte
		id      string
		ad      []byte
		wantErr error
	}{
		{name: "other row's ad", kr: kr, sealed: sealed, id: id, ad: AssociatedData("AP1", "SK2"), wantErr: ErrCannotDecrypt},
		{name: "other app's ad", kr: kr, sealed: sealed, id: id, ad: AssociatedData("AP2", "SK1"), wantErr: ErrCannotDecrypt},
		{name: "nil ad", kr: kr, sealed: sealed, id: id, ad: nil, wantErr: ErrCannotDecrypt},
		{name: "other key in ring", kr: kr, sealed: sealed, id: "k2", ad: ad, wantErr: ErrCannotDecrypt},
		{name: "wrong key same id", kr: impostor, sealed: sealed, id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "tampered nonce", kr: kr, sealed: flip(0), id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "tampered ciphertext", kr: kr, sealed: flip(nonceSize + 1), id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "tampered tag", kr: kr, sealed: flip(len(sealed) - 1), id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "appended byte", kr: kr, sealed: append(bytes.Clone(sealed), 0), id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "truncated by one", kr: kr, sealed: sealed[:len(sealed)-1], id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "nonce and tag only", kr: kr, sealed: sealed[:nonceSize+16], id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "shorter than tag", kr: kr, sealed: sealed[:nonceSize+15], id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "shorter than nonce", kr: kr, sealed: sealed[:5], id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "empty", kr: kr, sealed: []byte{}, id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "nil", kr: kr, sealed: nil, id: id, ad: ad, wantErr: ErrCannotDecrypt},
		{name: "unknown key id", kr: kr, sealed: sealed, id: "mk-abc", ad: ad, wantErr: ErrUnknownMasterKey},
		{name: "empty key id", kr: kr, sealed: sealed, id: "", ad: ad, wantErr: ErrUnknownMasterKey},
		{name: "garbage key id", kr: kr, sealed: sealed, id: "\x00\n" + strings.Repeat("z", 200), ad: ad, wantErr: ErrUnknownMasterKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kr.Open(tt.sealed, tt.id, tt.ad)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open = %q, %v; want error %v", got, err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Open returned plaintext %q with error", got)
			}
			msg := err.Error()
			assertNoLeak(t, "error", msg, keyBytes(1))
			if strings.Contains(msg, "the secret") {
				t.Errorf("error contains plaintext: %s", msg)
			}
			if strings.ContainsAny(msg, "\x00\n") {
				t.Errorf("error contains raw control characters: %q", msg)
			}
		})
	}
}

func TestOpenUnknownKeyMessage(t *testing.T) {
	kr := mustKeyring(t, mustKey(t, "k1", 1))
	_, err := kr.Open([]byte("whatever, long enough to be a ciphertext"), "mk-abc", nil)
	want := "sealed under master key mk-abc, which is not in the keyring"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Open error = %v, want it to contain %q", err, want)
	}
}

func TestNilKeyring(t *testing.T) {
	var kr *Keyring
	if _, _, err := kr.Seal([]byte("x"), nil); err == nil {
		t.Error("Seal on nil keyring: no error")
	}
	if _, err := kr.Open([]byte("x"), "k", nil); err == nil {
		t.Error("Open on nil keyring: no error")
	}
	if got := kr.IDs(); got != nil {
		t.Errorf("IDs = %v, want nil", got)
	}
	if got := fmt.Sprint(kr); got != "Keyring(<nil>)" {
		t.Errorf("Sprint(nil keyring) = %q", got)
	}
}

func TestNewKeyring(t *testing.T) {
	tests := []struct {
		name    string
		keys    []MasterKey
		wantIDs []string
		wantErr string
	}{
		{name: "one", keys: []MasterKey{mustKey(t, "a", 1)}, wantIDs: []string{"a"}},
		{name: "three", keys: []MasterKey{mustKey(t, "c", 3), mustKey(t, "a", 1), mustKey(t, "b", 2)}, wantIDs: []string{"c", "a", "b"}},
		{name: "duplicate id", keys: []MasterKey{mustKey(t, "a", 1), mustKey(t, "b", 2), mustKey(t, "a", 3)}, wantErr: "master key 3: duplicate id a"},
		{name: "same key twice", keys: []MasterKey{mustKey(t, "", 1), mustKey(t, "", 1)}, wantErr: "duplicate id"},
		{name: "zero primary", keys: []MasterKey{{}}, wantErr: "master key 1: not initialized"},
		{name: "zero other", keys: []MasterKey{mustKey(t, "a", 1), {ID: "b"}}, wantErr: "master key 2: not initialized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := NewKeyring(tt.keys[0], tt.keys[1:]...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewKeyring error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantIDs, kr.IDs()); diff != "" {
				t.Errorf("IDs (-want +got):\n%s", diff)
			}
			if kr.Primary().ID != tt.wantIDs[0] {
				t.Errorf("Primary = %v, want %s", kr.Primary(), tt.wantIDs[0])
			}
		})
	}
}

func TestWithPrimary(t *testing.T) {
	old := mustKey(t, "old", 1)
	kr := mustKeyring(t, old)
	ad := AssociatedData("AP1", "SK1")
	oldSealed, oldID, err := kr.Seal([]byte("before rekey"), ad)
	if err != nil {
		t.Fatal(err)
	}

	rekeyed, err := kr.WithPrimary(mustKey(t, "new", 2))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"new", "old"}, rekeyed.IDs()); diff != "" {
		t.Errorf("IDs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"old"}, kr.IDs()); diff != "" {
		t.Errorf("original keyring modified (-want +got):\n%s", diff)
	}
	got, err := rekeyed.Open(oldSealed, oldID, ad)
	if err != nil {
		t.Fatalf("old ciphertext after rekey: %v", err)
	}
	if string(got) != "before rekey" {
		t.Errorf("Open = %q", got)
	}
	newSealed, newID, err := rekeyed.Seal([]byte("after rekey"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if newID != "new" {
		t.Errorf("new seal key ID = %q, want new", newID)
	}
	if _, err := kr.Open(newSealed, newID, ad); !errors.Is(err, ErrUnknownMasterKey) {
		t.Errorf("old keyring opening new ciphertext: err = %v, want ErrUnknownMasterKey", err)
	}

	// Promoting a key already in the ring.
	back, err := rekeyed.WithPrimary(old)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"old", "new"}, back.IDs()); diff != "" {
		t.Errorf("promote IDs (-want +got):\n%s", diff)
	}
	// Same ID, different bytes.
	if _, err := rekeyed.WithPrimary(mustKey(t, "old", 7)); err == nil {
		t.Error("WithPrimary with a conflicting ID: no error")
	} else {
		assertNoLeak(t, "error", err.Error(), keyBytes(7))
	}
	if _, err := rekeyed.WithPrimary(MasterKey{}); err == nil {
		t.Error("WithPrimary(zero): no error")
	}
}

func TestAssociatedData(t *testing.T) {
	tests := []struct {
		app, key string
		want     string
	}{
		{"AP0123", "SK4567", "tokend/v1/6:AP0123/SK4567"},
		{"", "", "tokend/v1/0:/"},
	}
	for _, tt := range tests {
		if got := string(AssociatedData(tt.app, tt.key)); got != tt.want {
			t.Errorf("AssociatedData(%q, %q) = %q, want %q", tt.app, tt.key, got, tt.want)
		}
	}
	// Unambiguous even when SIDs contain the separator.
	if bytes.Equal(AssociatedData("a/b", "c"), AssociatedData("a", "b/c")) {
		t.Error("AssociatedData is ambiguous")
	}
}

func TestParseKeyring(t *testing.T) {
	k1, k2, k3 := keyBytes(1), keyBytes(2), keyBytes(3)
	// A key whose standard base64 has + and / so std and URL differ.
	var k4 []byte
	for s := byte(0); ; s++ {
		k4 = keyBytes(s)
		e := base64.StdEncoding.EncodeToString(k4)
		if strings.ContainsAny(e, "+") && strings.ContainsAny(e, "/") {
			break
		}
	}
	std := base64.StdEncoding.EncodeToString
	tests := []struct {
		name    string
		text    string
		wantIDs []string
		wantKey [][]byte
	}{
		{name: "bare std padded", text: std(k1), wantIDs: []string{DeriveID(k1)}, wantKey: [][]byte{k1}},
		{name: "bare std raw", text: base64.RawStdEncoding.EncodeToString(k4), wantIDs: []string{DeriveID(k4)}, wantKey: [][]byte{k4}},
		{name: "url padded", text: "u:" + base64.URLEncoding.EncodeToString(k4), wantIDs: []string{"u"}, wantKey: [][]byte{k4}},
		{name: "url raw", text: base64.RawURLEncoding.EncodeToString(k4), wantIDs: []string{DeriveID(k4)}, wantKey: [][]byte{k4}},
		{name: "with id", text: "prod-1:" + std(k1), wantIDs: []string{"prod-1"}, wantKey: [][]byte{k1}},
		{name: "surrounding whitespace", text: "\n\t  prod-1:" + std(k1) + "  \r\n", wantIDs: []string{"prod-1"}, wantKey: [][]byte{k1}},
		{
			name:    "comma separated",
			text:    "a:" + std(k1) + ",b:" + std(k2) + ", " + std(k3),
			wantIDs: []string{"a", "b", DeriveID(k3)},
			wantKey: [][]byte{k1, k2, k3},
		},
		{
			name:    "lines and comments",
			text:    "# tokend master keys\n\n  # primary first\nnew:" + std(k2) + "\nold:" + std(k1) + " # rotated 2024-01\r\n#gone:" + std(k3) + "\n",
			wantIDs: []string{"new", "old"},
			wantKey: [][]byte{k2, k1},
		},
		{name: "space separated", text: "a:" + std(k1) + " b:" + std(k2), wantIDs: []string{"a", "b"}, wantKey: [][]byte{k1, k2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := ParseKeyring(tt.text)
			if err != nil {
				t.Fatalf("ParseKeyring: %v", err)
			}
			if diff := cmp.Diff(tt.wantIDs, kr.IDs()); diff != "" {
				t.Errorf("IDs (-want +got):\n%s", diff)
			}
			var keys [][]byte
			for _, m := range kr.keys {
				keys = append(keys, m.key()[:])
			}
			if diff := cmp.Diff(tt.wantKey, keys); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			// Encode round-trips.
			again, err := ParseKeyring(kr.Encode())
			if err != nil {
				t.Fatalf("ParseKeyring(Encode()): %v", err)
			}
			if diff := cmp.Diff(kr.Encode(), again.Encode()); diff != "" {
				t.Errorf("Encode round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseKeyringErrors(t *testing.T) {
	k1, k2 := keyBytes(1), keyBytes(2)
	std := base64.StdEncoding.EncodeToString
	short := keyBytes(3)[:16]
	long := append(keyBytes(3), keyBytes(4)...)
	mixed := std(k1)
	mixed = mixed[:10] + "-" + mixed[11:20] + "+" + mixed[21:] // both alphabets
	tests := []struct {
		name    string
		text    string
		secrets [][]byte // key material in text that must not leak
		wantErr string
	}{
		{name: "empty", text: "", wantErr: "no master keys"},
		{name: "only whitespace", text: " \n\t, ,\n", wantErr: "no master keys"},
		{name: "only comments", text: "# a:" + std(k1) + "\n  # more\n", secrets: [][]byte{k1}, wantErr: "no master keys"},
		{name: "short", text: "a:" + std(k1) + "\nb:" + std(short), secrets: [][]byte{k1, short}, wantErr: "master key 2: decodes to 16 bytes, want 32"},
		{name: "long", text: std(long), secrets: [][]byte{long}, wantErr: "master key 1: decodes to 64 bytes, want 32"},
		{name: "bad base64", text: std(k1) + "," + std(k2)[:20] + "!!" + std(k2)[22:], secrets: [][]byte{k1, k2}, wantErr: "master key 2: not valid base64"},
		{name: "mixed alphabets", text: mixed, secrets: [][]byte{k1}, wantErr: "master key 1: not valid base64"},
		{name: "padding in the middle", text: std(k1)[:20] + "=" + std(k1)[21:], secrets: [][]byte{k1}, wantErr: "master key 1: not valid base64"},
		{name: "hex not base64 length", text: hex.EncodeToString(k1), secrets: [][]byte{k1}, wantErr: "master key 1: decodes to 48 bytes, want 32"},
		{name: "duplicate ids", text: "a:" + std(k1) + " a:" + std(k2), secrets: [][]byte{k1, k2}, wantErr: "master key 2: duplicate id a"},
		{name: "duplicate bare key", text: std(k1) + "\n" + base64.RawURLEncoding.EncodeToString(k1), secrets: [][]byte{k1}, wantErr: "master key 2: duplicate id mk-"},
		{name: "bad id", text: "bad/id:" + std(k1), secrets: [][]byte{k1}, wantErr: "master key 1: master key id has a character"},
		{name: "key pasted as id", text: std(k1) + ":" + std(k2), secrets: [][]byte{k1, k2}, wantErr: "master key 1:"},
		{name: "empty id", text: ":" + std(k1), secrets: [][]byte{k1}, wantErr: "master key 1: master key id is 0 characters"},
		{name: "empty key", text: "a:", wantErr: "master key 1: empty key"},
		{name: "only padding", text: "a:====", wantErr: "master key 1: decodes to 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr, err := ParseKeyring(tt.text)
			if err == nil {
				t.Fatalf("ParseKeyring = %v, want error", kr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.wantErr)
			}
			for _, s := range tt.secrets {
				assertNoLeak(t, "error", msg, s)
			}
			for _, f := range strings.FieldsFunc(tt.text, func(r rune) bool { return r == ',' || r == ':' || r == ' ' || r == '\n' || r == '#' }) {
				if len(f) >= 8 && strings.Contains(msg, f) {
					t.Errorf("error %q contains input text %q", msg, f)
				}
			}
		})
	}
}

func TestRedaction(t *testing.T) {
	key := keyBytes(5)
	m := mustKey(t, "", 5)
	kr := mustKeyring(t, m, mustKey(t, "other", 6))
	type holder struct {
		Key     MasterKey
		Ring    *Keyring
		RingVal Keyring
		Keys    []MasterKey
		ByID    map[string]MasterKey
		key     MasterKey // unexported: fmt cannot call its methods
		ring    *Keyring
		ringVal Keyring
		keys    []MasterKey
	}
	h := holder{Key: m, Ring: kr, RingVal: *kr, Keys: []MasterKey{m}, ByID: map[string]MasterKey{m.ID: m}, key: m, ring: kr, ringVal: *kr, keys: []MasterKey{m}}
	values := map[string]any{
		"MasterKey":  m,
		"*MasterKey": &m,
		"*Keyring":   kr,
		"holder":     h,
		"*holder":    &h,
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"}
	for name, v := range values {
		for _, verb := range verbs {
			s := fmt.Sprintf(verb, v)
			assertNoLeak(t, fmt.Sprintf("Sprintf(%q, %s)", verb, name), s, key)
		}
	}
	if got := fmt.Sprint(m); got != "MasterKey("+m.ID+")" {
		t.Errorf("Sprint(MasterKey) = %q", got)
	}
	if got := fmt.Sprintf("%#v", kr); got != "Keyring(primary="+m.ID+", n=2)" {
		t.Errorf("%%#v of Keyring = %q", got)
	}
	if got := fmt.Sprintf("%q", m); got != `"MasterKey(`+m.ID+`)"` {
		t.Errorf("%%q of MasterKey = %q", got)
	}

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("keys", "key", m, "ring", kr, "holder", h)
	log2 := slog.New(slog.NewTextHandler(&buf, nil))
	log2.Info("keys", "key", m, "ring", kr, "holder", h)
	assertNoLeak(t, "slog output", buf.String(), key)
	if !strings.Contains(buf.String(), "MasterKey("+m.ID+")") {
		t.Errorf("slog output lacks redacted key: %s", buf.String())
	}
}

// FuzzParseKeyring checks ParseKeyring never panics and that whatever it
// accepts round-trips through Encode.
func FuzzParseKeyring(f *testing.F) {
	std := base64.StdEncoding.EncodeToString
	f.Add("")
	f.Add(std(keyBytes(1)))
	f.Add("a:" + std(keyBytes(1)) + ",b:" + base64.RawURLEncoding.EncodeToString(keyBytes(2)))
	f.Add("# comment\nx:" + std(keyBytes(1)) + " # trailing\n")
	f.Add("a:" + std(keyBytes(1)[:16]))
	f.Add(":::,,,===\x00\xff")
	f.Fuzz(func(t *testing.T, text string) {
		kr, err := ParseKeyring(text)
		if err != nil {
			if kr != nil {
				t.Fatal("non-nil keyring with error")
			}
			return
		}
		again, err := ParseKeyring(kr.Encode())
		if err != nil {
			t.Fatalf("ParseKeyring(Encode()): %v", err)
		}
		if kr.Encode() != again.Encode() {
			t.Fatal("Encode does not round-trip")
		}
	})
}

// FuzzOpen checks Open never panics and never accepts a value it did not
// seal with the given associated data.
func FuzzOpen(f *testing.F) {
	kr := mustKeyring(f, mustKey(f, "k1", 1), mustKey(f, "k2", 2))
	ad := AssociatedData("AP1", "SK1")
	sealed, id, err := kr.Seal([]byte("secret"), ad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, id, ad)
	f.Add([]byte{}, "k1", []byte{})
	f.Add(sealed[:nonceSize], "k2", ad)
	f.Add(sealed, "nope", ad)
	f.Add(bytes.Repeat([]byte{0}, 64), "k1", []byte(nil))
	f.Fuzz(func(t *testing.T, sealed []byte, keyID string, ad []byte) {
		pt, err := kr.Open(sealed, keyID, ad)
		if err != nil {
			if !errors.Is(err, ErrCannotDecrypt) && !errors.Is(err, ErrUnknownMasterKey) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if string(pt) != "secret" {
			t.Fatalf("Open accepted a forged value: %q", pt)
		}
	})
}
