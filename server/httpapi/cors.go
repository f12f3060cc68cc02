package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CORS answers cross-origin requests from the origins listed, exactly as
// a browser sends them in its Origin header (scheme://host[:port]): such a
// request gets Access-Control-Allow-Origin naming its origin, and a
// preflight (OPTIONS with Access-Control-Request-Method) is answered 204
// with the methods (GET, POST) and headers (Content-Type, Authorization)
// tokend accepts. Any other origin gets no CORS headers, so the browser
// refuses it; its preflight is answered 403. No origin is ever answered
// with *, and credentials are never allowed (tokend uses no cookies).
//
// With no origins, CORS returns next unchanged: no CORS headers at all.
func CORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[strings.ToLower(o)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on the Origin: caches must keep them apart,
		// whether or not this origin is allowed.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		ok := allowed[strings.ToLower(origin)]
		if !preflight {
			if ok {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
			}
			next.ServeHTTP(w, r)
			return
		}
		if !ok {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Request-Id")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// IsAdminPath reports whether an HTTP path belongs to the admin API
// (/v1/applications, /v1/keyring, /v1/credentials and below).
func IsAdminPath(p string) bool {
	if !strings.HasPrefix(p, "/v1/") {
		return false // /token and the other public paths, at once
	}
	for _, prefix := range adminPrefixes {
		if rest, ok := strings.CutPrefix(p, prefix); ok && (rest == "" || rest[0] == '/' || rest[0] == ':') {
			return true
		}
	}
	return false
}

var adminPrefixes = []string{"/v1/applications", "/v1/keyring", "/v1/credentials", "/v1/default-application"}

// noCORS serves the admin API: it sends no CORS header to any origin,
// allowed or not, and answers every CORS preflight 403 with a
// google.rpc.Status body saying why, so that no browser page can call it.
// Requests that are not preflights pass unchanged (a browser refuses to
// show their answers to the page, which gets no Access-Control-Allow-Origin).
func noCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			writeStatus(w, http.StatusForbidden, status.New(codes.PermissionDenied,
				"the admin API does not answer cross-origin requests: call it from a server or tokenctl, not from a web page"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ParseOrigins parses a comma-separated list of origins (the value of
// --cors-origins): each is scheme://host[:port], http or https, with no
// path, query, fragment or user info, as browsers send it in Origin.
// Spaces around entries and empty entries are ignored; an empty list is
// nil. Hosts are lowercased.
func ParseOrigins(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, raw := range strings.Split(s, ",") {
		o := strings.TrimSpace(raw)
		if o == "" {
			continue
		}
		norm, err := parseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", o, err)
		}
		if !seen[norm] {
			seen[norm] = true
			out = append(out, norm)
		}
	}
	return out, nil
}

func parseOrigin(o string) (string, error) {
	const want = "must be an origin scheme://host[:port], such as https://app.example.com"
	if o == "*" || o == "null" {
		return "", fmt.Errorf("%s; wildcards and null are not allowed", want)
	}
	u, err := url.Parse(o)
	if err != nil {
		return "", fmt.Errorf("%s", want)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%s, with scheme http or https", want)
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("%s", want)
	case u.User != nil:
		return "", fmt.Errorf("%s, without user info", want)
	case u.Path != "" || u.RawPath != "":
		return "", fmt.Errorf("%s, with no path (not even /)", want)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(o, "?#"):
		return "", fmt.Errorf("%s, with no query or fragment", want)
	case strings.Contains(u.Hostname(), "*"):
		return "", fmt.Errorf("%s; wildcards are not allowed", want)
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		if p == "" {
			return "", fmt.Errorf("%s: empty port", want)
		}
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != p {
			return "", fmt.Errorf("%s: bad port %q", want, p)
		}
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), nil
}
