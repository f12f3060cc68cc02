// Package adminapi implements token.v1.AdminService: applications and
// their API keys, rotation and re-encryption, behind an admin bearer
// credential. Writes go to the store and are then published to the
// in-memory keystore before the call returns, so a mint that starts after
// an activation returns is signed by the new key.
package adminapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/audit"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/keystore"
	"github.com/tokend/tokend/server/mint"
	"github.com/tokend/tokend/server/provision"
	"github.com/tokend/tokend/server/requestid"
	"github.com/tokend/tokend/server/storage"
	"github.com/tokend/tokend/server/tokenapi"
)

// Limits of admin input.
const (
	MaxFriendlyNameLen = 256
	MaxSecretBytes     = 256
)

// Config configures the service.
type Config struct {
	// Keys is the keystore; required.
	Keys *keystore.Keystore
	// AdminToken is the bearer credential; empty turns the service off.
	AdminToken string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives admin actions and internal errors.
	Logger *slog.Logger
	// OnStoreError, if set, is told of each unexpected store error (not
	// found, already exists, conflicts and cancellations are not), with
	// op "admin"; server counts them in a metric.
	OnStoreError func(op string, err error)
	// DemoApplicationSID is the placeholder application tokend creates on
	// an empty store; it is deleted when the first other application is
	// created, so that requests without an application_sid reach the real
	// one. Empty: none.
	DemoApplicationSID string
	// Audit receives one record per admin action; nil: none.
	Audit *audit.Logger
	// Failures, if set, slows down addresses that present wrong admin
	// credentials again and again (shared with caller authentication).
	Failures *auth.FailureLimiter
	// OnAuthFailure, if set, is told of every call refused for a missing
	// or wrong admin credential, or for too many of them (for the audit
	// log).
	OnAuthFailure func(ctx context.Context, f auth.Failure)
	// Provisioner manages keys at Twilio (provisioning credentials,
	// provision, revoke, reconcile); nil: those calls answer
	// FailedPrecondition.
	Provisioner *provision.Provisioner
}

// Service implements tokenv1.AdminServiceServer.
type Service struct {
	tokenv1.UnimplementedAdminServiceServer
	keys       *keystore.Keystore
	store      storage.Store
	tokenHash  [sha256.Size]byte
	failures   *auth.FailureLimiter
	onAuthFail func(context.Context, auth.Failure)
	enabled    bool
	now        func() time.Time
	log        *slog.Logger
	onStoreErr func(op string, err error)
	demoApp    string
	auditLog   *audit.Logger
	prov       *provision.Provisioner
}

var _ tokenv1.AdminServiceServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	s := &Service{keys: cfg.Keys, store: cfg.Keys.Store(), now: cfg.Now, log: cfg.Logger, onStoreErr: cfg.OnStoreError, demoApp: cfg.DemoApplicationSID, auditLog: cfg.Audit, failures: cfg.Failures, onAuthFail: cfg.OnAuthFailure, prov: cfg.Provisioner}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if cfg.AdminToken != "" {
		s.enabled = true
		s.tokenHash = sha256.Sum256([]byte(cfg.AdminToken))
	}
	return s
}

// authorize checks the bearer credential in constant time (comparing
// SHA-256 digests, so neither content nor length leaks through timing).
// The REST gateway passes the Authorization header on as "authorization"
// metadata, so both paths are checked here.
func (s *Service) authorize(ctx context.Context) error {
	if !s.enabled {
		return status.Error(codes.PermissionDenied, "the admin API is off: no admin credential is configured (set TOKEND_ADMIN_TOKEN or --admin-token-file)")
	}
	peer := auth.ParseClientAddr(auth.ClientAddr(ctx))
	if blocked, wait := s.failures.Blocked(peer); blocked {
		return s.authFailed(ctx, peer, auth.ThrottledError(ctx, wait), true)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		scheme, tok, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") {
			continue
		}
		h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1 {
			return nil
		}
	}
	if len(md.Get("authorization")) > 0 {
		s.failures.Fail(peer) // a request without any credential guesses nothing
	}
	return s.authFailed(ctx, peer, status.Error(codes.Unauthenticated, "admin credential missing or wrong: send authorization: Bearer <admin token>"), false)
}

