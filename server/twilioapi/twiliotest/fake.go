// Package twiliotest is a fake of Twilio's Keys API and token check, a real
// HTTP server for tests. It behaves as Twilio documents: Basic auth by
// account SID and auth token or by a Main API key SID and secret; the Key
// resources' JSON (sid, friendly_name, date_created and date_updated in
// RFC 2822, secret only in the answer to a create); paging (PageSize,
// Page, PageToken, next_page_uri...); Twilio's error body (code, message,
// more_info, status); and faults a test injects (latency, 429 with
// Retry-After, 5xx, dropped connections).
//
// It also checks access tokens as Twilio does: VerifyToken accepts a token
// only if it is signed by an API key the fake currently holds for the
// token's account, so a test can prove that a deleted key's tokens stop
// working.
package twiliotest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Fault is an injected misbehaviour, applied to the next Times requests
// that match Method (empty: any).
type Fault struct {
	// Method, if set, limits the fault to requests with that method.
	Method string
	// Times is how many matching requests get it; 0 means 1.
	Times int
	// Latency delays the answer (or the drop).
	Latency time.Duration
	// Status, if set, answers with that status and Twilio's error body.
	Status int
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	// Drop closes the connection without an answer.
	Drop bool
	// Hang processes the request (a key is created or deleted) and then
	// never answers until the client goes away: a crash of the client
	// after Twilio acted but before it heard back.
	Hang bool
}

// KeyInfo is a key the fake holds (Secret included, for tests).
type KeyInfo struct {
	SID, FriendlyName, Secret string
	Main                      bool
	DateCreated               time.Time
}

// String never shows the secret (a test that prints the fake's keys in a
// failure message must not print secrets either).
func (k KeyInfo) String() string {
	return fmt.Sprintf("{%s %q main=%t %s}", k.SID, k.FriendlyName, k.Main, k.DateCreated.Format(time.RFC3339))
}

// GoString never shows the secret.
func (k KeyInfo) GoString() string { return "twiliotest.KeyInfo" + k.String() }

// Deletion is a key deleted through the API.
type Deletion struct {
	AccountSID, SID string
	At              time.Time
}

type account struct {
	authToken string
	keys      []*KeyInfo // in creation order
}

// Fake is the fake Twilio. Create it with New; it is safe for concurrent
// use.
type Fake struct {
	srv *httptest.Server

	mu        sync.Mutex
	accounts  map[string]*account
	faults    []*Fault
	deletions []Deletion
	creates   int
	requests  int
	stalled   int
}

// New starts a fake; Close stops it.
func New() *Fake {
	f := &Fake{accounts: map[string]*account{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	return f
}

// URL is the base URL to give tokend (--twilio-api-url).
func (f *Fake) URL() string { return f.srv.URL }

// Close stops the server.
func (f *Fake) Close() { f.srv.Close() }

// AddAccount adds an account with its auth token.
func (f *Fake) AddAccount(accountSID, authToken string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accounts[accountSID] = &account{authToken: authToken}
}

// AddKey creates a key in the account as the Console would (main: a Main
// key, which may manage keys) and returns it with its secret.
func (f *Fake) AddKey(accountSID, friendlyName string, main bool) KeyInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accounts[accountSID]
	if a == nil {
		panic("twiliotest: no account " + accountSID)
	}
	k := newKey(friendlyName, main)
	a.keys = append(a.keys, k)
	return *k
}

// RemoveKey deletes a key as someone in the Console would (not counted
// in Deletions).
func (f *Fake) RemoveKey(accountSID, sid string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.remove(accountSID, sid)
}

func (f *Fake) remove(accountSID, sid string) bool {
	a := f.accounts[accountSID]
	if a == nil {
		return false
	}
	i := slices.IndexFunc(a.keys, func(k *KeyInfo) bool { return k.SID == sid })
	if i < 0 {
		return false
	}
	a.keys = slices.Delete(a.keys, i, i+1)
	return true
}

// Keys returns the keys the account holds now, in creation order.
func (f *Fake) Keys(accountSID string) []KeyInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []KeyInfo
	if a := f.accounts[accountSID]; a != nil {
		for _, k := range a.keys {
			out = append(out, *k)
		}
	}
	return out
}

