package auth

import (
	"context"
	"testing"
)

// TestHTTPContext: the middleware's one-allocation context answers
// ClientAddr always and FromContext once the principal is set, without
// allocating, and the parent's values otherwise.
func TestHTTPContext(t *testing.T) {
	type k struct{}
	parent := NewContext(context.WithValue(context.Background(), k{}, "parent"), Principal{Kind: KindCredential, Name: "outer"})
	c := &httpContext{Context: parent, HTTPSlot: HTTPSlot{addr: "192.0.2.1:4000"}}
	if got := ClientAddr(c); got != "192.0.2.1:4000" {
		t.Errorf("ClientAddr = %q", got)
	}
	// Without its own principal, the parent's (if any) shows through.
	if p, ok := FromContext(c); !ok || p.Name != "outer" {
		t.Errorf("FromContext before the principal is set = %+v %v, want the parent's", p, ok)
	}
	c.p, c.hasP = Principal{Kind: KindCredential, Name: "backend"}, true
	if p, ok := FromContext(c); !ok || p.Name != "backend" {
		t.Errorf("FromContext = %+v %v, want backend", p, ok)
	}
	if c.Value(k{}) != "parent" {
		t.Error("a parent value is lost")
	}
	if n := testing.AllocsPerRun(100, func() { FromContext(c); ClientAddr(c) }); n != 0 {
		t.Errorf("FromContext and ClientAddr allocate %v times, want 0", n)
	}
	if p, ok := FromContext(context.Background()); ok {
		t.Errorf("FromContext(Background) = %+v, true; want false", p)
	}
}
