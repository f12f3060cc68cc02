package mint

import (
	"strings"
	"testing"
)

// TestPlainPrefix holds PlainPrefix to its byte-by-byte definition for
// every byte value at every position of strings of 0 to 40 bytes (the
// word-at-a-time paths and their tails), and for a byte to escape after
// another one (a borrow across bytes).
func TestPlainPrefix(t *testing.T) {
	want := func(s string) int {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				return i
			}
		}
		return len(s)
	}
	base := strings.Repeat("eyJhbGciOiJIUzI1NiJ9._-", 2)[:40]
	for n := 0; n <= len(base); n++ {
		if got := PlainPrefix(base[:n]); got != n {
			t.Fatalf("PlainPrefix(%q) = %d, want %d", base[:n], got, n)
		}
		for pos := 0; pos < n; pos++ {
			for c := 0; c < 256; c++ {
				b := []byte(base[:n])
				b[pos] = byte(c)
				if got, w := PlainPrefix(string(b)), want(string(b)); got != w {
					t.Fatalf("PlainPrefix(%q) = %d, want %d", b, got, w)
				}
				for _, d := range []byte{0, 0x1f, '"', '\\', 0x20, 0x21, 0x7f, 0x80, 0xff} {
					if pos+1 < n {
						b[pos+1] = d
						if got, w := PlainPrefix(string(b)), want(string(b)); got != w {
							t.Fatalf("PlainPrefix(%q) = %d, want %d", b, got, w)
						}
					}
				}
			}
		}
	}
}

// BenchmarkPlainPrefix: a token-sized string (500 bytes) with nothing to
// escape, as the REST answer and the audit record check theirs.
func BenchmarkPlainPrefix(b *testing.B) {
	s := strings.Repeat("eyJqdGkiOiJTS2JiYmJiYmJi_-.", 19)[:500]
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		if PlainPrefix(s) != len(s) {
			b.Fatal("not plain")
		}
	}
}
