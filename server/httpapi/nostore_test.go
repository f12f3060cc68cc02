package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNoStoreAllocatesNothing: the cache headers of every API answer cost
// no allocation per request (the /token hot path).
func TestNoStoreAllocatesNothing(t *testing.T) {
	h := noStore(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/token", nil)
	allocs := testing.AllocsPerRun(1000, func() {
		clear(w.Header())
		h.ServeHTTP(w, r)
	})
	if allocs != 0 {
		t.Errorf("noStore allocates %v times per request, want 0", allocs)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	if got := w.Header().Get("Pragma"); got != "no-cache" {
		t.Errorf("Pragma = %q, want no-cache", got)
	}
}

func BenchmarkNoStore(b *testing.B) {
	h := noStore(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/token", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r) // overwrites the two headers
	}
}
