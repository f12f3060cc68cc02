package auth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestFailureLimiter(t *testing.T) {
	clock := newFakeClock()
	f := NewFailureLimiter(1, 3, 4)
	f.now = clock.Now
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	v6a := netip.MustParseAddr("2001:db8:1:2::1")
	v6b := netip.MustParseAddr("2001:db8:1:2:ffff::9") // same /64
	v6c := netip.MustParseAddr("2001:db8:1:3::1")      // another /64

	steps := []struct {
		name    string
		fail    []netip.Addr
		advance time.Duration
		blocked map[netip.Addr]bool
	}{
		{name: "fresh", blocked: map[netip.Addr]bool{a: false, b: false}},
		{name: "two failures: within burst", fail: []netip.Addr{a, a}, blocked: map[netip.Addr]bool{a: false, b: false}},
		{name: "third failure: burst spent", fail: []netip.Addr{a}, blocked: map[netip.Addr]bool{a: true, b: false, netip.MustParseAddr("::ffff:192.0.2.1"): true}},
		{name: "half a second: still blocked", advance: 500 * time.Millisecond, blocked: map[netip.Addr]bool{a: true}},
		{name: "a second: one more try", advance: 600 * time.Millisecond, blocked: map[netip.Addr]bool{a: false}},
		{name: "that try fails: blocked again", fail: []netip.Addr{a}, blocked: map[netip.Addr]bool{a: true, b: false}},
		{name: "IPv6 grouped by /64", fail: []netip.Addr{v6a, v6a, v6b}, blocked: map[netip.Addr]bool{v6a: true, v6b: true, v6c: false, a: true}},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		for _, addr := range st.fail {
			f.Fail(addr)
		}
		for addr, want := range st.blocked {
			got, wait := f.Blocked(addr)
			if got != want {
				t.Errorf("%s: Blocked(%v) = %v, want %v", st.name, addr, got, want)
			}
			if got && (wait <= 0 || wait > time.Second) {
				t.Errorf("%s: Blocked(%v) wait %v, want in (0, 1s]", st.name, addr, wait)
			}
		}
	}

	// Bounded: at most 4 addresses, the least recently failed out first.
	for i := range 10 {
		f.Fail(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	if n := f.Len(); n != 4 {
		t.Errorf("Len after 10 more addresses = %d, want 4", n)
	}
	// Refilled buckets are dropped as failures come in.
	clock.Advance(10 * time.Second)
	f.Fail(b)
	if n := f.Len(); n != 1 {
		t.Errorf("Len after every bucket refilled = %d, want 1", n)
	}

	// Exempt prefixes are never counted nor blocked.
	ex := NewFailureLimiter(1, 1, 0)
	ex.Exempt(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/64"))
	for _, addr := range []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("::ffff:10.1.2.3"), netip.MustParseAddr("fd00::7")} {
		ex.Fail(addr)
		ex.Fail(addr)
		if blocked, _ := ex.Blocked(addr); blocked {
			t.Errorf("exempt %v blocked", addr)
		}
	}
	if n := ex.Len(); n != 0 {
		t.Errorf("exempt addresses tracked: %d", n)
	}
	ex.Fail(a)
	if blocked, _ := ex.Blocked(a); !blocked {
		t.Errorf("%v not exempt, not blocked after its burst", a)
	}

	// Off: nil never blocks.
	var off *FailureLimiter = NewFailureLimiter(0, 3, 0)
	off.Fail(a)
	if blocked, _ := off.Blocked(a); blocked {
		t.Error("a nil FailureLimiter blocked")
	}
}

// TestFailureThrottleHTTP: the middleware answers 429 with Retry-After once
// an address has spent its failures, before reading its credentials (a
// good one included), leaves other addresses alone, and never slows down
// a trusted proxy.
func TestFailureThrottleHTTP(t *testing.T) {
	lookup, tokens := credentialStore(t, "backend")
	var failures []Failure
	a, err := New(Config{
		Credentials: lookup,
		Proxy:       &ProxyConfig{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Failures:    NewFailureLimiter(0.001, 2, 0),
		OnFailure:   func(_ context.Context, f Failure) { failures = append(failures, f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := a.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	good := "Bearer " + tokens["backend"]
	bad := "Bearer tkd_" + strings.Repeat("B", 43)
	steps := []struct {
		name, peer, authz string
		want              int
	}{
		{"good", "192.0.2.1:1", good, http.StatusTeapot},
		{"none: not counted", "192.0.2.1:2", "", http.StatusUnauthorized},
		{"none: not counted either", "192.0.2.1:2", "", http.StatusUnauthorized},
		{"bad 1", "192.0.2.1:2", bad, http.StatusUnauthorized},
		{"bad 2", "192.0.2.1:3", bad, http.StatusUnauthorized},
		{"bad 3 throttled", "192.0.2.1:4", bad, http.StatusTooManyRequests},
		{"good throttled too", "192.0.2.1:5", good, http.StatusTooManyRequests},
		{"other address unaffected", "192.0.2.2:1", good, http.StatusTeapot},
		{"other address bad", "192.0.2.2:1", bad, http.StatusUnauthorized},
		{"proxy bad 1", "10.0.0.1:1", bad, http.StatusUnauthorized},
		{"proxy bad 2", "10.0.0.1:1", bad, http.StatusUnauthorized},
		{"proxy bad 3 never throttled", "10.0.0.1:1", bad, http.StatusUnauthorized},
		{"proxy good", "10.0.0.1:1", good, http.StatusTeapot},
	}
	for _, st := range steps {
		r := httptest.NewRequest("POST", "/token", nil)
		r.RemoteAddr = st.peer
		if st.authz != "" {
			r.Header.Set("Authorization", st.authz)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != st.want {
			t.Fatalf("%s: status %d, want %d: %s", st.name, w.Code, st.want, w.Body)
		}
		if st.want == http.StatusTooManyRequests {
			if ra := w.Header().Get("Retry-After"); ra == "" || ra == "0" {
				t.Errorf("%s: Retry-After %q", st.name, ra)
			}
			if !strings.Contains(w.Body.String(), `"code":8`) || !strings.Contains(w.Body.String(), "too many failed authentication attempts") {
				t.Errorf("%s: body %s", st.name, w.Body)
			}
		}
		if strings.Contains(w.Body.String(), tokens["backend"]) || strings.Contains(w.Body.String(), "BBBB") {
			t.Errorf("%s: body holds the credential", st.name)
		}
	}
	// Every refusal was reported, none with the credential.
	if len(failures) != 10 {
		t.Fatalf("OnFailure called %d times, want 10: %+v", len(failures), failures)
	}
	throttled := 0
	for _, f := range failures {
		if f.Throttled {
			throttled++
		}
		if strings.Contains(f.Reason, "BBBB") || f.Transport != "http" || f.Call != "POST /token" || !f.Peer.IsValid() {
			t.Errorf("failure %+v", f)
		}
	}
	if throttled != 2 {
		t.Errorf("%d throttled failures reported, want 2", throttled)
	}
}
