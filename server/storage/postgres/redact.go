package postgres

import (
	"net/url"
	"strings"
)

// Redacted replaces every secret RedactDSN removes.
const Redacted = "REDACTED"

// RedactDSN returns dsn with every secret replaced by REDACTED, for logs,
// errors and `tokend config`. It is the one redaction of store DSNs in
// tokend, and understands every form pgx accepts:
//
//   - URLs (postgres:// or postgresql://, any case): the user info's
//     password, and the value of every secret query parameter;
//   - keyword/value strings (host=db password='it\'s' sslpassword=x),
//     quoted or not, with spaces around "=": the value of every secret
//     keyword, quoting kept.
//
// A parameter is secret when its name, in any case, contains "password",
// "passwd", "secret", "token" or "credential", or ends in "key" (other
// than sslkey, the path of the client key file): password and sslpassword
// are libpq's, the others catch whatever a driver or proxy adds.
//
// A DSN that cannot be parsed in either form but might hold a secret (it
// has an "@", an "=" or a secret-sounding word) is redacted whole. The
// result of a DSN without secrets is dsn unchanged.
func RedactDSN(dsn string) string {
	lower := strings.ToLower(dsn)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		if out, ok := redactURL(dsn); ok {
			return out
		}
		return Redacted
	}
	if strings.Contains(dsn, "=") {
		if out, ok := redactKeywords(dsn); ok {
			return out
		}
		return Redacted
	}
	if strings.Contains(dsn, "@") || secretName(lower) {
		return Redacted
	}
	return dsn
}

// secretName reports whether a DSN parameter name names a secret.
func secretName(name string) bool {
	name = strings.ToLower(name)
	for _, w := range []string{"password", "passwd", "secret", "token", "credential"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return strings.HasSuffix(name, "key") && name != "sslkey"
}

// redactURL redacts a postgres:// URL; ok false when it does not parse.
// The query is rewritten in place, so its order and encoding stay as
// given.
func redactURL(dsn string) (string, bool) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", false
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
			changed = true
		}
	}
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, _, _ := strings.Cut(p, "=")
			name, err := url.QueryUnescape(k)
			if err != nil {
				return "", false
			}
			if secretName(name) {
				parts[i] = k + "=" + Redacted
				changed = true
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	if !changed {
		return dsn, true
	}
	return u.String(), true
}

// redactKeywords redacts a libpq keyword/value string; ok false when it
// does not parse (a keyword without "=", an unterminated quote).
func redactKeywords(dsn string) (string, bool) {
	var out strings.Builder
	s := dsn
	for {
		// Leading space, kept.
		i := 0
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		out.WriteString(s[:i])
		s = s[i:]
		if s == "" {
			return out.String(), true
		}
		// The keyword, up to "=" or space.
		i = 0
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[:i]
		j := i
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if key == "" || j >= len(s) || s[j] != '=' {
			return "", false
		}
		j++
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		out.WriteString(s[:j])
		s = s[j:]
		// The value: quoted (backslash escapes) or up to the next space.
		var n int
		quoted := len(s) > 0 && s[0] == '\''
		if quoted {
			n = 1
			for {
				if n >= len(s) {
					return "", false // unterminated
				}
				if s[n] == '\\' {
					n += 2
					continue
				}
				if s[n] == '\'' {
					n++
					break
				}
				n++
			}
		} else {
			for n < len(s) && !isSpace(s[n]) {
				if s[n] == '\\' {
					n++
				}
				n++
			}
			n = min(n, len(s))
		}
		switch {
		case !secretName(key):
			out.WriteString(s[:n])
		case quoted:
			out.WriteString("'" + Redacted + "'")
		default:
			out.WriteString(Redacted)
		}
		s = s[n:]
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
