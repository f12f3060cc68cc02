package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// headers returns a Request.Header over h.
func headers(h map[string]string) func(string) string {
	hh := http.Header{}
	for k, v := range h {
		hh.Set(k, v)
	}
	return hh.Get
}

func TestProxyAuthentication(t *testing.T) {
	log, logs := testLogger(t)
	a, err := New(Config{
		Proxy: &ProxyConfig{Trusted: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("fd00::1/128"),
		}},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	withGroups, err := New(Config{
		Proxy:  &ProxyConfig{GroupsHeader: "X-Auth-Request-Groups", Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	custom, err := New(Config{
		Proxy:     &ProxyConfig{UserHeader: "X-Forwarded-User", GroupsHeader: "X-Forwarded-Groups", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
		Anonymous: true,
		Logger:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	user := map[string]string{"X-Auth-Request-User": "alice@example.com", "X-Auth-Request-Groups": "ops, dev,,"}
	tests := []struct {
		name     string
		a        *Authenticator
		peer     string // "" is unknown
		h        map[string]string
		repeated map[string][]string // headers sent more than once
		grpc     bool
		wantKind Kind // 0 for a refusal
		wantMsg  string
		groups   string // of an accepted proxy principal, "|"-joined
	}{
		{name: "groups header off by default", a: a, peer: "10.1.2.3", h: user, wantKind: KindProxy, groups: ""},
		{name: "groups header configured", a: withGroups, peer: "10.1.2.3", h: user, wantKind: KindProxy, groups: "ops|dev"},
		{name: "user header repeated", a: a, peer: "10.1.2.3", repeated: map[string][]string{"X-Auth-Request-User": {"alice", "mallory"}}, wantMsg: "proxy header X-Auth-Request-User given 2 times: want it once"},
		{name: "user header repeated, untrusted", a: a, peer: "192.0.2.7", repeated: map[string][]string{"X-Auth-Request-User": {"alice", "mallory"}}, wantMsg: "proxy header X-Auth-Request-User given 2 times: want it once"},
		{name: "user header repeated, first empty", a: a, peer: "10.1.2.3", repeated: map[string][]string{"X-Auth-Request-User": {"", "mallory"}}, wantMsg: "proxy header X-Auth-Request-User given 2 times: want it once"},
		{name: "groups header repeated", a: withGroups, peer: "10.1.2.3", h: map[string]string{"X-Auth-Request-User": "alice"}, repeated: map[string][]string{"X-Auth-Request-Groups": {"ops", "admins"}}, wantMsg: "proxy header X-Auth-Request-Groups given 2 times: want it once"},
		{name: "groups header repeated, groups off: ignored", a: a, peer: "10.1.2.3", h: map[string]string{"X-Auth-Request-User": "alice"}, repeated: map[string][]string{"X-Auth-Request-Groups": {"ops", "admins"}}, wantKind: KindProxy},
		{name: "custom user header repeated", a: custom, peer: "127.0.0.1", repeated: map[string][]string{"X-Forwarded-User": {"bob", "bob"}}, wantMsg: "proxy header X-Forwarded-User given 2 times: want it once"},
		{name: "trusted IPv4", a: a, peer: "10.1.2.3", h: user, wantKind: KindProxy},
		{name: "trusted IPv4-mapped", a: a, peer: "::ffff:10.1.2.3", h: user, wantKind: KindProxy},
		{name: "trusted IPv6", a: a, peer: "fd00::1", h: user, wantKind: KindProxy},
		{name: "untrusted", a: a, peer: "192.0.2.7", h: user, wantMsg: "proxy header from an untrusted address"},
		{name: "untrusted IPv6", a: a, peer: "fd00::2", h: user, wantMsg: "proxy header from an untrusted address"},
		{name: "unknown peer", a: a, peer: "", h: user, wantMsg: "proxy header from an untrusted address"},
		{name: "no header", a: a, peer: "10.1.2.3", h: nil, wantMsg: "authentication required"},
		{name: "blank header", a: a, peer: "10.1.2.3", h: map[string]string{"X-Auth-Request-User": "  "}, wantMsg: "authentication required"},
		{name: "gRPC ignores proxy headers", a: a, peer: "10.1.2.3", h: user, grpc: true, wantMsg: "authentication required"},
		{name: "custom headers", a: custom, peer: "127.0.0.1", h: map[string]string{"X-Forwarded-User": "bob", "X-Forwarded-Groups": "a"}, wantKind: KindProxy, groups: "a"},
		{name: "custom: default header ignored", a: custom, peer: "127.0.0.1", h: user, wantKind: KindAnonymous},
		{name: "custom: untrusted, anonymous allowed, still refused", a: custom, peer: "127.0.0.2", h: map[string]string{"X-Forwarded-User": "bob"}, wantMsg: "proxy header from an untrusted address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := http.Header{}
			for k, v := range tt.h {
				hh.Set(k, v)
			}
			for k, vs := range tt.repeated {
				for _, v := range vs {
					hh.Add(k, v)
				}
			}
			req := Request{Header: hh.Get, HTTPHeader: hh, REST: !tt.grpc}
			if tt.peer != "" {
				req.Peer = netip.MustParseAddr(tt.peer)
			}
			p, err := tt.a.Authenticate(context.Background(), req)
			if tt.wantKind == 0 {
				checkRefused(t, err, tt.wantMsg, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != tt.wantKind {
				t.Fatalf("principal = %+v", p)
			}
			if p.Kind == KindProxy && !p.Browser {
				t.Fatalf("proxy principal not Browser: %+v", p)
			}
			if p.Kind == KindProxy && strings.Join(p.Groups, "|") != tt.groups {
				t.Errorf("groups = %q, want %q", p.Groups, tt.groups)
			}
		})
	}

	p, err := withGroups.Authenticate(context.Background(), Request{Peer: netip.MustParseAddr("10.9.9.9"), Header: headers(user), REST: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "proxy:alice@example.com" || p.Identity != "alice_40example_2Ecom" || strings.Join(p.Groups, "|") != "ops|dev" {
		t.Fatalf("principal = %+v", p)
	}
	if !strings.Contains(logs.String(), "spoofing") || !strings.Contains(logs.String(), "192.0.2.7") {
		t.Fatalf("spoofing attempt not logged:\n%s", logs)
	}
}

func TestAnonymous(t *testing.T) {
	allow, _ := New(Config{Anonymous: true})
	deny, _ := New(Config{})
	p, err := allow.Authenticate(context.Background(), Request{REST: true})
	if err != nil || p.Kind != KindAnonymous || p.Name != "anonymous" || p.Browser || p.Identity != "" {
		t.Fatalf("allowed: %+v, %v", p, err)
	}
	_, err = deny.Authenticate(context.Background(), Request{REST: true})
	checkRefused(t, err, "authentication required", "")
	// Bad credentials are refused even when anonymous callers are not.
	_, err = allow.Authenticate(context.Background(), Request{Authorization: "Bearer tkd_x"})
	checkRefused(t, err, "service credentials are not accepted here", "")
	_, err = allow.Authenticate(context.Background(), Request{Authorization: "Basic dXNlcjpwYXNz"})
	checkRefused(t, err, "unsupported authorization scheme: use Bearer", "")
}

// TestAnonymousIf: AnonymousIf admits callers without credentials only
// while it says so, asked at each call; credentials are checked as ever.
func TestAnonymousIf(t *testing.T) {
	var admit atomic.Bool
	a, err := New(Config{AnonymousIf: admit.Load})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(context.Background(), Request{REST: true})
	checkRefused(t, err, "authentication required", "")
	admit.Store(true)
	p, err := a.Authenticate(context.Background(), Request{REST: true})
	if err != nil || p.Kind != KindAnonymous {
		t.Fatalf("Authenticate with AnonymousIf true = %+v, %v, want anonymous", p, err)
	}
	_, err = a.Authenticate(context.Background(), Request{Authorization: "Bearer tkd_x"})
	checkRefused(t, err, "service credentials are not accepted here", "")
	admit.Store(false)
	_, err = a.Authenticate(context.Background(), Request{REST: true})
	checkRefused(t, err, "authentication required", "")
}

func TestAuthenticateOrder(t *testing.T) {
	lookup, tokens := credentialStore(t, "backend")
	a, err := New(Config{
		Credentials: lookup,
		Proxy:       &ProxyConfig{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://test/backend")
	verified := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{URIs: []*url.URL{spiffe}, DNSNames: []string{"backend.test"}}}}}
	dnsOnly := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{DNSNames: []string{"worker.test"}}}}}
	noSAN := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{spiffe}}}}
	proxy := headers(map[string]string{"X-Auth-Request-User": "alice"})
	trusted := netip.MustParseAddr("10.0.0.1")

	tests := []struct {
		name     string
		req      Request
		wantKind Kind
		wantName string
	}{
		{"certificate beats a bearer token", Request{TLS: verified, Authorization: "Bearer garbage"}, KindMTLS, "spiffe://test/backend"},
		{"DNS SAN", Request{TLS: dnsOnly}, KindMTLS, "worker.test"},
		{"certificate without SAN", Request{TLS: noSAN}, 0, ""},
		{"unverified certificate is ignored", Request{TLS: unverified, Authorization: "Bearer " + tokens["backend"]}, KindCredential, "backend"},
		{"credential beats the proxy", Request{Authorization: "Bearer " + tokens["backend"], Peer: trusted, Header: proxy, REST: true}, KindCredential, "backend"},
		{"bad credential does not fall through to the proxy", Request{Authorization: "Bearer tkd_bad", Peer: trusted, Header: proxy, REST: true}, 0, ""},
		{"without OIDC, a proxy may pass the user's token along", Request{Authorization: "Bearer eyJ.a.b", Peer: trusted, Header: proxy, REST: true}, KindProxy, "proxy:alice"},
		{"without OIDC, other bearer tokens are refused", Request{Authorization: "Bearer eyJ.a.b", REST: true}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := a.Authenticate(context.Background(), tt.req)
			if tt.wantKind == 0 {
				checkRefused(t, err, "", tt.req.Authorization)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != tt.wantKind || p.Name != tt.wantName {
				t.Fatalf("principal = %+v", p)
			}
			if p.Kind == KindMTLS && (p.Browser || p.Identity != "") {
				t.Fatalf("mTLS principal = %+v", p)
			}
		})
	}
}

func TestNewRejectsInvalidPrefix(t *testing.T) {
	if _, err := New(Config{Proxy: &ProxyConfig{Trusted: []netip.Prefix{{}}}}); err == nil {
		t.Fatal("New accepted an invalid trusted prefix")
	}
}
