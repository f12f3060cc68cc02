package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestRESTMintsKeptAlive: many REST mints on a few kept-alive connections
// at once, GET and POST, with and without the caller's request id, with a
// refused request among them. The REST /token path builds each answer in
// memory reused from request to request (httpapi's mintArena, the
// service's Scratch); whatever a request is answered must be its own: its
// request id in the header, its identity and jti in the body and in the
// token, and an audit record naming that jti with that request id.
func TestRESTMintsKeptAlive(t *testing.T) {
	h, creds, auditLog := reachHarness(t, reachPolicy, nil)
	const conns, perConn = 4, 60
	type answer struct{ id, identity, jti string }
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	hexID := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for c := range conns {
		wg.Go(func() {
			// One connection: every request of this client reuses it.
			client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for i := range perConn {
				identity := fmt.Sprintf("kept_%d_%d", c, i)
				var req *http.Request
				switch i % 3 {
				case 0:
					req, _ = http.NewRequest("GET", h.httpURL+"/token?identity="+identity, nil)
				case 1:
					req, _ = http.NewRequest("POST", h.httpURL+"/token", strings.NewReader(`{"identity":"`+identity+`"}`))
					req.Header.Set("Content-Type", "application/json")
				case 2:
					// Refused: a lifetime past Twilio's limit.
					req, _ = http.NewRequest("GET", h.httpURL+"/token?ttl_seconds=100000&identity="+identity, nil)
				}
				sent := ""
				if i%2 == 0 {
					sent = fmt.Sprintf("client-%d-%d", c, i)
					req.Header.Set("X-Request-Id", sent)
				}
				req.Header.Set("Authorization", "Bearer "+creds["wide"])
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("%s %s: %v", req.Method, identity, err)
					return
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				id := resp.Header.Get("X-Request-Id")
				if sent != "" && id != sent {
					t.Errorf("%s: X-Request-Id %q, sent %q", identity, id, sent)
				}
				if sent == "" && !hexID.MatchString(id) {
					t.Errorf("%s: X-Request-Id %q, want 32 hex digits", identity, id)
				}
				if i%3 == 2 {
					if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "ttl_seconds") {
						t.Errorf("%s: %d %s, want 400 naming ttl_seconds", identity, resp.StatusCode, raw)
					}
					continue
				}
				var body struct{ Token, Identity, Jti string }
				if err := json.Unmarshal(raw, &body); err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("%s: %d %s", identity, resp.StatusCode, raw)
					continue
				}
				_, claims := decodeJWT(t, body.Token)
				grants, _ := claims["grants"].(map[string]any)
				if body.Identity != identity || grants["identity"] != identity || claims["jti"] != body.Jti {
					t.Errorf("%s: answered identity %q, token identity %v, jti %q in the body and %v in the token",
						identity, body.Identity, grants["identity"], body.Jti, claims["jti"])
				}
				mu.Lock()
				answers = append(answers, answer{id, identity, body.Jti})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	records, _ := readAudit(t, h, auditLog)
	byJTI := map[string]map[string]any{}
	for _, r := range records {
		if jti, _ := r["jti"].(string); jti != "" && r["event"] == "mint" {
			byJTI[jti] = r
		}
	}
	ids := map[string]bool{}
	for _, a := range answers {
		if ids[a.id] {
			t.Errorf("request id %s answered twice", a.id)
		}
		ids[a.id] = true
		r := byJTI[a.jti]
		if r == nil {
			t.Errorf("%s: no audit record of jti %s", a.identity, a.jti)
			continue
		}
		if r["request_id"] != a.id || r["identity"] != a.identity {
			t.Errorf("%s: audit record of %s has request_id %v and identity %v, want %s and %s",
				a.identity, a.jti, r["request_id"], r["identity"], a.id, a.identity)
		}
	}
	if want := conns * perConn * 2 / 3; len(answers) != want || len(byJTI) < want {
		t.Errorf("%d answers and %d mint records, want %d of each", len(answers), len(byJTI), want)
	}
}
