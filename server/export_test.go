package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// CreateCredential creates the service credential name through h's admin
// REST API and returns its token. The benchmarks of this package and of
// server_test set up their server with it.
func CreateCredential(tb testing.TB, h http.Handler, adminToken, name string) string {
	tb.Helper()
	req := httptest.NewRequest("POST", "http://127.0.0.1:8080/v1/credentials", strings.NewReader(`{"name":"`+name+`"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var cred struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &cred); err != nil || cred.Token == "" {
		tb.Fatalf("create credential: %d %s", rec.Code, rec.Body)
	}
	return cred.Token
}