// Deletions returns every key deleted through the API, in order.
func (f *Fake) Deletions() []Deletion {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deletions)
}

// Creates returns how many keys were created through the API.
func (f *Fake) Creates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates
}

// Requests returns how many API requests reached the fake.
func (f *Fake) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Stalled returns how many requests a Latency or Hang fault is holding
// (or held).
func (f *Fake) Stalled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stalled
}

// Inject queues faults; each applies to the next matching requests.
func (f *Fake) Inject(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range faults {
		fl := faults[i]
		if fl.Times <= 0 {
			fl.Times = 1
		}
		f.faults = append(f.faults, &fl)
	}
}

// ClearFaults drops every queued fault.
func (f *Fake) ClearFaults() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

func newKey(friendlyName string, main bool) *KeyInfo {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var s [16]byte
	_, _ = rand.Read(s[:])
	return &KeyInfo{
		SID: "SK" + hex.EncodeToString(b[:]), FriendlyName: friendlyName, Main: main,
		Secret: hex.EncodeToString(s[:]), DateCreated: time.Now().UTC().Truncate(time.Second),
	}
}

var (
	keysPath = regexp.MustCompile(`^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Keys\.json$`)
	keyPath  = regexp.MustCompile(`^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Keys/(SK[0-9a-f]{32})\.json$`)
)

// twilioError writes Twilio's error body.
func twilioError(w http.ResponseWriter, status, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"code": code, "message": message,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status,
	})
}

func (f *Fake) takeFault(r *http.Request) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	for i, fl := range f.faults {
		if fl.Method != "" && fl.Method != r.Method {
			continue
		}
		fl.Times--
		if fl.Times <= 0 {
			f.faults = slices.Delete(f.faults, i, i+1)
		}
		c := *fl
		return &c
	}
	return nil
}

func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	fl := f.takeFault(r)
	if fl != nil && fl.Hang {
		f.handle(&discardWriter{h: http.Header{}}, r)
		f.mu.Lock()
		f.stalled++
		f.mu.Unlock()
		<-r.Context().Done()
		return
	}
	if fl != nil {
		if fl.Latency > 0 {
			f.mu.Lock()
			f.stalled++
			f.mu.Unlock()
			select {
			case <-time.After(fl.Latency):
			case <-r.Context().Done():
				return
			}
		}
		if fl.Drop {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					_ = c.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		}
		if fl.RetryAfter != "" {
			w.Header().Set("Retry-After", fl.RetryAfter)
		}
		if fl.Status != 0 {
			code := 20500
			if fl.Status == http.StatusTooManyRequests {
				code = 20429
			}
			twilioError(w, fl.Status, code, http.StatusText(fl.Status))
			return
		}
	}
	f.handle(w, r)
}

