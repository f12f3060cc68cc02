package httpapi

import (
	"context"
	"testing"

	"github.com/tokend/tokend/server/requestid"
)

// TestReqStateContext: observe's one-allocation context answers the
// request id and the route note, and the parent's values.
func TestReqStateContext(t *testing.T) {
	type k struct{}
	st := &reqState{Context: context.WithValue(context.Background(), k{}, "parent"), id: "req-1"}
	st.info.route = "/token"
	if got := requestid.FromContext(st); got != "req-1" {
		t.Errorf("requestid.FromContext = %q, want req-1", got)
	}
	if info, ok := st.Value(routeKey{}).(*reqInfo); !ok || info.route != "/token" {
		t.Errorf("route note = %v, want /token", st.Value(routeKey{}))
	}
	if st.Value(k{}) != "parent" {
		t.Error("a parent value is lost")
	}
	// A context derived from it still answers.
	child, cancel := context.WithCancel(st)
	defer cancel()
	if got := requestid.FromContext(child); got != "req-1" {
		t.Errorf("requestid.FromContext(child) = %q, want req-1", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = requestid.FromContext(st) }); n != 0 {
		t.Errorf("requestid.FromContext allocates %v times, want 0", n)
	}
}

func TestIsAdminPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/v1/applications": true, "/v1/applications/AP1/keys": true, "/v1/applications:batch": true,
		"/v1/keyring": true, "/v1/keyring/rekey": true, "/v1/credentials": true, "/v1/credentials/x": true,
		"/v1/default-application": true,
		"/token":                  false, "/v1/tokens": false, "/v1/tokens:verify": false, "/v1/applicationsx": false,
		"/v1/keyringx": false, "/": false, "": false, "/v1/": false, "/healthz": false,
	} {
		if got := IsAdminPath(p); got != want {
			t.Errorf("IsAdminPath(%q) = %v, want %v", p, got, want)
		}
	}
}
