package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"github.com/tokend/tokend/internal/freeport"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The seed the Twilio Function had: tokend mints for this application and
// key by default.
var seedEnv = []string{
	"ACCOUNT_SID=ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"API_KEY=SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
	"API_SECRET=cccccccccccccccccccccccccccccccc",
	"TWIML_APP_SID=APdddddddddddddddddddddddddddddddd",
}

// credentialName is the service credential every load request presents.
const credentialName = "load"

// policyYAML lets the load credential mint outgoing-voice tokens (what GET
// /token and an empty Mint ask for) for any application and any identity
// of lower-case letters, digits and underscores; nothing else is allowed.
const policyYAML = `rules:
  - name: load
    principals: ["credential:` + credentialName + `"]
    applications: ["*"]
    identities: {pattern: "^[a-z0-9_]+$"}
    grants:
      voice: {incoming: false, outgoing: true}
`

// buildTokend builds cmd/tokend into dir, as make build does (static,
// -trimpath), in tokend's own module so it gets tokend's own dependency
// versions, not the bench module's.
func buildTokend(ctx context.Context, dir string) (string, error) {
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	root, err := exec.CommandContext(ctx, gobin, "list", "-m", "-f", "{{.Dir}}", "github.com/tokend/tokend").Output()
	if err != nil {
		return "", fmt.Errorf("find tokend's module (run from bench/): %w", err)
	}
	bin := filepath.Join(dir, "tokend")
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", bin, "github.com/tokend/tokend/cmd/tokend")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build tokend: %w\n%s", err, out)
	}
	return bin, nil
}

// tokendProc is the running tokend and what the harness set it up with.
type tokendProc struct {
	*child
	httpAddr, grpcAddr string
	auditLog           string
	credential         string // "tkd_…", for Authorization: Bearer
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freeAddr returns a loopback address nothing listens on right now,
// below the ephemeral range (see freeport).
func freeAddr() (string, error) { return freeport.Addr() }

// startTokend runs bin with authentication, policy and audit on: a fresh
// data dir under dir, the seed, a master key and admin token of its own,
// the policy above, the audit log in dir. It waits until tokend is ready,
// then creates the load credential through the admin API. procs > 0 sets
// its GOMAXPROCS.
func startTokend(ctx context.Context, bin, dir string, extra []string, procs int) (*tokendProc, error) {
	dataDir := filepath.Join(dir, "data")
	policyFile := filepath.Join(dir, "policy.yaml")
	auditLog := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(policyFile, []byte(policyYAML), 0o600); err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	adminToken := randomHex(24)

	// Nothing of the caller's TOKEND_* or seed settings leaks in: this
	// run's configuration is all on the command line and below.
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "TOKEND_"), name == "ACCOUNT_SID", name == "API_KEY", name == "API_SECRET", name == "TWIML_APP_SID":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, seedEnv...)
	env = append(env,
		"TOKEND_MASTER_KEY=load:"+base64.StdEncoding.EncodeToString(key),
		"TOKEND_ADMIN_TOKEN="+adminToken,
	)
	cmd := exec.Command(bin,
		"--data-dir", dataDir,
		"--http-addr", httpAddr,
		"--grpc-addr", grpcAddr,
		"--policy-file", policyFile,
		"--audit-log", auditLog,
		"--log-level", "warn",
	)
	cmd.Args = append(cmd.Args, extra...)
	cmd.Env = withGOMAXPROCS(env, procs)
	c, err := start("tokend", cmd)
	if err != nil {
		return nil, err
	}
	t := &tokendProc{child: c, httpAddr: httpAddr, grpcAddr: grpcAddr, auditLog: auditLog}
	fail := func(err error) (*tokendProc, error) {
		c.stop(5 * time.Second)
		return nil, fmt.Errorf("%w\ntokend's log:\n%s", err, c.stderr)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c.exited() {
			return fail(fmt.Errorf("tokend exited at start-up: %v", c.err))
		}
		resp, err := client.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("tokend not ready on %s within 30 s (last: %v)", httpAddr, err))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/credentials",
		strings.NewReader(`{"name":"`+credentialName+`"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fail(fmt.Errorf("create credential: %w", err))
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("create credential: POST /v1/credentials: %s: %s", resp.Status, bytes.TrimSpace(body)))
	}
	var created struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &created); err != nil || !strings.HasPrefix(created.Token, "tkd_") {
		return fail(fmt.Errorf("create credential: no token in the answer: %s", bytes.TrimSpace(body)))
	}
	t.credential = created.Token
	return t, nil
}
