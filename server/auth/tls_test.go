package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// testCA issues certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// issue returns a leaf certificate and key, PEM-encoded.
func (ca *testCA) issue(t *testing.T, serial int64, client bool, dns []string, uris ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "leaf"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     dns,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func (ca *testCA) clientCert(t *testing.T, dns []string, uris ...string) tls.Certificate {
	t.Helper()
	c, k := ca.issue(t, 1000, true, dns, uris...)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// writeFile writes a file and moves its modification time on, so that a
// rewrite is seen whatever the file system's timestamp granularity.
func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	var mod time.Time
	if fi, err := os.Stat(name); err == nil {
		mod = fi.ModTime()
	}
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if next := mod.Add(time.Second); !mod.IsZero() {
		if err := os.Chtimes(name, next, next); err != nil {
			t.Fatal(err)
		}
	}
}

type tlsFiles struct{ cert, key, ca string }

func writeServerFiles(t *testing.T, dir string, ca *testCA, serial int64, clientCA *testCA) tlsFiles {
	t.Helper()
	f := tlsFiles{filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")}
	c, k := ca.issue(t, serial, false, []string{"localhost"})
	writeFile(t, f.cert, c)
	writeFile(t, f.key, k)
	writeFile(t, f.ca, clientCA.pem)
	return f
}

// serveHTTPS serves h over TLS with cfg on a loopback port.
func serveHTTPS(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

// getAs GETs u presenting cert (if any) and trusting ca; a fresh
// connection each time.
func getAs(t *testing.T, u string, ca *testCA, cert *tls.Certificate) (int, string, error) {
	t.Helper()
	tc := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
	if cert != nil {
		// Present the certificate even when the server's acceptable CAs do
		// not include its issuer (Go's client would then send none).
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestMTLSOverHTTP(t *testing.T) {
	serverCA, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	f := writeServerFiles(t, t.TempDir(), serverCA, 100, clientCA)
	cfg, err := NewTLSConfig(f.cert, f.key, f.ca, tls.VerifyClientCertIfGiven)
	if err != nil {
		t.Fatal(err)
	}
	a := mustNew(t, Config{})
	u := serveHTTPS(t, cfg, a.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, whoAmI(r.Context()))
	})))

	backend := clientCA.clientCert(t, []string{"backend.test"}, "spiffe://test/backend")
	worker := clientCA.clientCert(t, []string{"worker.test"})
	stranger := otherCA.clientCert(t, []string{"evil.test"}, "spiffe://test/backend")

	code, body, err := getAs(t, u+"/v1/token", serverCA, &backend)
	if err != nil || code != 200 || body != `mtls "spiffe://test/backend"` {
		t.Fatalf("URI SAN client: %d %q %v", code, body, err)
	}
	code, body, err = getAs(t, u+"/v1/token", serverCA, &worker)
	if err != nil || code != 200 || body != `mtls "worker.test"` {
		t.Fatalf("DNS SAN client: %d %q %v", code, body, err)
	}
	code, _, err = getAs(t, u+"/v1/token", serverCA, nil)
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("no client certificate: %d %v", code, err)
	}
	if _, _, err = getAs(t, u+"/v1/token", serverCA, &stranger); err == nil {
		t.Fatal("a client certificate from another CA was accepted")
	}
}

