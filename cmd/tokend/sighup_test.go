package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run this test binary as tokend itself (a real
// process, to receive real signals): with TOKEND_TEST_AS_TOKEND=1 it is
// tokend's main.
func TestMain(m *testing.M) {
	if os.Getenv("TOKEND_TEST_AS_TOKEND") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startTokend starts tokend as a process with args, in development mode
// with its data in dir, and waits until it serves REST.
func startTokend(t *testing.T, dir string, args ...string) (cmd *exec.Cmd, httpAddr string, stderr *bytes.Buffer) {
	t.Helper()
	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	cmd = exec.Command(os.Args[0], append([]string{"--http-addr", httpAddr, "--grpc-addr", grpcAddr, "--data-dir", dir, "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), "TOKEND_TEST_AS_TOKEND=1")
	stderr = &bytes.Buffer{}
	cmd.Stderr = &lockedWriter{&sync.Mutex{}, stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return cmd, httpAddr, stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("tokend did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mintUnderLoad mints with workers goroutines until stop is closed and
// returns the jti of every token handed out.
func mintUnderLoad(t *testing.T, httpAddr string, workers int, stop chan struct{}) func() []string {
	var mu sync.Mutex
	var jtis []string
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post("http://"+httpAddr+"/token", "application/json", strings.NewReader(`{"identity":"agent_7"}`))
				if err != nil {
					t.Errorf("mint: %v", err)
					return
				}
				var m map[string]any
				json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("mint = %d %v", resp.StatusCode, m)
					return
				}
				mu.Lock()
				jtis = append(jtis, m["jti"].(string))
				mu.Unlock()
			}
		}()
	}
	return func() []string { wg.Wait(); return jtis }
}

// TestAuditRotationUnderLoad runs tokend as a process under load while its
// audit file is rotated, by logrotate's way (rename, then SIGHUP: tokend
// must reopen the file, not die of the signal) and by --audit-max-bytes,
// and counts every record: each token handed out has exactly one, and
// every line is whole.
func TestAuditRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts tokend processes")
	}
	for _, tc := range []struct {
		name   string
		args   []string
		sighup bool
	}{
		{"rename_and_sighup", nil, true},
		{"max_bytes", []string{"--audit-max-bytes", "65536", "--audit-max-files", "100"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd, httpAddr, stderr := startTokend(t, dir, tc.args...)
			path := filepath.Join(dir, "audit.log")
			stop := make(chan struct{})
			wait := mintUnderLoad(t, httpAddr, 4, stop)
			time.Sleep(300 * time.Millisecond)
			if tc.sighup {
				for i := range 3 {
					if err := os.Rename(path, fmt.Sprintf("%s-%d", path, i)); err != nil {
						t.Fatal(err)
					}
					if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
						t.Fatal(err)
					}
					time.Sleep(300 * time.Millisecond)
					if _, err := os.Stat(path); err != nil {
						t.Fatalf("after SIGHUP %d, tokend did not reopen %s: %v", i, path, err)
					}
				}
			} else {
				// Load until tokend has rotated three times.
				deadline := time.Now().Add(30 * time.Second)
				for {
					rotated, _ := filepath.Glob(path + ".*")
					if len(rotated) >= 3 || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			close(stop)
			jtis := wait()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("tokend died under SIGHUP: %v", err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("tokend exited with %v:\n%s", err, stderr)
			}
			files, _ := filepath.Glob(path + "*")
			seen := map[string]int{}
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if len(data) == 0 {
					t.Errorf("%s is empty", f)
				}
				sc := bufio.NewScanner(bytes.NewReader(data))
				for sc.Scan() {
					var m map[string]any
					if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
						t.Fatalf("%s: torn line %q", f, sc.Text())
					}
					if m["event"] == "mint" {
						seen[m["jti"].(string)]++
					}
				}
			}
			wantFiles := 4
			if len(files) < wantFiles {
				t.Errorf("%d audit files (%v); want at least %d", len(files), files, wantFiles)
			}
			for _, jti := range jtis {
				if seen[jti] != 1 {
					t.Fatalf("token %s has %d audit records; want 1", jti, seen[jti])
				}
			}
			if len(seen) != len(jtis) {
				t.Errorf("%d mint records for %d tokens", len(seen), len(jtis))
			}
			t.Logf("%d tokens, %d audit files", len(jtis), len(files))
			if tc.sighup && strings.Count(stderr.String(), "audit log reopened") != 3 {
				t.Errorf("want 3 reopens logged:\n%s", stderr)
			}
		})
	}
}
