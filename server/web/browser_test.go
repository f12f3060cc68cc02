package web_test

// The page in a real browser: headless Chromium (TOKEND_TEST_CHROMIUM)
// loads it from a real tokend, which mints real tokens; the page decodes
// them, creates a Twilio Voice SDK Device, refreshes the token before it
// expires, and calls tokend across origins when hosted elsewhere.
//
// Nothing reaches Twilio: Chromium resolves no host name at all
// (--host-resolver-rules), so the page must say it cannot reach Twilio.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/server/web"
)

// The seed credentials of the tokend under test (test values, as in
// testdata/conformance.json: nothing here is a real Twilio account).
const (
	testAccountSID = "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	testAPIKey     = "SKbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	testAPISecret  = "cccccccccccccccccccccccccccccccc"
	testAppSID     = "APdddddddddddddddddddddddddddddddd"
)

// caseTimeout bounds each case, browser work and waits included.
const caseTimeout = 25 * time.Second

// minted is what tokend answered to one request reaching its REST handler.
type minted struct {
	Method, Path, Origin string
	Status               int
	Header               http.Header
	At                   time.Time
	JTI                  string    `json:"jti"`
	Identity             string    `json:"identity"`
	ExpiresAt            time.Time `json:"expires_at"`
}

// recorder keeps every request to tokend and its answer.
type recorder struct {
	mu   sync.Mutex
	seen []minted
}

type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (rec *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		tw := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r)
		m := minted{Method: r.Method, Path: r.URL.Path, Origin: r.Header.Get("Origin"), Status: tw.status, Header: w.Header().Clone(), At: at}
		if r.URL.Path == "/token" && tw.status == http.StatusOK {
			json.Unmarshal(tw.body.Bytes(), &m)
		}
		rec.mu.Lock()
		rec.seen = append(rec.seen, m)
		rec.mu.Unlock()
	})
}

// tokens returns the requests to /token that match.
func (rec *recorder) find(match func(minted) bool) []minted {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []minted
	for _, m := range rec.seen {
		if m.Path == "/token" && match(m) {
			out = append(out, m)
		}
	}
	return out
}