// discardWriter takes an answer nobody will read.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// handle serves the Keys API.
func (f *Fake) handle(w http.ResponseWriter, r *http.Request) {
	var accountSID, keySID string
	if m := keysPath.FindStringSubmatch(r.URL.Path); m != nil {
		accountSID = m[1]
	} else if m := keyPath.FindStringSubmatch(r.URL.Path); m != nil {
		accountSID, keySID = m[1], m[2]
	} else {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.accounts[accountSID]
	if !f.authorized(r, accountSID, a) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	switch {
	case keySID == "" && r.Method == http.MethodPost:
		if err := r.ParseForm(); err != nil {
			twilioError(w, http.StatusBadRequest, 20001, "bad form")
			return
		}
		name := r.PostForm.Get("FriendlyName")
		if len(name) > 64 {
			twilioError(w, http.StatusBadRequest, 21201, "FriendlyName is too long")
			return
		}
		k := newKey(name, false)
		a.keys = append(a.keys, k)
		f.creates++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		m := keyJSON(k)
		m["secret"] = k.Secret
		_ = json.NewEncoder(w).Encode(m)
	case keySID == "" && r.Method == http.MethodGet:
		f.list(w, r, accountSID, a)
	case keySID != "" && r.Method == http.MethodDelete:
		if !f.remove(accountSID, keySID) {
			twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
			return
		}
		f.deletions = append(f.deletions, Deletion{AccountSID: accountSID, SID: keySID, At: time.Now()})
		w.WriteHeader(http.StatusNoContent)
	case keySID != "" && r.Method == http.MethodGet:
		i := slices.IndexFunc(a.keys, func(k *KeyInfo) bool { return k.SID == keySID })
		if i < 0 {
			twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(keyJSON(a.keys[i]))
	default:
		twilioError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
	}
}

// authorized checks Basic auth: the account SID and its auth token, or a
// Main key of that account and its secret (a Standard key may not manage
// keys). f.mu is held.
func (f *Fake) authorized(r *http.Request, accountSID string, a *account) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || a == nil {
		return false
	}
	eq := func(x, y string) bool { return subtle.ConstantTimeCompare([]byte(x), []byte(y)) == 1 }
	if user == accountSID {
		return eq(pass, a.authToken)
	}
	for _, k := range a.keys {
		if k.SID == user {
			return k.Main && eq(pass, k.Secret)
		}
	}
	return false
}

func keyJSON(k *KeyInfo) map[string]any {
	d := k.DateCreated.Format(time.RFC1123Z)
	return map[string]any{"sid": k.SID, "friendly_name": k.FriendlyName, "date_created": d, "date_updated": d}
}

// list answers one page. Page numbers count from 0; PageToken is the SID
// of the last key of the previous page, as "PA"+sid.
func (f *Fake) list(w http.ResponseWriter, r *http.Request, accountSID string, a *account) {
	q := r.URL.Query()
	size := 50
	if v := q.Get("PageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			twilioError(w, http.StatusBadRequest, 20001, "PageSize must be between 1 and 1000")
			return
		}
		size = n
	}
	page, _ := strconv.Atoi(q.Get("Page"))
	start := page * size
	if tok := q.Get("PageToken"); tok != "" {
		i := slices.IndexFunc(a.keys, func(k *KeyInfo) bool { return "PA"+k.SID == tok })
		if i >= 0 {
			start = i + 1
		}
	}
	start = min(start, len(a.keys))
	end := min(start+size, len(a.keys))
	base := "/2010-04-01/Accounts/" + accountSID + "/Keys.json"
	keys := make([]map[string]any, 0, end-start)
	for _, k := range a.keys[start:end] {
		keys = append(keys, keyJSON(k))
	}
	body := map[string]any{
		"keys": keys, "page": page, "page_size": size, "start": start, "end": max(end-1, start),
		"uri":            fmt.Sprintf("%s?PageSize=%d&Page=%d", base, size, page),
		"first_page_uri": fmt.Sprintf("%s?PageSize=%d&Page=0", base, size),
		"next_page_uri":  nil, "previous_page_uri": nil,
	}
	if end < len(a.keys) {
		body["next_page_uri"] = fmt.Sprintf("%s?PageSize=%d&Page=%d&PageToken=PA%s", base, size, page+1, a.keys[end-1].SID)
	}
	if page > 0 {
		body["previous_page_uri"] = fmt.Sprintf("%s?PageSize=%d&Page=%d", base, size, page-1)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// ErrTokenRefused is returned (wrapped, with Twilio's reason) by
// VerifyToken for a token Twilio would refuse.
var ErrTokenRefused = errors.New("twilio refuses the token")

// VerifyToken checks an access token as Twilio does: HS256, the
// twilio-fpa content type, issued by (iss) an API key the fake holds now
// for the account in sub, signed with that key's secret, not expired. The
// error says why (20103 for an unknown key, as Twilio answers).
func (f *Fake) VerifyToken(token string) error {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		if cty, _ := t.Header["cty"].(string); cty != "twilio-fpa;v=1" {
			return nil, fmt.Errorf("cty %q, want twilio-fpa;v=1", cty)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		a := f.accounts[claims.Subject]
		if a == nil {
			return nil, fmt.Errorf("20101: unknown account %s", claims.Subject)
		}
		for _, k := range a.keys {
			if k.SID == claims.Issuer {
				return []byte(k.Secret), nil
			}
		}
		return nil, fmt.Errorf("20103: API key %s not found in account %s", claims.Issuer, claims.Subject)
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTokenRefused, err)
	}
	return nil
}
