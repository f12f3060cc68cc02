// Package tokenapi implements token.v1.TokenService: it validates mint
// requests, resolves the application and its active key from the
// in-memory keystore, and signs with package mint. The gRPC server and the
// REST gateway both call this one implementation.
package tokenapi

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/ratelimit"
)

// DefaultIdentity is the identity of a request that names none, as the
// seed's Twilio Function had it.
const DefaultIdentity = "user"

// Config configures the service.
type Config struct {
	// Keys is the in-memory keystore; required.
	Keys *keystore.Keystore
	// DefaultIdentity is used when a request names no identity; empty
	// means DefaultIdentity.
	DefaultIdentity string
	// DefaultApplication is used when a request names no application and
	// the keystore holds more than one; optional.
	DefaultApplication string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Policy decides which caller may mint what. Nil is development mode:
	// any caller (anonymous on loopback) may mint anything, as the seed's
	// Twilio Function allowed.
	Policy *policy.Holder
	// PrincipalLimit and IdentityLimit are token buckets per caller and per
	// (application, identity); nil: no limit.
	PrincipalLimit, IdentityLimit *ratelimit.Limiter
	// OnRateLimited is told the scope ("principal", "identity") of each
	// refusal; optional.
	OnRateLimited func(scope string)
	// Audit receives one record per mint decision; nil: none. When it is
	// required (audit.WithRequired), a mint whose record is not written is
	// refused with Unavailable.
	Audit *audit.Logger
}

// Service implements tokenv1.TokenServiceServer.
type Service struct {
	tokenv1.UnimplementedTokenServiceServer
	cfg Config
}

var _ tokenv1.TokenServiceServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.DefaultIdentity == "" {
		cfg.DefaultIdentity = DefaultIdentity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Mint validates the request, decides it against the caller policy and
// rate limits, and signs a token with the application's active key (or,
// with validate_only, explains the decision without signing). Errors:
// InvalidArgument with google.rpc.BadRequest details for bad input,
// NotFound for an unknown application, PermissionDenied when the policy
// denies it (naming the rule), ResourceExhausted past a rate limit (with
// a retry-after header), FailedPrecondition when the application has no
// active key.
func (s *Service) Mint(ctx context.Context, req *tokenv1.MintRequest) (*tokenv1.MintResponse, error) {
	var v Violations

	// The application: named, the configured default, or the only one.
	var app *keystore.App
	appSID := req.GetApplicationSid()
	switch {
	case appSID != "":
		v.CheckSID("application_sid", appSID, "AP", true)
	case s.cfg.DefaultApplication != "":
		appSID = s.cfg.DefaultApplication
	default:
		if app = s.cfg.Keys.Only(); app != nil {
			appSID = app.SID
		} else {
			v.Add("application_sid", "is required: tokend holds %d applications and no default application is configured", s.cfg.Keys.Len())
		}
	}
	if app == nil && len(v) == 0 {
		if app = s.cfg.Keys.Lookup(appSID); app == nil {
			return nil, status.Errorf(codes.NotFound, "application %s not found", appSID)
		}
	}

	maxTTL := int64(mint.MaxTTLSeconds)
	ttl := int64(DefaultTTLSeconds)
	if app != nil {
		maxTTL = app.MaxTTL
		ttl = min(ttl, maxTTL)
	}
	if req.TtlSeconds != nil {
		ttl = int64(req.GetTtlSeconds())
		v.CheckTTL("ttl_seconds", ttl, maxTTL)
	}

	region := req.GetRegion()
	if region != "" {
		if !ValidRegion(region) {
			v.Add("region", "must be a Twilio region: two lowercase letters and a number, such as us1, ie1 or au1")
		}
	} else if app != nil {
		region = app.Region
	}

	grants := req.GetGrants()
	var grantsJSON []byte
	if grants != nil {
		v.CheckGrants("grants", grants)
	} else if app != nil {
		grants, grantsJSON = app.DefaultGrants()
	}

	caller, _ := auth.FromContext(ctx)
	identity := s.cfg.DefaultIdentity
	if req.Identity != nil {
		identity = req.GetIdentity()
	} else if caller.Browser && caller.Identity != "" {
		identity = caller.Identity // a browser user mints for itself
	}
	v.CheckIdentity(identity, grants)

	if err := v.Err("mint request"); err != nil {
		return nil, err
	}

	askedTTL := int64(0) // a request naming no lifetime gets the rule's cap
	if req.TtlSeconds != nil {
		askedTTL = ttl
	}
	decision := s.decide(caller, req, grants, identity, app.SID, askedTTL)
	if decision.MaxTTLSeconds > 0 && askedTTL == 0 {
		ttl = min(ttl, decision.MaxTTLSeconds)
	}
	if req.GetValidateOnly() {
		return s.explain(app, ttl, region, identity, grants, grantsJSON, caller, decision)
	}
	if !decision.Allowed {
		s.audit(ctx, caller, identity, app.SID, grants, "", 0, decision, codes.PermissionDenied)
		return nil, status.Errorf(codes.PermissionDenied, "%s may not mint this token: %s (rule %s)", caller, decision.Reason, decision.Rule)
	}
	if err := s.limit(ctx, caller, app.SID, identity); err != nil {
		s.audit(ctx, caller, identity, app.SID, grants, "", 0, decision, codes.ResourceExhausted)
		return nil, err
	}
	key := app.Active
	if key == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "application %s has no active API key", app.SID)
	}
	if grantsJSON == nil {
		grantsJSON = mint.AppendGrants(make([]byte, 0, 256), grants)
	}
	claims := &mint.Claims{
		Identity: identity,
		Grants:   grantsJSON,
		Region:   region,
		IssuedAt: s.cfg.Now().Unix(),
		TTL:      ttl,
	}
	tok := key.Sign(claims)
	if err := s.audit(ctx, caller, identity, app.SID, grants, tok.ID, tok.ExpiresAt, decision, codes.OK); err != nil {
		// Fail closed (--audit-required): never hand out a token the
		// audit log does not hold. Why is in the audit Logger's
		// warnings and metrics; the caller needs only to retry.
		return nil, status.Error(codes.Unavailable, "the audit log cannot record this mint, so no token was issued; retry later")
	}
	return &tokenv1.MintResponse{
		Token:          tok.JWT,
		Identity:       identity,
		ApplicationSid: app.SID,
		AccountSid:     key.AccountSID(),
		ApiKeySid:      key.SID(),
		Jti:            tok.ID,
		IssuedAt:       &timestamppb.Timestamp{Seconds: tok.IssuedAt},
		ExpiresAt:      &timestamppb.Timestamp{Seconds: tok.ExpiresAt},
		Region:         region,
	}, nil
}

// ApplicationFor returns the SID of the application a mint request naming
// applicationSID (empty: none) is for, resolved as Mint resolves it, or ""
// when that is no application tokend holds. It reads memory only; metrics
// use it to label failed mints without taking arbitrary caller input.
func (s *Service) ApplicationFor(applicationSID string) string {
	switch {
	case applicationSID != "":
	case s.cfg.DefaultApplication != "":
		applicationSID = s.cfg.DefaultApplication
	default:
		if app := s.cfg.Keys.Only(); app != nil {
			return app.SID
		}
		return ""
	}
	if app := s.cfg.Keys.Lookup(applicationSID); app != nil {
		return app.SID
	}
	return ""
}
