package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/httpapi"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/ratelimit"
	"github.com/tokend/tokend/server/requestid"
)

// MaxRateLimitKeys bounds the token buckets kept per limiter.
const MaxRateLimitKeys = 100_000

// Authenticated reports whether cfg makes callers authenticate (a policy
// is configured); without, tokend runs in development mode and must stay
// on loopback.
func (cfg Config) Authenticated() bool { return cfg.PolicyFile != "" }

// initCallers builds caller authentication, the policy, rate limits,
// TLS and the audit log from the configuration.
func (s *Server) initCallers() error {
	cfg := s.cfg
	var err error
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return fmt.Errorf("tls: both a certificate and a key file are needed")
		}
		clientAuth := tls.NoClientCert
		if cfg.TLSClientCAFile != "" {
			// Browsers have no client certificate: verify one when given.
			clientAuth = tls.VerifyClientCertIfGiven
		}
		if s.tls, err = auth.NewTLSConfig(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile, clientAuth); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	} else if cfg.TLSClientCAFile != "" {
		return fmt.Errorf("tls: a client CA needs a server certificate and key")
	}

	if cfg.PolicyFile != "" {
		wctx, stop := context.WithCancel(context.Background())
		s.stopWatch = stop
		s.policy, err = policy.Watch(wctx, cfg.PolicyFile, func(err error) {
			s.log.Error("policy file not reloaded: keeping the previous policy", "path", cfg.PolicyFile, "error", err)
		})
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		s.policy.OnReload(func(old, cur *policy.Policy) {
			// The new policy's anonymous buckets are new: give them this
			// replica's share (a beat that changes it meanwhile sets it on
			// the policy installed by then).
			cur.ShareAnonymousLimits(int(max(s.share.Load(), 1)))
			if old == nil || old.Digest != cur.Digest {
				s.log.Info("caller policy reloaded", "path", cfg.PolicyFile, "digest", cur.Digest, "rules", len(cur.Rules))
				s.warnAnonymous(cur)
			}
		})
		p := s.policy.Policy()
		if p.AdmitsAnonymous() {
			s.log.Info("caller policy loaded: callers must authenticate, but for the anonymous rules below", "path", cfg.PolicyFile, "digest", p.Digest, "rules", len(p.Rules))
		} else {
			s.log.Info("caller policy loaded: callers must authenticate", "path", cfg.PolicyFile, "digest", p.Digest, "rules", len(p.Rules))
		}
		s.warnAnonymous(p)
	} else {
		s.log.Warn("DEVELOPMENT MODE: no caller policy configured, so ANY caller that reaches tokend may mint ANY identity, anonymously; keep it on loopback (set --policy-file to require authentication)")
	}

	s.authFailures = auth.NewFailureLimiter(cfg.AuthFailureRate, cfg.AuthFailureBurst, auth.DefaultFailureMaxAddrs)
	s.auth, err = auth.New(auth.Config{
		Failures:    s.authFailures,
		OnFailure:   s.authFailure,
		Credentials: s.keys.LookupCredential,
		OIDC:        cfg.OIDC,
		Proxy:       cfg.Proxy,
		Anonymous:   !cfg.Authenticated(),
		// Policy mode admits callers without credentials only while the
		// policy has an anonymous rule.
		AnonymousIf: func() bool { return s.policy != nil && s.policy.Policy().AdmitsAnonymous() },
		Logger:      s.log,
		// The admin API checks its own credential (the admin token).
		PublicGRPC: func(m string) bool {
			return auth.IsPublicGRPC(m) || strings.HasPrefix(m, "/token.v1.AdminService/")
		},
		PublicHTTP: func(r *http.Request) bool { return auth.IsPublicHTTP(r) || isAdminPath(r.URL.Path) },
	})
	if err != nil {
		return fmt.Errorf("caller authentication: %w", err)
	}

	burst := max(cfg.RateLimitBurst, 1)
	if cfg.RateLimitPrincipal > 0 {
		s.principalLimit = ratelimit.New(cfg.RateLimitPrincipal, burst, MaxRateLimitKeys)
	}
	if cfg.RateLimitIdentity > 0 {
		s.identityLimit = ratelimit.New(cfg.RateLimitIdentity, burst, MaxRateLimitKeys)
	}

	opts := []audit.Option{
		audit.WithRequired(cfg.AuditRequired), audit.WithCommitTimeout(cfg.AuditCommitTimeout),
		audit.WithLogger(s.log),
	}
	switch cfg.AuditLog {
	case "":
		if cfg.AuditRequired {
			return fmt.Errorf("audit-required: needs an audit log")
		}
	case "-", "stderr":
		s.audit = audit.New(os.Stderr, opts...)
	case "stdout":
		s.audit = audit.New(os.Stdout, opts...)
	default:
		opts = append(opts, audit.WithRotation(cfg.AuditMaxBytes, cfg.AuditMaxFiles))
		if s.audit, err = audit.Open(cfg.AuditLog, opts...); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
	}
	if s.audit != nil {
		s.metrics.ObserveAudit(s.audit)
		s.log.Info("audit log open", "destination", cfg.AuditLog, "required", cfg.AuditRequired, "max_bytes", cfg.AuditMaxBytes, "max_files", cfg.AuditMaxFiles)
	}
	return nil
}

// ReopenAudit makes the audit log open its file again, as after a rename
// by logrotate; tokend calls it on SIGHUP. Nothing happens when the audit
// log is not a file.
func (s *Server) ReopenAudit() {
	s.audit.Reopen()
}

// warnAnonymous logs, loudly, each rule of p that lets callers without
// credentials mint.
func (s *Server) warnAnonymous(p *policy.Policy) {
	for _, r := range p.AnonymousRules() {
		s.log.Warn("ANONYMOUS MINTING: policy rule lets callers without credentials mint tokens, as a public Twilio Function did; anyone who reaches tokend gets them",
			"rule", r.Name, "line", r.Line, "identity", r.AnonymousIdentity(), "grants", r.AllowedGrants(), "rate_limit_per_client_address", r.RateLimit.String(), "max_ttl_seconds", r.MaxTTLSeconds)
	}
}

// isAdminPath reports whether an HTTP path belongs to the admin API.
func isAdminPath(p string) bool { return httpapi.IsAdminPath(p) }

// authFailure audits a request refused for failed authentication (or for
// too many failures from its address) and counts the latter in
// tokend_rate_limited_total{scope="auth_failure"}. The record never holds
// the credentials presented: auth.Failure has no field for them.
func (s *Server) authFailure(ctx context.Context, f auth.Failure) {
	code := codes.Unauthenticated
	if f.Throttled {
		code = codes.ResourceExhausted
		s.metrics.RateLimited.WithLabelValues("auth_failure").Inc()
	}
	if s.audit == nil {
		return
	}
	addr := auth.ClientAddr(ctx)
	if addr == "" && f.Peer.IsValid() {
		addr = f.Peer.String()
	}
	s.audit.Log(audit.Record{
		Event:      audit.EventAuthFailure,
		Decision:   audit.Deny,
		Action:     f.Call,
		Reason:     f.Reason,
		Code:       code.String(),
		ClientAddr: addr,
		RequestID:  requestid.FromContext(ctx),
	})
}
