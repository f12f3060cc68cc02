package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

const (
	appSID     = "AP0123456789abcdef0123456789abcdef"
	accountSID = "AC0123456789abcdef0123456789abcdef"
	keySID     = "SK0123456789abcdef0123456789abcdef"
	adminToken = "admin-token-0123456789"
	secret     = "s3cret-do-not-print-0123456789abcdef"
	// callerCred is the caller credential mint and verify send.
	callerCred = "tkd_Ab1-_Ab1-_Ab1-_Ab1-_Ab1-_Ab1-_Ab1-_Ab1-_xyz"
	// issuedCred is the token of the credential CreateCredential issues.
	issuedCred = "tkd_ISSUEDissuedISSUEDissuedISSUEDissued-_xyz"
)

// call is one request the fake received.
type call struct {
	method string
	req    proto.Message
	auth   []string // the authorization metadata
}

// fakeAdmin records every request and answers with canned responses, or
// with err when set.
type fakeAdmin struct {
	tokenv1.UnimplementedAdminServiceServer
	mu    sync.Mutex
	calls []call
	err   error
	// verify, when set, is the answer of Verify.
	verify *tokenv1.VerifyResponse
}

func (f *fakeAdmin) record(ctx context.Context, method string, req proto.Message) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method: method, req: proto.Clone(req), auth: md.Get("authorization")})
	return f.err
}

func (f *fakeAdmin) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

var (
	when    = timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	testApp = &tokenv1.Application{
		ApplicationSid: appSID, AccountSid: accountSID, FriendlyName: "Support\tdesk",
		MaxTtlSeconds: 3600, Region: "ie1", ActiveApiKeySid: keySID, CreatedAt: when, UpdatedAt: when,
		DefaultGrants: &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}},
	}
	testKey = &tokenv1.Key{
		ApplicationSid: appSID, ApiKeySid: keySID, State: "active", AddedAt: when, ActivatedAt: when,
		MasterKeyId: "mk1",
	}
	testCred = &tokenv1.Credential{Name: "billing-svc", Groups: []string{"backend", "billing"}, CreatedAt: when}

	testHeader = map[string]any{"alg": "HS256", "typ": "JWT", "cty": "twilio-fpa;v=1", "twr": "ie1"}
	testClaims = map[string]any{
		"jti": keySID + "-1767322800", "iss": keySID, "sub": accountSID, "exp": 1767326400.0,
		"grants": map[string]any{"identity": "alice", "voice": map[string]any{"incoming": map[string]any{"allow": true}}},
	}
	// testJWT is the token the fake mints and the one tokenctl verifies.
	testJWT = jwt(testHeader, testClaims)
)