// authFailed tells OnAuthFailure of a refused admin call and returns err.
func (s *Service) authFailed(ctx context.Context, peer netip.Addr, err error, throttled bool) error {
	if s.onAuthFail != nil {
		method, _ := grpc.Method(ctx)
		if method == "" {
			method, _ = runtime.RPCMethod(ctx) // the in-process REST gateway
		}
		s.onAuthFail(ctx, auth.Failure{Transport: "admin", Call: method, Peer: peer, Reason: status.Convert(err).Message(), Throttled: throttled})
	}
	return err
}

// admit is the start of every admin call whose request is an
// application's SID and keys' SIDs (none, or one) and nothing else to
// check: the caller is authorized and the SIDs are valid; an error is the
// call's answer.
func (s *Service) admit(ctx context.Context, appSID string, keySIDs ...string) error {
	if err := s.authorize(ctx); err != nil {
		return err
	}
	var v tokenapi.Violations
	checkAppSID(&v, appSID)
	for _, k := range keySIDs {
		checkKeySID(&v, k)
	}
	return v.Err("request")
}

// storeErr maps store errors to gRPC codes; unexpected errors are logged
// and reported without detail.
func (s *Service) storeErr(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, storage.ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, storage.ErrConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if s.onStoreErr != nil {
		s.onStoreErr("admin", err)
	}
	s.log.ErrorContext(ctx, "admin store error", "op", op, "error", err)
	return status.Error(codes.Unavailable, "the store could not complete "+op+"; try again")
}

// publish loads the store's new state into memory before the call returns.
func (s *Service) publish(ctx context.Context, op string) error {
	if err := s.keys.Reload(ctx); err != nil {
		s.log.ErrorContext(ctx, "reload keys after admin write", "op", op, "error", err)
		return status.Error(codes.Internal, op+" is saved but could not be loaded into memory; see the server log")
	}
	return nil
}

// audit logs an admin action and writes its audit record; attrs are
// key-value pairs (application_sid, api_key_sid, ...), never secrets.
func (s *Service) audit(ctx context.Context, action string, attrs ...any) {
	s.log.InfoContext(ctx, "admin action", append([]any{"action", action}, attrs...)...)
	if s.auditLog == nil {
		return
	}
	r := audit.Record{
		Event: audit.EventAdmin, Action: action, Principal: "admin-token", Decision: audit.Allow, Code: "OK",
		ClientAddr: auth.ClientAddr(ctx), RequestID: requestid.FromContext(ctx),
	}
	var details []string
	for i := 0; i+1 < len(attrs); i += 2 {
		k, _ := attrs[i].(string)
		v := fmt.Sprint(attrs[i+1])
		if k == "application_sid" {
			r.ApplicationSID = v
			continue
		}
		details = append(details, k+"="+v)
	}
	r.Reason = strings.Join(details, " ")
	s.auditLog.Log(r)
}

func checkAppSID(v *tokenapi.Violations, sid string) {
	v.CheckSID("application_sid", sid, "AP", true)
}

func checkKeySID(v *tokenapi.Violations, sid string) {
	v.CheckSID("api_key_sid", sid, "SK", true)
}

func checkAppFields(v *tokenapi.Violations, name string, grants *tokenv1.Grants, maxTTL int32, region string) {
	v.CheckText("friendly_name", name, MaxFriendlyNameLen)
	v.CheckGrants("default_grants", grants)
	if maxTTL < 0 || maxTTL > mint.MaxTTLSeconds {
		v.Add("max_ttl_seconds", "must be between 0 and %d seconds (0 means %d), got %d", mint.MaxTTLSeconds, mint.MaxTTLSeconds, maxTTL)
	}
	if region != "" && !tokenapi.ValidRegion(region) {
		v.Add("region", "must be a Twilio region: two lowercase letters and a number, such as us1, ie1 or au1")
	}
}

