package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// testCA issues certificates for the TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for the given SANs.
func (ca *testCA) issue(t *testing.T, serial int64, dns []string, uri string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: dns, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestTLSAndMutualTLS serves both listeners over TLS with a client CA: a
// service presenting a client certificate is the principal in its URI SAN
// and mints under the policy; a caller without one is refused; HTTPS
// serves the REST API.
func TestTLSAndMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCert, srvKey := ca.issue(t, 2, []string{"localhost"}, "", x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, 3, nil, "spiffe://test/backend", x509.ExtKeyUsageClientAuth)
	policyFile := write("policy.yaml", []byte(`rules:
  - name: mtls-backend
    principals: ["spiffe://test/backend"]
    applications: ["*"]
    identities: {list: ["alice"]}
    grants: {voice: {outgoing: true}}
`))
	srv, err := server.New(context.Background(), server.Config{
		DataDir: dir, MasterKey: keyringText(7), Logger: testLogger(t), PolicyFile: policyFile,
		TLSCertFile: write("srv.pem", srvCert), TLSKeyFile: write("srv.key", srvKey), TLSClientCAFile: write("ca.pem", ca.pem),
		Seed: server.Seed{AccountSID: testAccount, APIKey: testKey, APISecret: testSecret, TwiMLAppSID: testApp},
	})
	if err != nil {
		t.Fatal(err)
	}
	grpcLn, _ := net.Listen("tcp", "127.0.0.1:0")
	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, grpcLn, httpLn) }()
	t.Cleanup(func() { stop(); <-done })

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.pem)
	pair, err := tls.X509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(withCert bool) tokenv1.TokenServiceClient {
		cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}
		if withCert {
			cfg.Certificates = []tls.Certificate{pair}
		}
		conn, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return tokenv1.NewTokenServiceClient(conn)
	}
	resp, err := dial(true).Mint(context.Background(), &tokenv1.MintRequest{Identity: protoString("alice")})
	if err != nil {
		t.Fatalf("Mint over mutual TLS = %v", err)
	}
	verifyJWT(t, resp.GetToken(), testSecret)
	if _, err := dial(true).Mint(context.Background(), &tokenv1.MintRequest{Identity: protoString("bob")}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Mint(bob) over mutual TLS = %v, want PermissionDenied (the policy lists alice only)", err)
	}
	if _, err := dial(false).Mint(context.Background(), &tokenv1.MintRequest{Identity: protoString("alice")}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Mint over TLS without a client certificate = %v, want Unauthenticated", err)
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{pair}}}}
	r, err := hc.Post("https://"+httpLn.Addr().String()+"/token", "application/json", strings.NewReader(`{"identity":"alice"}`))
	if err != nil {
		t.Fatalf("POST /token over HTTPS: %v", err)
	}
	defer r.Body.Close()
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	if r.StatusCode != 200 || body["identity"] != "alice" {
		t.Errorf("POST /token over HTTPS with a client certificate = %d %v, want a token for alice", r.StatusCode, body)
	}
	// Plaintext HTTP to the TLS listener is refused by Go's TLS server.
	if pr, err := http.Get("http://" + httpLn.Addr().String() + "/token"); err == nil {
		pr.Body.Close()
		if pr.StatusCode != http.StatusBadRequest {
			t.Errorf("plaintext GET /token on the TLS listener = %d, want 400", pr.StatusCode)
		}
	}
}