// browserEnv is one tokend, two more origins hosting the page (one in
// tokend's CORS allow-list, one not) and one browser.
type browserEnv struct {
	tokendURL  string
	allowedURL string // an origin in tokend's --cors-origins
	refusedURL string // an origin that is not
	rec        *recorder
	browser    context.Context
	artifacts  string
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newBrowserEnv(t *testing.T, chromium string) *browserEnv {
	t.Helper()
	env := &browserEnv{rec: &recorder{}}

	// tokend's address is needed for the pages' CSP before tokend exists,
	// and the pages' for tokend's allow-list: listen first, serve later.
	tokendHS := httptest.NewUnstartedServer(nil)
	env.tokendURL = "http://" + tokendHS.Listener.Addr().String()
	page := web.NewHandler(web.Options{ConnectSrc: []string{env.tokendURL}})
	allowed := httptest.NewServer(page)
	t.Cleanup(allowed.Close)
	refused := httptest.NewServer(page)
	t.Cleanup(refused.Close)
	env.allowedURL, env.refusedURL = allowed.URL, refused.URL

	srv, err := server.New(context.Background(), server.Config{
		DataDir:   t.TempDir(),
		MasterKey: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
		Seed: server.Seed{
			AccountSID: testAccountSID, APIKey: testAPIKey, APISecret: testAPISecret, TwiMLAppSID: testAppSID,
		},
		CORSOrigins: []string{env.allowedURL},
		Logger:      testLogger(t),
	})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	tokendHS.Config.Handler = env.rec.wrap(srv.HTTPHandler())
	tokendHS.Start()
	t.Cleanup(func() {
		tokendHS.Close()
		srv.GRPCServer().Stop()
		srv.Close()
	})

	env.artifacts = os.Getenv("TOKEND_TEST_ARTIFACTS")
	if env.artifacts == "" {
		env.artifacts = t.TempDir()
	}
	if err := os.MkdirAll(env.artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox, // root in a container: no user namespaces for the sandbox
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Resolve no host name: the page's loopback origins are IP
		// addresses, and Twilio's hosts fail at once, here and anywhere.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 1400),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser with no deadline (its life is bound to the context
	// of the first Run), but give up if it does not start in time.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(browser) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v", chromium, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("start %s: no answer in 60 s", chromium)
	}
	env.browser = browser
	return env
}

// tab is one browser tab with its console collected.
type tab struct {
	t         *testing.T
	tabCtx    context.Context // the tab, with no deadline
	ctx       context.Context // the tab, bounded by caseTimeout
	artifacts string

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func (env *browserEnv) newTab(t *testing.T) *tab {
	t.Helper()
	tabCtx, cancelTab := chromedp.NewContext(env.browser)
	// Open the tab with no deadline (see newBrowserEnv), then bound the case.
	if err := chromedp.Do(tabCtx); err != nil {
		cancelTab()
		t.Fatalf("open a tab: %v", err)
	}
	ctx, cancel := context.WithTimeout(tabCtx, caseTimeout)
	tb := &tab{t: t, tabCtx: tabCtx, ctx: ctx, artifacts: env.artifacts}
	messages := chromedp.Console(tabCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.console = append(tb.console, m)
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelTab()
		<-done
	})
	return tb
}

// checkConsole fails the test on an uncaught exception or unhandled
// rejection, and on a Content-Security-Policy violation (the page's policy
// must allow what the page does); it logs every other error. allowed
// matches console errors this case expects.
func (tb *tab) checkConsole(allowed ...*regexp.Regexp) {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.console {
		switch {
		case m.IsException():
			tb.t.Errorf("uncaught exception in the page: %s (%s:%d)", m.Text, m.URL, m.Line+1)
		case strings.Contains(m.Text, "Content Security Policy"):
			tb.t.Errorf("the page broke its own Content-Security-Policy: %s", m.Text)
		case m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning:
			expected := false
			for _, re := range allowed {
				expected = expected || re.MatchString(m.Text)
			}
			if !expected {
				tb.t.Logf("console %s: %s", m.Type, m.Text)
			}
		}
	}
}

// pageState is what the page shows.
type pageState struct {
	Token     status   `json:"token"`
	Identity  string   `json:"identity"`
	App       string   `json:"app"`
	APIKey    string   `json:"apiKey"`
	JTI       string   `json:"jti"`
	ExpiresIn status   `json:"expiresIn"`
	Refreshes string   `json:"refreshes"`
	Grants    []grant  `json:"grants"`
	Device    status   `json:"device"`
	Twilio    status   `json:"twilio"`
	SDK       string   `json:"sdk"`
	Log       []string `json:"log"`
}

type status struct {
	State string `json:"state"`
	Text  string `json:"text"`
}

type grant struct {
	Name string `json:"name"`
	JSON string `json:"json"`
}

const readPage = `(() => {
  const el = (id) => document.getElementById(id);
  const text = (id) => el(id) ? el(id).textContent : '';
  const st = (id) => el(id) ? { state: el(id).dataset.state || '', text: el(id).textContent } : { state: '', text: '' };
  return {
    token: st('token-status'), identity: text('identity'), app: text('application-sid'),
    apiKey: text('api-key-sid'), jti: text('jti'), expiresIn: st('expires-in'),
    refreshes: text('refreshes'), device: st('device-status'), twilio: st('twilio-status'),
    sdk: text('sdk-version'),
    grants: [...document.querySelectorAll('#grants li[data-grant]')].map((li) => ({ name: li.dataset.grant, json: li.querySelector('pre').textContent })),
    log: [...document.querySelectorAll('#log li')].map((li) => li.textContent),
  };
})()`

func (s pageState) String() string {
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}

// open loads a URL in the tab.
func (tb *tab) open(u string) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(u)); err != nil {
		tb.t.Fatalf("navigate to %s: %v", u, err)
	}
}

// read returns what the page shows now.
func (tb *tab) read() (pageState, error) {
	return chromedp.Run(tb.ctx, chromedp.Evaluate[pageState](readPage))
}