func encodeGrants(g *tokenv1.Grants) []byte {
	if g == nil {
		return nil
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(g)
	if err != nil || len(b) == 0 {
		// Marshal of a validated message cannot fail; an empty object
		// still means "these grants, none of them".
		return []byte("{}")
	}
	return b
}

// CreateApplication adds an application.
func (s *Service) CreateApplication(ctx context.Context, req *tokenv1.CreateApplicationRequest) (*tokenv1.CreateApplicationResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	var v tokenapi.Violations
	checkAppSID(&v, req.GetApplicationSid())
	v.CheckSID("account_sid", req.GetAccountSid(), "AC", true)
	checkAppFields(&v, req.GetFriendlyName(), req.GetDefaultGrants(), req.GetMaxTtlSeconds(), req.GetRegion())
	if err := v.Err("application"); err != nil {
		return nil, err
	}
	app := storage.Application{
		SID: req.GetApplicationSid(), AccountSID: req.GetAccountSid(), FriendlyName: req.GetFriendlyName(),
		DefaultGrants: encodeGrants(req.GetDefaultGrants()), MaxTTLSeconds: req.GetMaxTtlSeconds(), Region: req.GetRegion(),
	}
	if err := s.store.CreateApplication(ctx, app); err != nil {
		return nil, s.storeErr(ctx, "create application", err)
	}
	if s.demoApp != "" && app.SID != s.demoApp {
		if err := s.store.DeleteApplication(ctx, s.demoApp); err == nil {
			s.audit(ctx, "delete_application", "application_sid", s.demoApp, "reason", "replaced by a real application")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, s.storeErr(ctx, "delete the demo application", err)
		}
	}
	if set, err := s.defaultIfNone(ctx, app.SID); err != nil {
		return nil, s.storeErr(ctx, "make the application the default", err)
	} else if set {
		s.audit(ctx, "set_default_application", "application_sid", app.SID, "reason", "no default application was set")
	}
	if err := s.publish(ctx, "create application"); err != nil {
		return nil, err
	}
	s.audit(ctx, "create_application", "application_sid", app.SID, "account_sid", app.AccountSID)
	got, err := s.store.GetApplication(ctx, app.SID)
	if err != nil {
		return nil, s.storeErr(ctx, "read application", err)
	}
	return &tokenv1.CreateApplicationResponse{Application: s.appProto(got)}, nil
}

// ListApplications lists every application.
func (s *Service) ListApplications(ctx context.Context, _ *tokenv1.ListApplicationsRequest) (*tokenv1.ListApplicationsResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	apps, err := s.store.ListApplications(ctx)
	if err != nil {
		return nil, s.storeErr(ctx, "list applications", err)
	}
	resp := &tokenv1.ListApplicationsResponse{Applications: make([]*tokenv1.Application, 0, len(apps))}
	for _, a := range apps {
		resp.Applications = append(resp.Applications, s.appProto(a))
	}
	return resp, nil
}

// GetApplication returns one application.
func (s *Service) GetApplication(ctx context.Context, req *tokenv1.GetApplicationRequest) (*tokenv1.GetApplicationResponse, error) {
	if err := s.admit(ctx, req.GetApplicationSid()); err != nil {
		return nil, err
	}
	a, err := s.store.GetApplication(ctx, req.GetApplicationSid())
	if err != nil {
		return nil, s.storeErr(ctx, "get application", err)
	}
	return &tokenv1.GetApplicationResponse{Application: s.appProto(a)}, nil
}

// UpdateApplication changes the fields that are set.
func (s *Service) UpdateApplication(ctx context.Context, req *tokenv1.UpdateApplicationRequest) (*tokenv1.UpdateApplicationResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	var v tokenapi.Violations
	checkAppSID(&v, req.GetApplicationSid())
	if req.AccountSid != nil {
		v.CheckSID("account_sid", req.GetAccountSid(), "AC", true)
	}
	checkAppFields(&v, req.GetFriendlyName(), req.GetDefaultGrants(), req.GetMaxTtlSeconds(), req.GetRegion())
	if req.GetResetDefaultGrants() && req.GetDefaultGrants() != nil {
		v.Add("reset_default_grants", "cannot be combined with default_grants")
	}
	if err := v.Err("application update"); err != nil {
		return nil, err
	}
	a, err := s.store.UpdateApplication(ctx, req.GetApplicationSid(), func(a storage.Application) (storage.Application, error) {
		if req.AccountSid != nil {
			a.AccountSID = req.GetAccountSid()
		}
		if req.FriendlyName != nil {
			a.FriendlyName = req.GetFriendlyName()
		}
		if req.GetDefaultGrants() != nil {
			a.DefaultGrants = encodeGrants(req.GetDefaultGrants())
		}
		if req.GetResetDefaultGrants() {
			a.DefaultGrants = nil
		}
		if req.MaxTtlSeconds != nil {
			a.MaxTTLSeconds = req.GetMaxTtlSeconds()
		}
		if req.Region != nil {
			a.Region = req.GetRegion()
		}
		return a, nil
	})
	if err != nil {
		return nil, s.storeErr(ctx, "update application", err)
	}
	if err := s.publish(ctx, "update application"); err != nil {
		return nil, err
	}
	s.audit(ctx, "update_application", "application_sid", a.SID)
	return &tokenv1.UpdateApplicationResponse{Application: s.appProto(a)}, nil
}

// DeleteApplication removes an application and its keys.
func (s *Service) DeleteApplication(ctx context.Context, req *tokenv1.DeleteApplicationRequest) (*tokenv1.DeleteApplicationResponse, error) {
	if err := s.admit(ctx, req.GetApplicationSid()); err != nil {
		return nil, err
	}
	keys, err := s.store.ListKeys(ctx, req.GetApplicationSid())
	if err != nil {
		return nil, s.storeErr(ctx, "list keys", err)
	}
	if !req.GetForce() {
		// tokend would no longer delete at Twilio the keys it created
		// there for this application: the provisioning credential goes
		// with the application.
		switch _, err := s.store.GetTwilioCredential(ctx, req.GetApplicationSid()); {
		case err == nil:
			return nil, status.Errorf(codes.FailedPrecondition,
				"application %s has a provisioning credential, so tokend manages its keys at Twilio and would leave them there: revoke them first (tokenctl keys revoke, which deletes each at Twilio), or remove the credential (tokenctl apps twilio-credential --delete) and delete the keys in the Twilio Console, or set force",
				req.GetApplicationSid())
		case !errors.Is(err, storage.ErrNotFound):
			return nil, s.storeErr(ctx, "get twilio credential", err)
		}
		for _, k := range keys {
			if until := s.outstandingUntil(k); until.After(s.now()) {
				return nil, status.Errorf(codes.FailedPrecondition,
					"tokens signed by key %s of application %s are valid until %s: delete after that, or set force",
					k.SID, k.ApplicationSID, until.UTC().Format(time.RFC3339))
			}
		}
	}
	if err := s.store.DeleteApplication(ctx, req.GetApplicationSid()); err != nil {
		return nil, s.storeErr(ctx, "delete application", err)
	}
	if err := s.publish(ctx, "delete application"); err != nil {
		return nil, err
	}
	s.audit(ctx, "delete_application", "application_sid", req.GetApplicationSid(), "force", req.GetForce())
	if s.keys.Len() > 0 && s.keys.Default() == nil {
		s.log.WarnContext(ctx, "no default application any more: requests that name no application fail and /readyz answers 503 until one is set (tokenctl apps default AP…)",
			"deleted_application_sid", req.GetApplicationSid(), "applications", s.keys.Len())
	}
	return &tokenv1.DeleteApplicationResponse{}, nil
}

// AddKey adds an API key to an application.
func (s *Service) AddKey(ctx context.Context, req *tokenv1.AddKeyRequest) (*tokenv1.AddKeyResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	var v tokenapi.Violations
	checkAppSID(&v, req.GetApplicationSid())
	checkKeySID(&v, req.GetApiKeySid())
	switch n := len(req.GetSecret()); {
	case n == 0:
		v.Add("secret", "is required: the API key secret Twilio showed when the key was created")
	case n > MaxSecretBytes:
		v.Add("secret", "must be at most %d bytes", MaxSecretBytes)
	}
	if err := v.Err("key"); err != nil {
		return nil, err
	}
	sealed, mkID, err := s.keys.SealKey(req.GetApplicationSid(), req.GetApiKeySid(), []byte(req.GetSecret()))
	if err != nil {
		s.log.ErrorContext(ctx, "seal key secret", "api_key_sid", req.GetApiKeySid(), "error", err)
		return nil, status.Error(codes.Internal, "cannot encrypt the secret")
	}
	state := storage.KeyRetired
	if req.GetActivate() {
		state = storage.KeyActive
	} else if app := s.keys.Lookup(req.GetApplicationSid()); app != nil && app.Active == nil {
		state = storage.KeyActive // the first key of an application signs at once
	}
	if err := s.store.CreateKey(ctx, storage.Key{
		ApplicationSID: req.GetApplicationSid(), SID: req.GetApiKeySid(),
		SealedSecret: sealed, MasterKeyID: mkID, State: state,
	}); err != nil {
		return nil, s.storeErr(ctx, "add key", err)
	}
	if err := s.publish(ctx, "add key"); err != nil {
		return nil, err
	}
	s.audit(ctx, "add_key", "application_sid", req.GetApplicationSid(), "api_key_sid", req.GetApiKeySid(), "state", string(state))
	k, err := s.store.GetKey(ctx, req.GetApplicationSid(), req.GetApiKeySid())
	if err != nil {
		return nil, s.storeErr(ctx, "read key", err)
	}
	return &tokenv1.AddKeyResponse{Key: s.keyProto(k)}, nil
}

// ListKeys lists the keys of an application.
func (s *Service) ListKeys(ctx context.Context, req *tokenv1.ListKeysRequest) (*tokenv1.ListKeysResponse, error) {
	if err := s.admit(ctx, req.GetApplicationSid()); err != nil {
		return nil, err
	}
	keys, err := s.store.ListKeys(ctx, req.GetApplicationSid())
	if err != nil {
		return nil, s.storeErr(ctx, "list keys", err)
	}
	resp := &tokenv1.ListKeysResponse{Keys: make([]*tokenv1.Key, 0, len(keys))}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, s.keyProto(k))
	}
	s.addTwilioStatus(keys, resp.Keys)
	return resp, nil
}

