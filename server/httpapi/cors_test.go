package httpapi

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func corsHandler(t *testing.T, origins []string) (http.Handler, *int) {
	t.Helper()
	calls := 0
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte(`{"next":true}`))
	})
	return CORS(origins, next), &calls
}

func corsRequest(h http.Handler, method, origin string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/token", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var corsHeaders = []string{
	"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
	"Access-Control-Max-Age", "Access-Control-Allow-Credentials", "Access-Control-Expose-Headers",
}

func noCORSHeaders(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	for _, k := range corsHeaders {
		if v := w.Header().Values(k); len(v) > 0 {
			t.Errorf("%s = %q, want none", k, v)
		}
	}
}

func TestCORSAllowedOrigin(t *testing.T) {
	h, calls := corsHandler(t, []string{"https://app.example.com", "http://127.0.0.1:8081"})
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		w := corsRequest(h, method, "https://app.example.com", nil)
		if w.Code != http.StatusTeapot || w.Body.String() != `{"next":true}` {
			t.Fatalf("%s: got %d %q, want the next handler's answer", method, w.Code, w.Body)
		}
		if got := w.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
			t.Errorf("%s: Access-Control-Allow-Origin = %q, want the request's origin", method, got)
		}
		if !slices.Contains(w.Header().Values("Vary"), "Origin") {
			t.Errorf("%s: Vary = %q, want Origin in it", method, w.Header().Values("Vary"))
		}
		if v := w.Header().Values("Access-Control-Allow-Credentials"); len(v) > 0 {
			t.Errorf("%s: Access-Control-Allow-Credentials = %q, want none", method, v)
		}
	}
	if *calls != 2 {
		t.Errorf("next called %d times, want 2", *calls)
	}
	// A port is part of the origin.
	w := corsRequest(h, http.MethodGet, "http://127.0.0.1:8081", nil)
	if got := w.Header().Get("Access-Control-Allow-Origin"); got != "http://127.0.0.1:8081" {
		t.Errorf("Access-Control-Allow-Origin = %q, want http://127.0.0.1:8081", got)
	}
}

func TestCORSPreflightAllowed(t *testing.T) {
	h, calls := corsHandler(t, []string{"https://app.example.com"})
	w := corsRequest(h, http.MethodOptions, "https://app.example.com", map[string]string{
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "content-type",
	})
	if w.Code != http.StatusNoContent {
		t.Fatalf("preflight: status %d, want 204", w.Code)
	}
	if *calls != 0 {
		t.Errorf("the preflight reached the next handler")
	}
	if w.Body.Len() != 0 {
		t.Errorf("preflight body %q, want none", w.Body)
	}
	want := map[string]string{
		"Access-Control-Allow-Origin":  "https://app.example.com",
		"Access-Control-Allow-Methods": "GET, POST",
		"Access-Control-Allow-Headers": "Content-Type, Authorization, X-Request-Id",
		"Access-Control-Max-Age":       "600",
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if v := w.Header().Values("Access-Control-Allow-Credentials"); len(v) > 0 {
		t.Errorf("Access-Control-Allow-Credentials = %q, want none", v)
	}
	vary := strings.Join(w.Header().Values("Vary"), ",")
	for _, v := range []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"} {
		if !strings.Contains(vary, v) {
			t.Errorf("Vary = %q, want %s in it", vary, v)
		}
	}
}

func TestCORSDisallowedOrigin(t *testing.T) {
	h, calls := corsHandler(t, []string{"https://app.example.com"})
	for _, origin := range []string{
		"https://evil.example.com",
		"http://app.example.com",       // another scheme is another origin
		"https://app.example.com:8443", // and so is another port
		"https://app.example.com.evil.example",
		"null",
	} {
		w := corsRequest(h, http.MethodGet, origin, nil)
		if w.Code != http.StatusTeapot {
			t.Errorf("%s: GET status %d, want the next handler's (the browser, not tokend, refuses)", origin, w.Code)
		}
		noCORSHeaders(t, w)
		w = corsRequest(h, http.MethodOptions, origin, map[string]string{"Access-Control-Request-Method": "POST"})
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: preflight status %d, want 403", origin, w.Code)
		}
		noCORSHeaders(t, w)
	}
	if *calls != 5 {
		t.Errorf("next called %d times, want 5 (the GETs only)", *calls)
	}
}

func TestCORSNoOriginHeader(t *testing.T) {
	h, calls := corsHandler(t, []string{"https://app.example.com"})
	w := corsRequest(h, http.MethodGet, "", nil)
	if w.Code != http.StatusTeapot || *calls != 1 {
		t.Fatalf("status %d, calls %d: want the next handler", w.Code, *calls)
	}
	noCORSHeaders(t, w)
	// OPTIONS that is not a preflight goes to the next handler.
	w = corsRequest(h, http.MethodOptions, "https://app.example.com", nil)
	if w.Code != http.StatusTeapot || *calls != 2 {
		t.Fatalf("plain OPTIONS: status %d, calls %d: want the next handler", w.Code, *calls)
	}
}

func TestCORSOff(t *testing.T) {
	for _, origins := range [][]string{nil, {}} {
		h, calls := corsHandler(t, origins)
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			w := corsRequest(h, method, "https://app.example.com", map[string]string{"Access-Control-Request-Method": "POST"})
			if w.Code != http.StatusTeapot {
				t.Errorf("%s: status %d, want the next handler's", method, w.Code)
			}
			noCORSHeaders(t, w)
			if v := w.Header().Values("Vary"); len(v) > 0 {
				t.Errorf("%s: Vary = %q, want none with CORS off", method, v)
			}
		}
		if *calls != 2 {
			t.Errorf("next called %d times, want 2", *calls)
		}
	}
}

func TestParseOrigins(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" , ,", nil},
		{"https://app.example.com", []string{"https://app.example.com"}},
		{" https://a.example.com , http://127.0.0.1:8081,https://A.Example.com ", []string{"https://a.example.com", "http://127.0.0.1:8081"}},
		{"http://[::1]:3000", []string{"http://[::1]:3000"}},
		{"HTTPS://App.Example.COM", []string{"https://app.example.com"}},
	} {
		got, err := ParseOrigins(tc.in)
		if err != nil {
			t.Errorf("ParseOrigins(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ParseOrigins(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{
		"*",
		"null",
		"app.example.com",
		"https://",
		"ftp://app.example.com",
		"https://app.example.com/",
		"https://app.example.com/app",
		"https://app.example.com?x=1",
		"https://app.example.com#x",
		"https://user@app.example.com",
		"https://app.example.com:",
		"https://app.example.com:0",
		"https://app.example.com:70000",
		"https://*.example.com",
		"https://app.example.com,https://ok.example.com/",
		"//app.example.com",
	} {
		if got, err := ParseOrigins(bad); err == nil {
			t.Errorf("ParseOrigins(%q) = %q, want an error", bad, got)
		} else if !strings.Contains(err.Error(), "origin") {
			t.Errorf("ParseOrigins(%q): error %q does not say what an origin is", bad, err)
		}
	}
}
