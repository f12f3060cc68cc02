package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// tokendProc is one tokend process started by startTokend: unlike
// startReplica, its data dir, flags and environment are the caller's, it
// can be killed with SIGKILL and restarted on the same data, and it
// records when it became ready.
type tokendProc struct {
	name     string
	httpAddr string
	grpcAddr string
	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan struct{}
	// readyIn is the time from starting the process to the first 200
	// from /readyz.
	readyIn time.Duration
	client  *client.Client // mints, with the procConfig's bearer token if any
	admin   *client.Client // calls the admin API with the admin token
}

type procConfig struct {
	dataDir string // required: kept across restarts
	store   string // "" for SQLite in dataDir
	args    []string
	env     []string
	// noSeed starts without the seed credentials (ACCOUNT_SID, ...).
	noSeed bool
	// bearer is sent by client on every call (a tokend credential).
	bearer   string
	logLevel string // default info
}

// startTokend starts tokend and waits until /readyz answers 200.
func startTokend(t *testing.T, name string, pc procConfig) *tokendProc {
	t.Helper()
	p := &tokendProc{name: name}
	level := pc.logLevel
	if level == "" {
		level = "info"
	}
	var start time.Time
	launch := func() {
		p.httpAddr, p.grpcAddr = freeAddr(t), freeAddr(t)
		p.log, p.exited = &syncBuffer{}, make(chan struct{})
		args := append([]string{"--http-addr", p.httpAddr, "--grpc-addr", p.grpcAddr,
			"--data-dir", pc.dataDir, "--store", pc.store, "--log-level", level}, pc.args...)
		p.cmd = exec.Command(tokendBin, args...)
		p.cmd.Env = append(os.Environ(), "TOKEND_MASTER_KEY="+masterKey, "TOKEND_ADMIN_TOKEN="+adminToken)
		if !pc.noSeed {
			p.cmd.Env = append(p.cmd.Env, "ACCOUNT_SID="+account, "API_KEY="+key1, "API_SECRET="+secret1, "TWIML_APP_SID="+app)
		}
		p.cmd.Env = append(p.cmd.Env, pc.env...)
		p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
		start = time.Now()
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmd, exited := p.cmd, p.exited
		go func() { cmd.Wait(); close(exited) }()
	}
	launch()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("log of %s (last 16 KiB):\n%s", p.name, tail(p.log.String(), 16<<10))
		}
	})
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	retries := 0
	for {
		resp, err := hc.Get("http://" + p.httpAddr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				p.readyIn = time.Since(start)
				break
			}
		}
		select {
		case <-p.exited:
			if portTaken(p.log.String()) && retries < 5 {
				retries++
				launch()
				continue
			}
			t.Fatalf("%s exited before it was ready (%v):\n%s", name, p.cmd.ProcessState, tail(p.log.String(), 16<<10))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready:\n%s", name, tail(p.log.String(), 16<<10))
		}
		time.Sleep(5 * time.Millisecond)
	}
	var opts []client.Option
	if pc.bearer != "" {
		opts = append(opts, client.WithBearerToken(pc.bearer))
	}
	c, err := client.New(p.grpcAddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	a, err := client.New(p.grpcAddr, client.WithBearerToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); a.Close() })
	p.client, p.admin = c, a
	return p
}

// stop interrupts tokend and waits for it (SIGKILL after 15 s).
func (p *tokendProc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// kill9 kills tokend with SIGKILL, as a crash or the OOM killer would,
// and waits until it is gone.
func (p *tokendProc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// rssBytes is the process's resident set (VmRSS).
func (p *tokendProc) rssBytes() (int64, error) { return p.statusKB("VmRSS") }

// peakRSSBytes is the process's peak resident set so far (VmHWM).
func (p *tokendProc) peakRSSBytes() (int64, error) { return p.statusKB("VmHWM") }

// statusKB reads a "Name: N kB" line of /proc/pid/status, in bytes.
func (p *tokendProc) statusKB(name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/pid/status", name)
}

// cpuTime is the CPU time (user and system) the process has used, from
// /proc/pid/stat: unlike wall time, it does not grow when other work on
// the machine delays the process.
func (p *tokendProc) cpuTime() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ")".
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/pid/stat")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// restJSON sends a JSON request with an optional bearer token and decodes
// the JSON answer.
func restJSON(hc *http.Client, method, url, bearer, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("status %d, body not JSON: %q", resp.StatusCode, tail(string(raw), 300))
	}
	return resp.StatusCode, m, nil
}

// verifyIssued checks a token with golang-jwt (HS256, iat and exp
// required) against the secret of the key its iss names, and returns iss.
func verifyIssued(tok string, secrets map[string]string) (string, error) {
	var iss string
	_, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
		s, err := tk.Claims.GetIssuer()
		if err != nil {
			return nil, err
		}
		iss = s
		secret, ok := secrets[s]
		if !ok {
			return nil, fmt.Errorf("iss %q is no key of the test", s)
		}
		return []byte(secret), nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuedAt(), jwt.WithExpirationRequired())
	if err != nil {
		return iss, fmt.Errorf("token signed by %q does not verify: %w", iss, err)
	}
	return iss, nil
}

