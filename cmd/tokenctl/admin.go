package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tokend/tokend/client"
	tokenv1 "github.com/tokend/tokend/gen/token/v1"
)

// dialAdmin returns a client that sends the admin token. It does not
// connect yet.
func (c *cli) dialAdmin() (*client.Client, error) {
	token, err := c.adminToken()
	if err != nil {
		return nil, err
	}
	opts, err := c.clientOptions()
	if err != nil {
		return nil, err
	}
	return client.New(c.addr, append(opts, client.WithBearerToken(token))...)
}

// adminCall makes one admin call under the time limit; its error is an
// *rpcError.
func adminCall[R any](ctx context.Context, c *cli, cl *client.Client, call func(context.Context, tokenv1.AdminServiceClient) (R, error)) (R, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := call(ctx, cl.Admin())
	if err != nil {
		var zero R
		return zero, c.rpcError(err)
	}
	return resp, nil
}

// dialAndCall is dialAdmin then adminCall, for the commands with nothing to
// do in between.
func dialAndCall[R any](ctx context.Context, c *cli, call func(context.Context, tokenv1.AdminServiceClient) (R, error)) (R, error) {
	cl, err := c.dialAdmin()
	if err != nil {
		var zero R
		return zero, err
	}
	defer cl.Close()
	return adminCall(ctx, c, cl, call)
}

// rpcError is a failed call: it prints as "<code>: <message>" and keeps
// the status for status.Code.
type rpcError struct{ st *status.Status }

// rpcError converts the error of a call, with any token tokenctl sent
// blanked out of its message.
func (c *cli) rpcError(err error) *rpcError {
	st := status.Convert(err)
	msg := st.Message()
	for _, tok := range c.redact {
		msg = strings.ReplaceAll(msg, tok, "[REDACTED]")
	}
	switch {
	case st.Code() == codes.Unavailable:
		if hint := c.diagnose(); hint != "" {
			msg += "\n" + hint
		}
	case answeredHTTP(st.Message()):
		// An HTTP server that speaks HTTP/2 (tokend's REST port over
		// TLS) answers the call with a REST answer, not a gRPC one.
		msg += "\n" + fmt.Sprintf("%s answers HTTP, not gRPC (tokend's REST port, --http-addr?): --addr takes tokend's gRPC address (--grpc-addr, 127.0.0.1:9090 by default)", c.addr)
	}
	if msg != st.Message() {
		st = status.New(st.Code(), msg)
	}
	return &rpcError{st: st}
}

// answeredHTTP tells whether grpc-go's message says the server answered
// with an HTTP status or content type no gRPC server sends.
func answeredHTTP(msg string) bool {
	return strings.Contains(msg, "unexpected HTTP status code received from server") ||
		strings.Contains(msg, "received unexpected content-type")
}

func (e *rpcError) Error() string              { return fmt.Sprintf("%s: %s", e.st.Code(), e.st.Message()) }
func (e *rpcError) GRPCStatus() *status.Status { return e.st }

// int32Flag is an int32 flag value.
type int32Flag struct{ v int32 }

func (f *int32Flag) String() string {
	if f == nil {
		return "0"
	}
	return strconv.Itoa(int(f.v))
}

func (f *int32Flag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return errors.New("not a 32-bit integer")
	}
	f.v = int32(n)
	return nil
}

func parseGrants(flagName, s string) (*tokenv1.Grants, error) {
	g := &tokenv1.Grants{}
	if err := protojson.Unmarshal([]byte(s), g); err != nil {
		return nil, fmt.Errorf("--%s: %v", flagName, err)
	}
	return g, nil
}

// noArgs refuses positional arguments.
func noArgs(cmd string, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, args[0])
	}
	return nil
}

// sidArg returns the one positional argument, an application SID.
func sidArg(cmd string, args []string) (string, error) {
	switch {
	case len(args) == 0 || args[0] == "":
		return "", fmt.Errorf("%s: missing the application SID (AP..)", cmd)
	case len(args) > 1:
		return "", fmt.Errorf("%s: unexpected argument %q", cmd, args[1])
	}
	return args[0], nil
}

func required(cmd string, flags ...[2]string) error {
	for _, f := range flags {
		if f[1] == "" {
			return fmt.Errorf("%s: --%s is required", cmd, f[0])
		}
	}
	return nil
}

const grantsHelp = "as `JSON`, such as '{\"voice\":{\"incoming\":{\"allow\":true}}}'"

