package main

import (
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/server/auth"
)

// envFloat reads a number from the environment, or def. A value that is
// not a number is reported by checkNumericEnv.
func envFloat(getenv func(string) string, name string, def float64) float64 {
	if v := getenv(name); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f
		}
	}
	return def
}

// envDuration reads a duration (1s, 500ms) from the environment, or def.
// A value that is not a duration is reported by checkNumericEnv.
func envDuration(getenv func(string) string, name string, def time.Duration) time.Duration {
	if v := getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// checkNumericEnv fails on numeric environment variables that do not parse
// (instead of silently falling back to their defaults).
func checkNumericEnv(getenv func(string) string) error {
	for _, name := range []string{"TOKEND_RATE_LIMIT_PRINCIPAL", "TOKEND_RATE_LIMIT_IDENTITY", "TOKEND_AUTH_FAILURE_RATE"} {
		if v := getenv(name); v != "" {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return fmt.Errorf("%s: %q is not a number", name, v)
			}
		}
	}
	for _, name := range []string{"TOKEND_REPLICA_HEARTBEAT_INTERVAL", "TOKEND_REPLICA_TTL", "TOKEND_KEY_SCHEDULE_INTERVAL", "TOKEND_KEY_DELETE_GRACE"} {
		if v := getenv(name); v != "" {
			if _, err := time.ParseDuration(v); err != nil {
				return fmt.Errorf("%s: %q is not a duration (like 1s or 500ms)", name, v)
			}
		}
	}
	for _, name := range []string{"TOKEND_RATE_LIMIT_BURST", "TOKEND_GC_HEADROOM_MIB", "TOKEND_AUTH_FAILURE_BURST", "TOKEND_AUDIT_MAX_BYTES", "TOKEND_AUDIT_MAX_FILES"} {
		if v := getenv(name); v != "" {
			if _, err := strconv.Atoi(v); err != nil {
				return fmt.Errorf("%s: %q is not a whole number", name, v)
			}
		}
	}
	return nil
}

// callerConfig turns the OIDC and proxy options into their configs (nil
// when off); errors name the option.
func callerConfig(o *options) (*auth.OIDCConfig, *auth.ProxyConfig, error) {
	var oidc *auth.OIDCConfig
	allowUnverified, err := strconv.ParseBool(o.oidcAllowUnverifiedEmail)
	if err != nil {
		return nil, nil, fmt.Errorf("oidc-allow-unverified-email: %q is not true or false", o.oidcAllowUnverifiedEmail)
	}
	if o.oidcIssuer != "" {
		if o.oidcAudience == "" {
			return nil, nil, fmt.Errorf("oidc-audience: required with --oidc-issuer")
		}
		oidc = &auth.OIDCConfig{
			Issuer: o.oidcIssuer, Audience: o.oidcAudience, JWKSURL: o.oidcJWKS,
			IdentityClaim: o.oidcClaim, GroupsClaim: o.oidcGroupsClaim,
			AllowUnverifiedEmail: allowUnverified,
		}
	} else if o.oidcAudience != "" || o.oidcJWKS != "" {
		return nil, nil, fmt.Errorf("oidc-issuer: required with --oidc-audience or --oidc-jwks-url")
	}
	var proxy *auth.ProxyConfig
	if o.trustedProxies != "" {
		proxy = &auth.ProxyConfig{UserHeader: o.proxyUserHeader, GroupsHeader: o.proxyGroupsHeader}
		for _, part := range strings.Split(o.trustedProxies, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !strings.Contains(part, "/") {
				a, err := netip.ParseAddr(part)
				if err != nil {
					return nil, nil, fmt.Errorf("trusted-proxies: %q is not an address or CIDR", part)
				}
				proxy.Trusted = append(proxy.Trusted, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, nil, fmt.Errorf("trusted-proxies: %q is not an address or CIDR", part)
			}
			proxy.Trusted = append(proxy.Trusted, p.Masked())
		}
	}
	if o.rateLimitPrincipal < 0 || o.rateLimitIdentity < 0 {
		return nil, nil, fmt.Errorf("rate-limit-principal, rate-limit-identity: must not be negative")
	}
	if o.rateLimitBurst < 1 {
		return nil, nil, fmt.Errorf("rate-limit-burst: must be at least 1")
	}
	if o.authFailureRate < 0 || math.IsNaN(o.authFailureRate) || math.IsInf(o.authFailureRate, 0) {
		return nil, nil, fmt.Errorf("auth-failure-rate: must be a number, 0 or more")
	}
	if o.authFailureBurst < 1 || o.authFailureBurst > 1000 {
		return nil, nil, fmt.Errorf("auth-failure-burst: must be between 1 and 1000")
	}
	return oidc, proxy, nil
}

// auditPath resolves --audit-log: empty is audit.log in the data dir,
// "off" is none.
func auditPath(o *options) string {
	switch o.auditLog {
	case "":
		return filepath.Join(o.dataDir, "audit.log")
	case "off":
		return ""
	}
	return o.auditLog
}
