package adminapi

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/provision"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/tokenapi"
	"github.com/tokend/tokend/server/twilioapi"
)

// MinRotateEvery and MaxRotateEvery bound the scheduled rotation
// interval. The longest is ten years: a protobuf Duration may say 10,000,
// which time.Duration (292 years) would silently cut.
const (
	MinRotateEvery = time.Second
	MaxRotateEvery = 3650 * 24 * time.Hour
)

// provisioner returns the Provisioner or the error of a tokend without
// one.
func (s *Service) provisioner() (*provision.Provisioner, error) {
	if s.prov == nil {
		return nil, status.Error(codes.FailedPrecondition, "key provisioning is off in this tokend")
	}
	return s.prov, nil
}

// provisionCall is the start of every provisioning call that names an
// application, and keys (none, or the one key a revoke names): the
// caller is authorized, the SIDs are valid (admit), and provisioning is
// on.
func (s *Service) provisionCall(ctx context.Context, appSID string, keySIDs ...string) (*provision.Provisioner, error) {
	if err := s.admit(ctx, appSID, keySIDs...); err != nil {
		return nil, err
	}
	return s.provisioner()
}

// provErr maps a provisioning error to a status; it never carries a
// secret (twilioapi.Error holds none).
func (s *Service) provErr(ctx context.Context, op string, err error) error {
	var te *twilioapi.Error
	switch {
	case errors.Is(err, provision.ErrNoCredential), errors.Is(err, provision.ErrSharedKey):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.As(err, &te) && te.Unauthorized():
		return status.Errorf(codes.FailedPrecondition, "%s: Twilio refused the provisioning credential (%v); it must be the account's auth token or a Main API key", op, te)
	case errors.As(err, &te) && te.Transient():
		return status.Errorf(codes.Unavailable, "%s: Twilio did not answer in time (%v); no key state was lost, try again", op, te)
	case errors.As(err, &te):
		return status.Errorf(codes.FailedPrecondition, "%s: %v", op, te)
	}
	return s.storeErr(ctx, op, err)
}

func twilioCredentialProto(c storage.TwilioCredential) *tokenv1.TwilioCredential {
	p := &tokenv1.TwilioCredential{ApplicationSid: c.ApplicationSID, Username: c.Username, UpdatedAt: ts(c.UpdatedAt)}
	if c.RotateEvery > 0 {
		p.RotateEvery = durationpb.New(c.RotateEvery)
	}
	return p
}

// checkSecret validates a write-only secret without ever quoting it.
func checkSecret(v *tokenapi.Violations, field, secret string) {
	switch {
	case secret == "":
		v.Add(field, "is required")
	case len(secret) > MaxSecretBytes:
		v.Add(field, "must be at most %d bytes", MaxSecretBytes)
	default:
		for i := 0; i < len(secret); i++ {
			c := secret[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				v.Add(field, "must be letters and digits only, as Twilio's are")
				return
			}
		}
	}
}

// SetTwilioCredential sets an application's provisioning credential.
func (s *Service) SetTwilioCredential(ctx context.Context, req *tokenv1.SetTwilioCredentialRequest) (*tokenv1.SetTwilioCredentialResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	var v tokenapi.Violations
	checkAppSID(&v, req.GetApplicationSid())
	hasToken, hasKey := req.GetAuthToken() != "", req.GetApiKeySid() != "" || req.GetApiKeySecret() != ""
	switch {
	case hasToken && hasKey:
		v.Add("auth_token", "cannot be combined with api_key_sid and api_key_secret: give one credential")
	case hasToken:
		checkSecret(&v, "auth_token", req.GetAuthToken())
	case hasKey:
		v.CheckSID("api_key_sid", req.GetApiKeySid(), "SK", true)
		checkSecret(&v, "api_key_secret", req.GetApiKeySecret())
	default:
		v.Add("auth_token", "is required, or api_key_sid with api_key_secret (a Main API key)")
	}
	var every time.Duration
	if d := req.GetRotateEvery(); d != nil {
		if err := d.CheckValid(); err != nil || d.GetSeconds() < 0 || d.GetNanos() < 0 || d.GetSeconds() > int64(MaxRotateEvery/time.Second) ||
			(d.AsDuration() > 0 && d.AsDuration() < MinRotateEvery) || d.AsDuration() > MaxRotateEvery {
			v.Add("rotate_every", "must be 0 (off) or from %v to %v (3650 days)", MinRotateEvery, MaxRotateEvery)
		} else {
			every = d.AsDuration()
		}
	}
	if err := v.Err("twilio credential"); err != nil {
		return nil, err
	}
	p, err := s.provisioner()
	if err != nil {
		return nil, err
	}
	username, secret := req.GetApiKeySid(), req.GetApiKeySecret()
	if hasToken {
		app, err := s.store.GetApplication(ctx, req.GetApplicationSid())
		if err != nil {
			return nil, s.storeErr(ctx, "get application", err)
		}
		username, secret = app.AccountSID, req.GetAuthToken()
	}
	c, err := p.SetCredential(ctx, req.GetApplicationSid(), username, secret, every)
	if err != nil {
		return nil, s.provErr(ctx, "set twilio credential", err)
	}
	s.audit(ctx, "set_twilio_credential", "application_sid", c.ApplicationSID, "username", c.Username, "rotate_every", c.RotateEvery)
	return &tokenv1.SetTwilioCredentialResponse{Credential: twilioCredentialProto(c)}, nil
}