func jwt(header, claims map[string]any) string {
	var parts []string
	for _, m := range []map[string]any{header, claims} {
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		parts = append(parts, base64.RawURLEncoding.EncodeToString(b))
	}
	return strings.Join(append(parts, "c2lnbmF0dXJl"), ".")
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// fakeToken is the TokenService of the fake; it records its calls with
// the fakeAdmin's.
type fakeToken struct {
	tokenv1.UnimplementedTokenServiceServer
	f *fakeAdmin
}

func (t *fakeToken) Mint(ctx context.Context, r *tokenv1.MintRequest) (*tokenv1.MintResponse, error) {
	if err := t.f.record(ctx, "Mint", r); err != nil {
		return nil, err
	}
	resp := &tokenv1.MintResponse{
		Identity: "alice", ApplicationSid: appSID, AccountSid: accountSID, ApiKeySid: keySID,
		Jti: keySID + "-1767322800", IssuedAt: when, ExpiresAt: timestamppb.New(when.AsTime().Add(time.Hour)), Region: "ie1",
	}
	if r.GetValidateOnly() {
		resp.Decision = &tokenv1.Decision{
			Allowed: true, Rule: "backend-voice", Principal: "credential:billing-svc", TokenSize: 417,
			Header: mustStruct(testHeader), Claims: mustStruct(testClaims),
		}
	} else {
		resp.Token = testJWT
	}
	return resp, nil
}

func (t *fakeToken) Verify(ctx context.Context, r *tokenv1.VerifyRequest) (*tokenv1.VerifyResponse, error) {
	if err := t.f.record(ctx, "Verify", r); err != nil {
		return nil, err
	}
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	if t.f.verify != nil {
		return t.f.verify, nil
	}
	return &tokenv1.VerifyResponse{
		Valid: true, Header: mustStruct(testHeader), Claims: mustStruct(testClaims),
		ApplicationSid: appSID, ApiKeySid: keySID, KeyState: "active", ExpiresAt: timestamppb.New(time.Unix(1767326400, 0)),
	}, nil
}

func (f *fakeAdmin) CreateApplication(ctx context.Context, r *tokenv1.CreateApplicationRequest) (*tokenv1.CreateApplicationResponse, error) {
	if err := f.record(ctx, "CreateApplication", r); err != nil {
		return nil, err
	}
	return &tokenv1.CreateApplicationResponse{Application: testApp}, nil
}

func (f *fakeAdmin) ListApplications(ctx context.Context, r *tokenv1.ListApplicationsRequest) (*tokenv1.ListApplicationsResponse, error) {
	if err := f.record(ctx, "ListApplications", r); err != nil {
		return nil, err
	}
	return &tokenv1.ListApplicationsResponse{Applications: []*tokenv1.Application{testApp}}, nil
}

func (f *fakeAdmin) GetApplication(ctx context.Context, r *tokenv1.GetApplicationRequest) (*tokenv1.GetApplicationResponse, error) {
	if err := f.record(ctx, "GetApplication", r); err != nil {
		return nil, err
	}
	return &tokenv1.GetApplicationResponse{Application: testApp}, nil
}

func (f *fakeAdmin) UpdateApplication(ctx context.Context, r *tokenv1.UpdateApplicationRequest) (*tokenv1.UpdateApplicationResponse, error) {
	if err := f.record(ctx, "UpdateApplication", r); err != nil {
		return nil, err
	}
	return &tokenv1.UpdateApplicationResponse{Application: testApp}, nil
}

func (f *fakeAdmin) DeleteApplication(ctx context.Context, r *tokenv1.DeleteApplicationRequest) (*tokenv1.DeleteApplicationResponse, error) {
	if err := f.record(ctx, "DeleteApplication", r); err != nil {
		return nil, err
	}
	return &tokenv1.DeleteApplicationResponse{}, nil
}

func (f *fakeAdmin) AddKey(ctx context.Context, r *tokenv1.AddKeyRequest) (*tokenv1.AddKeyResponse, error) {
	if err := f.record(ctx, "AddKey", r); err != nil {
		return nil, err
	}
	return &tokenv1.AddKeyResponse{Key: testKey}, nil
}

func (f *fakeAdmin) ListKeys(ctx context.Context, r *tokenv1.ListKeysRequest) (*tokenv1.ListKeysResponse, error) {
	if err := f.record(ctx, "ListKeys", r); err != nil {
		return nil, err
	}
	return &tokenv1.ListKeysResponse{Keys: []*tokenv1.Key{testKey}}, nil
}

func (f *fakeAdmin) ActivateKey(ctx context.Context, r *tokenv1.ActivateKeyRequest) (*tokenv1.ActivateKeyResponse, error) {
	if err := f.record(ctx, "ActivateKey", r); err != nil {
		return nil, err
	}
	return &tokenv1.ActivateKeyResponse{Key: testKey, PreviousApiKeySid: "SKffffffffffffffffffffffffffffffff"}, nil
}

func (f *fakeAdmin) DeleteKey(ctx context.Context, r *tokenv1.DeleteKeyRequest) (*tokenv1.DeleteKeyResponse, error) {
	if err := f.record(ctx, "DeleteKey", r); err != nil {
		return nil, err
	}
	return &tokenv1.DeleteKeyResponse{}, nil
}

func (f *fakeAdmin) CreateCredential(ctx context.Context, r *tokenv1.CreateCredentialRequest) (*tokenv1.CreateCredentialResponse, error) {
	if err := f.record(ctx, "CreateCredential", r); err != nil {
		return nil, err
	}
	return &tokenv1.CreateCredentialResponse{
		Credential: &tokenv1.Credential{Name: r.GetName(), Groups: r.GetGroups(), CreatedAt: when},
		Token:      issuedCred,
	}, nil
}

func (f *fakeAdmin) ListCredentials(ctx context.Context, r *tokenv1.ListCredentialsRequest) (*tokenv1.ListCredentialsResponse, error) {
	if err := f.record(ctx, "ListCredentials", r); err != nil {
		return nil, err
	}
	return &tokenv1.ListCredentialsResponse{Credentials: []*tokenv1.Credential{testCred}}, nil
}

func (f *fakeAdmin) DeleteCredential(ctx context.Context, r *tokenv1.DeleteCredentialRequest) (*tokenv1.DeleteCredentialResponse, error) {
	if err := f.record(ctx, "DeleteCredential", r); err != nil {
		return nil, err
	}
	return &tokenv1.DeleteCredentialResponse{}, nil
}

func (f *fakeAdmin) Rekey(ctx context.Context, r *tokenv1.RekeyRequest) (*tokenv1.RekeyResponse, error) {
	if err := f.record(ctx, "Rekey", r); err != nil {
		return nil, err
	}
	return &tokenv1.RekeyResponse{Resealed: 3, PrimaryMasterKeyId: "mk2"}, nil
}

func (f *fakeAdmin) GetDefaultApplication(ctx context.Context, r *tokenv1.GetDefaultApplicationRequest) (*tokenv1.GetDefaultApplicationResponse, error) {
	if err := f.record(ctx, "GetDefaultApplication", r); err != nil {
		return nil, err
	}
	return &tokenv1.GetDefaultApplicationResponse{ApplicationSid: appSID, EffectiveApplicationSid: appSID}, nil
}

func (f *fakeAdmin) SetDefaultApplication(ctx context.Context, r *tokenv1.SetDefaultApplicationRequest) (*tokenv1.SetDefaultApplicationResponse, error) {
	if err := f.record(ctx, "SetDefaultApplication", r); err != nil {
		return nil, err
	}
	return &tokenv1.SetDefaultApplicationResponse{ApplicationSid: r.GetApplicationSid(), PreviousApplicationSid: "APffffffffffffffffffffffffffffffff"}, nil
}

// startFake serves a fakeAdmin on a real gRPC server on loopback.
func startFake(t *testing.T) (*fakeAdmin, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeAdmin{}
	srv := grpc.NewServer()
	tokenv1.RegisterAdminServiceServer(srv, fake)
	tokenv1.RegisterTokenServiceServer(srv, &fakeToken{f: fake})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return fake, lis.Addr().String()
}

type result struct {
	stdout, stderr string
	err            error
}

// output is everything tokenctl printed, the error as main prints it included.
func (r result) output() string {
	s := r.stdout + r.stderr
	if r.err != nil {
		s += "tokenctl: " + r.err.Error()
	}
	return s
}

// tokenctl runs the command against addr with env (nil: the admin token in
// TOKEND_ADMIN_TOKEN) and stdin (nil: empty).
func tokenctl(t *testing.T, addr string, env map[string]string, stdin io.Reader, args ...string) result {
	t.Helper()
	if env == nil {
		env = map[string]string{"TOKEND_ADMIN_TOKEN": adminToken}
	}
	env["TOKEND_ADDR"] = addr
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, stdin, &stdout, &stderr)
	return result{stdout.String(), stderr.String(), err}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeysAddSecretFromStdin(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{secret, secret},
		{secret + "\n", secret},
		{secret + "\r\n", secret},
		{secret + "\n\n", secret + "\n"}, // only one newline is dropped
		{" " + secret + " \n", " " + secret + " "},
	} {
		fake, addr := startFake(t)
		r := tokenctl(t, addr, nil, strings.NewReader(tc.in), "keys", "add", "--application", appSID, "--key", keySID, "--activate")
		if r.err != nil {
			t.Fatalf("keys add with %q on stdin: %v", tc.in, r.err)
		}
		calls := fake.recorded()
		if len(calls) != 1 {
			t.Fatalf("the server got %d calls, want 1", len(calls))
		}
		want := &tokenv1.AddKeyRequest{ApplicationSid: appSID, ApiKeySid: keySID, Secret: tc.want, Activate: true}
		if diff := cmp.Diff(want, calls[0].req, protocmp.Transform()); diff != "" {
			t.Errorf("stdin %q: AddKey request (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestKeysAddSecretFromFile(t *testing.T) {
	fake, addr := startFake(t)
	path := writeFile(t, secret+"\n")
	// Flags after the command in any order; stdin must not be read.
	r := tokenctl(t, addr, nil, strings.NewReader("not this one"),
		"keys", "add", "--secret-file", path, "--key", keySID, "--application", appSID)
	if r.err != nil {
		t.Fatal(r.err)
	}
	calls := fake.recorded()
	if len(calls) != 1 || calls[0].req.(*tokenv1.AddKeyRequest).GetSecret() != secret {
		t.Fatalf("calls = %v, want one AddKey with the secret of the file", calls)
	}
	if calls[0].req.(*tokenv1.AddKeyRequest).GetActivate() {
		t.Error("activate is set without --activate")
	}
}

func TestKeysAddRefusesEmptySecret(t *testing.T) {
	fake, addr := startFake(t)
	add := []string{"keys", "add", "--application", appSID, "--key", keySID}
	for name, r := range map[string]result{
		"empty stdin":       tokenctl(t, addr, nil, strings.NewReader(""), add...),
		"newline on stdin":  tokenctl(t, addr, nil, strings.NewReader("\n"), add...),
		"empty file":        tokenctl(t, addr, nil, nil, append(add, "--secret-file", writeFile(t, ""))...),
		"newline in a file": tokenctl(t, addr, nil, nil, append(add, "--secret-file", writeFile(t, "\r\n"))...),
		"missing file":      tokenctl(t, addr, nil, nil, append(add, "--secret-file", filepath.Join(t.TempDir(), "none"))...),
	} {
		if r.err == nil {
			t.Errorf("%s: keys add succeeded, want an error", name)
		}
	}
	if calls := fake.recorded(); len(calls) != 0 {
		t.Errorf("the server got %d calls, want none", len(calls))
	}
}

func TestKeysAddTakesNoSecretOnTheCommandLine(t *testing.T) {
	fake, addr := startFake(t)
	add := []string{"keys", "add", "--application", appSID, "--key", keySID}
	for _, extra := range [][]string{
		{"--secret", secret},
		{"--secret=" + secret},
		{"-secret", secret},
		{"--api-secret", secret},
		{secret},
		{"--", secret},
	} {
		r := tokenctl(t, addr, nil, strings.NewReader(secret), append(add, extra...)...)
		if r.err == nil {
			t.Errorf("keys add %v succeeded, want an error", extra)
		}
		if strings.Contains(r.output(), secret) {
			t.Errorf("keys add %v printed the secret:\n%s", extra, r.output())
		}
	}
	if calls := fake.recorded(); len(calls) != 0 {
		t.Errorf("the server got %d calls, want none", len(calls))
	}
	// The only flag that names the secret is --secret-file.
	fs := flag.NewFlagSet("keys add", flag.ContinueOnError)
	defineKeysAdd(&cli{}, fs)
	fs.VisitAll(func(f *flag.Flag) {
		if strings.Contains(f.Name, "secret") && f.Name != "secret-file" {
			t.Errorf("keys add has a flag --%s", f.Name)
		}
	})
}

func TestSecretNeverPrinted(t *testing.T) {
	fake, addr := startFake(t)
	add := []string{"keys", "add", "--application", appSID, "--key", keySID}
	runs := []result{
		tokenctl(t, addr, nil, strings.NewReader(secret+"\n"), add...),
		tokenctl(t, addr, nil, strings.NewReader(secret), append([]string{"--json"}, add...)...),
		tokenctl(t, addr, nil, nil, append(add, "--secret-file", writeFile(t, secret))...),
		tokenctl(t, addr, nil, nil, append(add, "--secret-file", secret)...),      // a secret typed as the path
		tokenctl(t, addr, map[string]string{}, strings.NewReader(secret), add...), // no admin token
	}
	fake.err = status.Error(codes.InvalidArgument, "the secret is too long")
	runs = append(runs, tokenctl(t, addr, nil, strings.NewReader(secret), add...))
	for i, r := range runs {
		if strings.Contains(r.output(), secret) {
			t.Errorf("run %d printed the secret:\n%s", i, r.output())
		}
	}
	if n := len(fake.recorded()); n != 4 {
		t.Errorf("the server got %d calls, want 4", n)
	}
}

func TestBearerTokenReachesServer(t *testing.T) {
	fake, addr := startFake(t)
	fileA := writeFile(t, "\n  token-from-flag-file \n")
	fileB := writeFile(t, "token-from-env-file\n")
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"TOKEND_ADMIN_TOKEN": adminToken}, nil, adminToken},
		{map[string]string{"TOKEND_ADMIN_TOKEN_FILE": fileB}, nil, "token-from-env-file"},
		{map[string]string{"TOKEND_ADMIN_TOKEN": adminToken, "TOKEND_ADMIN_TOKEN_FILE": fileB}, []string{"--admin-token-file", fileA}, "token-from-flag-file"},
		{map[string]string{"TOKEND_ADMIN_TOKEN": adminToken, "TOKEND_ADMIN_TOKEN_FILE": fileB}, nil, adminToken},
	} {
		n := len(fake.recorded())
		r := tokenctl(t, addr, tc.env, nil, append(tc.args, "apps", "list")...)
		if r.err != nil {
			t.Fatal(r.err)
		}
		calls := fake.recorded()[n:]
		if len(calls) != 1 {
			t.Fatalf("the server got %d calls, want 1", len(calls))
		}
		if got, want := calls[0].auth, []string{"Bearer " + tc.want}; !cmp.Equal(got, want) {
			t.Errorf("env %v, args %v: authorization = %q, want %q", tc.env, tc.args, got, want)
		}
		if strings.Contains(r.output(), tc.want) {
			t.Errorf("the admin token was printed:\n%s", r.output())
		}
	}

	// Without a token, or with an empty one, nothing is sent.
	n := len(fake.recorded())
	for _, env := range []map[string]string{{}, {"TOKEND_ADMIN_TOKEN_FILE": writeFile(t, " \n")}, {"TOKEND_ADMIN_TOKEN": " "}} {
		if r := tokenctl(t, addr, env, nil, "apps", "list"); r.err == nil {
			t.Errorf("env %v: apps list succeeded, want an error", env)
		}
	}
	if got := len(fake.recorded()) - n; got != 0 {
		t.Errorf("the server got %d calls without a token, want none", got)
	}
}

