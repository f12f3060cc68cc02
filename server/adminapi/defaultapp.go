package adminapi

import (
	"context"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// GetDefaultApplication returns the stored default application and the
// one that serves requests naming none.
func (s *Service) GetDefaultApplication(ctx context.Context, _ *tokenv1.GetDefaultApplicationRequest) (*tokenv1.GetDefaultApplicationResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	sid, err := s.store.DefaultApplication(ctx)
	if err != nil {
		return nil, s.storeErr(ctx, "read the default application", err)
	}
	resp := &tokenv1.GetDefaultApplicationResponse{ApplicationSid: sid}
	if app := s.keys.Default(); app != nil {
		resp.EffectiveApplicationSid = app.SID
	}
	return resp, nil
}

// SetDefaultApplication makes an existing application the default.
func (s *Service) SetDefaultApplication(ctx context.Context, req *tokenv1.SetDefaultApplicationRequest) (*tokenv1.SetDefaultApplicationResponse, error) {
	if err := s.admit(ctx, req.GetApplicationSid()); err != nil {
		return nil, err
	}
	prev, err := s.store.DefaultApplication(ctx)
	if err != nil {
		return nil, s.storeErr(ctx, "read the default application", err)
	}
	if err := s.store.SetDefaultApplication(ctx, req.GetApplicationSid()); err != nil {
		return nil, s.storeErr(ctx, "set the default application", err)
	}
	if err := s.publish(ctx, "set default application"); err != nil {
		return nil, err
	}
	s.audit(ctx, "set_default_application", "application_sid", req.GetApplicationSid(), "previous", prev)
	return &tokenv1.SetDefaultApplicationResponse{ApplicationSid: req.GetApplicationSid(), PreviousApplicationSid: prev}, nil
}

// defaultIfNone makes sid the default application when none is set, so
// that adding a second application never leaves requests naming none
// without one. It reports whether it did.
func (s *Service) defaultIfNone(ctx context.Context, sid string) (bool, error) {
	cur, err := s.store.DefaultApplication(ctx)
	if err != nil || cur != "" {
		return false, err
	}
	return true, s.store.SetDefaultApplication(ctx, sid)
}
