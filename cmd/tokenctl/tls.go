package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/tokend/tokend/client"
)

// tlsFlags are the global flags of the connection's security.
type tlsFlags struct {
	enabled    bool
	caFile     string
	certFile   string
	keyFile    string
	serverName string
}

// tlsEnv reads a boolean environment variable for --tls.
func tlsEnv(getenv func(string) string) bool {
	v, err := strconv.ParseBool(getenv("TOKENCTL_TLS"))
	return err == nil && v
}

// on reports whether the connection uses TLS: --tls, or any of the files
// that only make sense with it.
func (t *tlsFlags) on() bool {
	return t.enabled || t.caFile != "" || t.certFile != "" || t.keyFile != ""
}

// clientOptions returns the client options of the connection's security:
// none (plain gRPC) unless TLS is asked for.
func (c *cli) clientOptions() ([]client.Option, error) {
	t := &c.tls
	if !t.on() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName}
	if t.caFile != "" {
		pem, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", t.caFile)
		}
		cfg.RootCAs = pool
	}
	if (t.certFile == "") != (t.keyFile == "") {
		return nil, errors.New("--cert-file and --key-file go together: give both for a client certificate (mutual TLS), or neither")
	}
	if t.certFile != "" {
		pair, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
		if err != nil {
			// The error of LoadX509KeyPair names the files, never the key.
			return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return []client.Option{client.WithTransportCredentials(credentials.NewTLS(cfg))}, nil
}

// What an address answers, as probe finds it.
const (
	answersNothing = "nothing"
	answersTLS     = "TLS"
	answersHTTP1   = "HTTP/1"
	answersHTTP2   = "HTTP/2 without TLS"
	answersUnknown = "unknown"
)

// probe connects to addr and says what it speaks: it opens a TLS
// handshake (verifying nothing: it only looks at the answer) and reads
// what comes back. A TLS server answers with a handshake or an alert; an
// HTTP/1 server with "HTTP/1.x 400"; a plain gRPC server with an HTTP/2
// SETTINGS frame.
func probe(addr string, timeout time.Duration) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return answersNothing, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // a probe: nothing is sent over it
	err = tc.Handshake()
	var rhe tls.RecordHeaderError
	var opErr *net.OpError
	switch {
	case err == nil:
		return answersTLS, nil
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// The server sent a TLS alert.
		return answersTLS, nil
	case errors.As(err, &rhe):
		// The first five bytes the server wrote.
		head := rhe.RecordHeader[:]
		switch {
		case bytes.HasPrefix(head, []byte("HTTP/")):
			return answersHTTP1, nil
		case head[3] == 0x4 && head[4] == 0:
			// An HTTP/2 frame header: length (3 bytes), type SETTINGS, no flags.
			return answersHTTP2, nil
		}
		return answersUnknown, nil
	}
	return answersUnknown, err
}

// diagnose explains why a call to the address failed, from what the
// address answers; "" when it has nothing to add.
func (c *cli) diagnose() string {
	timeout := c.timeout
	if timeout <= 0 || timeout > 3*time.Second {
		timeout = 3 * time.Second
	}
	what, err := probe(c.addr, timeout)
	tlsOn := c.tls.on()
	switch what {
	case answersNothing:
		return fmt.Sprintf("nothing answers at %s (%v): is tokend running, and is this its gRPC address (--grpc-addr, 127.0.0.1:9090 by default)?", c.addr, errors.Unwrap(err))
	case answersTLS:
		if !tlsOn {
			return fmt.Sprintf("%s answers TLS and tokenctl spoke plain gRPC: add --tls (with --ca-file if tokend's certificate is not from a CA this system trusts, and --cert-file/--key-file if tokend asks for a client certificate)", c.addr)
		}
		return fmt.Sprintf("%s answers TLS but the connection failed: check --ca-file (the CA of tokend's certificate), --server-name (a name in that certificate) and, if tokend requires client certificates, --cert-file/--key-file", c.addr)
	case answersHTTP1:
		return fmt.Sprintf("%s answers plain HTTP/1 (tokend's REST port, or another server?): --addr takes tokend's gRPC address (--grpc-addr, 127.0.0.1:9090 by default)", c.addr)
	case answersHTTP2:
		if tlsOn {
			return fmt.Sprintf("%s answers plain gRPC, without TLS: drop --tls, --ca-file, --cert-file and --key-file", c.addr)
		}
	}
	return ""
}
