package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"

	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

func defineAppsTwilioCredential(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	apiKey := fs.String("api-key", "", "authenticate with this Main API key `SID` (SK + 32 hex) instead of the account's auth token")
	secretFile := fs.String("secret-file", "", "read the auth token (or the Main API key's secret) from the file at `path`; without it, from stdin (a hidden prompt on a terminal). One trailing newline is dropped")
	rotate := fs.Duration("rotate-every", 0, "provision and activate a new key this often (Go duration, such as 720h; 1s to 87600h); 0: no scheduled rotation")
	del := fs.Bool("delete", false, "remove the provisioning credential instead")
	return func(ctx context.Context, args []string) error {
		const cmd = "apps twilio-credential"
		if len(args) > 0 {
			return fmt.Errorf("%s: takes no arguments; the secret is read from --secret-file or stdin, never from the command line", cmd)
		}
		if err := required(cmd, [2]string{"application", *app}); err != nil {
			return err
		}
		if *del {
			resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.DeleteTwilioCredentialResponse, error) {
				return a.DeleteTwilioCredential(ctx, &tokenv1.DeleteTwilioCredentialRequest{ApplicationSid: *app})
			})
			if err != nil {
				return err
			}
			return c.output(resp, func(w io.Writer) { fmt.Fprintf(w, "removed the provisioning credential of %s\n", cell(*app)) })
		}
		cl, err := c.dialAdmin()
		if err != nil {
			return err
		}
		defer cl.Close()
		label := "the auth token of the application's account"
		if *apiKey != "" {
			label = *apiKey
		}
		secret, err := c.readSecret(ctx, *secretFile, label)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		c.redact = append(c.redact, secret)
		req := &tokenv1.SetTwilioCredentialRequest{ApplicationSid: *app}
		if *apiKey != "" {
			req.ApiKeySid, req.ApiKeySecret = *apiKey, secret
		} else {
			req.AuthToken = secret
		}
		if *rotate != 0 {
			req.RotateEvery = durationpb.New(*rotate)
		}
		resp, err := adminCall(ctx, c, cl, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.SetTwilioCredentialResponse, error) {
			return a.SetTwilioCredential(ctx, req)
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) {
			cr := resp.GetCredential()
			every := "-"
			if d := cr.GetRotateEvery(); d != nil {
				every = d.AsDuration().String()
			}
			fmt.Fprintf(w, "APPLICATION\tUSERNAME\tROTATE EVERY\tUPDATED\n%s\t%s\t%s\t%s\n", cell(cr.GetApplicationSid()), cell(cr.GetUsername()), every, timestamp(cr.GetUpdatedAt()))
		})
	}
}

func defineKeysProvision(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	activate := fs.Bool("activate", false, "make the new key the active key at once")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys provision"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.ProvisionKeyResponse, error) {
			return a.ProvisionKey(ctx, &tokenv1.ProvisionKeyRequest{ApplicationSid: *app, Activate: *activate})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { keysTable(w, resp.GetKey()) })
	}
}

func defineKeysRevoke(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	key := fs.String("key", "", "API key `SID` to revoke (required)")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys revoke"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}, [2]string{"key", *key}); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.RevokeKeyResponse, error) {
			return a.RevokeKey(ctx, &tokenv1.RevokeKeyRequest{ApplicationSid: *app, ApiKeySid: *key})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) {
			fmt.Fprintf(w, "revoked %s: deleted at Twilio and from tokend\n\n", cell(resp.GetRevokedApiKeySid()))
			if k := resp.GetActiveKey(); k != nil {
				keysTable(w, k)
			}
		})
	}
}

func defineKeysReconcile(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	deleteOrphans := fs.Bool("delete-orphans", false, "delete at Twilio the keys tokend created for the application but no longer knows")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys reconcile"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.ReconcileKeysResponse, error) {
			return a.ReconcileKeys(ctx, &tokenv1.ReconcileKeysRequest{ApplicationSid: *app, DeleteOrphans: *deleteOrphans})
		})
		if err != nil {
			return err
		}
		list := func(s []string) string {
			if len(s) == 0 {
				return "-"
			}
			return cell(strings.Join(s, ","))
		}
		return c.output(resp, func(w io.Writer) {
			fmt.Fprintf(w, "ORPHANED AT TWILIO\tDELETED\tMISSING AT TWILIO\tSWITCHED TO\n%s\t%s\t%s\t%s\n",
				list(resp.GetOrphanedApiKeySids()), list(resp.GetDeletedApiKeySids()), list(resp.GetMissingApiKeySids()), cell(resp.GetSwitchedToApiKeySid()))
		})
	}
}
