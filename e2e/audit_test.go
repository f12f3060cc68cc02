package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

var (
	tokenctlOnce sync.Once
	tokenctlBin  string
	tokenctlErr  error
)

// buildTokenctl builds tokenctl once, next to the tokend binary.
func buildTokenctl(t *testing.T) string {
	t.Helper()
	tokenctlOnce.Do(func() {
		tokenctlBin = filepath.Join(filepath.Dir(tokendBin), "tokenctl")
		out, err := exec.Command("go", "build", "-o", tokenctlBin, "github.com/tokend/tokend/cmd/tokenctl").CombinedOutput()
		if err != nil {
			tokenctlErr = fmt.Errorf("build tokenctl: %v\n%s", err, out)
		}
	})
	if tokenctlErr != nil {
		t.Fatal(tokenctlErr)
	}
	return tokenctlBin
}

// TestAuditFindAcrossRotations: tokens minted by a real tokend before and
// after its audit file was rotated, by size and by logrotate's way
// (rename, compress, SIGHUP), are all found by `tokenctl audit find`
// from the token itself.
func TestAuditFindAcrossRotations(t *testing.T) {
	ctl := buildTokenctl(t)
	dir := t.TempDir()
	p := startTokend(t, "audit", procConfig{dataDir: dir, args: []string{"--audit-max-bytes", "4096", "--audit-max-files", "100"}})
	auditLog := filepath.Join(dir, "audit.log")
	ctx := context.Background()
	mint := func(identity string) string {
		t.Helper()
		resp, err := p.client.Mint(ctx, &tokenv1.MintRequest{Identity: &identity})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetToken()
	}
	tokens := map[string]string{}
	tokens["before_size_rotations"] = mint("first")
	for i := range 30 {
		mint(fmt.Sprint("filler_", i))
	}
	tokens["between"] = mint("between")
	time.Sleep(50 * time.Millisecond) // let the writer write it
	// logrotate: rename, compress, SIGHUP.
	rotated := auditLog + "-20261204"
	if err := os.Rename(auditLog, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(auditLog); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend did not reopen %s after SIGHUP:\n%s", auditLog, tail(p.log.String(), 4096))
		}
		time.Sleep(10 * time.Millisecond)
	}
	compress(t, rotated)
	tokens["after_sighup"] = mint("after_hup")
	time.Sleep(50 * time.Millisecond)
	files, _ := filepath.Glob(auditLog + "*")
	if len(files) < 4 {
		t.Errorf("audit files %v: want rotations by size and by logrotate", files)
	}

	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(ctl, "audit", "find", "--audit-log", auditLog, "--jti", "-")
			cmd.Stdin = strings.NewReader(tok + "\n")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("tokenctl audit find: %v\n%s", err, stderr.String())
			}
			out := stdout.String()
			for _, want := range []string{"minted at", "allow", app, "127.0.0.1:", "OK"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out+stderr.String(), tok) {
				t.Error("tokenctl printed the token")
			}
			t.Logf("%s", out[strings.LastIndex(out, "record"):])
		})
	}
}

func compress(t *testing.T, name string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	if err := os.WriteFile(name+".gz", b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(name)
}
