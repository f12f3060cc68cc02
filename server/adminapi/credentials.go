package adminapi

import (
	"context"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/tokenapi"
)

// validName is the shape of credential names and groups.
var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// MaxGroups bounds the groups of one credential.
const MaxGroups = 16

// CreateCredential issues a named bearer credential; only its hash is
// stored, and the token is in this response alone.
func (s *Service) CreateCredential(ctx context.Context, req *tokenv1.CreateCredentialRequest) (*tokenv1.CreateCredentialResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	var v tokenapi.Violations
	if !validName.MatchString(req.GetName()) {
		v.Add("name", "must be 1 to 64 letters, digits, '.', '_' or '-'")
	}
	if len(req.GetGroups()) > MaxGroups {
		v.Add("groups", "must be at most %d", MaxGroups)
	}
	for _, g := range req.GetGroups() {
		if !validName.MatchString(g) {
			v.Add("groups", "each must be 1 to 64 letters, digits, '.', '_' or '-'")
			break
		}
	}
	if err := v.Err("credential"); err != nil {
		return nil, err
	}
	token, hash, err := auth.NewCredentialToken()
	if err != nil {
		return nil, status.Error(codes.Internal, "cannot generate a credential")
	}
	if err := s.store.CreateCredential(ctx, storage.Credential{Name: req.GetName(), Hash: hash[:], Groups: req.GetGroups()}); err != nil {
		return nil, s.storeErr(ctx, "create credential", err)
	}
	if err := s.publish(ctx, "create credential"); err != nil {
		return nil, err
	}
	s.audit(ctx, "create_credential", "credential", req.GetName())
	creds, err := s.store.ListCredentials(ctx)
	if err != nil {
		return nil, s.storeErr(ctx, "list credentials", err)
	}
	for _, c := range creds {
		if c.Name == req.GetName() {
			return &tokenv1.CreateCredentialResponse{Credential: credentialProto(c), Token: token}, nil
		}
	}
	return nil, status.Error(codes.Unavailable, "the credential was created but could not be read back")
}

// ListCredentials lists credentials without their tokens.
func (s *Service) ListCredentials(ctx context.Context, _ *tokenv1.ListCredentialsRequest) (*tokenv1.ListCredentialsResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	creds, err := s.store.ListCredentials(ctx)
	if err != nil {
		return nil, s.storeErr(ctx, "list credentials", err)
	}
	resp := &tokenv1.ListCredentialsResponse{Credentials: make([]*tokenv1.Credential, 0, len(creds))}
	for _, c := range creds {
		resp.Credentials = append(resp.Credentials, credentialProto(c))
	}
	return resp, nil
}

// DeleteCredential revokes a credential.
func (s *Service) DeleteCredential(ctx context.Context, req *tokenv1.DeleteCredentialRequest) (*tokenv1.DeleteCredentialResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	if !validName.MatchString(req.GetName()) {
		var v tokenapi.Violations
		v.Add("name", "must be 1 to 64 letters, digits, '.', '_' or '-'")
		return nil, v.Err("request")
	}
	if err := s.store.DeleteCredential(ctx, req.GetName()); err != nil {
		return nil, s.storeErr(ctx, "delete credential", err)
	}
	if err := s.publish(ctx, "delete credential"); err != nil {
		return nil, err
	}
	s.audit(ctx, "delete_credential", "credential", req.GetName())
	return &tokenv1.DeleteCredentialResponse{}, nil
}

func credentialProto(c storage.Credential) *tokenv1.Credential {
	return &tokenv1.Credential{Name: c.Name, Groups: c.Groups, CreatedAt: ts(c.CreatedAt)}
}
