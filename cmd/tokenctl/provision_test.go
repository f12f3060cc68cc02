package main

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

func (f *fakeAdmin) SetTwilioCredential(ctx context.Context, r *tokenv1.SetTwilioCredentialRequest) (*tokenv1.SetTwilioCredentialResponse, error) {
	if err := f.record(ctx, "SetTwilioCredential", r); err != nil {
		return nil, err
	}
	return &tokenv1.SetTwilioCredentialResponse{Credential: &tokenv1.TwilioCredential{ApplicationSid: r.GetApplicationSid(), Username: "AC00000000000000000000000000000000"}}, nil
}

func (f *fakeAdmin) DeleteTwilioCredential(ctx context.Context, r *tokenv1.DeleteTwilioCredentialRequest) (*tokenv1.DeleteTwilioCredentialResponse, error) {
	return &tokenv1.DeleteTwilioCredentialResponse{}, f.record(ctx, "DeleteTwilioCredential", r)
}

func (f *fakeAdmin) ProvisionKey(ctx context.Context, r *tokenv1.ProvisionKeyRequest) (*tokenv1.ProvisionKeyResponse, error) {
	if err := f.record(ctx, "ProvisionKey", r); err != nil {
		return nil, err
	}
	return &tokenv1.ProvisionKeyResponse{Key: &tokenv1.Key{ApplicationSid: r.GetApplicationSid(), ApiKeySid: keySID, State: "active", TwilioState: "present"}}, nil
}

func (f *fakeAdmin) RevokeKey(ctx context.Context, r *tokenv1.RevokeKeyRequest) (*tokenv1.RevokeKeyResponse, error) {
	if err := f.record(ctx, "RevokeKey", r); err != nil {
		return nil, err
	}
	return &tokenv1.RevokeKeyResponse{RevokedApiKeySid: r.GetApiKeySid(), ActiveKey: &tokenv1.Key{ApiKeySid: keySID, State: "active"}}, nil
}

func (f *fakeAdmin) ReconcileKeys(ctx context.Context, r *tokenv1.ReconcileKeysRequest) (*tokenv1.ReconcileKeysResponse, error) {
	if err := f.record(ctx, "ReconcileKeys", r); err != nil {
		return nil, err
	}
	return &tokenv1.ReconcileKeysResponse{OrphanedApiKeySids: []string{"SKorphan"}, MissingApiKeySids: []string{"SKmissing"}}, nil
}

func TestProvisioningCommands(t *testing.T) {
	apiKey := "SK" + strings.Repeat("a", 32)
	tests := []struct {
		name   string
		args   []string
		stdin  string
		method string
		want   proto.Message
		out    string
	}{
		{"auth_token_stdin", []string{"apps", "twilio-credential", "--application", appSID}, secret + "\n", "SetTwilioCredential",
			&tokenv1.SetTwilioCredentialRequest{ApplicationSid: appSID, AuthToken: secret}, "ROTATE EVERY"},
		{"main_key_file_rotate", []string{"apps", "twilio-credential", "--application", appSID, "--api-key", apiKey, "--rotate-every", "720h", "--secret-file", "FILE"}, "", "SetTwilioCredential",
			&tokenv1.SetTwilioCredentialRequest{ApplicationSid: appSID, ApiKeySid: apiKey, ApiKeySecret: secret, RotateEvery: durationpb.New(720 * time.Hour)}, "USERNAME"},
		{"delete", []string{"apps", "twilio-credential", "--application", appSID, "--delete"}, "", "DeleteTwilioCredential",
			&tokenv1.DeleteTwilioCredentialRequest{ApplicationSid: appSID}, "removed"},
		{"provision", []string{"keys", "provision", "--application", appSID, "--activate"}, "", "ProvisionKey",
			&tokenv1.ProvisionKeyRequest{ApplicationSid: appSID, Activate: true}, "present"},
		{"revoke", []string{"keys", "revoke", "--application", appSID, "--key", keySID}, "", "RevokeKey",
			&tokenv1.RevokeKeyRequest{ApplicationSid: appSID, ApiKeySid: keySID}, "revoked"},
		{"reconcile", []string{"keys", "reconcile", "--application", appSID, "--delete-orphans"}, "", "ReconcileKeys",
			&tokenv1.ReconcileKeysRequest{ApplicationSid: appSID, DeleteOrphans: true}, "SKmissing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, addr := startFake(t)
			for i, a := range tt.args {
				if a == "FILE" {
					tt.args[i] = writeFile(t, secret+"\n")
				}
			}
			r := tokenctl(t, addr, nil, strings.NewReader(tt.stdin), tt.args...)
			if r.err != nil {
				t.Fatalf("tokenctl %v: %v", tt.args, r.err)
			}
			calls := fake.recorded()
			if len(calls) != 1 || calls[0].method != tt.method {
				t.Fatalf("calls = %v, want one %s", calls, tt.method)
			}
			if diff := cmp.Diff(tt.want, calls[0].req, protocmp.Transform()); diff != "" {
				t.Errorf("%s request (-want +got):\n%s", tt.method, diff)
			}
			if !strings.Contains(r.output(), tt.out) || strings.Contains(r.output(), secret) {
				t.Errorf("output %q, want it to hold %q and never the secret", r.output(), tt.out)
			}
		})
	}
	// No flag names the secret itself.
	fs := flag.NewFlagSet("apps twilio-credential", flag.ContinueOnError)
	defineAppsTwilioCredential(&cli{}, fs)
	fs.VisitAll(func(f *flag.Flag) {
		if (strings.Contains(f.Name, "secret") || strings.Contains(f.Name, "token")) && f.Name != "secret-file" {
			t.Errorf("apps twilio-credential has a flag --%s", f.Name)
		}
	})
}
