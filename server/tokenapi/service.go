// Package tokenapi implements token.v1.TokenService: it validates mint
// requests, resolves the application and its active key from the
// in-memory keystore, and signs with package mint. The gRPC server and the
// REST gateway both call this one implementation.
package tokenapi

import (
	"context"
	"fmt"
	"strings"
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

// Mint validates the request, decides what the token would let its holder
// do (policy.Reach) against the caller policy and rate limits, and signs
// a token with the application's active key (or, with validate_only,
// explains the decision without signing: an explanation is audited as
// such and when denied is the same PermissionDenied a mint gets). Every
// request, allowed or denied, costs the caller one rate-limit token
// before its answer; an allowed mint also costs the identity one. Errors:
// InvalidArgument with google.rpc.BadRequest details for bad input,
// NotFound for an unknown application (in policy mode only to a caller
// some rule lets mint for it: any other is denied before the application
// is looked up), PermissionDenied when the policy denies it (naming the
// rule), ResourceExhausted past a rate limit (with
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
		return nil, noDefaultApplication(s.cfg.Keys.Len(), s.cfg.Policy != nil)
	}
	caller, _ := auth.FromContext(ctx)
	if len(v) == 0 && s.cfg.Policy != nil && !s.mayMintFor(caller, appSID) {
		// A caller that may mint for no token of this application learns
		// nothing of it, not even whether tokend holds it: it is denied
		// before the application is looked up and before any of its
		// settings (maximum lifetime, default grants) shapes the answer.
		return nil, s.denyApplication(ctx, req, caller, appSID)
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
			v.Add("region", regionRule)
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

	identity := s.identity(req, caller)
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
		event = audit.EventExplain
	}
	// A mint or an explanation is charged to the caller before its answer
	// is told, denied or not, so that probing the policy by either is rate
	// limited; only an allowed mint takes from the identity's bucket.
	if err := s.limitCaller(ctx, caller, decision.RateLimit); err != nil {
		s.audit(ctx, event, caller, &reach, grants, "", 0, decision, codes.ResourceExhausted)
		return nil, err
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
	if err := s.limitIdentity(ctx, app.SID, identity); err != nil {
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
	// One clock reading: the token's issue time and its audit record's.
	now := s.cfg.Now()
	claims := &mint.Claims{
		Identity: identity,
		Grants:   grantsJSON,
		Region:   region,
		IssuedAt: now.Unix(),
		TTL:      ttl,
	}
	sc := scratchOf(ctx)
	var tok mint.Token
	if sc != nil {
		tok = key.SignInto(claims, &sc.tok)
	} else {
		tok = key.Sign(claims)
	}
	if err := s.auditAt(ctx, now, event, caller, &reach, grants, tok.ID, tok.ExpiresAt, decision, codes.OK); err != nil {
		// Fail closed (--audit-required): never hand out a token the
		// audit log does not hold. Why is in the audit Logger's
		// warnings and metrics; the caller needs only to retry.
		if cerr := ctx.Err(); cerr != nil {
			// The caller went away (or its deadline passed) while the
			// record was being written: Canceled or DeadlineExceeded
			// (HTTP 499 or 504), as for any call it abandons, not an
			// outage of the audit log.
			return nil, status.FromContextError(cerr).Err()
		}
		return nil, status.Error(codes.Unavailable, "the audit log cannot record this mint, so no token was issued; retry later")
	}
	// The answer and its two timestamps in one allocation (see answer),
	// or in the caller's Scratch.
	var a *answer
	if sc != nil {
		a = &sc.a
		*a = answer{}
	} else {
		a = &answer{}
	}
	a.issued.Seconds, a.expires.Seconds = tok.IssuedAt, tok.ExpiresAt
	r := &a.resp
	r.Token, r.Identity, r.ApplicationSid = tok.JWT, identity, app.SID
	r.AccountSid, r.ApiKeySid, r.Jti = key.AccountSID(), key.SID(), tok.ID
	r.IssuedAt, r.ExpiresAt, r.Region = &a.issued, &a.expires, region
	return r, nil
}

// answer holds a MintResponse and the Timestamps it points to, so that
// a mint allocates them once, not three times. The messages are built in
// place and never copied.
type answer struct {
	resp            tokenv1.MintResponse
	issued, expires timestamppb.Timestamp
}

// Scratch is memory a caller lends Mint for one answer at a time: Mint
// builds the MintResponse it returns, and the token's text, in the
// Scratch instead of new memory, so they are valid only until the Scratch
// is lent again. The REST /token path lends one for each request and
// writes the answer before it lends the Scratch to another: a mint then
// allocates neither its answer nor its token (about 900 bytes).
type Scratch struct {
	a   answer
	tok []byte
}

// ScratchLender is a context that lends Mint a Scratch (MintScratch may
// return nil: none this time). Mint asks only the context it is given, not
// its parents: a context that is not one, such as every gRPC call's, gets
// new memory for its answer.
type ScratchLender interface {
	MintScratch() *Scratch
}

func scratchOf(ctx context.Context) *Scratch {
	if l, ok := ctx.(ScratchLender); ok {
		return l.MintScratch()
	}
	return nil
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
//
// In policy mode the message does not say how many applications tokend
// holds: that is not every caller's to know.
func noDefaultApplication(apps int, policyMode bool) error {
	msg := "no default application: tokend holds no application"
	switch {
	case apps > 0 && policyMode:
		msg = "no default application: tokend holds several applications and none is the default; an operator must set one (tokenctl apps default AP…, or PUT /v1/default-application), or the request must name application_sid"
	case apps > 0:
		msg = fmt.Sprintf("no default application: tokend holds %d applications and none is the default; an operator must set one (tokenctl apps default AP…, or PUT /v1/default-application), or the request must name application_sid", apps)
	}
	st := status.New(codes.FailedPrecondition, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonNoDefaultApplication, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// identity is the identity a request asks for: the one it names, else a
// browser caller's own, else the default.
func (s *Service) identity(req *tokenv1.MintRequest, caller auth.Principal) string {
	switch {
	case req.Identity != nil:
		return req.GetIdentity()
	case caller.Browser && caller.Identity != "":
		return caller.Identity // a browser user mints for itself
	}
	return s.cfg.DefaultIdentity
}

// regionRule is the violation of a region that is not one.
const regionRule = "must be a Twilio region: two lowercase letters and a number, such as us1, ie1 or au1"

// denyApplication answers a request for an application appSID the caller
// may not mint for, whether tokend holds it or not: bad input is refused
// by the rules that do not depend on the application (the ttl against
// Twilio's limit, the identity against the grants the request names),
// then the request is denied by a decision that depends only on the
// caller, appSID and the identity; the explanation is charged as any
// other, and the denial is audited.
func (s *Service) denyApplication(ctx context.Context, req *tokenv1.MintRequest, caller auth.Principal, appSID string) error {
	identity := s.identity(req, caller)
	var v Violations
	if req.TtlSeconds != nil {
		v.CheckTTL("ttl_seconds", int64(req.GetTtlSeconds()), mint.MaxTTLSeconds)
	}
	if r := req.GetRegion(); r != "" && !ValidRegion(r) {
		v.Add("region", regionRule)
	}
	v.CheckGrants("grants", req.GetGrants())
	v.CheckIdentity(identity, req.GetGrants())
	if err := v.Err("mint request"); err != nil {
		return err
	}
	reach := policy.ReachOf(appSID, identity, req.GetGrants())
	decision := s.decide(caller, &reach, 0)
	if decision.Allowed { // the policy changed in between: deny all the same
		decision = policy.Decision{Rule: policy.RuleDefaultDeny, Reason: "application " + appSID + " is not allowed"}
	}
	reason := decision.Reason
	if req.GetApplicationSid() == "" {
		// The request named no application: the default one (configured,
		// or the only one tokend holds) is not named to a caller that may
		// not mint for it. The audit record names it.
		reason = strings.ReplaceAll(reason, appSID, "(the default application)")
	}
	event := audit.EventMint
	if req.GetValidateOnly() {
		event = audit.EventExplain
	}
	if err := s.limitCaller(ctx, caller, decision.RateLimit); err != nil {
		s.audit(ctx, event, caller, &reach, req.GetGrants(), "", 0, decision, codes.ResourceExhausted)
		return err
	}
	s.audit(ctx, event, caller, &reach, req.GetGrants(), "", 0, decision, codes.PermissionDenied)
	return status.Errorf(codes.PermissionDenied, "%s may not mint this token: %s (rule %s)", caller, reason, decision.Rule)
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
