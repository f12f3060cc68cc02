package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

const (
	adminToken = "admin-token-for-tests-0123456789"
	app1       = "AP11111111111111111111111111111111"
	acct1      = "AC11111111111111111111111111111111"
	key1       = "SK11111111111111111111111111111111"
	key2       = "SK22222222222222222222222222222222"
	secret1    = "first-secret-aaaaaaaaaaaaaaaaaaaa"
	secret2    = "second-secret-bbbbbbbbbbbbbbbbbbb"
)

func adminHarness(t *testing.T, cfg server.Config) *harness {
	cfg.AdminToken = adminToken
	if cfg.Seed.IsZero() {
		cfg.Seed = server.Seed{AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp}
	}
	h := newHarness(t, cfg)
	h.authz = "Bearer " + adminToken
	return h
}

func adminCtx() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminToken)
}

// adminStep is one admin call, written for both paths.
type adminStep struct {
	name   string
	grpc   func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error)
	method string
	path   string
	body   string
	code   codes.Code
	field  string                                  // with InvalidArgument: the field named
	check  func(t *testing.T, resp map[string]any) // on success: the response as JSON
}

func jsonOf(t *testing.T, m proto.Message) map[string]any {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func get(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, _ := cur.(map[string]any)
		cur = mm[p]
	}
	return cur
}