// waitFor polls the page until cond holds, failing the test (with what
// the page shows) when the case's deadline comes first.
func (tb *tab) waitFor(what string, cond func(pageState) bool) pageState {
	tb.t.Helper()
	var last pageState
	var lastErr error
	for {
		s, err := tb.read()
		if err == nil {
			last = s
			if cond(s) {
				return s
			}
		} else {
			lastErr = err
		}
		select {
		case <-tb.ctx.Done():
			tb.screenshot("timeout")
			tb.t.Fatalf("waiting for %s: %v (last read error: %v); the page shows:\n%s", what, tb.ctx.Err(), lastErr, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// screenshot writes the page as a PNG into the artifacts directory.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	// A deadline of its own: a screenshot after a timeout is still wanted.
	ctx, cancel := context.WithTimeout(tb.tabCtx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Logf("screenshot %s: %v", name, err)
		return
	}
	file := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(tb.t.Name()+"-"+name, "_") + ".png"
	p := filepath.Join(tb.artifacts, file)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.t.Errorf("write the screenshot: %v", err)
		return
	}
	tb.t.Logf("screenshot: %s", p)
}

func mustURL(base string, q url.Values) string {
	if len(q) == 0 {
		return base + "/"
	}
	return base + "/?" + q.Encode()
}

var (
	// What the browser writes to the console when the page cannot reach
	// Twilio, and the SDK's own error logs about it.
	twilioNoise = regexp.MustCompile(`(?i)twilio|websocket|ERR_NAME_NOT_RESOLVED|31005|31000|53000|AudioContext`)
	// What it writes when tokend refuses an origin.
	corsNoise = regexp.MustCompile(`(?i)CORS policy|Failed to load resource|ERR_FAILED`)
)

func TestBrowser(t *testing.T) {
	chromium := os.Getenv("TOKEND_TEST_CHROMIUM")
	if chromium == "" {
		t.Skip("TOKEND_TEST_CHROMIUM is not set: no browser to run the page in (scripts/browser-deps.sh installs Chromium and prints its path)")
	}
	start := time.Now()
	env := newBrowserEnv(t, chromium)
	t.Logf("browser started in %v; artifacts in %s", time.Since(start).Round(time.Millisecond), env.artifacts)

	t.Run("PageShowsTokenAndCreatesDevice", func(t *testing.T) {
		tb := env.newTab(t)
		tb.open(mustURL(env.tokendURL, url.Values{"identity": {"browser_alice"}}))
		s := tb.waitFor("the token and the Twilio status", func(s pageState) bool {
			return s.Token.State == "ok" && s.Device.State != "none" && (s.Twilio.State == "unreachable" || s.Twilio.State == "error" || s.Twilio.State == "ok")
		})
		mints := env.rec.find(func(m minted) bool { return m.Identity == "browser_alice" })
		if len(mints) != 1 {
			t.Fatalf("tokend minted %d tokens for browser_alice, want 1: %+v", len(mints), mints)
		}
		if mints[0].Origin != "" && mints[0].Origin != env.tokendURL {
			t.Errorf("the page called tokend from origin %q, want its own %s", mints[0].Origin, env.tokendURL)
		}
		if s.Identity != "browser_alice" {
			t.Errorf("identity shown %q, want browser_alice", s.Identity)
		}
		if s.JTI != mints[0].JTI || !strings.HasPrefix(s.JTI, testAPIKey+"-") {
			t.Errorf("jti shown %q, want the minted %q (starting with %s-)", s.JTI, mints[0].JTI, testAPIKey)
		}
		if s.APIKey != testAPIKey || s.App != testAppSID {
			t.Errorf("API key %q and application %q shown, want %s and %s", s.APIKey, s.App, testAPIKey, testAppSID)
		}
		// The seed's default grants: outgoing voice through the application.
		if len(s.Grants) != 1 || s.Grants[0].Name != "voice" {
			t.Fatalf("grants shown %+v, want voice only", s.Grants)
		}
		var voice map[string]any
		if err := json.Unmarshal([]byte(s.Grants[0].JSON), &voice); err != nil {
			t.Fatalf("the voice grant shown is not JSON: %v", err)
		}
		if out, _ := voice["outgoing"].(map[string]any); out == nil || out["application_sid"] != testAppSID {
			t.Errorf("voice grant shown %v, want outgoing.application_sid %s", voice, testAppSID)
		}
		if s.ExpiresIn.State != "valid" || !regexp.MustCompile(`^(59 min \d\d s|1 h 00 min 00 s)$`).MatchString(s.ExpiresIn.Text) {
			t.Errorf("expiry countdown shows %q (%s), want about 60 min", s.ExpiresIn.Text, s.ExpiresIn.State)
		}
		if s.Device.State != "ok" || !strings.Contains(s.Device.Text, "Device created") {
			t.Errorf("device status %q (%s), want the Device created", s.Device.Text, s.Device.State)
		}
		if !strings.HasPrefix(s.SDK, "@twilio/voice-sdk@") {
			t.Errorf("SDK shown %q, want @twilio/voice-sdk@<version>", s.SDK)
		}
		if s.Twilio.State != "unreachable" || !strings.Contains(s.Twilio.Text, "Cannot reach Twilio") {
			t.Errorf("Twilio status %q (%s), want it to say it cannot reach Twilio", s.Twilio.Text, s.Twilio.State)
		}
		// The countdown is live.
		before := s.ExpiresIn.Text
		tb.waitFor("the countdown to move", func(s pageState) bool { return s.ExpiresIn.Text != before })
		tb.screenshot("page")
		tb.checkConsole(twilioNoise)
	})

	t.Run("RefreshesBeforeExpiry", func(t *testing.T) {
		tb := env.newTab(t)
		tb.open(mustURL(env.tokendURL, url.Values{"identity": {"browser_bob"}, "ttl_seconds": {"4"}}))
		first := tb.waitFor("the first token", func(s pageState) bool { return s.Token.State == "ok" && s.JTI != "–" })
		s := tb.waitFor("a refreshed token", func(s pageState) bool {
			return s.Refreshes != "0" && s.JTI != first.JTI && s.Token.State == "ok"
		})
		mints := env.rec.find(func(m minted) bool { return m.Identity == "browser_bob" && m.Method == http.MethodPost })
		if len(mints) < 2 {
			t.Fatalf("tokend minted %d tokens for browser_bob, want at least 2", len(mints))
		}
		if mints[0].JTI != first.JTI {
			t.Errorf("first jti shown %q, want %q", first.JTI, mints[0].JTI)
		}
		if !slices.ContainsFunc(mints[1:], func(m minted) bool { return m.JTI == s.JTI }) {
			t.Errorf("refreshed jti shown %q, want one tokend minted after the first (%+v)", s.JTI, mints[1:])
		}
		if !mints[1].At.Before(mints[0].ExpiresAt) {
			t.Errorf("the refresh reached tokend at %v, not before the first token expired at %v", mints[1].At, mints[0].ExpiresAt)
		}
		if lifetime := mints[0].ExpiresAt.Sub(mints[0].At); lifetime > 5*time.Second {
			t.Errorf("first token lives %v, want about 4 s", lifetime)
		}
		t.Logf("token 1 minted %v, expires %v; refreshed %v before", mints[0].At.Format(time.StampMilli), mints[0].ExpiresAt.Format(time.StampMilli), mints[0].ExpiresAt.Sub(mints[1].At).Round(time.Millisecond))
		if !strings.Contains(s.Token.Text, "new jti "+s.JTI) || !strings.Contains(s.Token.Text, "The Device has the new token.") {
			t.Errorf("token status %q, want the new jti and the Device updated", s.Token.Text)
		}
		if s.ExpiresIn.State != "valid" {
			t.Errorf("countdown %q (%s) after the refresh, want valid", s.ExpiresIn.Text, s.ExpiresIn.State)
		}
		if s.Device.State != "ok" || !strings.Contains(s.Device.Text, "has the token "+s.JTI) {
			t.Errorf("device status %q (%s), want the Device holding the new token", s.Device.Text, s.Device.State)
		}
		// And again: the schedule follows each new token.
		second := s.JTI
		tb.waitFor("a second refresh", func(s pageState) bool {
			n, err := strconv.Atoi(s.Refreshes)
			return err == nil && n >= 2 && s.JTI != second
		})
		tb.screenshot("refreshed")
		tb.checkConsole(twilioNoise)
	})

	t.Run("CrossOriginAllowed", func(t *testing.T) {
		tb := env.newTab(t)
		tb.open(mustURL(env.allowedURL, url.Values{"identity": {"cors_ok"}, "tokend": {env.tokendURL}}))
		s := tb.waitFor("a token across origins", func(s pageState) bool { return s.Token.State != "loading" && s.Device.State != "none" })
		if s.Token.State != "ok" || s.Identity != "cors_ok" {
			t.Fatalf("token status %q (%s), identity %q: want a token for cors_ok", s.Token.Text, s.Token.State, s.Identity)
		}
		mints := env.rec.find(func(m minted) bool { return m.Identity == "cors_ok" })
		if len(mints) != 1 || mints[0].Origin != env.allowedURL || mints[0].JTI != s.JTI {
			t.Fatalf("tokend minted %+v, want one token for cors_ok asked from %s with jti %s", mints, env.allowedURL, s.JTI)
		}
		if got := mints[0].Header.Get("Access-Control-Allow-Origin"); got != env.allowedURL {
			t.Errorf("Access-Control-Allow-Origin = %q, want %s", got, env.allowedURL)
		}
		preflights := env.rec.find(func(m minted) bool { return m.Method == http.MethodOptions && m.Origin == env.allowedURL })
		if len(preflights) == 0 || preflights[0].Status != http.StatusNoContent {
			t.Errorf("preflights from %s: %+v, want one answered 204", env.allowedURL, preflights)
		}
		tb.screenshot("cors-allowed")
		tb.checkConsole(twilioNoise)
	})

	t.Run("CrossOriginRefused", func(t *testing.T) {
		tb := env.newTab(t)
		tb.open(mustURL(env.refusedURL, url.Values{"identity": {"cors_no"}, "tokend": {env.tokendURL}}))
		s := tb.waitFor("the fetch to fail", func(s pageState) bool { return s.Token.State != "loading" })
		if s.Token.State != "error" || !strings.Contains(s.Token.Text, "Cannot fetch a token from "+env.tokendURL+"/token") ||
			!strings.Contains(s.Token.Text, env.refusedURL) {
			t.Errorf("token status %q (%s), want the fetch failure naming tokend and this origin", s.Token.Text, s.Token.State)
		}
		if s.Identity != "–" || s.Device.State != "none" {
			t.Errorf("identity %q, device %q: want no token and no Device", s.Identity, s.Device.Text)
		}
		if mints := env.rec.find(func(m minted) bool { return m.Identity == "cors_no" }); len(mints) != 0 {
			t.Errorf("tokend minted %+v for a refused origin", mints)
		}
		for _, m := range env.rec.find(func(m minted) bool { return m.Origin == env.refusedURL }) {
			if v := m.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("%s from the refused origin answered with Access-Control-Allow-Origin %q", m.Method, v)
			}
		}
		tb.screenshot("cors-refused")
		tb.checkConsole(corsNoise)
	})
}

// The page's assets, as tokend serves them, without a browser.
func TestHandler(t *testing.T) {
	hs := httptest.NewServer(web.NewHandler(web.Options{ConnectSrc: []string{"https://tokend.example.com"}}))
	defer hs.Close()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script defer src="assets/app.js"></script>`},
		{"/assets/app.js", "text/javascript; charset=utf-8", "@twilio/voice-sdk@"},
		{"/assets/app.css", "text/css; charset=utf-8", "#expires-in"},
	} {
		resp, err := http.Get(hs.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.ctype || !bytes.Contains(body, []byte(tc.contains)) {
			t.Errorf("GET %s: %d %q, body has %q: %v; want 200 %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.contains, bytes.Contains(body, []byte(tc.contains)), tc.ctype)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self' https://tokend.example.com https://*.twilio.com wss://*.twilio.com;"} {
			if !strings.Contains(csp+";", want) {
				t.Errorf("GET %s: CSP %q lacks %q", tc.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: CSP %q allows unsafe sources", tc.path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", tc.path)
		}
		etag := resp.Header.Get("ETag")
		req, _ := http.NewRequest(http.MethodGet, hs.URL+tc.path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if etag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %q: %d, want 304", tc.path, etag, resp.StatusCode)
		}
	}
	for _, p := range []string{"/assets/", "/assets/nope.js", "/index.html", "/assets/../go.mod"} {
		resp, err := http.Get(hs.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	resp, err := http.Post(hs.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", resp.StatusCode)
	}
	// tokend's own page calls only its own origin (and Twilio).
	if got := web.CSP(); !strings.Contains(got, "connect-src 'self' https://*.twilio.com wss://*.twilio.com;") {
		t.Errorf("CSP() = %q", got)
	}
}