// ActivateKey makes a key the application's only active key.
func (s *Service) ActivateKey(ctx context.Context, req *tokenv1.ActivateKeyRequest) (*tokenv1.ActivateKeyResponse, error) {
	if err := s.admit(ctx, req.GetApplicationSid(), req.GetApiKeySid()); err != nil {
		return nil, err
	}
	previous := ""
	if app := s.keys.Lookup(req.GetApplicationSid()); app != nil && app.Active != nil && app.Active.SID() != req.GetApiKeySid() {
		previous = app.Active.SID()
	}
	if err := s.store.ActivateKey(ctx, req.GetApplicationSid(), req.GetApiKeySid()); err != nil {
		return nil, s.storeErr(ctx, "activate key", err)
	}
	if err := s.publish(ctx, "activate key"); err != nil {
		return nil, err
	}
	s.audit(ctx, "activate_key", "application_sid", req.GetApplicationSid(), "api_key_sid", req.GetApiKeySid(), "previous_api_key_sid", previous)
	k, err := s.store.GetKey(ctx, req.GetApplicationSid(), req.GetApiKeySid())
	if err != nil {
		return nil, s.storeErr(ctx, "read key", err)
	}
	return &tokenv1.ActivateKeyResponse{Key: s.keyProto(k), PreviousApiKeySid: previous}, nil
}

