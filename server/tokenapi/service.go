// Package tokenapi implements token.v1.TokenService: it validates mint
// requests, resolves the application and its active key from the
// in-memory keystore, and signs with package mint. The gRPC server and the
// REST gateway both call this one implementation.
package tokenapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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
	// Audit receives one record per mint decision; nil: none.
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

// Mint validates the request, decides what the token would let its holder
// do (policy.Reach) against the caller policy and rate limits, and signs
// a token with the application's active key (or, with validate_only,
// explains the decision without signing: an explanation is audited as
// such, costs the caller one rate-limit token, and when denied is the
// same PermissionDenied a mint gets). Errors:
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
	if appSID != "" {
		v.CheckSID("application_sid", appSID, "AP", true)
	} else if app = s.cfg.Keys.Default(); app != nil {
		appSID = app.SID
	} else {
		return nil, noDefaultApplication(s.cfg.Keys.Len())
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

	// What the token would let its holder do, computed once: the policy
	// decides it, the audit record names it.
	reach := policy.ReachOf(app.SID, identity, grants)
	reach.IdentityRequested = req.Identity != nil
	askedTTL := int64(0) // a request naming no lifetime gets the rule's cap
	if req.TtlSeconds != nil {
		askedTTL = ttl
	}
	decision := s.decide(caller, &reach, askedTTL)
	if decision.MaxTTLSeconds > 0 && askedTTL == 0 {
		ttl = min(ttl, decision.MaxTTLSeconds)
	}
	if decision.Identity != "" {
		// An anonymous rule's fixed or generated identity: the token, the
		// audit record and the rate limits are for it.
		identity = decision.Identity
		reach.Identity = identity
	}
	event := audit.EventMint
	if req.GetValidateOnly() {
		// An explanation is charged to the caller before its answer is
		// known, denied or not, so that probing the policy is rate
		// limited; it takes nothing from the identity's bucket. An
		// anonymous caller's explanation is also charged to its address
		// in the anonymous rule's bucket, as its mint would be.
		event = audit.EventExplain
		if err := s.limit(ctx, caller, app.SID, identity, decision.RateLimit, true); err != nil {
			s.audit(ctx, event, caller, &reach, grants, "", 0, decision, codes.ResourceExhausted)
			return nil, err
		}
	}
	if !decision.Allowed {
		s.audit(ctx, event, caller, &reach, grants, "", 0, decision, codes.PermissionDenied)
		return nil, status.Errorf(codes.PermissionDenied, "%s may not mint this token: %s (rule %s)", caller, decision.Reason, decision.Rule)
	}
	if req.GetValidateOnly() {
		resp, err := s.explain(app, ttl, region, identity, grants, grantsJSON, caller, decision)
		s.audit(ctx, event, caller, &reach, grants, "", 0, decision, status.Code(err))
		return resp, err
	}
	if err := s.limit(ctx, caller, app.SID, identity, decision.RateLimit, false); err != nil {
		s.audit(ctx, event, caller, &reach, grants, "", 0, decision, codes.ResourceExhausted)
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
	s.audit(ctx, event, caller, &reach, grants, tok.ID, tok.ExpiresAt, decision, codes.OK)
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

// ReasonNoDefaultApplication is the google.rpc.ErrorInfo reason of the
// FailedPrecondition a request naming no application gets while there is
// no default application (the REST gateway answers it with 503).
const ReasonNoDefaultApplication = "NO_DEFAULT_APPLICATION"

// ErrorDomain is the google.rpc.ErrorInfo domain of tokend's errors.
const ErrorDomain = "tokend"

// noDefaultApplication is the error of a request naming no application
// while there is no default: the server's configuration is at fault, not
// the request, and the message names the fix.
func noDefaultApplication(apps int) error {
	msg := "no default application: tokend holds no application"
	if apps > 0 {
		msg = fmt.Sprintf("no default application: tokend holds %d applications and none is the default; an operator must set one (tokenctl apps default AP…, or PUT /v1/default-application), or the request must name application_sid", apps)
	}
	st := status.New(codes.FailedPrecondition, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonNoDefaultApplication, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// ApplicationFor returns the SID of the application a mint request naming
// applicationSID (empty: none) is for, resolved as Mint resolves it, or ""
// when that is no application tokend holds. It reads memory only; metrics
// use it to label failed mints without taking arbitrary caller input.
func (s *Service) ApplicationFor(applicationSID string) string {
	if applicationSID == "" {
		if app := s.cfg.Keys.Default(); app != nil {
			return app.SID
		}
		return ""
	}
	if app := s.cfg.Keys.Lookup(applicationSID); app != nil {
		return app.SID
	}
	return ""
}
