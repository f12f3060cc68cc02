package tokenapi_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/tokenapi"
)

// TestMintDoesNotDescribeApplications: in policy mode a request that
// names no application is not told the SID of the default application it
// may not mint for, nor how many applications tokend holds; in
// development mode the count is still given.
func TestMintDoesNotDescribeApplications(t *testing.T) {
	env := newVerifyEnv(t)
	p, err := policy.Parse([]byte(`rules:
  - name: app1-only
    principals: ["credential:backend"]
    applications: ["`+vApp1+`"]
    identities: {pattern: "agent_[0-9]+"}
`), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := auth.NewContext(context.Background(), auth.Principal{Kind: auth.KindCredential, Name: "backend"})
	req := &tokenv1.MintRequest{Identity: proto.String("agent_7")}
	// No default application among three: the error is the operator's
	// (FailedPrecondition), and in policy mode it does not say how many.
	noDefault := []struct {
		name       string
		cfg        tokenapi.Config
		code       codes.Code
		want, hide string
	}{
		{"count_not_told", tokenapi.Config{Keys: env.ks, Policy: policy.NewHolder(p)},
			codes.FailedPrecondition, "no default application: tokend holds several applications", "3"},
		{"development_mode_count", tokenapi.Config{Keys: env.ks},
			codes.FailedPrecondition, "no default application: tokend holds 3 applications", vApp3},
	}
	// With a default application the caller may not mint for, the denial
	// does not name it.
	withDefault := []struct {
		name       string
		cfg        tokenapi.Config
		code       codes.Code
		want, hide string
	}{
		{"default_application_not_named", tokenapi.Config{Keys: env.ks, Policy: policy.NewHolder(p)},
			codes.PermissionDenied, "application (the default application) is not allowed", vApp3},
	}
	for i, cases := range [][]struct {
		name       string
		cfg        tokenapi.Config
		code       codes.Code
		want, hide string
	}{noDefault, withDefault} {
		if i == 1 {
			if err := env.st.SetDefaultApplication(context.Background(), vApp3); err != nil {
				t.Fatal(err)
			}
			if err := env.ks.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := tokenapi.New(tc.cfg).Mint(ctx, req)
				st := status.Convert(err)
				if st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) || strings.Contains(st.Message(), tc.hide) {
					t.Fatalf("Mint() = %v, want %v saying %q and not %q", err, tc.code, tc.want, tc.hide)
				}
			})
		}
	}
}
