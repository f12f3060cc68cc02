package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// tlsCheckInterval is how often, at most, the certificate files are
// checked for changes.
const tlsCheckInterval = time.Second

// NewTLSConfig returns a server TLS configuration serving the certificate
// and key in certFile and keyFile (PEM) and, when clientCAFile is set,
// verifying client certificates against the CA certificates in it (PEM,
// one or more) as clientAuth says: tls.VerifyClientCertIfGiven lets callers
// without a certificate authenticate otherwise, tls.RequireAndVerifyClientCert
// demands one.
//
// The files are re-read when their modification time or size changes,
// checked at most once a second on a handshake, so a renewed certificate
// (cert-manager, certbot, a SPIFFE helper) or CA bundle is served without a
// restart. A new file that does not load (half-written, key not matching)
// is logged with slog.Default() and the previous certificate or bundle kept;
// it is tried again when the files change again.
//
// The certificate is served through GetCertificate and the client CA pool
// through GetConfigForClient, which answers each handshake with a clone of
// the returned configuration (as modified before serving) with the current
// pool. NextProtos is "h2" then "http/1.1", which both the gRPC server and
// net/http's TLS server want. MinVersion is TLS 1.2.
//
// The files must load now: an error is returned otherwise, and when
// clientAuth verifies client certificates but no clientCAFile is given
// (Go would then verify them against the system roots).
func NewTLSConfig(certFile, keyFile, clientCAFile string, clientAuth tls.ClientAuthType) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("auth: TLS needs a certificate file and a key file")
	}
	if clientCAFile == "" && (clientAuth == tls.VerifyClientCertIfGiven || clientAuth == tls.RequireAndVerifyClientCert) {
		return nil, fmt.Errorf("auth: client authentication %v needs a client CA file", clientAuth)
	}
	r := &tlsReloader{
		certFile: certFile,
		keyFile:  keyFile,
		caFile:   clientCAFile,
		log:      slog.Default(),
		interval: tlsCheckInterval,
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.getCertificate,
		ClientAuth:     clientAuth,
	}
	if clientCAFile != "" {
		cfg.ClientCAs = r.pool.Load()
		cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			r.maybeReload()
			c := cfg.Clone()
			c.GetConfigForClient = nil
			c.ClientCAs = r.pool.Load()
			return c, nil
		}
	}
	return cfg, nil
}

// fileStamp tells whether a file changed.
type fileStamp struct {
	mod  time.Time
	size int64
	err  bool
}

func stampOf(name string) fileStamp {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{err: true}
	}
	return fileStamp{mod: fi.ModTime(), size: fi.Size()}
}

// tlsReloader keeps the certificate and client CA pool current.
type tlsReloader struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger
	interval                  time.Duration

	cert atomic.Pointer[tls.Certificate]
	pool atomic.Pointer[x509.CertPool]

	mu                           sync.Mutex // held while checking
	lastCheck                    time.Time
	certStamp, keyStamp, caStamp fileStamp
}

// load reads every file, for the start.
func (r *tlsReloader) load() error {
	r.certStamp, r.keyStamp = stampOf(r.certFile), stampOf(r.keyFile)
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("auth: TLS certificate: %w", err)
	}
	r.cert.Store(&cert)
	if r.caFile != "" {
		r.caStamp = stampOf(r.caFile)
		pool, err := loadCAPool(r.caFile)
		if err != nil {
			return err
		}
		r.pool.Store(pool)
	}
	r.lastCheck = time.Now()
	return nil
}

func loadCAPool(name string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("auth: client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("auth: client CA file %s holds no PEM certificate", name)
	}
	return pool, nil
}

func (r *tlsReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.cert.Load(), nil
}

// maybeReload re-reads the files that changed, at most once per interval.
// A handshake that finds another checking does not wait for it.
func (r *tlsReloader) maybeReload() {
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.lastCheck) < r.interval {
		return
	}
	r.lastCheck = now

	cs, ks := stampOf(r.certFile), stampOf(r.keyFile)
	if cs != r.certStamp || ks != r.keyStamp {
		// Remember the stamps even if the load fails, so that a bad file is
		// logged once, and tried again only when it changes.
		r.certStamp, r.keyStamp = cs, ks
		cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
		if err != nil {
			r.log.Error("auth: cannot reload the TLS certificate; still serving the previous one",
				"cert_file", r.certFile, "key_file", r.keyFile, "error", err)
		} else {
			r.cert.Store(&cert)
			attrs := []any{"cert_file", r.certFile}
			if cert.Leaf != nil {
				attrs = append(attrs, "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
			}
			r.log.Info("auth: TLS certificate reloaded", attrs...)
		}
	}
	if r.caFile == "" {
		return
	}
	if as := stampOf(r.caFile); as != r.caStamp {
		r.caStamp = as
		pool, err := loadCAPool(r.caFile)
		if err != nil {
			r.log.Error("auth: cannot reload the client CA file; still using the previous one", "ca_file", r.caFile, "error", err)
		} else {
			r.pool.Store(pool)
			r.log.Info("auth: client CA file reloaded", "ca_file", r.caFile)
		}
	}
}