const (
	soakKey2    = "SK33333333333333333333333333333333"
	soakSecret2 = "soak-secret-of-the-second-key-xx2"
	soakKey3    = "SK44444444444444444444444444444444"
	soakSecret3 = "soak-secret-of-the-third-key-xxx3"
)

// soakPolicy is the caller policy of the soak test in one of several
// spellings that all mean the same: each rewrite changes the file's bytes
// (and so its digest) but not a decision.
func soakPolicy(rev int) string {
	switch rev % 3 {
	case 0:
		return fmt.Sprintf(`# soak policy, revision %d
rules:
  - name: soak
    principals: ["credential:soak"]
    applications: ["*"]
    identities: {pattern: "^soak_[0-9]+$"}
    grants:
      voice: true
    max_ttl_seconds: 3600
`, rev)
	case 1:
		return fmt.Sprintf(`rules:
- name: soak   # revision %d
  applications:
  - "*"
  principals:
  - credential:soak
  grants: {voice: true}
  identities:
    pattern: ^soak_[0-9]+$
  max_ttl_seconds: 3600
`, rev)
	default:
		return fmt.Sprintf("{\"rules\": [{\"name\": \"soak\", \"max_ttl_seconds\": 3600, \"identities\": {\"pattern\": \"^soak_[0-9]+$\"}, \"grants\": {\"voice\": true}, \"applications\": [\"*\"], \"principals\": [\"credential:soak\"]}]}\n# revision %d\n", rev)
	}
}

