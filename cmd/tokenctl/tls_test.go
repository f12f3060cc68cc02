package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokend/tokend/server"
)

// testPKI is a CA with the files of a server and a client certificate.
type testPKI struct {
	dir                                      string
	caFile, srvCert, srvKey, cliCert, cliKey string
	otherCA                                  string // a CA that signed nothing here
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	write := func(name string, blocks ...*pem.Block) string {
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert, key, der
	}
	ca, caKey, caDER := newCA("test CA")
	_, _, otherDER := newCA("other CA")
	p.caFile = write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.otherCA = write("other-ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: otherDER})
	issue := func(name string, serial int64, uri string, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if uri != "" {
			u, _ := url.Parse(uri)
			tmpl.URIs = []*url.URL{u}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", &pem.Block{Type: "CERTIFICATE", Bytes: der}), write(name+".key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	p.srvCert, p.srvKey = issue("server", 2, "", x509.ExtKeyUsageServerAuth)
	p.cliCert, p.cliKey = issue("client", 3, "spiffe://test/backend", x509.ExtKeyUsageClientAuth)
	return p
}

// startTLSTokend serves a real tokend over TLS with a client CA (mutual
// TLS for the callers that present a certificate), a policy that lets
// spiffe://test/backend mint for alice, and the admin token; it returns
// the gRPC and REST addresses.
func startTLSTokend(t *testing.T, p *testPKI) (grpcAddr, httpAddr string) {
	t.Helper()
	policy := filepath.Join(p.dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(`rules:
  - name: mtls-backend
    principals: ["spiffe://test/backend"]
    applications: ["*"]
    identities: {list: ["alice"]}
    grants: {voice: {outgoing: true}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), server.Config{
		DataDir: t.TempDir(), MasterKey: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PolicyFile: policy, AdminToken: adminToken,
		TLSCertFile: p.srvCert, TLSKeyFile: p.srvKey, TLSClientCAFile: p.caFile,
		Seed: server.Seed{AccountSID: accountSID, APIKey: keySID, APISecret: secret, TwiMLAppSID: appSID},
	})
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLn, httpLn) }()
	t.Cleanup(func() { stop(); <-done })
	return grpcLn.Addr().String(), httpLn.Addr().String()
}

// TestTLS talks to a real tokend serving TLS and mutual TLS, and checks
// what tokenctl says when the address answers something else than it
// speaks.
func TestTLS(t *testing.T) {
	p := newTestPKI(t)
	tlsAddr, restAddr := startTLSTokend(t, p)
	_, plainAddr := startFake(t)
	http1 := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(http1.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothingAddr := closed.Addr().String()
	closed.Close()

	withEnv := func(kv ...string) map[string]string {
		env := map[string]string{"TOKEND_ADMIN_TOKEN": adminToken}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	for _, tc := range []struct {
		name string
		addr string
		env  map[string]string
		args []string
		// code is the call's gRPC code (OK: it succeeded); want and
		// wantNot are in its output.
		code    codes.Code
		want    []string
		wantNot []string
	}{
		{name: "admin over TLS", addr: tlsAddr, args: []string{"--tls", "--ca-file", p.caFile, "apps", "list"},
			want: []string{appSID}},
		{name: "ca-file implies TLS", addr: tlsAddr, args: []string{"--ca-file", p.caFile, "apps", "show", appSID},
			want: []string{appSID, accountSID}},
		{name: "env TOKENCTL_TLS and TOKENCTL_CA_FILE", addr: tlsAddr, env: withEnv("TOKENCTL_TLS", "true", "TOKENCTL_CA_FILE", p.caFile),
			args: []string{"apps", "list"}, want: []string{appSID}},
		{name: "server name", addr: strings.Replace(tlsAddr, "127.0.0.1", "localhost", 1), args: []string{"--ca-file", p.caFile, "--server-name", "localhost", "apps", "list"},
			want: []string{appSID}},
		{name: "mint over mutual TLS", addr: tlsAddr, env: map[string]string{},
			args: []string{"--ca-file", p.caFile, "--cert-file", p.cliCert, "--key-file", p.cliKey, "mint", "--identity", "alice"},
			want: []string{`"identity": "alice"`, `"iss": "` + keySID + `"`}},
		{name: "mutual TLS from env", addr: tlsAddr, env: withEnv("TOKENCTL_CA_FILE", p.caFile, "TOKENCTL_CERT_FILE", p.cliCert, "TOKENCTL_KEY_FILE", p.cliKey),
			args: []string{"mint", "--identity", "alice", "--explain"}, want: []string{"mtls-backend", "spiffe://test/backend"}},
		{name: "mint without the client certificate", addr: tlsAddr, env: map[string]string{},
			args: []string{"--ca-file", p.caFile, "mint", "--identity", "alice"}, code: codes.Unauthenticated},
		{name: "plain to TLS", addr: tlsAddr, args: []string{"apps", "list"}, code: codes.Unavailable,
			want: []string{tlsAddr + " answers TLS and tokenctl spoke plain gRPC: add --tls"}},
		{name: "TLS with an unknown CA", addr: tlsAddr, args: []string{"--ca-file", p.otherCA, "apps", "list"}, code: codes.Unavailable,
			want: []string{"certificate signed by unknown authority", tlsAddr + " answers TLS but the connection failed: check --ca-file"}},
		{name: "TLS without a CA file", addr: tlsAddr, args: []string{"--tls", "apps", "list"}, code: codes.Unavailable,
			want: []string{"check --ca-file"}},
		{name: "TLS to plain gRPC", addr: plainAddr, args: []string{"--tls", "apps", "list"}, code: codes.Unavailable,
			want: []string{plainAddr + " answers plain gRPC, without TLS: drop --tls"}},
		{name: "plain to the REST port over TLS", addr: restAddr, args: []string{"apps", "list"}, code: codes.Unavailable,
			want: []string{restAddr + " answers TLS"}},
		{name: "TLS to the REST port", addr: restAddr, args: []string{"--ca-file", p.caFile, "apps", "list"}, code: codes.Unauthenticated,
			want: []string{restAddr + " answers HTTP, not gRPC (tokend's REST port, --http-addr?): --addr takes tokend's gRPC address"}},
		{name: "plain to HTTP/1", addr: http1.Listener.Addr().String(), args: []string{"apps", "list"}, code: codes.Unavailable,
			want: []string{" answers plain HTTP/1 (tokend's REST port, or another server?): --addr takes tokend's gRPC address"}},
		{name: "TLS to HTTP/1", addr: http1.Listener.Addr().String(), args: []string{"--tls", "apps", "list"}, code: codes.Unavailable,
			want: []string{" answers plain HTTP/1"}},
		{name: "nothing", addr: nothingAddr, args: []string{"--tls", "apps", "list"}, code: codes.Unavailable,
			want: []string{"nothing answers at " + nothingAddr}},
		{name: "cert without key", addr: tlsAddr, args: []string{"--cert-file", p.cliCert, "apps", "list"},
			code: codes.Unknown, want: []string{"--cert-file and --key-file go together"}},
		{name: "CA file not PEM", addr: tlsAddr, args: []string{"--ca-file", p.srvKey, "apps", "list"},
			code: codes.Unknown, want: []string{"no PEM certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = withEnv()
			}
			r := tokenctl(t, tc.addr, env, nil, append([]string{"--timeout", "5s"}, tc.args...)...)
			out := r.output()
			if got := status.Code(r.err); got != tc.code {
				t.Fatalf("code = %v, want %v; output:\n%s", got, tc.code, out)
			}
			for _, s := range tc.want {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if strings.Contains(out, adminToken) {
				t.Errorf("output carries the admin token")
			}
		})
	}
}