// DeleteKey removes a retired key.
func (s *Service) DeleteKey(ctx context.Context, req *tokenv1.DeleteKeyRequest) (*tokenv1.DeleteKeyResponse, error) {
	if err := s.admit(ctx, req.GetApplicationSid(), req.GetApiKeySid()); err != nil {
		return nil, err
	}
	k, err := s.store.GetKey(ctx, req.GetApplicationSid(), req.GetApiKeySid())
	if err != nil {
		return nil, s.storeErr(ctx, "get key", err)
	}
	if k.State == storage.KeyActive {
		return nil, status.Errorf(codes.FailedPrecondition,
			"key %s is the active key of application %s: activate another key first", k.SID, k.ApplicationSID)
	}
	if until := s.outstandingUntil(k); !req.GetForce() && until.After(s.now()) {
		return nil, status.Errorf(codes.FailedPrecondition,
			"tokens signed by key %s are valid until %s: delete it after that, or set force", k.SID, until.UTC().Format(time.RFC3339))
	}
	if err := s.store.DeleteKey(ctx, req.GetApplicationSid(), req.GetApiKeySid()); err != nil {
		return nil, s.storeErr(ctx, "delete key", err)
	}
	if err := s.publish(ctx, "delete key"); err != nil {
		return nil, err
	}
	s.audit(ctx, "delete_key", "application_sid", req.GetApplicationSid(), "api_key_sid", req.GetApiKeySid(), "force", req.GetForce())
	return &tokenv1.DeleteKeyResponse{}, nil
}