func TestAppsUpdateSetsOnlyGivenFields(t *testing.T) {
	fake, addr := startFake(t)
	for _, tc := range []struct {
		args []string
		want *tokenv1.UpdateApplicationRequest
	}{
		{[]string{"--name", "New name"},
			&tokenv1.UpdateApplicationRequest{ApplicationSid: appSID, FriendlyName: proto.String("New name")}},
		{[]string{"--max-ttl", "0", "--region", ""},
			&tokenv1.UpdateApplicationRequest{ApplicationSid: appSID, MaxTtlSeconds: proto.Int32(0), Region: proto.String("")}},
		{[]string{"--account", accountSID, "--reset-default-grants"},
			&tokenv1.UpdateApplicationRequest{ApplicationSid: appSID, AccountSid: proto.String(accountSID), ResetDefaultGrants: true}},
		{[]string{"--default-grants", `{"video":{"room":"r1"}}`, "--max-ttl=600"},
			&tokenv1.UpdateApplicationRequest{ApplicationSid: appSID, MaxTtlSeconds: proto.Int32(600),
				DefaultGrants: &tokenv1.Grants{Video: &tokenv1.VideoGrant{Room: "r1"}}}},
	} {
		n := len(fake.recorded())
		// Flags both before and after the SID, --json among them.
		args := append([]string{"apps", "update", "--json", appSID}, tc.args...)
		if r := tokenctl(t, addr, nil, nil, args...); r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		calls := fake.recorded()[n:]
		if len(calls) != 1 {
			t.Fatalf("%v: the server got %d calls, want 1", args, len(calls))
		}
		if diff := cmp.Diff(tc.want, calls[0].req, protocmp.Transform()); diff != "" {
			t.Errorf("%v: request (-want +got):\n%s", tc.args, diff)
		}
	}

	n := len(fake.recorded())
	for _, args := range [][]string{
		{"apps", "update", appSID},
		{"apps", "update", appSID, "--json"},
		{"apps", "update", appSID, "--default-grants", "{}", "--reset-default-grants"},
		{"apps", "update", appSID, "--default-grants", "not json"},
		{"apps", "update", appSID, "--max-ttl", "99999999999"},
		{"apps", "update", "--name", "x"},
	} {
		if r := tokenctl(t, addr, nil, nil, args...); r.err == nil {
			t.Errorf("%v succeeded, want an error", args)
		}
	}
	if got := len(fake.recorded()) - n; got != 0 {
		t.Errorf("the server got %d calls for invalid updates, want none", got)
	}
}

