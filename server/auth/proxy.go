package auth

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// ProxyConfig trusts an authenticating reverse proxy (oauth2-proxy,
// Pomerium, an ingress with forward auth…) that has already logged the
// browser user in and names them in request headers.
//
// The headers are believed only on REST requests whose TCP peer is inside
// one of the Trusted prefixes: anyone else could set them. A request that
// carries the user header from any other address is refused as a spoofing
// attempt and logged. gRPC calls never authenticate through the proxy
// headers (browsers reach tokend over REST; a gRPC client is a service that
// authenticates itself): on gRPC the headers are ignored.
type ProxyConfig struct {
	// UserHeader names the user; default "X-Auth-Request-User".
	UserHeader string
	// GroupsHeader lists the user's groups, comma-separated. Empty (the
	// default) reads no groups: a proxy principal then has none, whatever
	// headers the request carries. Set it only to a header the proxy
	// always sets or strips (oauth2-proxy: X-Auth-Request-Groups), or a
	// client could name its own groups through the proxy.
	GroupsHeader string
	// Trusted are the addresses the proxy connects from. Empty trusts
	// nobody: every proxy header is refused.
	Trusted []netip.Prefix
}

// DefaultProxyUserHeader is the user header oauth2-proxy sets.
const DefaultProxyUserHeader = "X-Auth-Request-User"

func (c ProxyConfig) withDefaults() ProxyConfig {
	if c.UserHeader == "" {
		c.UserHeader = DefaultProxyUserHeader
	}
	c.Trusted = append([]netip.Prefix(nil), c.Trusted...)
	for i, p := range c.Trusted {
		c.Trusted[i] = p.Masked()
	}
	return c
}

// trusts reports whether addr is inside a trusted prefix. An unknown
// address (invalid: a pipe, bufconn) is never trusted.
func (c ProxyConfig) trusts(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range c.Trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// authenticateProxy returns the proxy's user, present false when the
// request carries no proxy user header (or proxy authentication is off, or
// the request is gRPC). A request that carries the user header, or the
// groups header, more than once is refused: which copy the proxy set and
// which the client sent cannot be told apart.
func (a *Authenticator) authenticateProxy(ctx context.Context, req Request) (p Principal, present bool, err error) {
	if a.proxy == nil || !req.REST || (req.Header == nil && req.HTTPHeader == nil) {
		return Principal{}, false, nil
	}
	if n := req.headerCount(a.proxy.UserHeader); n > 1 {
		return Principal{}, true, unauthenticated(fmt.Sprintf("proxy header %s given %d times: want it once", a.proxy.UserHeader, n))
	}
	user := strings.TrimSpace(req.header(a.proxy.UserHeader))
	if user == "" {
		return Principal{}, false, nil
	}
	if !a.proxy.trusts(req.Peer) {
		peer := "unknown"
		if req.Peer.IsValid() {
			peer = req.Peer.String()
		}
		a.log.WarnContext(ctx, "auth: proxy identity header from an untrusted address refused (spoofing attempt?)",
			"peer", peer, "header", a.proxy.UserHeader, "user", user)
		return Principal{}, true, unauthenticated("proxy header from an untrusted address")
	}
	identity := SafeIdentity(user)
	var groups []string
	if gh := a.proxy.GroupsHeader; gh != "" {
		if n := req.headerCount(gh); n > 1 {
			return Principal{}, true, unauthenticated(fmt.Sprintf("proxy header %s given %d times: want it once", gh, n))
		}
		for _, g := range strings.Split(req.header(gh), ",") {
			if g = strings.TrimSpace(g); g != "" {
				groups = append(groups, g)
			}
		}
	}
	return Principal{
		Kind:     KindProxy,
		Name:     "proxy:" + user,
		Identity: identity,
		Groups:   groups,
		Browser:  true,
	}, true, nil
}