func defineAppsCreate(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (AP + 32 hex; required)")
	account := fs.String("account", "", "account `SID` (AC + 32 hex; required)")
	name := fs.String("name", "", "friendly `name`")
	grants := fs.String("default-grants", "", "default grants of a mint request that names none, "+grantsHelp+" (default: tokend's --default-grants, else outgoing voice through this application)")
	maxTTL := &int32Flag{}
	fs.Var(maxTTL, "max-ttl", "longest token lifetime in `seconds`, 0 to 86400; 0 (the default) means 86400")
	region := fs.String("region", "", "default home `region` of its tokens, such as ie1")
	return func(ctx context.Context, args []string) error {
		const cmd = "apps create"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}, [2]string{"account", *account}); err != nil {
			return err
		}
		req := &tokenv1.CreateApplicationRequest{
			ApplicationSid: *app,
			AccountSid:     *account,
			FriendlyName:   *name,
			MaxTtlSeconds:  maxTTL.v,
			Region:         *region,
		}
		if *grants != "" {
			g, err := parseGrants("default-grants", *grants)
			if err != nil {
				return err
			}
			req.DefaultGrants = g
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.CreateApplicationResponse, error) {
			return a.CreateApplication(ctx, req)
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { appDetail(w, resp.GetApplication()) })
	}
}

func defineAppsList(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := noArgs("apps list", args); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.ListApplicationsResponse, error) {
			return a.ListApplications(ctx, &tokenv1.ListApplicationsRequest{})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { appsTable(w, resp.GetApplications()...) })
	}
}

func defineAppsShow(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		sid, err := sidArg("apps show", args)
		if err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.GetApplicationResponse, error) {
			return a.GetApplication(ctx, &tokenv1.GetApplicationRequest{ApplicationSid: sid})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { appDetail(w, resp.GetApplication()) })
	}
}

func defineAppsUpdate(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	account := fs.String("account", "", "new account `SID` (AC + 32 hex)")
	name := fs.String("name", "", "new friendly `name`")
	grants := fs.String("default-grants", "", "new default grants "+grantsHelp)
	reset := fs.Bool("reset-default-grants", false, "go back to tokend's default grants (its --default-grants, else outgoing voice); not with --default-grants")
	maxTTL := &int32Flag{}
	fs.Var(maxTTL, "max-ttl", "new longest token lifetime in `seconds`, 0 to 86400; 0 means 86400")
	region := fs.String("region", "", "new default home `region`; empty to clear it")
	return func(ctx context.Context, args []string) error {
		const cmd = "apps update"
		sid, err := sidArg(cmd, args)
		if err != nil {
			return err
		}
		req := &tokenv1.UpdateApplicationRequest{ApplicationSid: sid}
		changes := 0
		fs.Visit(func(f *flag.Flag) {
			changes++
			switch f.Name {
			case "account":
				req.AccountSid = proto.String(*account)
			case "name":
				req.FriendlyName = proto.String(*name)
			case "default-grants":
				var perr error
				if req.DefaultGrants, perr = parseGrants(f.Name, *grants); perr != nil {
					err = perr
				}
			case "reset-default-grants":
				req.ResetDefaultGrants = *reset
			case "max-ttl":
				req.MaxTtlSeconds = proto.Int32(maxTTL.v)
			case "region":
				req.Region = proto.String(*region)
			default: // --json
				changes--
			}
		})
		switch {
		case err != nil:
			return err
		case changes == 0:
			return fmt.Errorf("%s: nothing to change: give at least one of --account, --name, --default-grants, --reset-default-grants, --max-ttl, --region", cmd)
		case req.DefaultGrants != nil && req.ResetDefaultGrants:
			return fmt.Errorf("%s: --default-grants and --reset-default-grants exclude each other", cmd)
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.UpdateApplicationResponse, error) {
			return a.UpdateApplication(ctx, req)
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { appDetail(w, resp.GetApplication()) })
	}
}

func defineAppsDelete(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	force := fs.Bool("force", false, "delete even though tokens signed by its keys are still outstanding")
	return func(ctx context.Context, args []string) error {
		sid, err := sidArg("apps delete", args)
		if err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.DeleteApplicationResponse, error) {
			return a.DeleteApplication(ctx, &tokenv1.DeleteApplicationRequest{ApplicationSid: sid, Force: *force})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { fmt.Fprintf(w, "deleted application %s\n", cell(sid)) })
	}
}