func TestJSONOutput(t *testing.T) {
	_, addr := startFake(t)
	for _, tc := range []struct {
		args []string
		into proto.Message
		want proto.Message
	}{
		{[]string{"--json", "apps", "list"}, &tokenv1.ListApplicationsResponse{},
			&tokenv1.ListApplicationsResponse{Applications: []*tokenv1.Application{testApp}}},
		{[]string{"apps", "show", appSID, "--json"}, &tokenv1.GetApplicationResponse{},
			&tokenv1.GetApplicationResponse{Application: testApp}},
		{[]string{"--json", "keys", "list", "--application", appSID}, &tokenv1.ListKeysResponse{},
			&tokenv1.ListKeysResponse{Keys: []*tokenv1.Key{testKey}}},
		{[]string{"--json", "rekey"}, &tokenv1.RekeyResponse{},
			&tokenv1.RekeyResponse{Resealed: 3, PrimaryMasterKeyId: "mk2"}},
		{[]string{"--json", "keys", "delete", "--application", appSID, "--key", keySID}, &tokenv1.DeleteKeyResponse{},
			&tokenv1.DeleteKeyResponse{}},
		{[]string{"credentials", "list", "--json"}, &tokenv1.ListCredentialsResponse{},
			&tokenv1.ListCredentialsResponse{Credentials: []*tokenv1.Credential{testCred}}},
	} {
		r := tokenctl(t, addr, nil, nil, tc.args...)
		if r.err != nil {
			t.Fatalf("%v: %v", tc.args, r.err)
		}
		if !json.Valid([]byte(r.stdout)) {
			t.Fatalf("%v: output is not JSON:\n%s", tc.args, r.stdout)
		}
		if err := protojson.Unmarshal([]byte(r.stdout), tc.into); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if diff := cmp.Diff(tc.want, tc.into, protocmp.Transform()); diff != "" {
			t.Errorf("%v: (-want +got):\n%s", tc.args, diff)
		}
	}
	// Proto names, not JSON names.
	r := tokenctl(t, addr, nil, nil, "--json", "apps", "show", appSID)
	if !strings.Contains(r.stdout, `"application_sid"`) || strings.Contains(r.stdout, "applicationSid") {
		t.Errorf("the JSON does not use the proto field names:\n%s", r.stdout)
	}
}

