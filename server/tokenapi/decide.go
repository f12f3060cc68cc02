package tokenapi

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/ratelimit"
	"github.com/tokend/tokend/server/requestid"
)

// RuleDevelopment names the decision of development mode (no policy).
const RuleDevelopment = "development-mode"

// policyCaller is the caller as the policy names it.
func policyCaller(caller auth.Principal) policy.Caller {
	kind := caller.Kind.String()
	return policy.Caller{
		// The policy names callers "kind:name"; auth's names of browser
		// users already carry that prefix.
		Kind: kind, Name: trimKind(caller.Name, kind), Identity: caller.Identity,
		Groups: caller.Groups, Browser: caller.Browser,
	}
}

// trimKind is strings.TrimPrefix(name, kind+":") without building the
// prefix (every mint asks twice).
func trimKind(name, kind string) string {
	if rest, ok := strings.CutPrefix(name, kind); ok && len(rest) > 0 && rest[0] == ':' {
		return rest[1:]
	}
	return name
}

// decide applies the caller policy to what the token would let its holder
// do; without a policy (development mode) every caller may mint.
func (s *Service) decide(caller auth.Principal, r *policy.Reach, ttl int64) policy.Decision {
	if s.cfg.Policy == nil {
		return policy.Decision{Allowed: true, Rule: RuleDevelopment}
	}
	return s.cfg.Policy.Decide(policyCaller(caller), r, ttl)
}

// mayMintFor reports whether caller may mint some token signed by the
// application app: always in development mode, else when a policy rule
// selects the caller and permits app. Verify tells only such callers
// which application a key belongs to.
func (s *Service) mayMintFor(caller auth.Principal, app string) bool {
	if s.cfg.Policy == nil {
		return true
	}
	return app != "" && s.cfg.Policy.MayMintFor(policyCaller(caller), app)
}

// limitCaller takes a token from the caller's bucket and, for an anonymous
// caller (anon not nil: the allowing anonymous rule's bucket, or for a
// denied request the closest one's), from its client address's bucket.
// Every mint and explanation pays it before its decision is told, allowed
// or denied, so that probing the policy, by either, is rate limited.
func (s *Service) limitCaller(ctx context.Context, caller auth.Principal, anon *ratelimit.Limiter) error {
	if l := s.cfg.PrincipalLimit; l != nil {
		if err := s.take(ctx, l, "principal", caller.Kind.String()+":"+caller.Name); err != nil {
			return err
		}
	}
	if anon != nil {
		return s.take(ctx, anon, "anonymous", clientIP(auth.ClientAddr(ctx)))
	}
	return nil
}

// limitIdentity takes a token from the bucket of (application, identity).
// Only a mint the policy allowed pays it: neither an explanation nor a
// denied request can use up the mints of an identity.
func (s *Service) limitIdentity(ctx context.Context, appSID, identity string) error {
	if l := s.cfg.IdentityLimit; l != nil {
		return s.take(ctx, l, "identity", appSID+"/"+identity)
	}
	return nil
}

// take takes a token for key from l; a refusal is ResourceExhausted with
// a retry-after header (the REST gateway sends it as Retry-After, with
// status 429).
func (s *Service) take(ctx context.Context, l *ratelimit.Limiter, scope, key string) error {
	ok, wait := l.Allow(key)
	if ok {
		return nil
	}
	if s.cfg.OnRateLimited != nil {
		s.cfg.OnRateLimited(scope)
	}
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.FormatInt(secs, 10)))
	return status.Errorf(codes.ResourceExhausted, "rate limit of the %s reached: retry after %d s", scope, secs)
}

// clientIP is the host part of a client address ("ip:port"), the key of
// an anonymous rule's bucket; the address itself when it has no port.
func clientIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// explain answers an allowed validate_only request: the decision, the
// claims that would be signed and the token's size; nothing is signed. (A
// denied one is answered PermissionDenied, as a mint is, so that nothing
// of an application the caller may not mint for is shown.)
func (s *Service) explain(app *keystore.App, ttl int64, region, identity string, grants *tokenv1.Grants, grantsJSON []byte, caller auth.Principal, d policy.Decision) (*tokenv1.MintResponse, error) {
	key := app.Active
	if key == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "application %s has no active API key", app.SID)
	}
	if grantsJSON == nil {
		grantsJSON = mint.AppendGrants(nil, grants)
	}
	c := &mint.Claims{Identity: identity, Grants: grantsJSON, Region: region, IssuedAt: s.cfg.Now().Unix(), TTL: ttl}
	header, claims, size := key.Preview(c)
	return &tokenv1.MintResponse{
		Identity: c.Identity, ApplicationSid: app.SID, AccountSid: key.AccountSID(), ApiKeySid: key.SID(),
		IssuedAt:  &timestamppb.Timestamp{Seconds: c.IssuedAt},
		ExpiresAt: &timestamppb.Timestamp{Seconds: c.IssuedAt + c.TTL},
		Region:    c.Region,
		Decision: &tokenv1.Decision{
			Allowed: d.Allowed, Rule: d.Rule, Reason: d.Reason, Principal: caller.String(), TokenSize: int32(size),
			Header: toStruct(header), Claims: toStruct(claims),
		},
	}, nil
}

func toStruct(raw []byte) *structpb.Struct {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil
	}
	return st
}

// audit writes one record of a mint or explain (event) decision, naming
// what the token authorizes (r). The record of a token handed out (a mint
// with code OK) is committed: with a required audit log
// (--audit-required) audit returns an error when it was not written, and
// the token must not be handed out.
func (s *Service) audit(ctx context.Context, event string, caller auth.Principal, r *policy.Reach, g *tokenv1.Grants, jti string, exp int64, d policy.Decision, code codes.Code) error {
	return s.auditAt(ctx, time.Time{}, event, caller, r, g, jti, exp, d, code)
}

// auditAt is audit with the record's time: at, or the time the record is
// logged when at is zero. A mint passes the clock reading its token was
// issued at, so the record and the token's iat agree and the clock is
// read once.
func (s *Service) auditAt(ctx context.Context, at time.Time, event string, caller auth.Principal, r *policy.Reach, g *tokenv1.Grants, jti string, exp int64, d policy.Decision, code codes.Code) error {
	if s.cfg.Audit == nil {
		return nil
	}
	rec := audit.Record{
		Time: at, Event: event, Principal: caller.Name, PrincipalKind: caller.Kind.String(),
		Identity: r.Identity, ApplicationSID: r.Application, Grants: audit.GrantsSummary(g), JTI: jti,
		OutgoingApplicationSID: r.OutgoingApplication, OutgoingParams: r.ParamKeys(), PushCredentialSID: r.PushCredential,
		Room: r.Room, ChatServiceSID: r.ChatService, ChatPushCredentialSID: r.ChatPushCredential,
		ChatDeploymentRoleSID: r.ChatDeploymentRole, SyncServiceSID: r.SyncService,
		WorkspaceSID: r.Workspace, WorkerSID: r.Worker, TaskRouterRole: r.Role,
		Decision: audit.Allow, Rule: d.Rule, Reason: d.Reason,
		ClientAddr: auth.ClientAddr(ctx), RequestID: requestid.FromContext(ctx), Code: code.String(),
	}
	if code != codes.OK {
		rec.Decision = audit.Deny
	}
	if exp > 0 {
		rec.Exp = time.Unix(exp, 0)
	}
	if event == audit.EventMint && code == codes.OK {
		return s.cfg.Audit.Commit(ctx, rec)
	}
	s.cfg.Audit.Log(rec)
	return nil
}
