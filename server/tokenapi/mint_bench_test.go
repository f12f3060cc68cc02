package tokenapi_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
	"github.com/tokend/tokend/server/auth"
	"github.com/tokend/tokend/server/policy"
	"github.com/tokend/tokend/server/tokenapi"
)

// BenchmarkMintPolicy mints with the application's default grants as a
// credential caller under a policy: what the policy decides (the token's
// reach) is computed once per mint and costs no allocation of its own.
func BenchmarkMintPolicy(b *testing.B) {
	env := newVerifyEnv(b)
	p, err := policy.Parse([]byte(`rules:
  - name: backend
    principals: ["credential:backend"]
    applications: ["*"]
    identities: {pattern: "agent_[0-9]+"}
    grants: {voice: true}
`), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	svc := tokenapi.New(tokenapi.Config{Keys: env.ks, Policy: policy.NewHolder(p)})
	ctx := auth.NewContext(context.Background(), auth.Principal{Kind: auth.KindCredential, Name: "backend"})
	req := &tokenv1.MintRequest{Identity: proto.String("agent_7"), ApplicationSid: vApp1}
	if _, err := svc.Mint(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.Mint(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