func TestServerErrorNamesTheCode(t *testing.T) {
	fake, addr := startFake(t)
	fake.err = status.Error(codes.NotFound, "no application AP1")
	r := tokenctl(t, addr, nil, nil, "apps", "show", "AP1")
	if r.err == nil {
		t.Fatal("apps show succeeded, want an error")
	}
	if got, want := r.err.Error(), "NotFound: no application AP1"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if status.Code(r.err) != codes.NotFound {
		t.Errorf("status.Code = %v, want NotFound", status.Code(r.err))
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	r := tokenctl(t, addr, nil, nil, "--timeout", "2s", "rekey")
	if code := status.Code(r.err); code != codes.Unavailable && code != codes.DeadlineExceeded {
		t.Errorf("rekey with no server: %v, want Unavailable", r.err)
	}
}

func TestCommands(t *testing.T) {
	fake, addr := startFake(t)
	for _, tc := range []struct {
		args   []string
		want   proto.Message
		output []string
	}{
		{[]string{"apps", "create", "--application", appSID, "--account", accountSID, "--name", "Support",
			"--default-grants", `{"voice":{"incoming":{"allow":true}}}`, "--max-ttl", "3600", "--region", "ie1"},
			&tokenv1.CreateApplicationRequest{ApplicationSid: appSID, AccountSid: accountSID, FriendlyName: "Support",
				MaxTtlSeconds: 3600, Region: "ie1",
				DefaultGrants: &tokenv1.Grants{Voice: &tokenv1.VoiceGrant{Incoming: &tokenv1.VoiceGrant_Incoming{Allow: true}}}},
			[]string{appSID, "Support?desk", "3600s", `"allow":true`, "2026-01-02T03:04:05Z"}},
		{[]string{"apps", "list"}, &tokenv1.ListApplicationsRequest{},
			[]string{"SID", "ACCOUNT", appSID, accountSID, keySID, "ie1"}},
		{[]string{"apps", "show", appSID}, &tokenv1.GetApplicationRequest{ApplicationSid: appSID},
			[]string{"DEFAULT GRANTS", "ie1"}},
		{[]string{"apps", "delete", appSID, "--force"}, &tokenv1.DeleteApplicationRequest{ApplicationSid: appSID, Force: true},
			[]string{"deleted application " + appSID}},
		{[]string{"keys", "list", "--application", appSID}, &tokenv1.ListKeysRequest{ApplicationSid: appSID},
			[]string{"SID", "STATE", "ADDED", "ACTIVATED", "LAST SIGNED", "OUTSTANDING UNTIL", "MASTER KEY", keySID, "active", "mk1"}},
		{[]string{"keys", "activate", "--application", appSID, "--key", keySID},
			&tokenv1.ActivateKeyRequest{ApplicationSid: appSID, ApiKeySid: keySID},
			[]string{keySID, "retired SKffffffffffffffffffffffffffffffff"}},
		{[]string{"keys", "delete", "--application", appSID, "--key", keySID},
			&tokenv1.DeleteKeyRequest{ApplicationSid: appSID, ApiKeySid: keySID},
			[]string{"deleted key " + keySID}},
		{[]string{"rekey"}, &tokenv1.RekeyRequest{}, []string{"3", "mk2"}},
		{[]string{"apps", "default"}, &tokenv1.GetDefaultApplicationRequest{}, []string{"DEFAULT APPLICATION  " + appSID}},
		{[]string{"apps", "default", appSID}, &tokenv1.SetDefaultApplicationRequest{ApplicationSid: appSID},
			[]string{"default application " + appSID + " (was APffffffffffffffffffffffffffffffff)"}},
		{[]string{"credentials", "list"}, &tokenv1.ListCredentialsRequest{},
			[]string{"NAME", "GROUPS", "CREATED", "billing-svc", "backend,billing", "2026-01-02T03:04:05Z"}},
		{[]string{"credentials", "delete", "billing-svc"}, &tokenv1.DeleteCredentialRequest{Name: "billing-svc"},
			[]string{"revoked credential billing-svc"}},
	} {
		n := len(fake.recorded())
		r := tokenctl(t, addr, nil, nil, tc.args...)
		if r.err != nil {
			t.Fatalf("%v: %v", tc.args, r.err)
		}
		calls := fake.recorded()[n:]
		if len(calls) != 1 {
			t.Fatalf("%v: the server got %d calls, want 1", tc.args, len(calls))
		}
		if diff := cmp.Diff(tc.want, calls[0].req, protocmp.Transform()); diff != "" {
			t.Errorf("%v: request (-want +got):\n%s", tc.args, diff)
		}
		for _, s := range tc.output {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, s, r.stdout)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	fake, addr := startFake(t)
	for _, args := range [][]string{
		{},
		{"nope"},
		{"apps"},
		{"apps", "nope"},
		{"apps", "create", "--account", accountSID},
		{"apps", "create", "--application", appSID},
		{"apps", "show"},
		{"apps", "show", appSID, "extra"},
		{"apps", "list", "extra"},
		{"keys", "list"},
		{"keys", "activate", "--application", appSID},
		{"keys", "delete", "--key", keySID},
		{"rekey", "--bogus"},
		{"credentials"},
		{"credentials", "nope"},
		{"credentials", "create"},
		{"credentials", "create", "a", "b"},
		{"credentials", "list", "extra"},
		{"credentials", "delete"},
		{"mint", "extra"},
		{"mint", "--explain", "--token-only"},
		{"verify", "a", "b"},
		{"verify"}, // nothing on stdin
	} {
		if r := tokenctl(t, addr, nil, nil, args...); r.err == nil {
			t.Errorf("%v succeeded, want an error", args)
		}
	}
	if calls := fake.recorded(); len(calls) != 0 {
		t.Errorf("the server got %d calls, want none", len(calls))
	}
	r := tokenctl(t, addr, nil, nil, "-h")
	if !errors.Is(r.err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", r.err)
	}
}

func TestUsageListsEveryCommandAndFlag(t *testing.T) {
	var usage bytes.Buffer
	c := &cli{getenv: func(string) string { return "" }}
	writeUsage(&usage, globalFlags(c))
	check := func(fs *flag.FlagSet, cmd string) {
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(usage.String(), "--"+f.Name+" ") {
				t.Errorf("the usage lacks --%s of %s", f.Name, cmd)
			}
		})
	}
	check(globalFlags(c), "tokenctl")
	for _, cmd := range commands() {
		if !strings.Contains(usage.String(), "\n  "+cmd.name) {
			t.Errorf("the usage lacks the command %q", cmd.name)
		}
		check(cmdFlags(cmd), cmd.name)
	}
}

