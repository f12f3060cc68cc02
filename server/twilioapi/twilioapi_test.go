package twilioapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokend/tokend/server/twilioapi"
	"github.com/tokend/tokend/server/twilioapi/twiliotest"
)

const (
	acct      = "AC0123456789abcdef0123456789abcdef"
	authToken = "0123456789abcdef0123456789abcdef"
	app       = "AP0123456789abcdef0123456789abcdef"
)

func newFake(t *testing.T) (*twiliotest.Fake, *twilioapi.Client) {
	t.Helper()
	f := twiliotest.New()
	t.Cleanup(f.Close)
	f.AddAccount(acct, authToken)
	c, err := twilioapi.New(twilioapi.Config{BaseURL: f.URL(), BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestCreateListDelete(t *testing.T) {
	f, c := newFake(t)
	ctx := context.Background()
	main := f.AddKey(acct, "main", true)
	creds := map[string]twilioapi.Credential{
		"auth_token": {Username: acct, Password: authToken},
		"main_key":   {Username: main.SID, Password: main.Secret},
	}
	for name, cred := range creds {
		t.Run(name, func(t *testing.T) {
			k, err := c.CreateKey(ctx, cred, acct, "", twilioapi.FriendlyName(app, "op1"))
			if err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			if !strings.HasPrefix(k.SID, "SK") || k.Secret == "" || k.DateCreated.IsZero() {
				t.Fatalf("CreateKey = %#v, secret set %v, want a SID, a secret and a date", k, k.Secret != "")
			}
			if got, op, ok := twilioapi.ParseFriendlyName(k.FriendlyName); !ok || got != app || op != "op1" {
				t.Errorf("ParseFriendlyName(%q) = %q, %q, %v, want %s, op1", k.FriendlyName, got, op, ok, app)
			}
			keys, err := c.ListKeys(ctx, cred, acct, "")
			if err != nil {
				t.Fatalf("ListKeys: %v", err)
			}
			found := false
			for _, l := range keys {
				if l.Secret != "" {
					t.Errorf("ListKeys returned a secret for %s", l.SID)
				}
				found = found || l.SID == k.SID
			}
			if !found {
				t.Fatalf("ListKeys = %v, want it to hold %s", keys, k.SID)
			}
			if err := c.DeleteKey(ctx, cred, acct, "", k.SID); err != nil {
				t.Fatalf("DeleteKey: %v", err)
			}
			err = c.DeleteKey(ctx, cred, acct, "", k.SID)
			var te *twilioapi.Error
			if !errors.As(err, &te) || !te.NotFound() || te.Code != 20404 {
				t.Fatalf("DeleteKey again = %v, want a 404 with code 20404", err)
			}
		})
	}
}

func TestListPages(t *testing.T) {
	f, c := newFake(t)
	want := map[string]bool{}
	for i := range 2500 / 100 * 50 { // 1250 keys: two pages of 1000
		want[f.AddKey(acct, fmt.Sprint("k", i), false).SID] = true
	}
	keys, err := c.ListKeys(context.Background(), twilioapi.Credential{Username: acct, Password: authToken}, acct, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(want) {
		t.Fatalf("ListKeys returned %d keys, want %d", len(keys), len(want))
	}
	for _, k := range keys {
		if !want[k.SID] {
			t.Errorf("ListKeys returned %s twice or unknown", k.SID)
		}
		delete(want, k.SID)
	}
}

func TestFaults(t *testing.T) {
	cred := twilioapi.Credential{Username: acct, Password: authToken}
	tests := []struct {
		name       string
		faults     []twiliotest.Fault
		cred       twilioapi.Credential
		wantErr    bool
		wantStatus int
		minWait    time.Duration
		wantReqs   int
	}{
		{name: "ok", cred: cred, wantReqs: 1},
		{name: "bad_token_401_no_retry", cred: twilioapi.Credential{Username: acct, Password: "wrong"}, wantErr: true, wantStatus: 401, wantReqs: 1},
		{name: "unknown_account_401", cred: twilioapi.Credential{Username: "AC" + strings.Repeat("9", 32), Password: authToken}, wantErr: true, wantStatus: 401, wantReqs: 1},
		{name: "503_then_ok", cred: cred, faults: []twiliotest.Fault{{Status: 503, Times: 2}}, wantReqs: 3},
		{name: "500_always", cred: cred, faults: []twiliotest.Fault{{Status: 500, Times: 10}}, wantErr: true, wantStatus: 500, wantReqs: 5},
		{name: "429_retry_after", cred: cred, faults: []twiliotest.Fault{{Status: 429, RetryAfter: "1"}}, minWait: time.Second, wantReqs: 2},
		{name: "429_retry_after_too_long", cred: cred, faults: []twiliotest.Fault{{Status: 429, RetryAfter: "3600"}}, wantErr: true, wantStatus: 429, wantReqs: 1},
		{name: "dropped_connection", cred: cred, faults: []twiliotest.Fault{{Drop: true}}, wantReqs: 2},
		{name: "timeout", cred: cred, faults: []twiliotest.Fault{{Latency: 3 * time.Second}}, wantReqs: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newFake(t)
			f.Inject(tt.faults...)
			start := time.Now()
			k, err := c.CreateKey(context.Background(), tt.cred, acct, "", "x")
			if took := time.Since(start); took < tt.minWait {
				t.Errorf("CreateKey took %v, want at least %v (Retry-After)", took, tt.minWait)
			}
			if got := f.Requests(); got != tt.wantReqs {
				t.Errorf("requests = %d, want %d", got, tt.wantReqs)
			}
			if !tt.wantErr {
				if err != nil || k.SID == "" {
					t.Fatalf("CreateKey = %v, %v, want a key", k, err)
				}
				return
			}
			var te *twilioapi.Error
			if !errors.As(err, &te) || te.Status != tt.wantStatus {
				t.Fatalf("CreateKey error = %v, want a *twilioapi.Error with status %d", err, tt.wantStatus)
			}
			if strings.Contains(err.Error(), authToken) || strings.Contains(err.Error(), "wrong") {
				t.Errorf("error %q shows the credential", err)
			}
		})
	}
}

func TestHost(t *testing.T) {
	for region, want := range map[string]string{
		"": "api.twilio.com", "us1": "api.twilio.com", "ie1": "api.dublin.ie1.twilio.com",
		"au1": "api.sydney.au1.twilio.com", "jp1": "api.tokyo.jp1.twilio.com", "zz9": "api.zz9.twilio.com",
	} {
		if got := twilioapi.Host(region); got != want {
			t.Errorf("Host(%q) = %q, want %q", region, got, want)
		}
	}
}

// TestRegionalHost checks that without a base URL the request goes to the
// region's host (seen by a transport that answers itself).
func TestRegionalHost(t *testing.T) {
	var host string
	rt := roundTripper(func(r *http.Request) (*http.Response, error) {
		host = r.URL.Host
		return nil, errors.New("stop")
	})
	c, err := twilioapi.New(twilioapi.Config{Transport: rt, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.ListKeys(context.Background(), twilioapi.Credential{Username: acct, Password: authToken}, acct, "ie1")
	if host != "api.dublin.ie1.twilio.com" {
		t.Errorf("host = %q, want api.dublin.ie1.twilio.com", host)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestVerifyToken(t *testing.T) {
	f, _ := newFake(t)
	k := f.AddKey(acct, "signer", false)
	sign := func(iss, secret string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": iss, "sub": acct, "exp": time.Now().Add(time.Minute).Unix(), "jti": iss + "-1",
		})
		tok.Header["cty"] = "twilio-fpa;v=1"
		s, err := tok.SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(k.SID, k.Secret)
	if err := f.VerifyToken(good); err != nil {
		t.Fatalf("VerifyToken(good) = %v", err)
	}
	if err := f.VerifyToken(sign(k.SID, "other")); !errors.Is(err, twiliotest.ErrTokenRefused) {
		t.Errorf("VerifyToken(wrong secret) = %v, want refused", err)
	}
	f.RemoveKey(acct, k.SID)
	if err := f.VerifyToken(good); !errors.Is(err, twiliotest.ErrTokenRefused) || !strings.Contains(err.Error(), "20103") {
		t.Errorf("VerifyToken(deleted key) = %v, want refused with 20103", err)
	}
}

// TestRetryAfterIsHonouredAcrossCalls: a Retry-After longer than tokend
// waits within a call (or than the caller's deadline) ends the call, and
// the calls that follow for that account wait it out without sending a
// request (the scheduler calls every interval: it must not hammer a
// Twilio that asked for quiet). Another account is not held back.
func TestRetryAfterIsHonouredAcrossCalls(t *testing.T) {
	cred := twilioapi.Credential{Username: acct, Password: authToken}
	tests := []struct {
		name       string
		retryAfter string
		timeout    time.Duration // of the caller's context; 0: none
	}{
		{name: "beyond_max_retry_after", retryAfter: "3600"},
		{name: "beyond_the_deadline", retryAfter: "30", timeout: 300 * time.Millisecond},
		{name: "http_date", retryAfter: time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newFake(t)
			other := "AC" + strings.Repeat("e", 32)
			f.AddAccount(other, authToken)
			f.Inject(twiliotest.Fault{Status: 429, RetryAfter: tt.retryAfter})
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			start := time.Now()
			_, err := c.ListKeys(ctx, cred, acct, "")
			var te *twilioapi.Error
			if !errors.As(err, &te) || te.Status != 429 || !te.Transient() {
				t.Fatalf("ListKeys() = %v, want a transient 429", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("ListKeys() took %v: it waited for a Retry-After it could not honour", took)
			}
			before := f.Requests()
			_, err = c.ListKeys(context.Background(), cred, acct, "")
			if !errors.As(err, &te) || te.Status != 429 || !strings.Contains(err.Error(), "Retry-After") {
				t.Fatalf("ListKeys() again = %v, want a 429 saying Twilio asked to wait", err)
			}
			if got := f.Requests(); got != before {
				t.Errorf("ListKeys() again sent %d requests while Twilio asked to wait, want 0", got-before)
			}
			if _, err := c.ListKeys(context.Background(), twilioapi.Credential{Username: other, Password: authToken}, other, ""); err != nil {
				t.Errorf("ListKeys(another account) = %v, want no wait", err)
			}
		})
	}
}

// TestSecretsNeverPrinted: a credential or a created key, printed,
// logged (text or JSON) or marshalled, shows no secret.
func TestSecretsNeverPrinted(t *testing.T) {
	const secret = "s3cr3tvalue0123456789abcdef01234"
	values := map[string]any{
		"credential": twilioapi.Credential{Username: acct, Password: secret},
		"key":        twilioapi.Key{SID: "SK" + strings.Repeat("a", 32), FriendlyName: "tokend", Secret: secret},
	}
	for name, v := range values {
		var text, js strings.Builder
		slog.New(slog.NewTextHandler(&text, nil)).Info("x", "v", v)
		slog.New(slog.NewJSONHandler(&js, nil)).Info("x", "v", v)
		m, _ := json.Marshal(v)
		for form, out := range map[string]string{
			"%v": fmt.Sprintf("%v", v), "%+v": fmt.Sprintf("%+v", v), "%#v": fmt.Sprintf("%#v", v),
			"slog text": text.String(), "slog JSON": js.String(), "json": string(m),
		} {
			if strings.Contains(out, secret) {
				t.Errorf("%s as %s shows the secret", name, form)
			}
		}
	}
}

// TestBaseURLBad: a base URL tokend cannot use is refused, without quoting
// it (it may hold a password).
func TestBaseURLBad(t *testing.T) {
	for _, u := range []string{
		"ftp://proxy.example", "proxy.example:8080", "https://", "https://proxy.example/?x=pw0secret", "https://proxy.example/#pw0secret",
		"https://user:pw0secret@proxy.example", "http://pw0secret@proxy.example:3128/twilio",
	} {
		c, err := twilioapi.New(twilioapi.Config{BaseURL: u})
		if err == nil {
			t.Errorf("New(BaseURL %q) = %v, want an error", u, c)
			continue
		}
		if strings.Contains(err.Error(), "pw0secret") {
			t.Errorf("New(BaseURL %q) = %v, quoting the URL", u, err)
		}
	}
}

// TestNotFoundNeedsTwilio: DeleteKey's "gone already" is Twilio's 404
// with error 20404; a 404 from something else (a proxy, a wrong path
// prefix in the base URL) is a failure, not a deletion.
func TestNotFoundNeedsTwilio(t *testing.T) {
	f, c := newFake(t)
	cred := twilioapi.Credential{Username: acct, Password: authToken}
	err := c.DeleteKey(context.Background(), cred, acct, "", "SK"+strings.Repeat("0", 32))
	var te *twilioapi.Error
	if !errors.As(err, &te) || !te.NotFound() {
		t.Fatalf("DeleteKey(unknown key) = %v, want NotFound", err)
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer proxy.Close()
	wrong, err := twilioapi.New(twilioapi.Config{BaseURL: proxy.URL + "/wrong-prefix", BaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	k := f.AddKey(acct, "x", false)
	err = wrong.DeleteKey(context.Background(), cred, acct, "", k.SID)
	if !errors.As(err, &te) || te.NotFound() || te.Status != http.StatusNotFound {
		t.Fatalf("DeleteKey through a proxy answering a bare 404 = %v, want a failure that is not NotFound", err)
	}
}
