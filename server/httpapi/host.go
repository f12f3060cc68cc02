package httpapi

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokend/tokend/server/requestid"
)

// maxHostInError bounds the Host value quoted in a refusal.
const maxHostInError = 100

// LoopbackHost reports whether host, a request's Host header, names the
// loopback interface: localhost, 127.0.0.1 or [::1], each with or without
// a port (localhost in any case). Nothing else is loopback here, not even
// other 127.0.0.0/8 addresses, "localhost." or a name that resolves to
// 127.0.0.1: a DNS-rebinding page reaches tokend under its own name, so
// the name, not the address, is what tells it apart.
func LoopbackHost(host string) bool {
	h := host
	if strings.HasPrefix(h, "[") {
		// [::1] or [::1]:port
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		rest := h[end+1:]
		h = h[1:end]
		if rest != "" && !validPort(strings.TrimPrefix(rest, ":"), rest) {
			return false
		}
		return h == "::1"
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i+1:], h[i:]) {
			return false
		}
		h = h[:i]
	}
	return strings.EqualFold(h, "localhost") || h == "127.0.0.1"
}

// validPort reports whether p, found after ":" (rest is ":" + p), is a
// port number 1-65535 in plain decimal.
func validPort(p, rest string) bool {
	if !strings.HasPrefix(rest, ":") || p == "" || len(p) > 5 {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

// loopbackOnly answers 421 Misdirected Request to every request whose
// Host is not a loopback name (see LoopbackHost), whatever its route:
// development mode mints for anyone who reaches it, and a web page the
// developer visits can reach it through DNS rebinding (its own name,
// resolved to 127.0.0.1), which the Host header gives away.
//
// It runs before observe (which it wraps): a refused request gets its own
// request id and log line here.
func loopbackOnly(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if LoopbackHost(r.Host) {
			next.ServeHTTP(w, r)
			return
		}
		shown := strings.ToValidUTF8(r.Host, "?")
		if len(shown) > maxHostInError {
			shown = strings.ToValidUTF8(shown[:maxHostInError], "") + "…"
		}
		id := requestid.Ensure(r.Header.Get(requestid.Header))
		w.Header().Set(requestid.Header, id)
		// An answer of the API like any other (noStore, which it runs
		// before, does not see it): no cache keeps it.
		w.Header()[hdrCacheControl] = noStoreValue
		w.Header()[hdrPragma] = noCacheValue
		log.WarnContext(requestid.NewContext(r.Context(), id), "development mode: request to a non-loopback Host refused (DNS rebinding?)",
			"host", shown, "method", r.Method, "path", r.URL.Path, "client_addr", r.RemoteAddr, requestid.LogKey, id)
		writeStatus(w, http.StatusMisdirectedRequest, status.New(codes.PermissionDenied,
			"development mode answers only requests to localhost, 127.0.0.1 or [::1] (the Host header), not "+
				strconv.Quote(shown)+": configure a policy (--policy-file) to serve tokend under other names"))
	})
}
