package tokenapi_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/tokenapi"
)

// FuzzVerify checks that Verify never panics, fails only for an empty or
// oversized token, says valid exactly when the code is 0, and never puts a
// secret in its response.
func FuzzVerify(f *testing.F) {
	env := newVerifyEnv(f)
	t0 := env.now.Load()
	valid := env.mint(f, &tokenv1.MintRequest{ApplicationSid: vApp1, Region: "us1"})
	f.Add(valid)
	f.Add(env.mint(f, &tokenv1.MintRequest{ApplicationSid: vApp3}))
	f.Add(signHand(f, twilioHeader(), handClaims(t0), vSecret1))
	f.Add("garbage")
	f.Add("a.b.c")
	f.Add("..")
	f.Add(algNoneToken(f, t0))
	f.Add(flipLastSignatureChar(valid))
	f.Add("eyJhbGciOiJIUzI1NiJ9.WzFd.c2ln")

	f.Fuzz(func(t *testing.T, tok string) {
		resp, err := env.svc.Verify(context.Background(), &tokenv1.VerifyRequest{Token: tok})
		if err != nil {
			if status.Code(err) != codes.InvalidArgument || tok != "" && len(tok) <= tokenapi.MaxVerifyTokenBytes {
				t.Fatalf("Verify(%q): %v", tok, err)
			}
			return
		}
		if resp.GetValid() != (resp.GetTwilioErrorCode() == 0) {
			t.Fatalf("Verify(%q): valid=%v code=%d", tok, resp.GetValid(), resp.GetTwilioErrorCode())
		}
		if resp.GetValid() != (resp.GetReason() == "") {
			t.Fatalf("Verify(%q): valid=%v reason=%q", tok, resp.GetValid(), resp.GetReason())
		}
		if resp.GetValid() && !strings.HasPrefix(resp.GetApiKeySid(), "SK") {
			t.Fatalf("Verify(%q): valid with api_key_sid %q", tok, resp.GetApiKeySid())
		}
		b, err := protojson.Marshal(resp)
		if err != nil {
			t.Fatalf("Verify(%q): response does not marshal: %v", tok, err)
		}
		for _, s := range vSecrets {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("Verify(%q): the response holds a secret", tok)
			}
		}
	})
}