func TestCredentialsCreate(t *testing.T) {
	fake, addr := startFake(t)
	r := tokenctl(t, addr, nil, nil, "credentials", "create", "billing-svc", "--group", "backend", "--group=billing")
	if r.err != nil {
		t.Fatal(r.err)
	}
	calls := fake.recorded()
	if len(calls) != 1 {
		t.Fatalf("the server got %d calls, want 1", len(calls))
	}
	want := &tokenv1.CreateCredentialRequest{Name: "billing-svc", Groups: []string{"backend", "billing"}}
	if diff := cmp.Diff(want, calls[0].req, protocmp.Transform()); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if got, want := calls[0].auth, []string{"Bearer " + adminToken}; !cmp.Equal(got, want) {
		t.Errorf("authorization = %q, want the admin token", got)
	}
	// The token alone on stdout, once; the details on stderr.
	if r.stdout != issuedCred+"\n" {
		t.Errorf("stdout = %q, want the token alone", r.stdout)
	}
	if n := strings.Count(r.output(), issuedCred); n != 1 {
		t.Errorf("the token was printed %d times, want once:\n%s", n, r.output())
	}
	for _, s := range []string{"NAME", "GROUPS", "CREATED", "billing-svc", "backend,billing", "2026-01-02T03:04:05Z", "once"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}

	// --json: the whole response, token included, once.
	r = tokenctl(t, addr, nil, nil, "--json", "credentials", "create", "ops")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got tokenv1.CreateCredentialResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	wantResp := &tokenv1.CreateCredentialResponse{Credential: &tokenv1.Credential{Name: "ops", CreatedAt: when}, Token: issuedCred}
	if diff := cmp.Diff(wantResp, &got, protocmp.Transform()); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
	if n := strings.Count(r.output(), issuedCred); n != 1 {
		t.Errorf("--json printed the token %d times, want once", n)
	}

	// list and delete never print a token.
	for _, args := range [][]string{{"credentials", "list"}, {"--json", "credentials", "list"}, {"credentials", "delete", "ops"}} {
		r := tokenctl(t, addr, nil, nil, args...)
		if r.err != nil {
			t.Fatalf("%v: %v", args, r.err)
		}
		if strings.Contains(r.output(), "tkd_") {
			t.Errorf("%v printed a token:\n%s", args, r.output())
		}
	}
}

func TestCredentialsRefuseATokenAsName(t *testing.T) {
	fake, addr := startFake(t)
	for _, args := range [][]string{
		{"credentials", "delete", callerCred},
		{"credentials", "create", callerCred},
		{"credentials", "create", "svc", "--group", callerCred},
		{"credentials", "delete", testJWT},
		{"credentials", "delete", "svc", callerCred},
	} {
		r := tokenctl(t, addr, nil, nil, args...)
		if r.err == nil {
			t.Errorf("%v succeeded, want an error", args)
		}
		if strings.Contains(r.output(), callerCred) || strings.Contains(r.output(), testJWT) {
			t.Errorf("%v printed the token:\n%s", args, r.output())
		}
	}
	if calls := fake.recorded(); len(calls) != 0 {
		t.Errorf("the server got %d calls, want none", len(calls))
	}
}

