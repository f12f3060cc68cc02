// Package twilioapi talks to Twilio's Keys API (create, list and delete
// API keys of an account) through Twilio's official Go helper library,
// github.com/twilio/twilio-go, with retries, backoff with jitter and
// Retry-After. It is used by key provisioning only, never on the mint path.
//
// Every call can be sent to another base URL than Twilio's own hosts (an
// egress proxy, or the fake in package twiliotest): the paths stay the ones
// Twilio uses, /2010-04-01/Accounts/{AccountSid}/Keys.json and
// /2010-04-01/Accounts/{AccountSid}/Keys/{Sid}.json.
package twilioapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	twclient "github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"
)

// FriendlyNamePrefix starts the friendly name of every key tokend creates;
// the application SID and the ID of the provisioning op follow, so that
// reconcile can tell tokend's keys (and the application and op they were
// made for) from keys made by hand.
const FriendlyNamePrefix = "tokend "

// FriendlyName returns the friendly name of a key tokend creates for an
// application in op opID: "tokend AP... <opID>" (Twilio allows 64
// characters; opID should be at most 20).
func FriendlyName(applicationSID, opID string) string {
	return FriendlyNamePrefix + applicationSID + " " + opID
}

// ParseFriendlyName returns the application SID and op ID a friendly name
// made by FriendlyName holds, and whether it is one.
func ParseFriendlyName(friendlyName string) (applicationSID, opID string, ok bool) {
	rest, ok := strings.CutPrefix(friendlyName, FriendlyNamePrefix)
	if !ok {
		return "", "", false
	}
	sid, op, _ := strings.Cut(rest, " ")
	if len(sid) != 34 || !strings.HasPrefix(sid, "AP") {
		return "", "", false
	}
	return sid, op, true
}

// Credential authenticates to Twilio's REST API: an account SID with its
// auth token, or a Main API key SID with its secret. It never prints its
// password.
type Credential struct {
	Username string
	Password string
}

// String shows the username only.
func (c Credential) String() string { return "Credential(" + c.Username + ")" }

// GoString shows the username only.
func (c Credential) GoString() string { return c.String() }

// LogValue shows the username only (slog's JSON handler would otherwise
// write every exported field).
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// MarshalJSON shows the username only.
func (c Credential) MarshalJSON() ([]byte, error) { return json.Marshal(c.String()) }

// Key is an API key as Twilio lists it. Secret is set only in the answer
// to CreateKey.
type Key struct {
	SID          string
	FriendlyName string
	DateCreated  time.Time
	Secret       string
}

// String never shows the secret.
func (k Key) String() string { return "Key(" + k.SID + " " + strconv.Quote(k.FriendlyName) + ")" }

// GoString never shows the secret.
func (k Key) GoString() string { return k.String() }

// LogValue never shows the secret.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON never shows the secret.
func (k Key) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// Error is an unsuccessful call to Twilio after every attempt. It never
// carries a credential.
type Error struct {
	// Op is what was asked: "create key", "list keys" or "delete key".
	Op string
	// Status is the HTTP status of the last answer (0: no answer, such as
	// a timeout or a dropped connection).
	Status int
	// Code and Message are Twilio's error code and message, when it sent
	// its error body.
	Code    int
	Message string
	// Attempts is how many requests were made (0: none, Twilio having
	// asked to wait).
	Attempts int
	// Err is the transport error when there was no answer.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "twilio %s", e.Op)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
		if e.Code != 0 {
			fmt.Fprintf(&b, ", Twilio error %d", e.Code)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, ": %s", e.Message)
		}
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Attempts > 0 {
		fmt.Fprintf(&b, " (after %d attempt", e.Attempts)
		if e.Attempts != 1 {
			b.WriteString("s")
		}
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// NotFound reports whether Twilio answered 404 with its error 20404 (for
// DeleteKey: the key is gone already). A 404 without Twilio's error body
// (a proxy's, or a wrong --twilio-api-url prefix) is not: taking it for a
// deletion would drop keys from tokend that Twilio still holds.
func (e *Error) NotFound() bool { return e.Status == http.StatusNotFound && e.Code == 20404 }

// Unauthorized reports whether Twilio refused the credential (401 or 403).
func (e *Error) Unauthorized() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// Transient reports whether the failure may pass on its own: too many
// requests, a 5xx, or no answer.
func (e *Error) Transient() bool {
	return e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// Config configures a Client. The zero value talks to Twilio's own hosts
// with the defaults below.
type Config struct {
	// BaseURL replaces Twilio's hosts (scheme, host and an optional path
	// prefix); empty: https://api.twilio.com, or the regional host of the
	// application's region.
	BaseURL string
	// Transport carries the requests; nil: http.DefaultTransport.
	Transport http.RoundTripper
	// Timeout bounds each attempt; 0: 10 s.
	Timeout time.Duration
	// Attempts is how many times a call is tried; 0: 5.
	Attempts int
	// BaseDelay is the first backoff; it doubles each retry up to MaxDelay,
	// with full jitter. 0: 200 ms and 5 s.
	BaseDelay, MaxDelay time.Duration
	// MaxRetryAfter caps how long a Retry-After is honoured; 0: 60 s. A
	// longer Retry-After ends the retries.
	MaxRetryAfter time.Duration
	// OnAttempt, if set, is told of every attempt's outcome (op, HTTP
	// status or 0, and whether it failed), for metrics.
	OnAttempt func(op string, status int, failed bool)
}

// Client calls Twilio's Keys API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base *url.URL

	mu    sync.Mutex
	quiet map[string]time.Time // account SID -> no request before (a Retry-After not waited out)
}

// New returns a Client; it fails only on a malformed BaseURL.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg, quiet: map[string]time.Time{}}
	if cfg.BaseURL != "" {
		// The URL is never quoted: it could hold a proxy's password.
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, errors.New("twilio API URL: want http(s)://host[:port][/prefix]")
		}
		if u.User != nil {
			// tokend would drop it (Twilio's credential goes in the
			// Authorization header): refuse rather than send nothing.
			return nil, errors.New("twilio API URL: must not hold a user or password")
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		c.base = u
	}
	if c.cfg.Transport == nil {
		c.cfg.Transport = http.DefaultTransport
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = 10 * time.Second
	}
	if c.cfg.Attempts <= 0 {
		c.cfg.Attempts = 5
	}
	if c.cfg.BaseDelay <= 0 {
		c.cfg.BaseDelay = 200 * time.Millisecond
	}
	if c.cfg.MaxDelay <= 0 {
		c.cfg.MaxDelay = 5 * time.Second
	}
	if c.cfg.MaxRetryAfter <= 0 {
		c.cfg.MaxRetryAfter = 60 * time.Second
	}
	return c, nil
}

