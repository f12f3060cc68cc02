package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/term"
)

// maxSecretBytes bounds what is read for a secret or the admin token.
const maxSecretBytes = 64 << 10

// adminToken returns the admin token: from --admin-token-file, else env
// TOKEND_ADMIN_TOKEN (the token itself), else the file env
// TOKEND_ADMIN_TOKEN_FILE names. Surrounding whitespace is trimmed. No
// error ever quotes the token.
func (c *cli) adminToken() (string, error) {
	tok, err := c.bearerToken("admin token", "--admin-token-file", c.adminTokenFile, "TOKEND_ADMIN_TOKEN")
	if err == nil && tok == "" {
		err = errors.New("no admin token: give --admin-token-file, or set TOKEND_ADMIN_TOKEN or TOKEND_ADMIN_TOKEN_FILE")
	}
	return tok, err
}

// callerCredential returns the credential mint and verify authenticate
// with (a tkd_… service credential or an OIDC JWT): from
// --credential-file, else env TOKEND_CREDENTIAL (the token itself), else
// the file env TOKEND_CREDENTIAL_FILE names; "" when none is given (the
// calls are then anonymous). Surrounding whitespace is trimmed. No error
// ever quotes the credential.
func (c *cli) callerCredential() (string, error) {
	return c.bearerToken("credential", "--credential-file", c.credentialFile, "TOKEND_CREDENTIAL")
}

// bearerToken reads a token from the file at flagPath (given as flagName),
// else from env envName, else from the file env envName_FILE names; "" if
// none is set. A token found is remembered, so that no error prints it.
func (c *cli) bearerToken(what, flagName, flagPath, envName string) (string, error) {
	var tok string
	var err error
	switch {
	case flagPath != "":
		tok, err = readTokenFile(what, flagName, flagPath)
	case c.getenv(envName) != "":
		if tok = strings.TrimSpace(c.getenv(envName)); tok == "" {
			err = fmt.Errorf("%s is blank", envName)
		}
	case c.getenv(envName+"_FILE") != "":
		tok, err = readTokenFile(what, envName+"_FILE", c.getenv(envName+"_FILE"))
	}
	if tok != "" {
		c.redact = append(c.redact, tok)
	}
	return tok, err
}

// readTokenFile reads a token from a file. Its errors do not quote the
// path: it may be the token itself, typed in its place.
func readTokenFile(what, source, path string) (string, error) {
	b, err := readFileLimited(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s (%s): %w", what, source, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s (%s): the file is empty", what, source)
	}
	return tok, nil
}

func readFileLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f)
}

func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecretBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecretBytes {
		return nil, fmt.Errorf("longer than %d bytes", maxSecretBytes)
	}
	return b, nil
}

// readSecret reads an API key secret: from the file at path, or else from
// stdin (after a prompt, without echo, if stdin is a terminal). One
// trailing newline is dropped; an empty secret is an error. No error ever
// quotes the secret, nor the path (it might have been typed in place of
// the secret).
func (c *cli) readSecret(ctx context.Context, path, keySID string) (string, error) {
	var b []byte
	var err error
	switch fd, tty := terminal(c.stdin); {
	case path != "":
		if b, err = readFileLimited(path); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("--secret-file: %w", err)
		}
	case tty:
		fmt.Fprintf(c.stderr, "API key secret for %s (not echoed): ", cell(keySID))
		b, err = readPassword(ctx, fd)
		fmt.Fprintln(c.stderr)
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the secret: %w", err)
		}
	default:
		if b, err = readContext(ctx, func() ([]byte, error) { return readLimited(c.stdin) }); err != nil {
			return "", fmt.Errorf("reading the secret from stdin: %w", err)
		}
	}
	secret := string(b)
	if s, ok := strings.CutSuffix(secret, "\n"); ok {
		secret = strings.TrimSuffix(s, "\r")
	}
	if secret == "" {
		return "", errors.New("empty secret: give it in --secret-file or on stdin")
	}
	return secret, nil
}

// terminal reports whether r is a terminal, and its file descriptor.
func terminal(r io.Reader) (int, bool) {
	f, ok := r.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// readPassword reads a line from the terminal without echo. If ctx ends
// first (Ctrl-C), it restores the terminal and gives up.
func readPassword(ctx context.Context, fd int) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	b, err := readContext(ctx, func() ([]byte, error) { return term.ReadPassword(fd) })
	if ctx.Err() != nil {
		_ = term.Restore(fd, state)
	}
	return b, err
}

// readContext runs read, giving up when ctx ends; read then finishes in
// the background.
func readContext(ctx context.Context, read func() ([]byte, error)) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := read()
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
