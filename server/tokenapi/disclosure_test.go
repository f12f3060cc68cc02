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
	for _, tc := range []struct {
		name       string
		cfg        tokenapi.Config
		code       codes.Code
		want, hide string
	}{
		{"default_application_not_named", tokenapi.Config{Keys: env.ks, Policy: policy.NewHolder(p), DefaultApplication: vApp3},
			codes.PermissionDenied, "application (the default application) is not allowed", vApp3},
		{"count_not_told", tokenapi.Config{Keys: env.ks, Policy: policy.NewHolder(p)},
			codes.InvalidArgument, "application_sid: is required: tokend holds several applications", "3"},
		{"development_mode_count", tokenapi.Config{Keys: env.ks},
			codes.InvalidArgument, "application_sid: is required: tokend holds 3 applications", vApp3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tokenapi.New(tc.cfg).Mint(ctx, req)
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) || strings.Contains(st.Message(), tc.hide) {
				t.Fatalf("Mint() = %v, want %v saying %q and not %q", err, tc.code, tc.want, tc.hide)
			}
		})
	}
}