// regionEdges maps a Twilio region to the edge location twilio-go puts in
// front of it (api.{edge}.{region}.twilio.com), as Twilio documents them.
var regionEdges = map[string]string{
	"au1": "sydney",
	"br1": "sao-paulo",
	"de1": "frankfurt",
	"ie1": "dublin",
	"jp1": "tokyo",
	"jp2": "osaka",
	"sg1": "singapore",
	"us2": "umatilla",
}

// Host returns the host twilio-go sends Keys calls for that region to,
// without a BaseURL: api.twilio.com for none or us1, else
// api.{edge}.{region}.twilio.com (api.{region}.twilio.com for a region
// without a known edge).
func Host(region string) string {
	h := twclient.RequestHandler{Region: regionOf(region), Edge: regionEdges[regionOf(region)]}
	u, err := h.BuildUrl("https://api.twilio.com/")
	if err != nil {
		return "api.twilio.com"
	}
	p, _ := url.Parse(u)
	return p.Host
}

func regionOf(region string) string {
	if region == "us1" {
		return ""
	}
	return region
}

// attempt is the state of one request: the Retry-After and status of its
// answer, read by the transport.
type attempt struct {
	ctx        context.Context
	timeout    time.Duration
	base       *url.URL
	next       http.RoundTripper
	status     int
	retryAfter string
}

