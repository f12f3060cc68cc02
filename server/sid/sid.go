// Package sid checks the shape of Twilio SIDs: a two-letter prefix naming
// the kind (AP application, AC account, SK API key, ...) and 32
// hexadecimal digits.
package sid

// Valid reports whether s is prefix followed by 32 hexadecimal digits.
func Valid(s, prefix string) bool {
	if len(s) != 34 || s[:2] != prefix {
		return false
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
