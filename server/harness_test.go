package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// harness is a real tokend (real store in a temp dir, real interceptor
// chain) reached over bufconn for gRPC and over an httptest server for
// REST.
type harness struct {
	srv     *server.Server
	conn    *grpc.ClientConn
	token   tokenv1.TokenServiceClient
	httpURL string
	dataDir string
	// authz, if set, is sent as the Authorization header of admin API
	// calls; callerAuthz of the others (mint, verify).
	authz, callerAuthz string
	// policyDir holds the policy file, for tests that rewrite it.
	policyDir string
}

// testLogger discards logs unless -v is given.
func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newHarness(t *testing.T, cfg server.Config) *harness {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.MasterKey == "" && cfg.MasterKeyFile == "" {
		cfg.MasterKey = base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx := context.Background()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	go srv.GRPCServer().Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	hs := httptest.NewServer(srv.HTTPHandler())
	t.Cleanup(func() {
		hs.Close()
		conn.Close()
		srv.GRPCServer().Stop()
		srv.Close()
	})
	return &harness{srv: srv, conn: conn, token: tokenv1.NewTokenServiceClient(conn), httpURL: hs.URL, dataDir: cfg.DataDir}
}

// do sends a REST request and returns the status and the decoded JSON body.
func (h *harness) do(t *testing.T, method, path, contentType, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, h.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch {
	case h.authz != "" && isAdminPath(path):
		req.Header.Set("Authorization", h.authz)
	case h.callerAuthz != "" && !isAdminPath(path):
		req.Header.Set("Authorization", h.callerAuthz)
	}
	code, raw := h.doRaw(t, req)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: status %d, body is not a JSON object: %q", method, path, code, raw)
	}
	return code, out
}

func (h *harness) doRaw(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

// decodeJWT splits a token and decodes its header and claims.
func decodeJWT(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("token part %d is not unpadded base64url: %v", i, err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatalf("token part %d is not JSON: %v", i, err)
		}
	}
	return header, claims
}

// verifyJWT checks the signature with golang-jwt, as a Twilio-side
// verifier would, and returns the claims it parsed.
func verifyJWT(t *testing.T, tok, secret string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil || !parsed.Valid {
		t.Fatalf("golang-jwt rejects the token: %v", err)
	}
	return claims
}

func isAdminPath(p string) bool {
	for _, prefix := range []string{"/v1/applications", "/v1/keyring", "/v1/credentials", "/v1/default-application"} {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}