// TestAdminLifecycle drives one sequence of admin calls through gRPC and,
// on a fresh tokend, through REST: the same codes, the same results, and
// never a secret in a response.
func TestAdminLifecycle(t *testing.T) {
	steps := []adminStep{
		{name: "create_app", method: "POST", path: "/v1/applications",
			body: `{"application_sid":"` + app1 + `","account_sid":"` + acct1 + `","friendly_name":"one","max_ttl_seconds":600}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: acct1, FriendlyName: "one", MaxTtlSeconds: 600})
			},
			check: func(t *testing.T, r map[string]any) {
				if get(r, "application", "application_sid") != app1 || get(r, "application", "max_ttl_seconds") != 600.0 {
					t.Errorf("created %v", r)
				}
				if get(r, "application", "default_grants", "voice", "outgoing", "application_sid") != app1 {
					t.Errorf("default grants %v, want outgoing voice through %s", get(r, "application", "default_grants"), app1)
				}
			}},
		{name: "create_app_again", method: "POST", path: "/v1/applications", code: codes.AlreadyExists,
			body: `{"application_sid":"` + app1 + `","account_sid":"` + acct1 + `"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: acct1})
			}},
		{name: "create_app_bad_sids", method: "POST", path: "/v1/applications", code: codes.InvalidArgument, field: "account_sid",
			body: `{"application_sid":"` + app1 + `","account_sid":"AC12"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.CreateApplication(ctx, &tokenv1.CreateApplicationRequest{ApplicationSid: app1, AccountSid: "AC12"})
			}},
		{name: "list_apps", method: "GET", path: "/v1/applications",
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.ListApplications(ctx, &tokenv1.ListApplicationsRequest{})
			},
			check: func(t *testing.T, r map[string]any) {
				if apps, _ := r["applications"].([]any); len(apps) != 2 {
					t.Errorf("listed %v, want the seed application and %s", r, app1)
				}
			}},
		{name: "update_app", method: "PATCH", path: "/v1/applications/" + app1, body: `{"friendly_name":"renamed","region":"ie1"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.UpdateApplication(ctx, &tokenv1.UpdateApplicationRequest{ApplicationSid: app1, FriendlyName: proto.String("renamed"), Region: proto.String("ie1")})
			},
			check: func(t *testing.T, r map[string]any) {
				if get(r, "application", "friendly_name") != "renamed" || get(r, "application", "region") != "ie1" || get(r, "application", "max_ttl_seconds") != 600.0 {
					t.Errorf("updated %v, want renamed, ie1 and max_ttl_seconds kept", r)
				}
			}},
		{name: "add_key_first", method: "POST", path: "/v1/applications/" + app1 + "/keys", body: `{"api_key_sid":"` + key1 + `","secret":"` + secret1 + `"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app1, ApiKeySid: key1, Secret: secret1})
			},
			check: func(t *testing.T, r map[string]any) {
				if get(r, "key", "state") != "active" || get(r, "key", "added_at") == nil || get(r, "key", "activated_at") == nil {
					t.Errorf("first key %v, want active with added_at and activated_at", r)
				}
			}},
		{name: "add_key_second", method: "POST", path: "/v1/applications/" + app1 + "/keys", body: `{"api_key_sid":"` + key2 + `","secret":"` + secret2 + `"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app1, ApiKeySid: key2, Secret: secret2})
			},
			check: func(t *testing.T, r map[string]any) {
				if get(r, "key", "state") != "retired" {
					t.Errorf("second key %v, want retired (not activated)", r)
				}
			}},
		{name: "add_key_duplicate", method: "POST", path: "/v1/applications/" + app1 + "/keys", code: codes.AlreadyExists,
			body: `{"api_key_sid":"` + key2 + `","secret":"` + secret2 + `"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app1, ApiKeySid: key2, Secret: secret2})
			}},
		{name: "add_key_unknown_app", method: "POST", path: "/v1/applications/APffffffffffffffffffffffffffffffff/keys", code: codes.NotFound,
			body: `{"api_key_sid":"` + key2 + `","secret":"` + secret2 + `"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: "APffffffffffffffffffffffffffffffff", ApiKeySid: key2, Secret: secret2})
			}},
		{name: "add_key_empty_secret", method: "POST", path: "/v1/applications/" + app1 + "/keys", code: codes.InvalidArgument, field: "secret",
			body: `{"api_key_sid":"SK33333333333333333333333333333333","secret":""}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app1, ApiKeySid: "SK33333333333333333333333333333333"})
			}},
		{name: "add_key_malformed_sid", method: "POST", path: "/v1/applications/" + app1 + "/keys", code: codes.InvalidArgument, field: "api_key_sid",
			body: `{"api_key_sid":"SK-nope","secret":"x"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app1, ApiKeySid: "SK-nope", Secret: "x"})
			}},
		{name: "add_key_malformed_app", method: "POST", path: "/v1/applications/APnope/keys", code: codes.InvalidArgument, field: "application_sid",
			body: `{"api_key_sid":"` + key2 + `","secret":"x"}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: "APnope", ApiKeySid: key2, Secret: "x"})
			}},
		{name: "activate_second", method: "POST", path: "/v1/applications/" + app1 + "/keys/" + key2 + ":activate", body: `{}`,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: app1, ApiKeySid: key2})
			},
			check: func(t *testing.T, r map[string]any) {
				if get(r, "key", "state") != "active" || r["previous_api_key_sid"] != key1 {
					t.Errorf("activate %v, want %s active, %s previous", r, key2, key1)
				}
			}},
		{name: "activate_unknown", method: "POST", path: "/v1/applications/" + app1 + "/keys/SK99999999999999999999999999999999:activate", body: `{}`, code: codes.NotFound,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: app1, ApiKeySid: "SK99999999999999999999999999999999"})
			}},
		{name: "delete_active_key", method: "DELETE", path: "/v1/applications/" + app1 + "/keys/" + key2, code: codes.FailedPrecondition,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.DeleteKey(ctx, &tokenv1.DeleteKeyRequest{ApplicationSid: app1, ApiKeySid: key2})
			}},
		{name: "delete_outstanding_key", method: "DELETE", path: "/v1/applications/" + app1 + "/keys/" + key1, code: codes.FailedPrecondition,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.DeleteKey(ctx, &tokenv1.DeleteKeyRequest{ApplicationSid: app1, ApiKeySid: key1})
			}},
		{name: "list_keys", method: "GET", path: "/v1/applications/" + app1 + "/keys",
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: app1})
			},
			check: func(t *testing.T, r map[string]any) {
				keys, _ := r["keys"].([]any)
				if len(keys) != 2 {
					t.Fatalf("keys %v, want 2", r)
				}
				k1, _ := keys[0].(map[string]any)
				if k1["api_key_sid"] != key1 || k1["state"] != "retired" || k1["outstanding_until"] == nil || k1["last_signed_at"] == nil {
					t.Errorf("key 1 %v, want retired with last_signed_at and outstanding_until (it signed)", k1)
				}
			}},
		{name: "delete_key_force", method: "DELETE", path: "/v1/applications/" + app1 + "/keys/" + key1 + "?force=true",
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.DeleteKey(ctx, &tokenv1.DeleteKeyRequest{ApplicationSid: app1, ApiKeySid: key1, Force: true})
			}},
		{name: "delete_app_outstanding", method: "DELETE", path: "/v1/applications/" + app1, code: codes.FailedPrecondition,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.DeleteApplication(ctx, &tokenv1.DeleteApplicationRequest{ApplicationSid: app1})
			}},
		{name: "delete_app_force", method: "DELETE", path: "/v1/applications/" + app1 + "?force=true",
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.DeleteApplication(ctx, &tokenv1.DeleteApplicationRequest{ApplicationSid: app1, Force: true})
			}},
		{name: "get_deleted_app", method: "GET", path: "/v1/applications/" + app1, code: codes.NotFound,
			grpc: func(ctx context.Context, c tokenv1.AdminServiceClient) (proto.Message, error) {
				return c.GetApplication(ctx, &tokenv1.GetApplicationRequest{ApplicationSid: app1})
			}},
	}
	// Mints between the steps: after add_key_first the token is signed by
	// key1 with the application's 600 s maximum; after activate_second by
	// key2.
	mintAfter := map[string]struct{ iss, secret string }{
		"add_key_second":  {key1, secret1},
		"activate_second": {key2, secret2},
	}

	for _, path := range []string{"grpc", "rest"} {
		t.Run(path, func(t *testing.T) {
			h := adminHarness(t, server.Config{})
			admin := tokenv1.NewAdminServiceClient(h.conn)
			for _, st := range steps {
				var resp map[string]any
				if path == "grpc" {
					msg, err := st.grpc(adminCtx(), admin)
					s := status.Convert(err)
					if s.Code() != st.code {
						t.Fatalf("%s: %v, want %v", st.name, err, st.code)
					}
					if st.field != "" && !violates(s, st.field) {
						t.Errorf("%s: %v does not name field %q", st.name, s.Message(), st.field)
					}
					if err == nil {
						resp = jsonOf(t, msg)
					} else {
						resp = map[string]any{"message": s.Message()}
					}
				} else {
					code, body := h.do(t, st.method, st.path, "application/json", st.body)
					resp = body
					if want := runtimeStatus(st.code); code != want {
						t.Fatalf("%s: %s %s = %d %v, want %d", st.name, st.method, st.path, code, body, want)
					}
					if st.field != "" && !restViolates(body, st.field) {
						t.Errorf("%s: %v does not name field %q", st.name, body, st.field)
					}
				}
				raw, _ := json.Marshal(resp)
				for _, secret := range []string{secret1, secret2, testSecret} {
					if strings.Contains(string(raw), secret) {
						t.Fatalf("%s: the response contains a secret", st.name)
					}
				}
				if st.check != nil && st.code == codes.OK {
					t.Run(st.name, func(t *testing.T) { st.check(t, resp) })
				}
				if m, ok := mintAfter[st.name]; ok {
					r, err := h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1})
					if err != nil {
						t.Fatalf("Mint after %s: %v", st.name, err)
					}
					claims := verifyJWT(t, r.GetToken(), m.secret)
					if claims["iss"] != m.iss || r.GetApiKeySid() != m.iss {
						t.Errorf("Mint after %s: iss %v, want %s", st.name, claims["iss"], m.iss)
					}
					if d := r.GetExpiresAt().GetSeconds() - r.GetIssuedAt().GetSeconds(); d != 600 {
						t.Errorf("Mint after %s: lifetime %d, want the application's maximum 600", st.name, d)
					}
					if r.GetRegion() != "ie1" {
						t.Errorf("Mint after %s: region %q, want the application's ie1", st.name, r.GetRegion())
					}
					_, err = h.token.Mint(context.Background(), &tokenv1.MintRequest{ApplicationSid: app1, TtlSeconds: proto.Int32(601)})
					if s := status.Convert(err); s.Code() != codes.InvalidArgument || !violates(s, "ttl_seconds") {
						t.Errorf("Mint(ttl 601) over the application's maximum = %v, want InvalidArgument on ttl_seconds", err)
					}
				}
			}
		})
	}
}

func runtimeStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists:
		return http.StatusConflict
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// TestAdminCredential: no credential configured turns the admin API off
// (and says so); a missing or wrong bearer token is refused; both paths.
func TestAdminCredential(t *testing.T) {
	off := newHarness(t, server.Config{})
	_, err := tokenv1.NewAdminServiceClient(off.conn).ListApplications(adminCtx(), &tokenv1.ListApplicationsRequest{})
	if s := status.Convert(err); s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), "admin API is off") {
		t.Errorf("ListApplications with the admin API off = %v, want PermissionDenied saying it is off", err)
	}
	off.authz = "Bearer " + adminToken
	if code, body := off.do(t, "GET", "/v1/applications", "", ""); code != http.StatusForbidden {
		t.Errorf("GET /v1/applications with the admin API off = %d %v, want 403", code, body)
	}

	h := adminHarness(t, server.Config{})
	admin := tokenv1.NewAdminServiceClient(h.conn)
	for name, md := range map[string][]string{
		"none":       nil,
		"wrong":      {"authorization", "Bearer not-the-admin-token-000000"},
		"prefix":     {"authorization", "Bearer " + adminToken[:10]},
		"not_bearer": {"authorization", "Basic " + adminToken},
	} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), md...)
		_, err := admin.ListApplications(ctx, &tokenv1.ListApplicationsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("grpc %s: ListApplications = %v, want Unauthenticated", name, err)
		}
		if err != nil && strings.Contains(err.Error(), adminToken) {
			t.Errorf("grpc %s: the error contains the admin token", name)
		}
		h.authz = ""
		if len(md) == 2 {
			h.authz = md[1]
		}
		if code, body := h.do(t, "GET", "/v1/applications", "", ""); code != http.StatusUnauthorized {
			t.Errorf("rest %s: GET /v1/applications = %d %v, want 401", name, code, body)
		}
	}
}