// writeAtomically replaces path with data by a rename, as configuration
// management tools (and Kubernetes ConfigMap volumes) do.
func writeAtomically(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// TestSoak mints for 60 s at about 70% of tokend's measured capacity,
// over gRPC and REST, as a credential caller under a policy, while keys
// are activated in turn every 2 s and the policy file is rewritten (and
// SIGHUP sent) every 5 s: no mint may fail, and every token must verify
// against the secret of the key its iss names.
func TestSoak(t *testing.T) {
	postgresDSN(t)
	if testing.Short() {
		t.Skip("soak test: skipped with -short")
	}
	const (
		capacityWindow = 3 * time.Second
		loadFraction   = 0.7
		closedWorkers  = 8
		openWorkers    = 64
		maxQueued      = 4096
	)
	// TOKEND_SOAK_DURATION (a Go duration) shortens or lengthens the load.
	loadWindow := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("TOKEND_SOAK_DURATION")); err == nil && d > 0 {
		loadWindow = d
	}
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(soakPolicy(0)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startTokend(t, "soak", procConfig{
		dataDir: filepath.Join(dir, "data"), logLevel: "warn",
		args: []string{"--policy-file", policyPath, "--audit-log", "off"},
	})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: openWorkers}}
	base := "http://" + p.httpAddr

	// A credential for the load, and two more keys of the application.
	code, body, err := restJSON(hc, "POST", base+"/v1/credentials", adminToken, `{"name":"soak","groups":["load"]}`)
	if err != nil || code != 200 {
		t.Fatalf("POST /v1/credentials = %d %v %v", code, body, err)
	}
	credential, _ := body["token"].(string)
	if credential == "" {
		t.Fatalf("no token in %v", body)
	}
	ctx := context.Background()
	for _, k := range []struct{ sid, secret string }{{soakKey2, soakSecret2}, {soakKey3, soakSecret3}} {
		if _, err := p.admin.Admin().AddKey(ctx, &tokenv1.AddKeyRequest{ApplicationSid: app, ApiKeySid: k.sid, Secret: k.secret}); err != nil {
			t.Fatalf("AddKey %s = %v", k.sid, err)
		}
	}
	secrets := map[string]string{key1: secret1, soakKey2: soakSecret2, soakKey3: soakSecret3}
	caller, err := client.New(p.grpcAddr, client.WithBearerToken(credential))
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()

	// One mint, alternating gRPC and REST, verified.
	var (
		seq        atomic.Int64
		mu         sync.Mutex
		failures   []string
		failed     int64
		byIss      = map[string]int64{}
		byPath     = map[string]int64{}
		latencies  []time.Duration
		recordLats atomic.Bool
	)
	fail := func(err error) {
		mu.Lock()
		failed++
		if len(failures) < 10 {
			failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
		}
		mu.Unlock()
	}
	mintOne := func(scheduled time.Time) {
		n := seq.Add(1)
		identity := fmt.Sprintf("soak_%d", n)
		var tok, path string
		if n%2 == 0 {
			path = "grpc"
			resp, err := caller.Mint(ctx, &tokenv1.MintRequest{Identity: &identity})
			if err != nil {
				fail(fmt.Errorf("gRPC mint: %w", err))
				return
			}
			tok = resp.GetToken()
		} else {
			path = "rest"
			code, body, err := restJSON(hc, "POST", base+"/token", credential, `{"identity":"`+identity+`"}`)
			if err != nil || code != 200 {
				fail(fmt.Errorf("REST mint: %d %v %v", code, body, err))
				return
			}
			tok, _ = body["token"].(string)
		}
		took := time.Since(scheduled)
		iss, err := verifyIssued(tok, secrets)
		if err != nil {
			fail(err)
			return
		}
		mu.Lock()
		byIss[iss]++
		byPath[path]++
		if recordLats.Load() {
			latencies = append(latencies, took)
		}
		mu.Unlock()
	}

	// Capacity: closed-loop workers, as fast as they go.
	stopCap := time.Now().Add(capacityWindow)
	var wg sync.WaitGroup
	for range closedWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stopCap) {
				mintOne(time.Now())
			}
		}()
	}
	wg.Wait()
	capacity := float64(seq.Load()) / capacityWindow.Seconds()
	rate := capacity * loadFraction
	t.Logf("capacity %.0f mints/s with %d closed-loop workers (client, with -race if given, and tokend share %d CPUs); load %.0f/s for %v",
		capacity, closedWorkers, numCPU(), rate, loadWindow)
	if failed > 0 {
		t.Fatalf("%d mints failed while measuring capacity: %v", failed, failures)
	}
	capMints := seq.Load()

	// Churn: key activations every 2 s, policy rewrites and SIGHUP every 5 s.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var activations, rewrites, churnErrs atomic.Int64
	var churn sync.WaitGroup
	churn.Add(2)
	go func() {
		defer churn.Done()
		tk := time.NewTicker(2 * time.Second)
		defer tk.Stop()
		keys := []string{soakKey2, soakKey3}
		for i := 0; ; i++ {
			select {
			case <-loadCtx.Done():
				return
			case <-tk.C:
			}
			if _, err := p.admin.Admin().ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: app, ApiKeySid: keys[i%2]}); err != nil {
				churnErrs.Add(1)
				t.Errorf("ActivateKey %s = %v", keys[i%2], err)
				continue
			}
			activations.Add(1)
		}
	}()
	go func() {
		defer churn.Done()
		tk := time.NewTicker(5 * time.Second)
		defer tk.Stop()
		for rev := 1; ; rev++ {
			select {
			case <-loadCtx.Done():
				return
			case <-tk.C:
			}
			if err := writeAtomically(policyPath, soakPolicy(rev)); err != nil {
				churnErrs.Add(1)
				t.Errorf("rewrite policy: %v", err)
				continue
			}
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				churnErrs.Add(1)
				t.Errorf("SIGHUP: %v", err)
			}
			rewrites.Add(1)
		}
	}()

	// Open loop: requests are scheduled at the rate whether or not earlier
	// ones have finished; a pool of workers takes them in order, and a
	// request's latency counts from its scheduled time (queueing included).
	recordLats.Store(true)
	tickets := make(chan time.Time, maxQueued)
	var timeline []string
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		last := seq.Load()
		for {
			select {
			case <-loadCtx.Done():
				return
			case <-tk.C:
			}
			n := seq.Load()
			mu.Lock()
			timeline = append(timeline, fmt.Sprintf("%d/%d", n-last, len(tickets)))
			mu.Unlock()
			last = n
		}
	}()
	var workers sync.WaitGroup
	for range openWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for at := range tickets {
				mintOne(at)
			}
		}()
	}
	var saturated int64
	start := time.Now()
	sent := int64(0)
	for {
		elapsed := time.Since(start)
		if elapsed >= loadWindow {
			break
		}
		due := int64(elapsed.Seconds() * rate)
		for ; sent < due; sent++ {
			at := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			select {
			case tickets <- at:
			default:
				saturated++
				tickets <- at
			}
		}
		time.Sleep(time.Millisecond)
	}
	close(tickets)
	workers.Wait()
	loadTook := time.Since(start)
	stopLoad()
	churn.Wait()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	pct := func(q float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))]
	}
	total := seq.Load()
	t.Logf("soak: %d mints in all (%d while measuring capacity, %d under load in %v = %.0f/s), %d failed; gRPC %d, REST %d; by signing key %v",
		total, capMints, sent, loadTook.Round(time.Millisecond), float64(sent)/loadTook.Seconds(), failed, byPath["grpc"], byPath["rest"], byIss)
	t.Logf("soak: under load, latency from the scheduled time p50 %v, p99 %v, max %v; %d key activations, %d policy rewrites with SIGHUP; queue of %d full %d times",
		pct(0.5), pct(0.99), pct(1), activations.Load(), rewrites.Load(), maxQueued, saturated)
	t.Logf("timeline (mints started per second / queued at the end of the second): %s", strings.Join(timeline, " "))
	// tokend's own account: every mint it saw succeeded, and how many
	// took long on its side (tells tokend stalls from client ones).
	metrics := scrapeMetrics(t, hc, base)
	serverOK := metrics.sum("tokend_mints_total", `result="ok"`)
	serverErr := metrics.sum("tokend_mints_total", `result="error"`)
	restAll := metrics.sum("tokend_http_request_duration_seconds_count", `route="/token"`)
	restFast := metrics.sum("tokend_http_request_duration_seconds_bucket", `route="/token"`, `le="0.1"`)
	grpcAll := metrics.sum("grpc_server_handling_seconds_count", `grpc_method="Mint"`)
	grpcFast := metrics.sum("grpc_server_handling_seconds_bucket", `grpc_method="Mint"`, `le="0.1"`)
	t.Logf("tokend counted %.0f mints ok, %.0f failed; over 100 ms inside tokend: %.0f of %.0f REST, %.0f of %.0f gRPC",
		serverOK, serverErr, restAll-restFast, restAll, grpcAll-grpcFast, grpcAll)
	if serverErr != 0 || int64(serverOK) != total {
		t.Errorf("tokend counted %.0f mints ok and %.0f failed, the test minted %d", serverOK, serverErr, total)
	}
	if failed > 0 {
		t.Fatalf("%d of %d mints failed; first: %s", failed, total, strings.Join(failures, "\n"))
	}
	if verified := byIss[key1] + byIss[soakKey2] + byIss[soakKey3]; verified != total {
		t.Fatalf("%d tokens verified, %d minted", verified, total)
	}
	if byIss[soakKey2] == 0 || byIss[soakKey3] == 0 {
		t.Errorf("not every activated key signed: %v", byIss)
	}
	if activations.Load() < int64(loadWindow/(2*time.Second))-2 || rewrites.Load() < int64(loadWindow/(5*time.Second))-2 {
		t.Errorf("churn did not run: %d activations, %d policy rewrites", activations.Load(), rewrites.Load())
	}
	if churnErrs.Load() > 0 {
		t.Errorf("%d churn operations failed", churnErrs.Load())
	}
	if sent < int64(rate*loadWindow.Seconds()*0.95) {
		t.Errorf("only %d of %.0f scheduled mints were sent", sent, rate*loadWindow.Seconds())
	}
	if log := p.log.String(); strings.Contains(log, "not reloaded") || strings.Contains(log, "level=ERROR") {
		t.Errorf("tokend logged errors during the soak:\n%s", tail(grepLines(log, "ERROR", "not reloaded"), 4<<10))
	}
}