func TestMTLSOverGRPC(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	f := writeServerFiles(t, t.TempDir(), serverCA, 100, clientCA)
	cfg, err := NewTLSConfig(f.cert, f.key, f.ca, tls.RequireAndVerifyClientCert)
	if err != nil {
		t.Fatal(err)
	}
	a := mustNew(t, Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.ChainUnaryInterceptor(a.UnaryServerInterceptor()))
	srv.RegisterService(&whoService, struct{}{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	backend := clientCA.clientCert(t, []string{"backend.test"}, "spiffe://test/backend")
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: serverCA.pool(), ServerName: "localhost", Certificates: []tls.Certificate{backend},
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := callWho(ctx, conn)
	if err != nil || got != `mtls "spiffe://test/backend"` {
		t.Fatalf("got %q, %v", got, err)
	}
}

// servedSerial dials addr afresh and returns the serial of the server's
// certificate.
func servedSerial(t *testing.T, addr string, ca *testCA) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSReload(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	dir := t.TempDir()
	f := writeServerFiles(t, dir, serverCA, 100, clientCA)
	cfg, err := NewTLSConfig(f.cert, f.key, f.ca, tls.VerifyClientCertIfGiven)
	if err != nil {
		t.Fatal(err)
	}
	a := mustNew(t, Config{})
	u := serveHTTPS(t, cfg, a.HTTPMiddleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, whoAmI(r.Context()))
	})))
	addr := u[len("https://"):]
	const wait = tlsCheckInterval + 200*time.Millisecond

	if s := servedSerial(t, addr, serverCA); s != 100 {
		t.Fatalf("serial %d, want 100", s)
	}

	// A renewed certificate is served without a restart.
	writeServerFiles(t, dir, serverCA, 200, clientCA)
	time.Sleep(wait)
	if s := servedSerial(t, addr, serverCA); s != 200 {
		t.Fatalf("after renewal: serial %d, want 200", s)
	}

	// A broken file keeps the previous certificate.
	writeFile(t, f.cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	time.Sleep(wait)
	if s := servedSerial(t, addr, serverCA); s != 200 {
		t.Fatalf("after a bad file: serial %d, want 200", s)
	}
	// A key that does not match the certificate, likewise.
	c, _ := serverCA.issue(t, 300, false, []string{"localhost"})
	writeFile(t, f.cert, c)
	time.Sleep(wait)
	if s := servedSerial(t, addr, serverCA); s != 200 {
		t.Fatalf("after a mismatched key: serial %d, want 200", s)
	}
	// Then the key arrives: served.
	c, k := serverCA.issue(t, 400, false, []string{"localhost"})
	writeFile(t, f.cert, c)
	writeFile(t, f.key, k)
	time.Sleep(wait)
	if s := servedSerial(t, addr, serverCA); s != 400 {
		t.Fatalf("after the fix: serial %d, want 400", s)
	}

	// The client CA bundle is reloaded too.
	newCA := newTestCA(t, "new client CA")
	svc := newCA.clientCert(t, nil, "spiffe://test/new")
	if _, _, err := getAs(t, u, serverCA, &svc); err == nil {
		t.Fatal("client certificate of a CA not yet trusted was accepted")
	}
	writeFile(t, f.ca, append(append([]byte{}, clientCA.pem...), newCA.pem...))
	time.Sleep(wait)
	code, body, err := getAs(t, u+"/v1/x", serverCA, &svc)
	if err != nil || code != 200 || body != `mtls "spiffe://test/new"` {
		t.Fatalf("after CA reload: %d %q %v", code, body, err)
	}
	// A broken bundle keeps the previous one.
	writeFile(t, f.ca, []byte("not PEM"))
	time.Sleep(wait)
	code, body, err = getAs(t, u+"/v1/x", serverCA, &svc)
	if err != nil || code != 200 || body != `mtls "spiffe://test/new"` {
		t.Fatalf("after a bad CA file: %d %q %v", code, body, err)
	}
}

func TestNewTLSConfigErrors(t *testing.T) {
	serverCA, clientCA := newTestCA(t, "server CA"), newTestCA(t, "client CA")
	dir := t.TempDir()
	f := writeServerFiles(t, dir, serverCA, 100, clientCA)
	bad := filepath.Join(dir, "bad.pem")
	writeFile(t, bad, []byte("nope"))
	for _, tt := range []struct {
		name          string
		cert, key, ca string
		auth          tls.ClientAuthType
		ok            bool
	}{
		{"server only", f.cert, f.key, "", tls.NoClientCert, true},
		{"mTLS", f.cert, f.key, f.ca, tls.RequireAndVerifyClientCert, true},
		{"verify without a CA", f.cert, f.key, "", tls.VerifyClientCertIfGiven, false},
		{"missing cert", filepath.Join(dir, "none"), f.key, "", tls.NoClientCert, false},
		{"bad cert", bad, f.key, "", tls.NoClientCert, false},
		{"bad CA", f.cert, f.key, bad, tls.VerifyClientCertIfGiven, false},
		{"no files", "", "", "", tls.NoClientCert, false},
	} {
		cfg, err := NewTLSConfig(tt.cert, tt.key, tt.ca, tt.auth)
		if (err == nil) != tt.ok {
			t.Errorf("%s: error %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err == nil && (cfg.MinVersion != tls.VersionTLS12 || cfg.GetCertificate == nil) {
			t.Errorf("%s: config %+v", tt.name, cfg)
		}
	}
}