func TestCallerCredentialReachesServer(t *testing.T) {
	fake, addr := startFake(t)
	flagFile := writeFile(t, "\n  "+callerCred+" \n")
	envFile := writeFile(t, "env-file-"+callerCred+"\n")
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string // "": no authorization
	}{
		{map[string]string{}, nil, ""},
		{map[string]string{"TOKEND_ADMIN_TOKEN": adminToken}, nil, ""}, // never the admin token
		{map[string]string{"TOKEND_CREDENTIAL": " " + callerCred + "\n"}, nil, callerCred},
		{map[string]string{"TOKEND_CREDENTIAL_FILE": envFile}, nil, "env-file-" + callerCred},
		{map[string]string{"TOKEND_CREDENTIAL": "env-" + callerCred, "TOKEND_CREDENTIAL_FILE": envFile}, nil, "env-" + callerCred},
		{map[string]string{"TOKEND_CREDENTIAL": "env-" + callerCred, "TOKEND_CREDENTIAL_FILE": envFile},
			[]string{"--credential-file", flagFile}, callerCred},
	} {
		for _, cmd := range [][]string{
			{"mint", "--identity", "alice"},
			{"mint", "--explain"},
			{"verify", testJWT},
			{"verify"},
		} {
			args := append(append([]string(nil), tc.args...), cmd...)
			n := len(fake.recorded())
			r := tokenctl(t, addr, tc.env, strings.NewReader(testJWT+"\n"), args...)
			if r.err != nil {
				t.Fatalf("env %v, %v: %v", tc.env, args, r.err)
			}
			calls := fake.recorded()[n:]
			if len(calls) != 1 {
				t.Fatalf("env %v, %v: the server got %d calls, want 1", tc.env, args, len(calls))
			}
			var want []string
			if tc.want != "" {
				want = []string{"Bearer " + tc.want}
			}
			if got := calls[0].auth; !cmp.Equal(got, want, cmpopts.EquateEmpty()) {
				t.Errorf("env %v, %v: authorization = %q, want %q", tc.env, args, got, want)
			}
			if strings.Contains(r.output(), callerCred) {
				t.Errorf("env %v, %v printed the credential:\n%s", tc.env, args, r.output())
			}
		}
	}

	// A credential that cannot be read stops the call.
	n := len(fake.recorded())
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{map[string]string{"TOKEND_CREDENTIAL": " \n"}, nil},
		{map[string]string{"TOKEND_CREDENTIAL_FILE": writeFile(t, " \n")}, nil},
		{map[string]string{"TOKEND_CREDENTIAL_FILE": filepath.Join(t.TempDir(), "none")}, nil},
		{map[string]string{}, []string{"--credential-file", filepath.Join(t.TempDir(), "none")}},
		{map[string]string{"TOKEND_CREDENTIAL": "bad\x01token"}, nil},
	} {
		for _, cmd := range [][]string{{"mint"}, {"verify", testJWT}} {
			args := append(append([]string(nil), tc.args...), cmd...)
			if r := tokenctl(t, addr, tc.env, nil, args...); r.err == nil {
				t.Errorf("env %v, %v succeeded, want an error", tc.env, args)
			}
		}
	}
	if got := len(fake.recorded()) - n; got != 0 {
		t.Errorf("the server got %d calls without a readable credential, want none", got)
	}
}

func TestCallerCredentialNeverPrinted(t *testing.T) {
	fake, addr := startFake(t)
	env := func() map[string]string { return map[string]string{"TOKEND_CREDENTIAL": callerCred} }
	runs := map[string]result{
		"mint":    tokenctl(t, addr, env(), nil, "mint"),
		"explain": tokenctl(t, addr, env(), nil, "mint", "--explain"),
		"json":    tokenctl(t, addr, env(), nil, "--json", "mint", "--explain"),
		"verify":  tokenctl(t, addr, env(), strings.NewReader(testJWT), "verify"),
		// The credential in the wrong places.
		"credential as the file": tokenctl(t, addr, map[string]string{}, nil, "--credential-file", callerCred, "mint"),
		"credential as env file": tokenctl(t, addr, map[string]string{"TOKEND_CREDENTIAL_FILE": callerCred}, nil, "verify", testJWT),
		"--credential flag":      tokenctl(t, addr, map[string]string{}, nil, "--credential", callerCred, "mint"),
		"--credential= flag":     tokenctl(t, addr, map[string]string{}, nil, "mint", "--credential="+callerCred),
		"mint argument":          tokenctl(t, addr, map[string]string{}, nil, "mint", callerCred),
		"verify arguments":       tokenctl(t, addr, map[string]string{}, nil, "verify", testJWT, callerCred),
	}
	// A server that quotes what it got.
	fake.err = status.Error(codes.Unauthenticated, "unknown credential "+callerCred)
	runs["mint refused"] = tokenctl(t, addr, env(), nil, "mint")
	runs["verify refused"] = tokenctl(t, addr, env(), nil, "verify", testJWT)
	for name, r := range runs {
		if strings.Contains(r.output(), callerCred) {
			t.Errorf("%s printed the credential:\n%s", name, r.output())
		}
	}
	for _, name := range []string{"mint refused", "verify refused"} {
		r := runs[name]
		if status.Code(r.err) != codes.Unauthenticated || !strings.Contains(r.err.Error(), "unknown credential [REDACTED]") {
			t.Errorf("%s: error = %v, want the Unauthenticated status, redacted", name, r.err)
		}
	}

	// No flag takes the credential itself.
	c := &cli{getenv: func(string) string { return "" }}
	sets := []*flag.FlagSet{globalFlags(c)}
	for _, cmd := range commands() {
		sets = append(sets, cmdFlags(cmd))
	}
	for _, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) {
			if strings.Contains(f.Name, "credential") && f.Name != "credential-file" {
				t.Errorf("%s has a flag --%s", fs.Name(), f.Name)
			}
		})
	}
}