// RoundTrip bounds the request by the caller's context and the attempt's
// timeout (twilio-go sends context.Background), and reads the answer whole
// (Keys answers are small) before returning it: twilio-go does not close
// the body of an error answer, which would hold the connection.
func (a *attempt) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(a.ctx, a.timeout)
	defer cancel()
	req = req.WithContext(ctx)
	if a.base != nil {
		u := *req.URL
		u.Scheme, u.Host = a.base.Scheme, a.base.Host
		u.Path = a.base.Path + u.Path
		u.RawPath = ""
		req.URL = &u
		req.Host = ""
	}
	resp, err := a.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	a.status = resp.StatusCode
	a.retryAfter = resp.Header.Get("Retry-After")
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		a.status = 0 // the answer was cut off: as good as none
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// service returns a twilio-go Keys service for one attempt.
func (c *Client) service(ctx context.Context, cred Credential, accountSID, region string) (*api.ApiService, *attempt) {
	a := &attempt{ctx: ctx, timeout: c.cfg.Timeout, base: c.base, next: c.cfg.Transport}
	tc := &twclient.Client{
		Credentials: twclient.NewCredentials(cred.Username, cred.Password),
		HTTPClient: &http.Client{
			Transport:     a,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	tc.SetAccountSid(accountSID)
	h := &twclient.RequestHandler{Client: tc}
	if c.base == nil {
		h.Region, h.Edge = regionOf(region), regionEdges[regionOf(region)]
	}
	return api.NewApiService(h), a
}

// quietUntil returns when Twilio allows requests for the account again,
// if it asked to wait (Retry-After) and that time has not come.
func (c *Client) quietUntil(accountSID string, now time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.quiet[accountSID]
	if ok && !now.Before(until) {
		delete(c.quiet, accountSID)
		return time.Time{}, false
	}
	return until, ok
}

// keepQuiet records that Twilio asked for no requests for the account
// until then.
func (c *Client) keepQuiet(accountSID string, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if until.After(c.quiet[accountSID]) {
		c.quiet[accountSID] = until
	}
}

// do runs call until it succeeds, fails for good, or the attempts run out.
// While Twilio's Retry-After for the account has not passed (one this
// call or an earlier one could not wait out), it sends nothing and
// answers a 429 at once.
func (c *Client) do(ctx context.Context, op string, cred Credential, accountSID, region string, call func(*api.ApiService) error) error {
	if until, ok := c.quietUntil(accountSID, time.Now()); ok {
		return &Error{Op: op, Status: http.StatusTooManyRequests, Code: 20429,
			Message: "Twilio asked (Retry-After) for no requests for this account until " + until.UTC().Format(time.RFC3339) + "; none sent"}
	}
	var last *Error
	for n := 1; ; n++ {
		svc, a := c.service(ctx, cred, accountSID, region)
		err := call(svc)
		if c.cfg.OnAttempt != nil {
			c.cfg.OnAttempt(op, a.status, err != nil)
		}
		if err == nil {
			return nil
		}
		last = &Error{Op: op, Status: a.status, Attempts: n}
		var rest *twclient.TwilioRestError
		if errors.As(err, &rest) {
			last.Code, last.Message = rest.Code, rest.Message
			if last.Status == 0 {
				last.Status = rest.Status
			}
		} else if a.status == 0 || a.status < 400 {
			last.Err = redact(err, cred)
		}
		if !last.Transient() || n >= c.cfg.Attempts || ctx.Err() != nil {
			if ctx.Err() != nil && last.Err == nil && last.Status == 0 {
				last.Err = ctx.Err()
			}
			return last
		}
		wait := c.backoff(n)
		if ra, ok := parseRetryAfter(a.retryAfter, time.Now()); ok {
			now := time.Now()
			c.keepQuiet(accountSID, now.Add(ra))
			if ra > c.cfg.MaxRetryAfter {
				last.Message = strings.TrimSpace(last.Message + " (Retry-After " + a.retryAfter + " is beyond what tokend waits)")
				return last
			}
			if dl, ok := ctx.Deadline(); ok && dl.Before(now.Add(ra)) {
				last.Message = strings.TrimSpace(last.Message + " (Retry-After " + a.retryAfter + " is beyond the call's deadline)")
				return last
			}
			wait = ra
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return last
		case <-t.C:
		}
	}
}

// backoff is the full-jitter delay before retry n (1-based).
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.BaseDelay << min(n-1, 20)
	if d <= 0 || d > c.cfg.MaxDelay {
		d = c.cfg.MaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// redact removes the credential's password from an error text (a
// transport error may quote the URL, never the Authorization header, but
// be sure).
func redact(err error, cred Credential) error {
	if cred.Password != "" && strings.Contains(err.Error(), cred.Password) {
		return errors.New(strings.ReplaceAll(err.Error(), cred.Password, "[redacted]"))
	}
	return err
}

// CreateKey creates a Standard API key in the account, in the region's
// host, and returns it with its secret.
func (c *Client) CreateKey(ctx context.Context, cred Credential, accountSID, region, friendlyName string) (Key, error) {
	var k Key
	err := c.do(ctx, "create key", cred, accountSID, region, func(svc *api.ApiService) error {
		p := (&api.CreateNewKeyParams{}).SetPathAccountSid(accountSID).SetFriendlyName(friendlyName)
		r, err := svc.CreateNewKey(p)
		if err != nil {
			return err
		}
		if r.Sid == nil || r.Secret == nil || *r.Secret == "" {
			return &twclient.TwilioRestError{Status: 502, Message: "the answer has no sid or secret"}
		}
		k = Key{SID: *r.Sid, Secret: *r.Secret, FriendlyName: deref(r.FriendlyName), DateCreated: parseDate(r.DateCreated)}
		return nil
	})
	return k, err
}

// ListKeys lists every API key of the account (all pages).
func (c *Client) ListKeys(ctx context.Context, cred Credential, accountSID, region string) ([]Key, error) {
	var keys []Key
	err := c.do(ctx, "list keys", cred, accountSID, region, func(svc *api.ApiService) error {
		rs, err := svc.ListKey((&api.ListKeyParams{}).SetPathAccountSid(accountSID).SetPageSize(1000))
		if err != nil {
			return err
		}
		keys = keys[:0]
		for _, r := range rs {
			keys = append(keys, Key{SID: deref(r.Sid), FriendlyName: deref(r.FriendlyName), DateCreated: parseDate(r.DateCreated)})
		}
		return nil
	})
	return keys, err
}

// DeleteKey deletes an API key at Twilio. A key Twilio does not have
// (404) is an *Error whose NotFound is true.
func (c *Client) DeleteKey(ctx context.Context, cred Credential, accountSID, region, sid string) error {
	return c.do(ctx, "delete key", cred, accountSID, region, func(svc *api.ApiService) error {
		return svc.DeleteKey(sid, (&api.DeleteKeyParams{}).SetPathAccountSid(accountSID))
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parseDate reads Twilio's RFC 2822 dates ("Mon, 02 Jan 2006 15:04:05 +0000").
func parseDate(s *string) time.Time {
	if s == nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC1123Z, *s)
	if err != nil {
		return time.Time{}
	}
	return t
}