// DeleteTwilioCredential removes an application's provisioning credential.
func (s *Service) DeleteTwilioCredential(ctx context.Context, req *tokenv1.DeleteTwilioCredentialRequest) (*tokenv1.DeleteTwilioCredentialResponse, error) {
	p, err := s.provisionCall(ctx, req.GetApplicationSid())
	if err != nil {
		return nil, err
	}
	if err := p.DeleteCredential(ctx, req.GetApplicationSid()); err != nil {
		if errors.Is(err, provision.ErrNoCredential) {
			return nil, status.Errorf(codes.NotFound, "application %s has no provisioning credential", req.GetApplicationSid())
		}
		return nil, s.provErr(ctx, "delete twilio credential", err)
	}
	s.audit(ctx, "delete_twilio_credential", "application_sid", req.GetApplicationSid())
	return &tokenv1.DeleteTwilioCredentialResponse{}, nil
}

// ProvisionKey creates a key at Twilio for the application.
func (s *Service) ProvisionKey(ctx context.Context, req *tokenv1.ProvisionKeyRequest) (*tokenv1.ProvisionKeyResponse, error) {
	p, err := s.provisionCall(ctx, req.GetApplicationSid())
	if err != nil {
		return nil, err
	}
	k, err := p.Provision(ctx, req.GetApplicationSid(), req.GetActivate())
	if err != nil {
		return nil, s.provErr(ctx, "provision key", err)
	}
	s.audit(ctx, "provision_key", "application_sid", k.ApplicationSID, "api_key_sid", k.SID, "state", string(k.State))
	return &tokenv1.ProvisionKeyResponse{Key: s.keyProtoFull(ctx, k)}, nil
}

// RevokeKey replaces and deletes a compromised key.
func (s *Service) RevokeKey(ctx context.Context, req *tokenv1.RevokeKeyRequest) (*tokenv1.RevokeKeyResponse, error) {
	p, err := s.provisionCall(ctx, req.GetApplicationSid(), req.GetApiKeySid())
	if err != nil {
		return nil, err
	}
	active, err := p.Revoke(ctx, req.GetApplicationSid(), req.GetApiKeySid())
	if err != nil {
		return nil, s.provErr(ctx, "revoke key", err)
	}
	s.audit(ctx, "revoke_key", "application_sid", req.GetApplicationSid(), "api_key_sid", req.GetApiKeySid(), "active_api_key_sid", active.SID)
	resp := &tokenv1.RevokeKeyResponse{RevokedApiKeySid: req.GetApiKeySid()}
	if active.SID != "" {
		resp.ActiveKey = s.keyProtoFull(ctx, active)
	}
	return resp, nil
}

// ReconcileKeys compares tokend's keys with Twilio's.
func (s *Service) ReconcileKeys(ctx context.Context, req *tokenv1.ReconcileKeysRequest) (*tokenv1.ReconcileKeysResponse, error) {
	p, err := s.provisionCall(ctx, req.GetApplicationSid())
	if err != nil {
		return nil, err
	}
	rep, err := p.Reconcile(ctx, req.GetApplicationSid(), req.GetDeleteOrphans())
	if err != nil {
		return nil, s.provErr(ctx, "reconcile keys", err)
	}
	s.audit(ctx, "reconcile_keys", "application_sid", req.GetApplicationSid(), "orphaned", len(rep.Orphaned), "deleted", len(rep.Deleted), "missing", len(rep.Missing), "switched_to", rep.SwitchedTo)
	return &tokenv1.ReconcileKeysResponse{
		OrphanedApiKeySids: rep.Orphaned, DeletedApiKeySids: rep.Deleted,
		MissingApiKeySids: rep.Missing, SwitchedToApiKeySid: rep.SwitchedTo,
	}, nil
}

// keyProtoFull is keyProto with the key's Twilio state and deletion time.
func (s *Service) keyProtoFull(ctx context.Context, k storage.Key) *tokenv1.Key {
	p := s.keyProto(k)
	if keys, err := s.store.ListKeys(ctx, k.ApplicationSID); err == nil {
		for i, o := range keys {
			if o.SID == k.SID {
				// The active key's activation bounds deletion: pass the
				// whole list.
				s.addTwilioStatusWith(keys, []storage.Key{keys[i]}, []*tokenv1.Key{p})
			}
		}
	}
	return p
}

// addTwilioStatus fills twilio_state and delete_after of the keys of one
// application (keys[i] is out[i]).
func (s *Service) addTwilioStatus(keys []storage.Key, out []*tokenv1.Key) {
	s.addTwilioStatusWith(keys, keys, out)
}

func (s *Service) addTwilioStatusWith(all, keys []storage.Key, out []*tokenv1.Key) {
	if s.prov == nil {
		return
	}
	for i, k := range keys {
		state, after := s.prov.KeyStatus(k, all)
		out[i].TwilioState = state
		out[i].DeleteAfter = ts(after)
	}
}