func TestMintExplain(t *testing.T) {
	fake, addr := startFake(t)
	r := tokenctl(t, addr, map[string]string{}, nil, "mint", "--explain", "--identity", "alice", "--ttl", "600")
	if r.err != nil {
		t.Fatal(r.err)
	}
	calls := fake.recorded()
	if len(calls) != 1 {
		t.Fatalf("the server got %d calls, want 1", len(calls))
	}
	want := &tokenv1.MintRequest{Identity: proto.String("alice"), TtlSeconds: proto.Int32(600), ValidateOnly: true}
	if diff := cmp.Diff(want, calls[0].req, protocmp.Transform()); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	for _, s := range []string{
		"ALLOWED", "yes", "RULE", "backend-voice", "PRINCIPAL", "credential:billing-svc", "TOKEN SIZE", "417 bytes",
		"header:", `"cty": "twilio-fpa;v=1"`, "claims:", `"identity": "alice"`, `"iss": "` + keySID + `"`, `"exp": 1767326400`,
	} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("output lacks %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, testJWT) {
		t.Errorf("--explain printed a token:\n%s", r.stdout)
	}

	// --json: the MintResponse with its decision.
	r = tokenctl(t, addr, map[string]string{}, nil, "--json", "mint", "--explain")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got tokenv1.MintResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if !got.GetDecision().GetAllowed() || got.GetDecision().GetRule() != "backend-voice" || got.GetToken() != "" {
		t.Errorf("JSON = %v, want the decision and no token", &got)
	}

	// Without --explain, validate_only stays unset and a token is printed.
	n := len(fake.recorded())
	r = tokenctl(t, addr, map[string]string{}, nil, "mint")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if calls := fake.recorded()[n:]; len(calls) != 1 || calls[0].req.(*tokenv1.MintRequest).GetValidateOnly() {
		t.Errorf("calls = %v, want one Mint without validate_only", calls)
	}
	if !strings.HasPrefix(r.stdout, testJWT+"\n") || !strings.Contains(r.stdout, `"identity": "alice"`) {
		t.Errorf("mint output:\n%s", r.stdout)
	}
}

func TestVerify(t *testing.T) {
	fake, addr := startFake(t)
	for _, tc := range []struct {
		stdin string
		args  []string
	}{
		{testJWT + "\n", []string{"verify"}},
		{"  " + testJWT + "\r\n", []string{"verify", "-"}},
		{"not this", []string{"verify", testJWT}},
	} {
		n := len(fake.recorded())
		r := tokenctl(t, addr, map[string]string{}, strings.NewReader(tc.stdin), tc.args...)
		if r.err != nil {
			t.Fatalf("%v: %v", tc.args, r.err)
		}
		calls := fake.recorded()[n:]
		if len(calls) != 1 {
			t.Fatalf("%v: the server got %d calls, want 1", tc.args, len(calls))
		}
		if diff := cmp.Diff(&tokenv1.VerifyRequest{Token: testJWT}, calls[0].req, protocmp.Transform()); diff != "" {
			t.Errorf("%v: request (-want +got):\n%s", tc.args, diff)
		}
		for _, s := range []string{
			"VALID", "yes", "API KEY", keySID + " (active)", "APPLICATION", appSID, "EXPIRES", "2026-01-02T04:00:00Z",
			"header:", `"alg": "HS256"`, "claims:", `"identity": "alice"`,
		} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, s, r.stdout)
			}
		}
		if strings.Contains(r.output(), testJWT) {
			t.Errorf("%v printed the token:\n%s", tc.args, r.output())
		}
	}

	// A token Twilio would refuse: the code and reason, and exit status 1.
	invalid := &tokenv1.VerifyResponse{
		TwilioErrorCode: 20104, Reason: "the token expired 3m0s ago", ApiKeySid: keySID,
		Header: mustStruct(testHeader), ExpiresAt: when,
	}
	fake.mu.Lock()
	fake.verify = invalid
	fake.mu.Unlock()
	r := tokenctl(t, addr, map[string]string{}, strings.NewReader(testJWT), "verify")
	if r.err == nil || !strings.Contains(r.err.Error(), "20104") {
		t.Errorf("verify of an invalid token: %v, want an error naming 20104", r.err)
	}
	for _, s := range []string{"VALID", "no", "TWILIO ERROR", "20104", "REASON", "the token expired 3m0s ago",
		keySID + " (not a key tokend holds)", "expired", "claims: -"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("output lacks %q:\n%s", s, r.stdout)
		}
	}
	r = tokenctl(t, addr, map[string]string{}, strings.NewReader(testJWT), "verify", "--json")
	if r.err == nil {
		t.Error("verify --json of an invalid token succeeded, want an error")
	}
	var got tokenv1.VerifyResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r.stdout)
	}
	if diff := cmp.Diff(invalid, &got, protocmp.Transform()); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
}

// TestVersion: tokenctl version prints its version and commit without
// calling tokend (there is none at the address).
func TestVersion(t *testing.T) {
	r := tokenctl(t, "127.0.0.1:1", nil, nil, "version")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.HasPrefix(r.stdout, "tokenctl ") || !strings.Contains(r.stdout, "\ncommit: ") || !strings.Contains(r.stdout, "\ngo: go1.") {
		t.Errorf("tokenctl version printed:\n%s", r.stdout)
	}
	if r := tokenctl(t, "127.0.0.1:1", nil, nil, "version", "x"); r.err == nil {
		t.Error("tokenctl version x = nil, want an error")
	}
}
