package tokenapi

import (
	"context"
	"encoding/json"
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
	"github.com/tokend/tokend/server/requestid"
)

// RuleDevelopment names the decision of development mode (no policy).
const RuleDevelopment = "development-mode"

// decide applies the caller policy; without one (development mode) every
// caller may mint.
func (s *Service) decide(caller auth.Principal, req *tokenv1.MintRequest, grants *tokenv1.Grants, identity, appSID string, ttl int64) policy.Decision {
	if s.cfg.Policy == nil {
		return policy.Decision{Allowed: true, Rule: RuleDevelopment}
	}
	kind := caller.Kind.String()
	return s.cfg.Policy.Decide(policy.Caller{
		// The policy names callers "kind:name"; auth's names of browser
		// users already carry that prefix.
		Kind: kind, Name: strings.TrimPrefix(caller.Name, kind+":"), Identity: caller.Identity,
		Groups: caller.Groups, Browser: caller.Browser,
	}, req, grants, identity, appSID, ttl)
}

// limit takes a token from the caller's bucket and the identity's; a
// refusal is ResourceExhausted with a retry-after header (the REST gateway
// sends it as Retry-After, with status 429).
func (s *Service) limit(ctx context.Context, caller auth.Principal, appSID, identity string) error {
	check := func(l interface {
		Allow(string) (bool, time.Duration)
	}, scope, key string) error {
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
	if l := s.cfg.PrincipalLimit; l != nil {
		if err := check(l, "principal", caller.Kind.String()+":"+caller.Name); err != nil {
			return err
		}
	}
	if l := s.cfg.IdentityLimit; l != nil {
		if err := check(l, "identity", appSID+"/"+identity); err != nil {
			return err
		}
	}
	return nil
}

// explain answers a validate_only request: the decision (allowed or not),
// the claims that would be signed and the token's size; nothing is signed
// and no rate limit is charged.
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

// audit writes one record of a mint decision. The record of a token
// handed out (code OK) is committed: with a required audit log
// (--audit-required) audit returns an error when it was not written, and
// the token must not be handed out.
func (s *Service) audit(ctx context.Context, caller auth.Principal, identity, appSID string, g *tokenv1.Grants, jti string, exp int64, d policy.Decision, code codes.Code) error {
	if s.cfg.Audit == nil {
		return nil
	}
	r := audit.Record{
		Event: audit.EventMint, Principal: caller.Name, PrincipalKind: caller.Kind.String(),
		Identity: identity, ApplicationSID: appSID, Grants: audit.GrantsSummary(g), JTI: jti,
		Decision: audit.Allow, Rule: d.Rule, Reason: d.Reason,
		ClientAddr: auth.ClientAddr(ctx), RequestID: requestid.FromContext(ctx), Code: code.String(),
	}
	if code != codes.OK {
		r.Decision = audit.Deny
	}
	if exp > 0 {
		r.Exp = time.Unix(exp, 0)
	}
	if code == codes.OK {
		return s.cfg.Audit.Commit(ctx, r)
	}
	s.cfg.Audit.Log(r)
	return nil
}