// Rekey re-encrypts every secret under the primary master key.
func (s *Service) Rekey(ctx context.Context, _ *tokenv1.RekeyRequest) (*tokenv1.RekeyResponse, error) {
	if err := s.authorize(ctx); err != nil {
		return nil, err
	}
	n, err := s.keys.Rekey(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "rekey", "error", err)
		return nil, status.Error(codes.FailedPrecondition, "rekey failed: "+err.Error())
	}
	if s.prov != nil {
		m, err := s.prov.Rekey(ctx)
		if err != nil {
			s.log.ErrorContext(ctx, "rekey provisioning credentials", "error", err)
			return nil, status.Error(codes.FailedPrecondition, "rekey of provisioning credentials failed: "+err.Error())
		}
		n += m
	}
	primary := s.keys.Keyring().Primary().ID
	s.audit(ctx, "rekey", "resealed", n, "primary_master_key_id", primary)
	return &tokenv1.RekeyResponse{Resealed: int32(n), PrimaryMasterKeyId: primary}, nil
}

// outstandingUntil is the later of what the store recorded and what this
// process signed but has not flushed yet.
func (s *Service) outstandingUntil(k storage.Key) time.Time {
	_, mem := s.keys.Usage(k.ApplicationSID, k.SID)
	if t := time.Unix(mem, 0); mem > 0 && t.After(k.OutstandingUntil) {
		return t
	}
	return k.OutstandingUntil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() || t.Unix() <= 0 {
		return nil
	}
	return timestamppb.New(t)
}

func (s *Service) appProto(a storage.Application) *tokenv1.Application {
	p := &tokenv1.Application{
		ApplicationSid: a.SID, AccountSid: a.AccountSID, FriendlyName: a.FriendlyName,
		MaxTtlSeconds: a.MaxTTLSeconds, Region: a.Region,
		CreatedAt: ts(a.CreatedAt), UpdatedAt: ts(a.UpdatedAt),
	}
	if app := s.keys.Lookup(a.SID); app != nil {
		p.DefaultGrants, _ = app.DefaultGrants()
		if app.Active != nil {
			p.ActiveApiKeySid = app.Active.SID()
		}
	}
	return p
}

func (s *Service) keyProto(k storage.Key) *tokenv1.Key {
	last, out := s.keys.Usage(k.ApplicationSID, k.SID)
	lastT, outT := k.LastSignedAt, k.OutstandingUntil
	if t := time.Unix(last, 0); last > 0 && t.After(lastT) {
		lastT = t
	}
	if t := time.Unix(out, 0); out > 0 && t.After(outT) {
		outT = t
	}
	return &tokenv1.Key{
		ApplicationSid: k.ApplicationSID, ApiKeySid: k.SID, State: string(k.State),
		AddedAt: ts(k.CreatedAt), ActivatedAt: ts(k.ActivatedAt),
		LastSignedAt: ts(lastT), OutstandingUntil: ts(outT), MasterKeyId: k.MasterKeyID,
	}
}
