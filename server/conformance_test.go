package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server"
)

// conformance is testdata/conformance.json: mint requests with what the
// official twilio-node library mints for the same inputs.
type conformance struct {
	Credentials struct {
		AccountSID     string `json:"account_sid"`
		APIKeySID      string `json:"api_key_sid"`
		APISecret      string `json:"api_secret"`
		ApplicationSID string `json:"application_sid"`
	} `json:"credentials"`
	Cases []struct {
		Name    string          `json:"name"`
		Request json.RawMessage `json:"request"`
		Want    struct {
			Header          map[string]any `json:"header"`
			Iss             string         `json:"iss"`
			Sub             string         `json:"sub"`
			Grants          map[string]any `json:"grants"`
			LifetimeSeconds float64        `json:"lifetime_seconds"`
		} `json:"want"`
	} `json:"cases"`
}

func loadConformance(t *testing.T) *conformance {
	t.Helper()
	raw, err := os.ReadFile("../testdata/conformance.json")
	if err != nil {
		t.Fatal(err)
	}
	var c conformance
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("testdata/conformance.json: %v", err)
	}
	if len(c.Cases) == 0 {
		t.Fatal("testdata/conformance.json has no cases")
	}
	return &c
}

// TestConformance mints every case of testdata/conformance.json through
// gRPC, REST POST and (for requests without grants) REST GET, and
// compares the decoded token with what twilio-node mints.
func TestConformance(t *testing.T) {
	c := loadConformance(t)
	cr := c.Credentials
	h := newHarness(t, server.Config{Seed: server.Seed{
		AccountSID: cr.AccountSID, APIKey: cr.APIKeySID, APISecret: cr.APISecret, TwiMLAppSID: cr.ApplicationSID,
	}})
	jtis := map[string]string{}

	for _, tc := range c.Cases {
		paths := map[string]func(t *testing.T) (tok string, resp map[string]any){
			"grpc": func(t *testing.T) (string, map[string]any) {
				req := &tokenv1.MintRequest{}
				if err := protojson.Unmarshal(tc.Request, req); err != nil {
					t.Fatalf("request does not decode as MintRequest: %v", err)
				}
				resp, err := h.token.Mint(context.Background(), req)
				if err != nil {
					t.Fatalf("Mint(%v) = %v", req, err)
				}
				b, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(resp)
				var m map[string]any
				json.Unmarshal(b, &m)
				return resp.GetToken(), m
			},
			"rest_post": func(t *testing.T) (string, map[string]any) {
				code, body := h.do(t, "POST", "/token", "application/json", string(tc.Request))
				if code != 200 {
					t.Fatalf("POST /token %s = %d %v", tc.Request, code, body)
				}
				tok, _ := body["token"].(string)
				return tok, body
			},
		}
		var fields map[string]any
		json.Unmarshal(tc.Request, &fields)
		if _, hasGrants := fields["grants"]; !hasGrants {
			paths["rest_get"] = func(t *testing.T) (string, map[string]any) {
				q := url.Values{}
				for k, v := range fields {
					q.Set(k, fmt.Sprint(v))
				}
				code, body := h.do(t, "GET", "/token?"+q.Encode(), "", "")
				if code != 200 {
					t.Fatalf("GET /token?%s = %d %v", q.Encode(), code, body)
				}
				tok, _ := body["token"].(string)
				return tok, body
			}
		}
		for path, mint := range paths {
			t.Run(tc.Name+"/"+path, func(t *testing.T) {
				before := time.Now().Unix()
				tok, resp := mint(t)
				after := time.Now().Unix()

				header, claims := decodeJWT(t, tok)
				if diff := cmp.Diff(tc.Want.Header, header); diff != "" {
					t.Errorf("header mismatch (-twilio-node +tokend):\n%s", diff)
				}
				if diff := cmp.Diff(tc.Want.Grants, claims["grants"]); diff != "" {
					t.Errorf("grants mismatch (-twilio-node +tokend):\n%s", diff)
				}
				if claims["iss"] != tc.Want.Iss || claims["sub"] != tc.Want.Sub {
					t.Errorf("iss, sub = %v, %v, want %v, %v", claims["iss"], claims["sub"], tc.Want.Iss, tc.Want.Sub)
				}
				iat, _ := claims["iat"].(float64)
				exp, _ := claims["exp"].(float64)
				if int64(iat) < before || int64(iat) > after {
					t.Errorf("iat = %v, want between %d and %d", claims["iat"], before, after)
				}
				if got := exp - iat; got != tc.Want.LifetimeSeconds {
					t.Errorf("exp - iat = %v, want %v", got, tc.Want.LifetimeSeconds)
				}
				jti, _ := claims["jti"].(string)
				if !strings.HasPrefix(jti, tc.Want.Iss+"-") || len(jti) <= len(tc.Want.Iss)+1 {
					t.Errorf("jti = %q, want %q followed by a unique string", jti, tc.Want.Iss+"-")
				}
				if other, dup := jtis[jti]; dup {
					t.Errorf("jti %q repeats (also minted by %s)", jti, other)
				}
				jtis[jti] = t.Name()
				for _, k := range []string{"nbf"} {
					if _, ok := claims[k]; ok {
						t.Errorf("claims carry %q, which twilio-node does not emit", k)
					}
				}
				if n := len(claims); n != 6 {
					t.Errorf("claims have %d members %v, want jti, grants, iat, exp, iss, sub", n, claims)
				}
				verified := verifyJWT(t, tok, cr.APISecret)
				if verified["jti"] != jti {
					t.Errorf("golang-jwt reads jti %v, want %v", verified["jti"], jti)
				}

				wantResp := map[string]any{
					"identity":        tc.Want.Grants["identity"],
					"application_sid": cr.ApplicationSID,
					"account_sid":     tc.Want.Sub,
					"api_key_sid":     tc.Want.Iss,
					"jti":             jti,
					"issued_at":       time.Unix(int64(iat), 0).UTC().Format(time.RFC3339),
					"expires_at":      time.Unix(int64(exp), 0).UTC().Format(time.RFC3339),
				}
				if r, ok := tc.Want.Header["twr"]; ok {
					wantResp["region"] = r
				}
				delete(resp, "token")
				if diff := cmp.Diff(wantResp, resp); diff != "" {
					t.Errorf("response mismatch (-want +got):\n%s", diff)
				}
			})
		}
	}
}