// promSamples are the samples of a Prometheus text exposition: each line
// "name{labels} value".
type promSamples []string

func scrapeMetrics(t *testing.T, hc *http.Client, base string) promSamples {
	t.Helper()
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out promSamples
	for _, line := range strings.Split(string(raw), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// sum adds the values of the samples of metric whose labels contain every
// one of labels ("key=\"value\"").
func (ps promSamples) sum(metric string, labels ...string) float64 {
	total := 0.0
	for _, line := range ps {
		var name, lbls, val string
		if i := strings.IndexAny(line, "{ "); i < 0 {
			continue
		} else if line[i] == ' ' {
			name, val = line[:i], line[i+1:]
		} else {
			var ok bool
			name = line[:i]
			if lbls, val, ok = strings.Cut(line[i+1:], "} "); !ok {
				continue
			}
		}
		if name != metric {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(lbls, l) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			total += v
		}
	}
	return total
}

func numCPU() int { return runtime.NumCPU() }

func grepLines(s string, words ...string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				b.WriteString(line)
				b.WriteByte('\n')
				break
			}
		}
	}
	return b.String()
}

// portTaken reports whether tokend's log says it could not listen because
// its port was taken (by another process since freeAddr chose it).
func portTaken(log string) bool {
	return strings.Contains(log, "address already in use")
}