func defineAppsDefault(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		const cmd = "apps default"
		if len(args) > 1 {
			return fmt.Errorf("%s: unexpected argument %q", cmd, args[1])
		}
		if len(args) == 0 {
			resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.GetDefaultApplicationResponse, error) {
				return a.GetDefaultApplication(ctx, &tokenv1.GetDefaultApplicationRequest{})
			})
			if err != nil {
				return err
			}
			return c.output(resp, func(w io.Writer) {
				switch {
				case resp.GetApplicationSid() != "":
					fmt.Fprintf(w, "DEFAULT APPLICATION  %s\n", cell(resp.GetApplicationSid()))
				case resp.GetEffectiveApplicationSid() != "":
					fmt.Fprintf(w, "DEFAULT APPLICATION  none set; the only application %s serves requests naming none\n", cell(resp.GetEffectiveApplicationSid()))
				default:
					fmt.Fprintln(w, "DEFAULT APPLICATION  none: requests naming no application fail; set one with tokenctl apps default AP..")
				}
			})
		}
		sid, err := sidArg(cmd, args)
		if err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.SetDefaultApplicationResponse, error) {
			return a.SetDefaultApplication(ctx, &tokenv1.SetDefaultApplicationRequest{ApplicationSid: sid})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) {
			prev := resp.GetPreviousApplicationSid()
			if prev == "" {
				prev = "none"
			}
			fmt.Fprintf(w, "default application %s (was %s)\n", cell(resp.GetApplicationSid()), cell(prev))
		})
	}
}

func defineKeysAdd(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	key := fs.String("key", "", "API key `SID` (SK + 32 hex; required)")
	activate := fs.Bool("activate", false, "make it the active key at once (an application's first key always is)")
	secretFile := fs.String("secret-file", "", "read the API key secret from the file at `path`; without it, from stdin (a hidden prompt on a terminal). One trailing newline is dropped")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys add"
		if len(args) > 0 {
			// Not quoted: it may well be the secret.
			return fmt.Errorf("%s: takes no arguments; the secret is read from --secret-file or stdin, never from the command line", cmd)
		}
		if err := required(cmd, [2]string{"application", *app}, [2]string{"key", *key}); err != nil {
			return err
		}
		cl, err := c.dialAdmin()
		if err != nil {
			return err
		}
		defer cl.Close()
		secret, err := c.readSecret(ctx, *secretFile, *key)
		if err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		req := &tokenv1.AddKeyRequest{ApplicationSid: *app, ApiKeySid: *key, Secret: secret, Activate: *activate}
		resp, err := adminCall(ctx, c, cl, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.AddKeyResponse, error) {
			return a.AddKey(ctx, req)
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { keysTable(w, resp.GetKey()) })
	}
}

func defineKeysList(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys list"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.ListKeysResponse, error) {
			return a.ListKeys(ctx, &tokenv1.ListKeysRequest{ApplicationSid: *app})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { keysTable(w, resp.GetKeys()...) })
	}
}

func defineKeysActivate(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	key := fs.String("key", "", "API key `SID` (required)")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys activate"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}, [2]string{"key", *key}); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.ActivateKeyResponse, error) {
			return a.ActivateKey(ctx, &tokenv1.ActivateKeyRequest{ApplicationSid: *app, ApiKeySid: *key})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) {
			keysTable(w, resp.GetKey())
			if prev := resp.GetPreviousApiKeySid(); prev != "" {
				fmt.Fprintf(w, "\nretired %s\n", cell(prev))
			}
		})
	}
}

func defineKeysDelete(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	app := fs.String("application", "", "TwiML application `SID` (required)")
	key := fs.String("key", "", "API key `SID` (required)")
	force := fs.Bool("force", false, "delete even though tokens it signed are still outstanding")
	return func(ctx context.Context, args []string) error {
		const cmd = "keys delete"
		if err := noArgs(cmd, args); err != nil {
			return err
		}
		if err := required(cmd, [2]string{"application", *app}, [2]string{"key", *key}); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.DeleteKeyResponse, error) {
			return a.DeleteKey(ctx, &tokenv1.DeleteKeyRequest{ApplicationSid: *app, ApiKeySid: *key, Force: *force})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) { fmt.Fprintf(w, "deleted key %s of %s\n", cell(*key), cell(*app)) })
	}
}

func defineRekey(c *cli, fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if err := noArgs("rekey", args); err != nil {
			return err
		}
		resp, err := dialAndCall(ctx, c, func(ctx context.Context, a tokenv1.AdminServiceClient) (*tokenv1.RekeyResponse, error) {
			return a.Rekey(ctx, &tokenv1.RekeyRequest{})
		})
		if err != nil {
			return err
		}
		return c.output(resp, func(w io.Writer) {
			fmt.Fprintf(w, "RESEALED\tPRIMARY MASTER KEY\n%d\t%s\n", resp.GetResealed(), cell(resp.GetPrimaryMasterKeyId()))
		})
	}
}
